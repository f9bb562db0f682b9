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

"""Throughput and latency of the clients, side by side with raw
confluent-kafka loops, on one broker in one run.

Every producer scenario counts until the last message is acknowledged
(flush), with the same librdkafka settings as the library's defaults, so
the ratios compare only what the Python layer adds.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import typing
import uuid

import confluent_kafka

from monasca_common.confluent_kafka import _client
from monasca_common.confluent_kafka import config as kafka_config
from monasca_common.confluent_kafka import consumer as kafka_consumer
from monasca_common.confluent_kafka import producer as kafka_producer

# librdkafka's mock cluster keeps ~5 MiB per partition and drops older
# data; keyless messages may all land in one partition, so a topic gets
# no more than one partition can hold.
MOCK_BYTES_PER_TOPIC = 4 * 1024 * 1024
# A consumer scenario that sees nothing for this long reports what it got.
IDLE_SECONDS = 15.0


@dataclasses.dataclass
class Result:
    scenario: str
    size: int
    messages: int
    seconds: float
    note: str = ''
    #: (seconds since the start, messages queued) samples; only with
    #: ``Bench(sample_queue=True)``.
    queue_depth: list[tuple[float, int]] = dataclasses.field(
        default_factory=list)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def _read_result(scenario, size, expected, count, started, last, note):
    if count < expected:
        note = 'only %d of %d arrived; %s' % (count, expected, note)
    seconds = (last - started) if started is not None else 0.0
    return Result(scenario, size, count, seconds, note)


class MockCluster:
    """librdkafka's in-process cluster, owned by a holder client."""

    def __init__(self):
        self._holder = confluent_kafka.Producer({
            'test.mock.num.brokers': 1, 'logger': _client.LIBRDKAFKA_LOG})
        brokers = self._holder.list_topics(timeout=10).brokers.values()
        self.bootstrap_servers = ','.join('%s:%d' % (b.host, b.port)
                                          for b in brokers)

    def close(self):
        self._holder.flush(1)


def _topic(prefix='bench'):
    return '%s-%s' % (prefix, uuid.uuid4().hex[:10])


def _raw_config(role, defaults, servers, **explicit):
    """What the library would give a ``role`` client, for the raw baseline.

    The library's defaults, under what ``[kafka_client]`` sets (security
    included, so the baseline reaches a secured cluster too), under
    ``explicit``.
    """
    conf = dict(defaults)
    conf.update(kafka_config.with_options(role, dict(
        explicit, **{'bootstrap.servers': servers,
                     'logger': _client.LIBRDKAFKA_LOG})))
    return conf


def _raw_producer(servers):
    return confluent_kafka.Producer(_raw_config(
        'producer', kafka_config.PRODUCER_DEFAULTS, servers))


def _create_topic(servers, topic, partitions):
    # On a real broker topics must be created; the mock cluster
    # auto-creates with 4 partitions and cannot create through admin.
    from confluent_kafka import admin
    client = admin.AdminClient(_raw_config('admin', {}, servers))
    futures = client.create_topics([admin.NewTopic(
        topic, num_partitions=partitions, replication_factor=1)],
        operation_timeout=10)
    futures[topic].result(15)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        md = client.list_topics(topic, timeout=5).topics.get(topic)
        if md is not None and md.error is None and md.partitions and all(
                p.leader >= 0 for p in md.partitions.values()):
            return
        time.sleep(0.1)
    raise RuntimeError('topic %s has no leader after 15 s' % topic)


class QueueSampler:
    """Samples a producer's queued messages every ``period`` seconds."""

    def __init__(self, producer, period: float = 0.01):
        self._producer = producer
        self._period = period
        self._samples: list[tuple[float, int]] = []
        self._started = time.perf_counter()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._sample()
            if self._done.wait(self._period):
                return

    def _sample(self) -> None:
        self._samples.append((time.perf_counter() - self._started, int(
            self._producer.metrics()['queue.messages'])))

    def stop(self) -> list[tuple[float, int]]:
        """The samples, the last one taken now (after the flush)."""
        self._done.set()
        self._thread.join()
        self._sample()
        return self._samples


