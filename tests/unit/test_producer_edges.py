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

"""Producer misuse and edge inputs, without a broker or on the mock."""

import collections
import gc
import logging
import threading
import time

import pytest

from monasca_common import kafka
from tests import waiting


def test_close_racing_a_publish_blocked_on_a_full_queue(unreachable_servers):
    producer = kafka.KafkaProducer(
        unreachable_servers, **{'queue.buffering.max.messages': 10})
    raised = []

    def publish():
        try:
            producer.publish('t', [b'x'] * 30, timeout=60)
        except kafka.QueueFullError as exc:
            raised.append(exc)

    blocked = threading.Thread(target=publish)
    blocked.start()
    waiting.until(lambda: len(producer._producer) == 10, 10,
                  'the queue full')
    started = time.monotonic()
    undelivered = producer.close(2)
    blocked.join(10)
    assert not blocked.is_alive(), 'publish still waiting after close()'
    assert time.monotonic() - started < 5
    # Every message is accounted for: 10 queued then purged, 20 refused.
    assert undelivered == 10
    assert raised and raised[0].not_queued == 20
    assert 'closed' in str(raised[0])
    with pytest.raises(kafka.ClientClosedError):
        producer.publish('t', b'late')


def test_a_dropped_producer_leaves_no_thread(mock_cluster):
    before = threading.active_count()
    for _ in range(20):
        producer = kafka.KafkaProducer(mock_cluster)
        producer.publish('t', b'x', sync=True)
        del producer
    gc.collect()
    waiting.until(lambda: threading.active_count() <= before, 10,
                  'the pollers of dropped producers gone')


def test_a_message_of_exactly_message_max_bytes_refuses_the_whole_call(
        unreachable_servers):
    limit = 10000
    with kafka.KafkaProducer(unreachable_servers,
                             **{'message.max.bytes': limit}) as producer:
        with pytest.raises(kafka.InvalidMessageError, match='message 1 '):
            producer.publish('t', [b'first', b'x' * limit, b'last'])
        assert len(producer) == 0
        # What librdkafka takes, this takes.
        producer.publish('t', [b'x' * (limit - 36)])
        assert len(producer) == 1


def test_an_oversized_key_is_named_as_the_key(unreachable_servers):
    with kafka.KafkaProducer(unreachable_servers) as producer:
        with pytest.raises(kafka.InvalidMessageError, match='key is 2000000'):
            producer.publish('t', b'v', key=b'k' * 2000000)


def test_non_numeric_message_max_bytes_is_a_configuration_error():
    with pytest.raises(kafka.ConfigurationError, match='message.max.bytes'):
        kafka.KafkaProducer('127.0.0.1:9', **{'message.max.bytes': 'big'})


def test_list_subclasses_and_deques_are_lists_of_messages(mock_cluster):
    class Batch(list):
        pass

    with kafka.KafkaProducer(mock_cluster) as producer:
        for messages in (Batch([b'a', b'b']), collections.deque([b'a', b'b']),
                         (b'a', b'b')):
            result = producer.publish('t', messages, sync=True)
            assert result.delivered == 2


def test_system_exit_in_a_callback_does_not_stop_the_poller(mock_cluster,
                                                            caplog):
    def exits(err, msg):
        raise SystemExit(3)

    with kafka.KafkaProducer(mock_cluster) as producer:
        with caplog.at_level(logging.ERROR):
            producer.publish('t', b'x', callback=exits, sync=True)
        # The poller still serves reports.
        assert producer.publish('t', b'y', sync=True, timeout=10).delivered
    assert 'raised' in caplog.text


def test_close_keeps_its_deadline_with_a_slow_callback(mock_cluster):
    entered, release = threading.Event(), threading.Event()

    def slow(err, msg):
        entered.set()
        release.wait(30)

    producer = kafka.KafkaProducer(mock_cluster)
    producer.publish('t', b'x', callback=slow)
    assert entered.wait(10), 'the callback never ran'
    started = time.monotonic()
    producer.close(1)
    assert time.monotonic() - started < 4
    release.set()


def test_a_short_secret_is_not_revealed_by_its_mask():
    from monasca_common.confluent_kafka import config
    text = 'Invalid value "lid" for configuration property "sasl.password"'
    scrubbed = config.scrub(text, {'sasl.password': 'lid'})
    assert scrubbed == ('Invalid value "*****" for configuration property '
                        '"sasl.password"')
