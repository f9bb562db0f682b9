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

"""KafkaProducer against a real Apache Kafka."""

import collections
import logging
import threading
import time

import confluent_kafka
import pytest

from monasca_common import kafka
from monasca_common.kafka_lib import common as kafka_lib_common
from tests import waiting

pytestmark = [pytest.mark.integration, pytest.mark.compat]


class Recorder:
    """Collects delivery reports; thread-safe for the poller thread."""

    def __init__(self):
        self.reports = []
        self.lock = threading.Lock()

    def __call__(self, err, msg):
        with self.lock:
            self.reports.append((err, msg.value()))

    def count(self):
        with self.lock:
            return len(self.reports)

    def errors(self):
        with self.lock:
            return [e for e, _ in self.reports if e is not None]


@pytest.mark.core
def test_every_message_arrives_once_and_each_callback_fires_once(
        bootstrap_servers, make_topic):
    topic = make_topic(partitions=3)
    producer_level = Recorder()
    per_call = Recorder()
    payloads = ['msg-%06d' % i for i in range(30000)]
    with kafka.KafkaProducer(bootstrap_servers,
                             delivery_callback=producer_level) as producer:
        results = [producer.publish(topic, payloads[i:i + 1000],
                                    callback=per_call)
                   for i in range(0, len(payloads), 1000)]
        assert producer.flush(60) == 0
        assert all(r.wait(10) for r in results)
        assert producer.stats()['delivered'] == len(payloads)

    assert sum(r.delivered for r in results) == len(payloads)
    assert not any(r.failed for r in results)
    assert producer_level.count() == len(payloads)
    assert per_call.count() == len(payloads)
    assert producer_level.errors() == [] and per_call.errors() == []
    assert collections.Counter(v for _, v in per_call.reports) == \
        collections.Counter(p.encode() for p in payloads)

    read = waiting.read_topic(bootstrap_servers, topic,
                              expected=len(payloads))
    counts = collections.Counter(m.value() for m in read)
    assert len(read) == len(payloads)
    assert set(counts.values()) == {1}, 'duplicates in the topic'
    assert set(counts) == {p.encode() for p in payloads}


def test_callbacks_arrive_without_another_call(bootstrap_servers, topic):
    delivered = threading.Event()
    with kafka.KafkaProducer(bootstrap_servers) as producer:
        result = producer.publish(
            topic, b'lonely', callback=lambda err, msg: delivered.set())
        # Nothing else touches the producer: the poller must serve it.
        assert delivered.wait(30), 'delivery callback never ran'
        assert result.done() and result.delivered == 1


@pytest.mark.core
def test_sync_publish_returns_after_acknowledgement(
        bootstrap_servers, topic):
    with kafka.KafkaProducer(bootstrap_servers) as producer:
        result = producer.publish(topic, ['a', 'b'], key='k', sync=True,
                                  timeout=30)
        assert result.done() and result.delivered == 2
    read = waiting.read_topic(bootstrap_servers, topic, expected=2)
    assert [(m.key(), m.value()) for m in read] == [(b'k', b'a'),
                                                    (b'k', b'b')]


@pytest.mark.core
def test_payload_types(bootstrap_servers, topic):
    with kafka.KafkaProducer(bootstrap_servers) as producer:
        producer.publish(topic, ['text é', b'\x00bytes'], sync=True)
        producer.publish(topic, 'single str', sync=True)
        producer.publish(topic, [], sync=True)
        for bad in (None, 42, {'a': 1}):
            with pytest.raises(TypeError, match=type(bad).__name__):
                producer.publish(topic, ['good', bad])
        assert producer.flush(10) == 0
        assert producer.stats()['delivered'] == 3
    read = waiting.read_topic(bootstrap_servers, topic, expected=3)
    # The good message beside a bad one was never queued.
    assert [m.value() for m in read] == ['text é'.encode(), b'\x00bytes',
                                         b'single str']


def test_oversized_message_is_refused_before_queueing(
        bootstrap_servers, topic):
    with kafka.KafkaProducer(bootstrap_servers,
                             **{'message.max.bytes': 10000}) as producer:
        with pytest.raises(kafka.InvalidMessageError,
                           match='message 1 .* 20000 bytes'):
            producer.publish(topic, [b'small', b'x' * 20000])
        assert len(producer) == 0
        producer.publish(topic, b'still usable', sync=True)


