# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""librdkafka's log lines: one per client, broker and kind each interval."""

import logging

from monasca_common.confluent_kafka import logs


class Clock:
    now = 100.0

    def __call__(self):
        return self.now


def line(text, level=logging.ERROR, client='rdkafka#producer-1',
         facility='FAIL'):
    # As confluent-kafka logs them.
    return logging.LogRecord('monasca_common.confluent_kafka.librdkafka',
                             level, __file__, 1, '%s [%s] %s',
                             (facility, client, text), None)


BOOT = ('[thrd:127.0.0.1:9092/bootstrap]: 127.0.0.1:9092/bootstrap: '
        'Connect to ipv4#127.0.0.1:9092 failed: Connection refused '
        '(after 0ms in state CONNECT)')
OTHER = BOOT.replace('9092', '9093')


def test_a_refused_broker_says_so_once_per_interval():
    clock = Clock()
    throttle = logs.RepeatFilter(interval=30, clock=clock)
    passed = []
    for _ in range(300):  # ten a second for 30 s
        record = line(BOOT)
        if throttle.filter(record):
            passed.append(record.getMessage())
        clock.now += 0.1
    clock.now = 130.0
    record = line(BOOT)
    assert throttle.filter(record)
    assert len(passed) == 1 and passed[0].endswith('state CONNECT)')
    assert record.getMessage().endswith(
        'state CONNECT) (299 more like it in 30 s)')


def test_each_broker_client_and_level_is_counted_apart():
    throttle = logs.RepeatFilter(interval=30, clock=Clock())
    assert throttle.filter(line(BOOT))
    assert throttle.filter(line(OTHER))
    assert throttle.filter(line(BOOT, client='rdkafka#consumer-2'))
    assert throttle.filter(line(BOOT, level=logging.WARNING))
    assert throttle.filter(line(BOOT, facility='SSL'))
    assert not throttle.filter(line(BOOT))


def test_debug_lines_asked_for_all_pass():
    throttle = logs.RepeatFilter(interval=30, clock=Clock())
    assert all(throttle.filter(line(BOOT, level=logging.DEBUG))
               for _ in range(50))


def test_old_kinds_are_dropped_as_clients_come_and_go():
    clock = Clock()
    throttle = logs.RepeatFilter(interval=30, clock=clock)
    for n in range(5000):
        throttle.filter(line(BOOT, client='rdkafka#producer-%d' % n))
        clock.now += 0.1
    assert len(throttle._seen) <= 1000


def test_the_library_logger_has_it():
    assert any(isinstance(f, logs.RepeatFilter)
               for f in logs.LIBRDKAFKA_LOG.filters)
