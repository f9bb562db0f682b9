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

"""The broker is SIGKILLed and restarted while a producer streams."""

import collections
import logging
import os
import subprocess
import sys
import threading
import time

import pytest

from monasca_common import kafka
from monasca_common.kafka_lib import client as legacy_client
from monasca_common.kafka_lib.common import FailedPayloadsError
from monasca_common.kafka_lib.producer import SimpleProducer
from tests import publishing
from tests import waiting

pytestmark = [pytest.mark.integration, pytest.mark.faults]

LIBRDKAFKA = 'monasca_common.confluent_kafka.librdkafka'
MESSAGES = int(os.environ.get('FAULT_MESSAGES', 100000))
KILLS = 3


def stream(producer, topic, payloads, stats, done):
    publishing.publish_all(producer, topic, payloads, stats)
    done.set()


def test_three_broker_kills_while_streaming(controllable_kafka, topic):
    servers = controllable_kafka.bootstrap_servers
    payloads = [b'id-%07d' % i for i in range(MESSAGES)]
    stats = collections.Counter()
    done = threading.Event()
    started = time.monotonic()
    with kafka.KafkaProducer(servers) as producer:
        writer = threading.Thread(target=stream, args=(
            producer, topic, payloads, stats, done))
        writer.start()
        for kill in range(KILLS):
            waiting.until(lambda: producer.stats()['delivered'] >=
                          (kill + 1) * MESSAGES // (KILLS + 1),
                          120, 'progress before kill %d' % (kill + 1))
            for node in controllable_kafka.nodes:
                node.kill()
            time.sleep(1)  # an outage, however short, not a blip
            for node in controllable_kafka.nodes:
                node.start()
            controllable_kafka.wait_ready()
        writer.join(600)
        assert done.is_set(), 'the stream did not finish'
    stored = waiting.read_topic(servers, topic, expected=MESSAGES,
                                timeout=180)
    counts = collections.Counter(m.value() for m in stored)
    lost = len(set(payloads) - set(counts))
    duplicated = sum(c - 1 for c in counts.values() if c > 1)
    print('broker kills: messages=%d kills=%d lost=%d duplicated=%d '
          'reported_failed=%d refused=%d seconds=%.0f'
          % (MESSAGES, KILLS, lost, duplicated, stats['reported_failed'],
             stats['refused'], time.monotonic() - started))
    assert lost == 0
    assert duplicated == 0


LAG_CHECKER = '''
import collections, json, os, sys
from monasca_common import kafka
from monasca_common.kafka import admin
servers, group, topic, progress, stop = sys.argv[1:]
outcomes = collections.Counter()
while not os.path.exists(stop):
    try:
        with admin.KafkaAdmin(servers, 2) as checker:
            checker.group_lag(group, topic)
            checker.group_lag(group)
        outcomes['answered'] += 1
        with open(progress, 'w') as out:
            out.write(str(outcomes['answered']))
    except kafka.KafkaClientError as exc:
        outcomes[type(exc).__name__] += 1
print(json.dumps(outcomes))
'''


def test_lag_checks_through_broker_restarts_never_crash(
        controllable_kafka, topic, group_id, tmp_path):
    # A monitor asks for a group's lag in a loop while the broker restarts:
    # while the group's coordinator comes back it answers NOT_COORDINATOR,
    # which must be retried, not crash the monitor's process.
    servers = controllable_kafka.bootstrap_servers
    with kafka.KafkaProducer(servers) as producer:
        producer.publish(topic, ['x'] * 10, sync=True, timeout=30)
    consumer = kafka.KafkaConsumer(servers, group_id, topic)
    waiting.take(consumer, 10)
    consumer.commit(raise_errors=True)
    consumer.close()
    progress, stop = tmp_path / 'progress', tmp_path / 'stop'
    log = tmp_path / 'checker.log'
    with open(log, 'w') as stderr:
        checker = subprocess.Popen(
            [sys.executable, '-c', LAG_CHECKER, servers, group_id, topic,
             str(progress), str(stop)], stdout=subprocess.PIPE,
            stderr=stderr, text=True)

    def answered_since(before):
        if checker.poll() is not None:
            return True  # died: said below
        return progress.exists() and int(progress.read_text() or 0) > before

    def answered():
        return int(progress.read_text() or 0) if progress.exists() else 0

    try:
        for restart in range(3):
            before = answered()
            waiting.until(lambda: answered_since(before), 60,
                          'a lag answer before restart %d' % (restart + 1))
            if checker.poll() is not None:
                break
            for node in controllable_kafka.nodes:
                node.kill()
                node.start()
            controllable_kafka.wait_ready()
        before = answered()
        waiting.until(lambda: answered_since(before), 60,
                      'a lag answer after the last restart')
        stop.touch()
        out, _ = checker.communicate(timeout=60)
    finally:
        checker.kill()
    assert checker.returncode == 0, 'lag checker died (%s): %s' % (
        checker.returncode, log.read_text()[-3000:])
    print('lag checks through 3 broker restarts: %s' % out.strip())


