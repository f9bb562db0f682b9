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

"""Clients inside threads, forked processes and broker outages."""

import collections
import pathlib
import subprocess
import sys
import time

import confluent_kafka
import pytest

from monasca_common import kafka
from monasca_common.kafka_lib import common as kafka_common
from tests import waiting

pytestmark = [pytest.mark.integration, pytest.mark.compat]

MEMORY_CHILD = pathlib.Path(__file__).with_name('memory_child.py')


def test_sixteen_threads_share_one_producer(bootstrap_servers, make_topic):
    topic = make_topic(partitions=3)
    outcomes = collections.defaultdict(list)
    errors = []

    with kafka.KafkaProducer(bootstrap_servers) as producer:
        def request_thread(n):
            try:
                mine = [b't%02d-%04d' % (n, i) for i in range(300)]
                for i in range(0, 300, 30):
                    if n % 2:
                        # Each call's own callback sees only its messages.
                        producer.publish(
                            topic, mine[i:i + 30],
                            callback=lambda err, msg, n=n: outcomes[n].append(
                                (err, msg.value())))
                    else:
                        result = producer.publish(topic, mine[i:i + 30],
                                                  sync=True, timeout=30)
                        outcomes[n].extend((None, v) for v in mine[i:i + 30]
                                           if result.delivered == 30)
            except Exception as exc:  # reported below, not lost
                errors.append(exc)

        waiting.in_threads(request_thread, 16, 60)
        assert producer.flush(30) == 0
    assert not errors, errors
    for n in range(16):
        assert [e for e, _ in outcomes[n] if e is not None] == []
        assert sorted(v for _, v in outcomes[n]) == [
            b't%02d-%04d' % (n, i) for i in range(300)], 'thread %d' % n
    read = waiting.read_topic(bootstrap_servers, topic, expected=16 * 300)
    assert len(read) == 16 * 300
    assert len({m.value() for m in read}) == 16 * 300


FORK_SCENARIO = pathlib.Path(__file__).with_name('fork_scenario.py')


def run_fork_scenario(*args):
    # A fresh interpreter: the process that forks holds this client only,
    # as a preforking server's master does.
    out = subprocess.run([sys.executable, str(FORK_SCENARIO)] + list(args),
                         capture_output=True, text=True, timeout=150)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]


def test_producer_created_before_fork_works_in_child_and_parent(
        bootstrap_servers, topic):
    run_fork_scenario('producer', bootstrap_servers, topic)
    read = waiting.read_topic(bootstrap_servers, topic, expected=3)
    assert sorted(m.value() for m in read) == [
        b'from child', b'parent after fork', b'parent before fork']


def test_consumer_created_before_fork_is_refused_in_child(
        bootstrap_servers, topic, group_id):
    with kafka.KafkaProducer(bootstrap_servers) as producer:
        producer.publish(topic, ['a', 'b'], sync=True)
    run_fork_scenario('consumer', bootstrap_servers, topic, group_id)


def test_producer_outage_fails_fast_then_recovers(controllable_kafka,
                                                  topic):
    servers = controllable_kafka.bootstrap_servers
    producer = kafka.KafkaProducer(servers, unavailable_after=2,
                                   **{'reconnect.backoff.max.ms': 500})
    try:
        producer.publish(topic, b'before', sync=True, timeout=30)
        for node in controllable_kafka.nodes:
            node.kill()

        started = time.monotonic()
        with pytest.raises(kafka_common.FailedPayloadsError):
            producer.publish(topic, b'sync during outage', sync=True,
                             timeout=3)
        assert time.monotonic() - started < 6

        def refused():
            t = time.monotonic()
            try:
                producer.publish(topic, b'x')
            except kafka_common.KafkaUnavailableError:
                return time.monotonic() - t
        took = waiting.until(refused, 30, 'publish refused while down')
        assert took < 0.5, 'refusal should be immediate, took %.2fs' % took

        for node in controllable_kafka.nodes:
            node.start()
        controllable_kafka.wait_ready()

        def accepted():
            try:
                return producer.publish(topic, b'after', sync=True,
                                        timeout=10).delivered == 1
            except kafka_common.FailedPayloadsError:
                return False
        waiting.until(accepted, 60, 'publish works again, no restart')
        # What was queued before the refusals was retried, not dropped.
        assert producer.flush(60) == 0
    finally:
        producer.close(2)
    values = {m.value() for m in waiting.read_topic(servers, topic)}
    assert {b'before', b'after'} <= values


def topic_and_consumer(servers, topic, group_id, messages, commit_timeout):
    """``messages`` messages m0, m1, ... in ``topic``; a consumer for it."""
    with kafka.KafkaProducer(servers) as producer:
        producer.publish(topic, ['m%d' % i for i in range(messages)],
                         sync=True)
    return kafka.KafkaConsumer(servers, group_id, topic, timeout=6000,
                               commit_timeout=commit_timeout,
                               poll_timeout=0.5)