@pytest.mark.core
def test_partial_bulk_failure_names_exactly_the_failed(
        bootstrap_servers, make_topic):
    # The broker refuses records over the topic's max.message.bytes; the
    # client does not know that limit, so those fail at delivery.
    topic = make_topic(config={'max.message.bytes': '2000'})
    payloads = [('big-%d-' % i).encode() + b'x' * 5000 if i % 3 == 0
                else ('small-%d' % i).encode() for i in range(60)]
    with kafka.KafkaProducer(bootstrap_servers,
                             **{'linger.ms': 0}) as producer:
        with pytest.raises(kafka_lib_common.FailedPayloadsError) as raised:
            producer.publish(topic, payloads, sync=True, timeout=30)
    failed = {f.value for f in raised.value.failed}
    assert failed, 'no failure reported'
    assert all(f.error.code() == confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE
               for f in raised.value.failed)
    assert {p for p in payloads if p.startswith(b'big')} <= failed
    stored = {m.value() for m in waiting.read_topic(bootstrap_servers, topic)}
    # Every message is either stored or reported failed, never both.
    assert stored | failed == set(payloads)
    assert not stored & failed


@pytest.mark.core
def test_broker_unreachable_fails_every_message_in_time(unreachable_servers):
    recorder = Recorder()
    producer = kafka.KafkaProducer(unreachable_servers,
                                   delivery_callback=recorder,
                                   **{'message.timeout.ms': 2000})
    started = time.monotonic()
    result = producer.publish('nowhere', ['a', 'b', 'c'])
    assert result.wait(15), 'no delivery report for an unreachable broker'
    assert time.monotonic() - started < 15
    assert len(result.failed) == 3
    assert {f.error.code() for f in result.failed} == {
        confluent_kafka.KafkaError._MSG_TIMED_OUT}
    assert len(recorder.errors()) == 3
    assert producer.stats()['failed'] == 3
    assert producer.flush(1) == 0
    assert producer.close(1) == 0


def test_error_only_reports_deliver_everything_and_serve_no_success(
        bootstrap_servers, make_topic):
    topic = make_topic(partitions=3)
    producer_level = Recorder()
    per_call = Recorder()
    payloads = [b'e-%06d' % i for i in range(20000)]
    with kafka.KafkaProducer(bootstrap_servers, delivery_reports='errors',
                             delivery_callback=producer_level) as producer:
        results = [producer.publish(topic, payloads[i:i + 1000],
                                    callback=per_call)
                   for i in range(0, len(payloads), 1000)]
        assert producer.flush(60) == 0
        assert len(producer) == 0
        stats = producer.stats()
        assert stats['delivered'] == len(payloads) and stats['failed'] == 0
        # Neither waiting nor sync can know when a call is done.
        with pytest.raises(kafka.ConfigurationError, match='errors'):
            results[0].wait(1)
        with pytest.raises(kafka.ConfigurationError, match='sync=True'):
            producer.publish(topic, b'late', sync=True)
        assert producer.stats()['queued'] == len(payloads)
    assert producer_level.count() == 0 and per_call.count() == 0
    assert [(r.queued, r.delivered, r.failed) for r in results] == \
        [(1000, 0, [])] * 20
    read = waiting.read_topic(bootstrap_servers, topic,
                              expected=len(payloads))
    assert sorted(m.value() for m in read) == payloads


def test_error_only_reports_still_report_every_failure(unreachable_servers):
    producer_level = Recorder()
    per_call = Recorder()
    producer = kafka.KafkaProducer(unreachable_servers,
                                   delivery_reports='errors',
                                   delivery_callback=producer_level,
                                   **{'message.timeout.ms': 2000})
    result = producer.publish('nowhere', ['a', 'b', 'c'], callback=per_call)
    waiting.until(lambda: len(result.failed) == 3, 15,
                  'a failure report for each message')
    assert {f.value for f in result.failed} == {b'a', b'b', b'c'}
    with pytest.raises(kafka.DeliveryFailedError, match='3 of 3'):
        result.raise_for_failures()
    assert len(producer_level.errors()) == 3
    assert len(per_call.errors()) == 3
    assert producer.stats()['failed'] == 3
    assert producer.flush(1) == 0
    assert producer.close(1) == 0