def test_calls_waiting_when_kafka_dies_raise_within_seconds(
        controllable_kafka, topic):
    # monasca-transform sends each metric with the old client's
    # SimpleProducer and fails its Spark job fast when Kafka is gone. Calls
    # already waiting when every broker dies raise once the outage has
    # lasted unavailable_after (10 s), not after their own timeout (120 s).
    servers = controllable_kafka.bootstrap_servers
    producer = kafka.KafkaProducer(servers)
    legacy = SimpleProducer(legacy_client.KafkaClient(servers))
    asking = legacy_client.KafkaClient(servers)
    outcomes = {}

    def call(name, send):
        started = time.monotonic()
        try:
            send()
            outcomes[name] = ('returned', time.monotonic() - started)
        except Exception as exc:
            outcomes[name] = (exc, time.monotonic() - started)
    try:
        producer.publish(topic, ['before'], sync=True, timeout=30)
        legacy.send_messages(topic, b'before legacy')
        asking.load_metadata_for_topics()
        for node in controllable_kafka.nodes:
            node.kill()
        callers = [
            threading.Thread(target=call, args=('publish', lambda: (
                producer.publish(topic, ['during'], sync=True,
                                 timeout=120)))),
            threading.Thread(target=call, args=('legacy', lambda: (
                legacy.send_messages(topic, b'during legacy')))),
            threading.Thread(target=call, args=('metadata', lambda: (
                asking.load_metadata_for_topics())))]
        for caller in callers:
            caller.start()
        waiting.until(lambda: len(outcomes) == 3, 30,
                      'the waiting calls raising')
        print('waiting calls with every broker down: %s' % ', '.join(
            '%s raised %s after %.1f s' % (name, type(exc).__name__, took)
            for name, (exc, took) in sorted(outcomes.items())))
        assert isinstance(outcomes['publish'][0],
                          kafka.PublishUnavailableError)
        assert 'stay queued' in str(outcomes['publish'][0])
        assert isinstance(outcomes['legacy'][0], FailedPayloadsError)
        assert isinstance(outcomes['metadata'][0],
                          kafka.KafkaUnavailableError)
        for node in controllable_kafka.nodes:
            node.start()
        controllable_kafka.wait_ready()
        # What they had queued goes once Kafka is back: nothing lost.
        assert producer.flush(60) == 0
        legacy.stop(60)
        values = [m.value() for m in waiting.read_topic(servers, topic)]
        assert sorted(values) == [b'before', b'before legacy', b'during',
                                  b'during legacy']
    finally:
        asking.close()
        producer.close()


def test_a_broker_outage_logs_a_bounded_number_of_lines(
        controllable_kafka, topic, group_id, caplog):
    # Each client reports every failed reconnect, several a second; the
    # operator's log gets one line per client, broker and kind each 30 s.
    servers = controllable_kafka.bootstrap_servers
    caplog.set_level(logging.INFO, logger=LIBRDKAFKA)
    outage = 15.0
    with kafka.KafkaProducer(servers) as producer:
        producer.publish(topic, ['before'], sync=True, timeout=30)
        consumer = kafka.KafkaConsumer(servers, group_id, topic)
        try:
            waiting.take(consumer, 1)
            caplog.clear()
            for node in controllable_kafka.nodes:
                node.kill()
            deadline = time.monotonic() + outage
            while time.monotonic() < deadline:
                consumer.consume_batch(10, 0.5)
                try:
                    producer.publish(topic, ['during'])
                except kafka.KafkaUnavailableError:
                    pass  # refused after unavailable_after: logged too
            lines = [r for r in caplog.records if r.name == LIBRDKAFKA]
            for node in controllable_kafka.nodes:
                node.start()
            controllable_kafka.wait_ready()
            producer.flush(60)
        finally:
            consumer.close()
    kinds = {(r.levelno,) + tuple(r.args[:2]) + (
        str(r.args[2]).split(': ', 1)[0],) for r in lines}
    print('broker outage of %.0f s: %d librdkafka lines, %d kinds'
          % (outage, len(lines), len(kinds)))
    assert lines, 'the outage was not logged at all'
    assert len(lines) == len(kinds), 'a kind repeated within 30 s'


def test_metrics_answer_through_a_broker_outage(controllable_kafka, topic,
                                                group_id):
    # An operator looks at the numbers exactly when Kafka is away: they
    # must come at once, say what is stuck, and drain once it is back.
    servers = controllable_kafka.bootstrap_servers
    producer = kafka.KafkaProducer(servers, unavailable_after=0,
                                   **{'statistics.interval.ms': 500})
    consumer = kafka.KafkaConsumer(servers, group_id, topic,
                                   **{'statistics.interval.ms': 0})
    try:
        producer.publish(topic, ['before'] * 10, sync=True, timeout=30)
        waiting.take(consumer, 10)
        consumer.commit()
        for node in controllable_kafka.nodes:
            node.kill()
        producer.publish(topic, ['during'] * 100)
        started = time.monotonic()
        down = producer.metrics()
        during = consumer.metrics(timeout=1.0)
        answered_in = time.monotonic() - started
        for node in controllable_kafka.nodes:
            node.start()
        controllable_kafka.wait_ready()
        assert producer.flush(60) == 0
        after = producer.metrics()
        waiting.take(consumer, 100, timeout=60)
        consumer.commit()
        lag_after = waiting.until(
            lambda: consumer.metrics().partitions.get((topic, 0), {}).get(
                'lag.messages') == 0 and consumer.metrics(), 30,
            'no lag once read and committed')
    finally:
        consumer.close()
        producer.close()
    print('metrics with the broker down answered in %.2f s; queued %d'
          % (answered_in, down['queue.messages']))
    assert answered_in < 5
    assert down['queue.messages'] == 100
    assert down['delivered.messages'] == 10
    # Kafka could not be asked: counters, but no lag figure it can't know.
    assert during['consumed.messages'] == 10
    assert during['commits.done'] == 1
    assert 'lag.messages' not in during.partitions.get((topic, 0), {})
    # Nor a total that would read as no lag.
    assert 'lag.messages' not in during.values
    assert after['queue.messages'] == 0
    assert after['delivered.messages'] == after['published.messages'] == 110
    assert after['failed.messages'] == 0
    assert lag_after['commits.done'] == 2
    assert lag_after['consumed.messages'] == 110