def test_consumer_outage_waits_and_resumes(controllable_kafka, topic,
                                           group_id):
    servers = controllable_kafka.bootstrap_servers
    consumer = topic_and_consumer(servers, topic, group_id, 20, 3)
    try:
        it = iter(consumer)
        first = [next(it).value() for _ in range(5)]
        consumer.commit()
        more = [next(it).value() for _ in range(5)]
        for node in controllable_kafka.nodes:
            node.kill()
        started = time.monotonic()
        with pytest.raises(kafka.CommitFailedError):
            consumer.commit(raise_errors=True)
        assert time.monotonic() - started < 10

        for node in controllable_kafka.nodes:
            node.start()
        controllable_kafka.wait_ready()
        # The iteration neither raised nor skipped anything. If the outage
        # outlasted the session, the member lost its partition and got it
        # back: reading then starts again at the last commit (m5).
        rest = []
        while not rest or rest[-1] != b'm19':
            rest.append(next(it).value())
        waiting.until(lambda: _commit_ok(consumer), 60,
                      'commit after the outage')
    finally:
        consumer.close()
    assert first + more == [b'm%d' % i for i in range(10)]
    assert rest[0] in (b'm5', b'm10')
    assert rest == [b'm%d' % i for i in range(int(rest[0][1:]), 20)]

    # The outage outlasted the session, so the group may have taken the
    # partition away: then the post-outage commit was skipped and the
    # successor starts again at the last commit that Kafka took (m5);
    # otherwise right after m19. Never later, and never with a gap.
    with kafka.KafkaProducer(servers) as producer:
        producer.publish(topic, 'm20', sync=True)
    successor = kafka.KafkaConsumer(servers, group_id, topic)
    try:
        again = []
        for message in successor:
            again.append(message.value())
            if again[-1] == b'm20':
                break
    finally:
        successor.close()
    assert again[0] in (b'm5', b'm20')
    start = int(again[0][1:])
    assert again == [b'm%d' % i for i in range(start, 21)]


def test_commit_is_bounded_when_kafka_does_not_answer(controllable_kafka,
                                                      topic, group_id):
    servers = controllable_kafka.bootstrap_servers
    consumer = topic_and_consumer(servers, topic, group_id, 10, 2)
    try:
        it = iter(consumer)
        assert [next(it).value() for _ in range(4)] == [
            b'm0', b'm1', b'm2', b'm3']
        # Stopped, not gone: connections stay up and nothing answers.
        for node in controllable_kafka.nodes:
            node.pause()
        started = time.monotonic()
        try:
            with pytest.raises(kafka.CommitFailedError,
                               match='did not answer'):
                consumer.commit(raise_errors=True)
            elapsed = time.monotonic() - started
        finally:
            for node in controllable_kafka.nodes:
                node.unpause()
        # commit_timeout is 2 s; librdkafka alone would wait 60 s.
        assert elapsed < 10, elapsed
        waiting.until(lambda: _commit_ok(consumer), 60,
                      'commit once Kafka answers again')
    finally:
        consumer.close()
    successor = kafka.KafkaConsumer(servers, group_id, topic)
    try:
        it = iter(successor)
        assert next(it).value() == b'm4'
    finally:
        successor.close()


def _commit_ok(consumer):
    try:
        consumer.commit(raise_errors=True)
        return True
    except kafka.CommitFailedError:
        return False


def test_unknown_topic_fails_that_call_only(bootstrap_servers, topic):
    # The broker here does not create topics on demand.
    with kafka.KafkaProducer(bootstrap_servers) as producer:
        started = time.monotonic()
        with pytest.raises(kafka.DeliveryFailedError) as raised:
            producer.publish('no-such-topic-here', 'lost?', sync=True,
                             timeout=30)
        # Failed because Kafka said so, not because the wait ran out.
        assert time.monotonic() - started < 15
        assert raised.value.failed[0].error.code() in (
            confluent_kafka.KafkaError._UNKNOWN_TOPIC,
            confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART)
        assert producer.publish(topic, 'fine', sync=True).delivered == 1


def test_a_sleeping_reader_of_large_messages_holds_bounded_memory(
        bootstrap_servers, make_topic, group_id):
    # monasca-log-api's messages can come near Kafka's 1 MB limit. A reader
    # busy with one of them must not have the member buffer hundreds more.
    topic = make_topic(partitions=2)
    payload = b'x' * 900 * 1024
    with kafka.KafkaProducer(bootstrap_servers) as producer:
        for _ in range(6):
            producer.publish(topic, [payload] * 50, sync=True, timeout=120)
    peaks = {}
    for kind in ('raw', 'ours'):
        out = subprocess.run(
            [sys.executable, str(MEMORY_CHILD), bootstrap_servers,
             '%s-%s' % (group_id, kind), topic, kind, '8'],
            capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        before, peak = (float(f) for f in out.stdout.split())
        peaks[kind] = peak - before
    print('\npeak RSS growth, 270 MB of 900 KB messages, reader asleep: '
          'raw consumer %.0f MiB, KafkaConsumer %.0f MiB'
          % (peaks['raw'], peaks['ours']))
    assert peaks['ours'] <= peaks['raw'] + 200