def test_close_with_broker_down_reports_and_keeps_its_deadline(
        unreachable_servers):
    producer = kafka.KafkaProducer(unreachable_servers)
    result = producer.publish('nowhere', ['%d' % i for i in range(100)])
    started = time.monotonic()
    undelivered = producer.close(timeout=1.0)
    elapsed = time.monotonic() - started
    assert undelivered == 100
    assert elapsed < 5, 'close took %.1f s' % elapsed
    assert result.done() and len(result.failed) == 100
    assert {f.error.code() for f in result.failed} <= {
        confluent_kafka.KafkaError._PURGE_QUEUE,
        confluent_kafka.KafkaError._PURGE_INFLIGHT}
    assert producer.close() == 0  # idempotent
    with pytest.raises(kafka.ClientClosedError):
        producer.publish('nowhere', 'late')


def test_queue_full_says_how_many_were_not_queued(unreachable_servers):
    producer = kafka.KafkaProducer(
        unreachable_servers, **{'queue.buffering.max.messages': 10})
    try:
        started = time.monotonic()
        with pytest.raises(kafka.QueueFullError,
                           match='15 of 25 messages') as raised:
            producer.publish('nowhere', ['%d' % i for i in range(25)],
                             timeout=0.5)
        assert time.monotonic() - started < 5
        assert raised.value.not_queued == 15
        assert [f.value for f in raised.value.failed] == [
            b'%d' % i for i in range(10, 25)]
        # Old services catch these names.
        assert isinstance(raised.value, kafka_lib_common.FailedPayloadsError)
        assert isinstance(raised.value, BufferError)
        assert len(producer) == 10  # memory stays bounded
    finally:
        undelivered = producer.close(0.5)
    assert undelivered == 10


def test_full_queue_waits_for_room_and_keeps_the_order(bootstrap_servers,
                                                       topic):
    # A bulk fifty times the queue: publish queues what fits, waits for
    # the reports that free room, and goes on where it stopped.
    messages = [b'%05d' % i for i in range(5000)]
    with kafka.KafkaProducer(
            bootstrap_servers,
            **{'queue.buffering.max.messages': 100}) as producer:
        result = producer.publish(topic, messages, timeout=60)
        assert result.queued == 5000 and result.not_queued == 0
        assert result.wait(60)
        assert result.delivered == 5000 and not result.failed
    read = waiting.read_topic(bootstrap_servers, topic, expected=5000)
    assert [m.value() for m in read] == messages


def test_threads_sharing_a_full_queue_lose_nothing(bootstrap_servers, topic):
    with kafka.KafkaProducer(
            bootstrap_servers,
            **{'queue.buffering.max.messages': 50}) as producer:
        results = []

        def request_thread(n):
            results.append(producer.publish(
                topic, [b'%d-%04d' % (n, i) for i in range(1000)],
                timeout=60))

        waiting.in_threads(request_thread, 4, 90)
        assert producer.flush(60) == 0
    assert sorted(r.delivered for r in results) == [1000] * 4
    read = waiting.read_topic(bootstrap_servers, topic, expected=4000)
    assert sorted(m.value() for m in read) == sorted(
        b'%d-%04d' % (n, i) for n in range(4) for i in range(1000))


def test_publish_fails_fast_while_kafka_is_unavailable(unreachable_servers):
    producer = kafka.KafkaProducer(unreachable_servers, unavailable_after=0.5)
    try:
        producer.publish('nowhere', 'queued before we know')

        def refused():
            try:
                producer.publish('nowhere', 'x')
            except kafka_lib_common.KafkaUnavailableError as exc:
                return exc
        exc = waiting.until(refused, 20, 'publish refused as unavailable')
        assert isinstance(exc, kafka_lib_common.FailedPayloadsError)
        assert exc.not_queued == 1
        assert 'no Kafka broker reachable' in str(exc)
    finally:
        producer.close(0.5)


def test_callback_exception_is_logged_and_harmless(bootstrap_servers, topic,
                                                   caplog):
    def explode(err, msg):
        raise RuntimeError('callback bug')

    with kafka.KafkaProducer(bootstrap_servers) as producer:
        with caplog.at_level(logging.ERROR):
            first = producer.publish(topic, ['1', '2'], callback=explode)
            assert first.wait(30)
            # The next, unrelated call neither raises nor loses anything.
            second = producer.publish(topic, '3', sync=True)
        assert first.delivered == 2 and second.delivered == 1
    assert 'callback bug' in caplog.text