class Bench:
    """Runs the scenarios; ``progress`` is told (name, done, total)."""

    def __init__(self, servers: str, messages: int, mock: bool,
                 progress: typing.Callable | None = None,
                 partitions: int = 4, rounds: int = 3,
                 sample_queue: bool = False):
        self.servers = servers
        # Queue depth over time of the library's producer scenarios, for
        # the plot; off unless asked for, the figures being the point.
        self.sample_queue = sample_queue
        # The scenarios behind the ratios run this many times, interleaved,
        # and the best of each counts: on a small machine one run can be
        # far off, and it must not decide a ratio.
        self.rounds = max(1, rounds)
        self.messages = messages
        self.mock = mock
        self.partitions = partitions
        self.progress = progress or (lambda *a: None)

    def topic(self):
        name = _topic()
        if not self.mock:
            _create_topic(self.servers, name, self.partitions)
        return name

    def count_for(self, size: int, share: float = 1.0) -> int:
        count = int(self.messages * share)
        if self.mock:
            count = min(count, MOCK_BYTES_PER_TOPIC // (size + 60))
        return max(count, 100)

    # -- producer scenarios -------------------------------------------------

    def raw_produce_loop(self, size, with_callback=False):
        n = self.count_for(size)
        payloads = [b'x' * size] * n
        producer = _raw_producer(self.servers)
        topic = self.topic()
        producer.produce(topic, b'warm-up')
        producer.flush(30)
        reports = []
        # The least a caller can do to learn each message's outcome.
        callback = (lambda err, msg: reports.append(err)) \
            if with_callback else None
        name = 'raw produce loop' + (' + callback' if with_callback else '')
        started = time.perf_counter()
        produce = producer.produce
        poll = producer.poll
        for i, payload in enumerate(payloads):
            while True:
                try:
                    produce(topic, payload, on_delivery=callback)
                    break
                except BufferError:
                    poll(0.01)
            if i % 10000 == 0:
                poll(0)
                self.progress(name, i, n)
        producer.flush(120)
        if with_callback:
            return Result('raw loop + per-message callback', size, n,
                          time.perf_counter() - started,
                          'knows every outcome')
        return Result('raw confluent-kafka produce loop', size, n,
                      time.perf_counter() - started,
                      'baseline; learns no outcome')

    def kcat_produce(self, size):
        """kcat (C, librdkafka), same settings: the ceiling, if installed."""
        kcat = shutil.which('kcat')
        if kcat is None:
            return None
        n = self.count_for(size)
        topic = self.topic()
        settings = []
        for key, value in kafka_config.PRODUCER_DEFAULTS.items():
            settings += ['-X', '%s=%s' % (key, str(value).lower())]
        with tempfile.NamedTemporaryFile('wb', delete=False) as lines:
            lines.write((b'x' * size + b'\n') * n)
        try:
            self.progress('kcat', 0, n)
            started = time.perf_counter()
            subprocess.run([kcat, '-P', '-q', '-b', self.servers, '-t', topic,
                            '-l'] + settings + [lines.name], check=True,
                           timeout=300)
            elapsed = time.perf_counter() - started
        finally:
            os.unlink(lines.name)
        return Result('kcat -P (C ceiling)', size, n, elapsed,
                      'process start included')

    def _ours(self, name, size, share, body, note='', **producer_args):
        n = self.count_for(size, share)
        payloads = [b'x' * size] * n
        with kafka_producer.KafkaProducer(self.servers,
                                          **producer_args) as producer:
            topic = self.topic()
            producer.publish(topic, b'warm-up', timeout=30)
            if producer.flush(30):
                raise RuntimeError('the warm-up message was not delivered')
            sampler = QueueSampler(producer) if self.sample_queue else None
            started = time.perf_counter()
            body(producer, topic, payloads, name)
            left = producer.flush(120)
            elapsed = time.perf_counter() - started
            failed = producer.stats()['failed']
        if left or failed:
            note = '%s %d undelivered' % (note, left + failed)
        return Result(name, size, n, elapsed, note.strip(),
                      sampler.stop() if sampler is not None else [])

    def _publish_lists(self, producer, topic, payloads, name, **publish):
        for i in range(0, len(payloads), 1000):
            producer.publish(topic, payloads[i:i + 1000], **publish)
            self.progress(name, i, len(payloads))

    def publish_list(self, size):
        return self._ours('publish(list of 1000)', size, 1.0,
                          self._publish_lists)

    def publish_list_errors_only(self, size):
        return self._ours('publish(list), error-only reports', size, 1.0,
                          self._publish_lists, "delivery_reports='errors'",
                          delivery_reports='errors')

    def publish_one(self, size):
        def body(producer, topic, payloads, name):
            publish = producer.publish
            for i, payload in enumerate(payloads):
                publish(topic, payload)
                if i % 10000 == 0:
                    self.progress(name, i, len(payloads))
        return self._ours('publish(one message)', size, 1.0, body)

    def publish_sync(self, size):
        return self._ours('publish(list of 1000, sync=True)', size, 0.5,
                          functools.partial(self._publish_lists, sync=True,
                                            timeout=60))

    def old_wrapper_pattern(self, size):
        # What the previous confluent wrapper did on every publish call:
        # produce, then flush(2) before returning.
        n = self.count_for(size, 0.02)
        producer = _raw_producer(self.servers)
        topic = self.topic()
        producer.produce(topic, b'warm-up')
        producer.flush(30)
        payload = b'x' * size
        started = time.perf_counter()
        for i in range(n):
            producer.produce(topic, payload)
            producer.poll(0)
            producer.flush(2)
            if i % 100 == 0:
                self.progress('old wrapper pattern', i, n)
        return Result('old wrapper: produce+flush per publish', size, n,
                      time.perf_counter() - started, 'one message per call')

    # -- consumer scenarios -------------------------------------------------

    def _fill_topic(self, size):
        n = self.count_for(size)
        topic = self.topic()
        with kafka_producer.KafkaProducer(self.servers) as producer:
            for i in range(0, n, 1000):
                producer.publish(topic, [b'x' * size] * min(1000, n - i))
            producer.flush(120)
        return topic, n

    def raw_consume_loop(self, size, topic, n, librdkafka_defaults=False):
        # The library's fetch settings, so that the ratio compares only the
        # Python layer; or librdkafka's own, to show what they cost.
        conf = _raw_config(
            'consumer', {} if librdkafka_defaults else
            kafka_config.CONSUMER_DEFAULTS, self.servers, **{
                'group.id': 'bench-raw-' + uuid.uuid4().hex[:8],
                'auto.offset.reset': 'earliest',
                'enable.auto.commit': False,
                'enable.auto.offset.store': True})
        consumer = confluent_kafka.Consumer(conf)
        consumer.subscribe([topic])
        count = 0
        started = last = None
        idle_since = time.monotonic()
        try:
            while count < n and time.monotonic() - idle_since < IDLE_SECONDS:
                # A short timeout: a chunk that waits to fill at the end of
                # the topic would count its wait as reading time.
                for message in consumer.consume(500, 0.1):
                    if message.error() is None:
                        # Clocked from the first message to the last, not
                        # the wait for a chunk that never fills.
                        last = time.perf_counter()
                        started = started or last
                        idle_since = time.monotonic()
                        message.value()
                        count += 1
                        if count % 1000 == 0:
                            consumer.commit(asynchronous=False)
                self.progress('raw consume loop', count, n)
        finally:
            consumer.close()
        if librdkafka_defaults:
            return _read_result('raw consume loop, librdkafka defaults',
                                size, n, count, started, last,
                                'fetch.queue.backoff.ms=1000')
        return _read_result('raw confluent-kafka consume loop', size, n,
                            count, started, last,
                            'baseline, commit per 1000')

    def iterate(self, size, topic, n):
        state = {'count': 0, 'seen': 0}

        def stop_when_idle():
            # The commit callback fires on idle turns too: the iterator's
            # own way to notice that nothing comes.
            if state['count'] == state['seen']:
                consumer.stop()
            state['seen'] = state['count']

        consumer = kafka_consumer.KafkaConsumer(
            self.servers, 'bench-' + uuid.uuid4().hex[:8], topic,
            commit_callback=stop_when_idle, max_commit_interval=IDLE_SECONDS)
        started = last = None
        try:
            for message in consumer:
                last = time.perf_counter()
                started = started or last
                message.value()
                state['count'] += 1
                if state['count'] % 1000 == 0:
                    consumer.commit()
                    self.progress('consumer iteration', state['count'], n)
                if state['count'] >= n:
                    break
        finally:
            consumer.close()
        return _read_result('KafkaConsumer iteration', size, n,
                            state['count'], started, last, 'commit per 1000')

    # -- latency ------------------------------------------------------------

    def latency(self, size, rate=1000, seconds=3.0):
        topic = self.topic()
        n = int(rate * seconds)
        received = {}
        ready = threading.Event()
        consumer = kafka_consumer.KafkaConsumer(
            self.servers, 'bench-lat-' + uuid.uuid4().hex[:8], topic,
            poll_timeout=0.1, **{'fetch.wait.max.ms': 10,
                                 'auto.offset.reset': 'latest'})

        def read():
            for message in consumer:
                if not ready.is_set():
                    ready.set()
                if message.value().startswith(b'L'):
                    received[int(message.value()[1:11])] = time.monotonic()
                if len(received) >= n:
                    break

        with kafka_producer.KafkaProducer(self.servers,
                                          **{'linger.ms': 1}) as producer:
            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            # Until the reader owns the partitions, probe messages.
            deadline = time.monotonic() + 60
            while not ready.is_set() and time.monotonic() < deadline:
                producer.publish(topic, b'probe')
                ready.wait(0.2)
            pad = b'x' * max(0, size - 11)
            sent = {}
            start = time.monotonic()
            for i in range(n):
                due = start + i / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                sent[i] = time.monotonic()
                producer.publish(topic, b'L%010d' % i + pad)
                if i % rate == 0:
                    self.progress('latency', i, n)
            producer.flush(30)
            reader.join(30)
            consumer.stop()
        consumer.close()
        delays = sorted((received[i] - sent[i]) * 1000
                        for i in received if i in sent)
        if not delays:
            return Result('end-to-end latency', size, 0, 0, 'nothing came')
        p50 = statistics.median(delays)
        p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
        return Result('end-to-end latency at %d msg/s' % rate, size,
                      len(delays), seconds,
                      'p50 %.1f ms, p99 %.1f ms' % (p50, p99))

    # -- all ----------------------------------------------------------------

    def run(self, sizes=(100, 1024), latency=True) -> list[Result]:
        results = []
        for size in sizes:
            results.extend(self._best_of_rounds([
                self.raw_produce_loop,
                lambda size: self.raw_produce_loop(size, with_callback=True),
                self.publish_list,
                self.publish_list_errors_only,
            ], size))
            ceiling = self.kcat_produce(size)
            if ceiling is not None:
                results.append(ceiling)
            results.append(self.publish_one(size))
            results.append(self.publish_sync(size))
            results.append(self.old_wrapper_pattern(size))
            topic, n = self._fill_topic(size)
            results.extend(self._best_of_rounds([
                lambda size: self.raw_consume_loop(size, topic, n),
                lambda size: self.iterate(size, topic, n),
            ], size))
            results.append(self.raw_consume_loop(size, topic, n,
                                                 librdkafka_defaults=True))
        if latency:
            results.append(self.latency(100))
        return results

    def _best_of_rounds(self, scenarios, size) -> list[Result]:
        best: dict[str, Result] = {}
        for _ in range(self.rounds):
            for scenario in scenarios:
                result = scenario(size)
                kept = best.get(result.scenario)
                if kept is None or result.rate > kept.rate:
                    best[result.scenario] = result
        if self.rounds > 1:
            for result in best.values():
                result.note = ('%s; best of %d' % (result.note, self.rounds)
                               ).lstrip('; ')
        return list(best.values())


# (what the ratio says, scenario measured, scenario it is judged against)
RATIOS = (
    ('publish(list) / raw loop', 'publish(list of 1000)',
     'raw confluent-kafka produce loop'),
    ('publish(list) / raw loop + callback', 'publish(list of 1000)',
     'raw loop + per-message callback'),
    ('publish(list), error-only reports / raw loop',
     'publish(list), error-only reports',
     'raw confluent-kafka produce loop'),
    ('publish(list) / kcat', 'publish(list of 1000)',
     'kcat -P (C ceiling)'),
    ('one-message publish / old pattern', 'publish(one message)',
     'old wrapper: produce+flush per publish'),
    ('consumer / raw consume', 'KafkaConsumer iteration',
     'raw confluent-kafka consume loop'),
)


def ratios(results: list[Result]) -> dict[str, float]:
    """The targets, as measured ratios per message size."""
    by = {(r.scenario, r.size): r.rate for r in results}
    out = {}
    for size in sorted({r.size for r in results}):
        for label, measured, baseline in RATIOS:
            if by.get((baseline, size)) and (measured, size) in by:
                out['%s, %d B' % (label, size)] = (
                    by[(measured, size)] / by[(baseline, size)])
    return out
