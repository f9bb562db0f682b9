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
import sys
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
# no more than one partition can hold, and the consumer scenarios read
# many topics: enough for seconds of reading in one pass, for a new
# group's join on the mock cluster takes 3 s.
MOCK_BYTES_PER_TOPIC = 4 * 1024 * 1024
MOCK_TOPICS = 64
# A consumer scenario that sees nothing for this long reports what it got.
IDLE_SECONDS = 15.0
# Reading the filled topics again with a new group, until the scenario
# has read for its time, at most this many times.
MAX_PASSES = 100
# Producer scenarios send chunks of this many messages between two looks
# at the clock.
CHUNK = 1000


def _mock_cpu() -> float:
    """CPU seconds of librdkafka's mock cluster thread in this process."""
    total = 0.0
    try:
        tasks = os.listdir('/proc/self/task')
    except OSError:
        return total
    for task in tasks:
        try:
            with open('/proc/self/task/%s/comm' % task) as comm:
                if comm.read().strip() != 'rdk:mock':
                    continue
            with open('/proc/self/task/%s/stat' % task) as stat:
                fields = stat.read().rsplit(')', 1)[1].split()
        except (OSError, IndexError):
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total


_TICKS = os.sysconf('SC_CLK_TCK') if hasattr(os, 'sysconf') else 100


def now() -> tuple[float, float]:
    """(wall, CPU) seconds: CPU is user+sys of the client process.

    The whole process, librdkafka's threads included (threads that ended
    too), less the mock cluster's broker thread when there is one: the
    CPU a service would spend, the broker being elsewhere.
    """
    return time.perf_counter(), time.process_time() - _mock_cpu()


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
    #: CPU seconds (user+sys) the client process spent on it.
    cpu: float | None = None
    round: int = 0

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_message(self) -> float | None:
        """CPU microseconds per message."""
        if self.cpu is None or not self.messages:
            return None
        return self.cpu / self.messages * 1e6


def _ended(last: float) -> tuple[float, float]:
    """``now()``, its wall time taken back to ``last`` (monotonic).

    Waiting for messages that never came is not reading.
    """
    wall, cpu = now()
    return wall - max(0.0, time.monotonic() - last), cpu


def _measured(scenario, size, count, start, end, note='', **more):
    """A Result from ``now()`` readings at the start and the end."""
    return Result(scenario, size, count, end[0] - start[0], note,
                  cpu=max(0.0, end[1] - start[1]), **more)


class MockCluster:
    """librdkafka's mock cluster, owned by a holder client.

    :param in_process: in this process (its broker thread's CPU is taken
        out of the figures), or in a child process of its own, so that
        the client's process does nothing else.
    """

    def __init__(self, in_process: bool = True) -> None:
        self._in_process = in_process
        self._holder: confluent_kafka.Producer | None = None
        self._child: subprocess.Popen | None = None
        self.bootstrap_servers = self.renew()

    def renew(self) -> str:
        """Start afresh, empty; the new bootstrap address.

        The mock keeps all it was sent in memory and deletes no topic: a
        long run would hold every scenario's messages.
        """
        self.close()
        if not self._in_process:
            self._child = subprocess.Popen(
                [sys.executable, '-c', 'from monasca_common.cli import '
                 'bench; bench.serve_mock_cluster()'],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert self._child.stdout is not None
            self.bootstrap_servers = self._child.stdout.readline().strip()
            if not self.bootstrap_servers:
                raise RuntimeError('the mock cluster process did not start')
            return self.bootstrap_servers
        self._holder = _mock_holder()
        self.bootstrap_servers = _bootstrap_of(self._holder)
        return self.bootstrap_servers

    def close(self) -> None:
        if self._holder is not None:
            self._holder.flush(1)
            self._holder = None
        if self._child is not None:
            child, self._child = self._child, None
            child.communicate(timeout=30)  # its stdin closes: it ends


def _mock_holder() -> confluent_kafka.Producer:
    return confluent_kafka.Producer({
        'test.mock.num.brokers': 1, 'logger': _client.LIBRDKAFKA_LOG})


def _bootstrap_of(holder: confluent_kafka.Producer) -> str:
    brokers = holder.list_topics(timeout=10).brokers.values()
    return ','.join('%s:%d' % (b.host, b.port) for b in brokers)


def serve_mock_cluster() -> None:
    """In a child process: a mock cluster until standard input closes."""
    holder = _mock_holder()  # the cluster lives as long as it does
    print(_bootstrap_of(holder), flush=True)
    sys.stdin.read()


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


class IdleStop:
    """A commit callback that stops a consumer which read nothing since.

    The consumer calls it every ``max_commit_interval`` seconds, whether
    or not messages come: the iteration's own way to notice an end. The
    reader sets ``count`` as it goes; nothing is stopped until ``armed``.
    """

    def __init__(self, armed: bool = True):
        self.consumer: typing.Any = None
        self.count = 0
        self.armed = armed
        self._seen = 0

    def __call__(self) -> None:
        if self.armed and self.count == self._seen and \
                self.consumer is not None:
            self.consumer.stop()
        self._seen = self.count


def _delete_topic(servers, topic):
    # A real broker keeps what the producer scenarios wrote: gigabytes in
    # a run.
    from confluent_kafka import admin
    client = admin.AdminClient(_raw_config('admin', {}, servers))
    try:
        client.delete_topics([topic], operation_timeout=10)[topic].result(15)
    except Exception:  # a leftover topic is no reason to fail the run
        pass


class Bench:
    """Runs the scenarios; ``progress`` is told (name, done, total).

    :param seconds: how long each throughput scenario sends or reads, at
        least: long enough on the mock cluster too for its figures to
        hold.
    :param rounds: runs of the scenarios behind the ratios, interleaved;
        every round is kept, and the ratios say how far they spread.
    """

    def __init__(self, servers: str, messages: int, mock: bool,
                 progress: typing.Callable | None = None,
                 partitions: int = 4, rounds: int = 3,
                 sample_queue: bool = False, seconds: float = 2.0,
                 renew: typing.Callable[[], str] | None = None,
                 payload: str = 'str'):
        self.servers = servers
        # What the producer scenarios publish: str, as the services do
        # (JSON), or bytes.
        self._payload_type = payload
        # A new mock cluster between scenarios, so that memory holds one
        # scenario's messages, not the whole run's.
        self._renew = renew
        # Queue depth over time of the library's producer scenarios, for
        # the plot; off unless asked for, the figures being the point.
        self.sample_queue = sample_queue
        self.rounds = max(1, rounds)
        self.seconds = seconds
        self.messages = messages
        self.mock = mock
        self.partitions = partitions
        self.progress = progress or (lambda *a: None)

    def payloads(self, size: int) -> list:
        """A chunk of the messages the producer scenarios publish."""
        payload = 'x' * size
        return [payload.encode() if self._payload_type == 'bytes'
                else payload] * CHUNK

    def topic(self):
        name = _topic()
        if not self.mock:
            _create_topic(self.servers, name, self.partitions)
        return name

    def _done_with(self, topic):
        if not self.mock:
            _delete_topic(self.servers, topic)

    def _for_a_while(self, name, send_chunk, seconds=None) -> int:
        """``send_chunk()`` until ``seconds`` passed; messages it sent."""
        seconds = self.seconds if seconds is None else seconds
        started = time.perf_counter()
        deadline = started + seconds
        shown = 0.0
        sent = 0
        while True:
            sent += send_chunk()
            elapsed = time.perf_counter()
            if elapsed >= deadline:
                return sent
            if elapsed - shown > 0.2:
                shown = elapsed
                self.progress(name, int((elapsed - started) * 1000),
                              int(seconds * 1000))

    # -- producer scenarios -------------------------------------------------

    def raw_produce_loop(self, size, with_callback=False):
        payloads = self.payloads(size)
        producer = _raw_producer(self.servers)
        topic = self.topic()
        producer.produce(topic, b'warm-up')
        producer.flush(30)
        reports = []
        # The least a caller can do to learn each message's outcome.
        callback = (lambda err, msg: reports.append(err)) \
            if with_callback else None
        name = 'raw produce loop' + (' + callback' if with_callback else '')
        produce = producer.produce
        poll = producer.poll

        def chunk():
            for payload in payloads:
                while True:
                    try:
                        produce(topic, payload, on_delivery=callback)
                        break
                    except BufferError:
                        poll(0.01)
            poll(0)
            return CHUNK
        start = now()
        n = self._for_a_while(name, chunk)
        left = producer.flush(120)
        end = now()
        self._done_with(topic)
        note = '%d undelivered' % left if left else ''
        if with_callback:
            return _measured('raw loop + per-message callback', size, n,
                             start, end, note or 'knows every outcome')
        return _measured('raw confluent-kafka produce loop', size, n,
                         start, end, note or 'baseline; learns no outcome')

    def kcat_produce(self, size):
        """kcat (C, librdkafka), same settings: the ceiling, if installed."""
        kcat = shutil.which('kcat')
        if kcat is None:
            return None
        n = self.messages
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
        self._done_with(topic)
        return Result('kcat -P (C ceiling)', size, n, elapsed,
                      'process start included')

    def _ours(self, name, size, chunk, note='', seconds=None,
              **producer_args):
        """Time ``chunk(producer, topic, payloads)`` as long as it takes."""
        payloads = self.payloads(size)
        with kafka_producer.KafkaProducer(self.servers,
                                          **producer_args) as producer:
            topic = self.topic()
            producer.publish(topic, b'warm-up', timeout=30)
            if producer.flush(30):
                raise RuntimeError('the warm-up message was not delivered')
            sampler = QueueSampler(producer) if self.sample_queue else None
            start = now()
            n = self._for_a_while(
                name, lambda: chunk(producer, topic, payloads), seconds)
            left = producer.flush(120)
            end = now()
            failed = producer.stats()['failed']
        self._done_with(topic)
        if left or failed:
            note = '%s %d undelivered' % (note, left + failed)
        return _measured(name, size, n, start, end, note.strip(),
                         queue_depth=sampler.stop() if sampler else [])

    @staticmethod
    def _publish_list(producer, topic, payloads, **publish):
        producer.publish(topic, payloads, **publish)
        return len(payloads)

    def publish_list(self, size):
        return self._ours('publish(list of 1000)', size, self._publish_list)

    def publish_list_errors_only(self, size):
        return self._ours('publish(list), error-only reports', size,
                          self._publish_list, "delivery_reports='errors'",
                          delivery_reports='errors')

    def publish_one(self, size):
        def chunk(producer, topic, payloads):
            publish = producer.publish
            for payload in payloads:
                publish(topic, payload)
            return len(payloads)
        return self._ours('publish(one message)', size, chunk)

    def publish_sync(self, size):
        return self._ours('publish(list of 1000, sync=True)', size,
                          functools.partial(self._publish_list, sync=True,
                                            timeout=60))

    def old_wrapper_pattern(self, size):
        # What the previous confluent wrapper did on every publish call:
        # produce, then flush(2) before returning.
        producer = _raw_producer(self.servers)
        topic = self.topic()
        producer.produce(topic, b'warm-up')
        producer.flush(30)
        payload = self.payloads(size)[0]

        def one():
            producer.produce(topic, payload)
            producer.poll(0)
            producer.flush(2)
            return 1
        start = now()
        n = self._for_a_while('old wrapper pattern', one)
        end = now()
        self._done_with(topic)
        return _measured('old wrapper: produce+flush per publish', size, n,
                         start, end, 'one message per call')

    # -- consumer scenarios -------------------------------------------------

    def fill_topics(self, size) -> tuple[list[str], int]:
        """Topics for the consumer scenarios; how many messages they hold.

        On the mock cluster, up to :data:`MOCK_TOPICS` topics of what one
        partition keeps (256 MiB in all); on a broker, one topic of
        ``messages``.
        """
        if self.mock:
            count = max(100, MOCK_BYTES_PER_TOPIC // (size + 60))
            # As many as 2 s of reading take; fewer for shorter runs.
            topics = [self.topic() for _ in range(max(1, min(
                MOCK_TOPICS, round(MOCK_TOPICS * self.seconds / 2.0))))]
        else:
            count = self.messages
            topics = [self.topic()]
        with kafka_producer.KafkaProducer(
                self.servers, delivery_reports='errors') as producer:
            for number, topic in enumerate(topics, 1):
                for i in range(0, count, CHUNK):
                    producer.publish(topic, [b'x' * size] *
                                     min(CHUNK, count - i), timeout=60)
                self.progress('filling topics', number, len(topics))
            if producer.flush(120):
                raise RuntimeError('the consumer scenarios\' messages '
                                   'were not all delivered')
        return topics, count * len(topics)

    def _passes(self, name, size, read_once, note) -> Result:
        """Read the topics with new groups until reading took its time.

        ``read_once()`` reads them all once and gives (messages, expected,
        start, end): ``now()`` at the first message and at the last; the
        group's join and the wait for a first fetch are not counted.
        """
        count = 0
        seconds = cpu = 0.0
        passes = 0
        while seconds < self.seconds and passes < MAX_PASSES:
            got, expected, start, end = read_once()
            passes += 1
            count += got
            if start is not None:
                seconds += end[0] - start[0]
                cpu += max(0.0, end[1] - start[1])
            self.progress(name, int(seconds * 1000), int(self.seconds * 1000))
            if got < expected:
                note = 'only %d of %d arrived; %s' % (got, expected, note)
                break
        return Result(name, size, count, seconds,
                      '%s; %d passes' % (note, passes), cpu=cpu)

    def raw_consume_loop(self, size, topics, n, librdkafka_defaults=False):
        # The library's fetch settings, so that the ratio compares only the
        # Python layer; or librdkafka's own, to show what they cost.
        conf = _raw_config(
            'consumer', {} if librdkafka_defaults else
            kafka_config.CONSUMER_DEFAULTS, self.servers, **{
                'auto.offset.reset': 'earliest',
                'enable.auto.commit': False,
                'enable.auto.offset.store': True})

        def read_once():
            consumer = confluent_kafka.Consumer(dict(
                conf, **{'group.id': 'bench-raw-' + uuid.uuid4().hex[:8]}))
            consumer.subscribe(topics)
            count = 0
            start = None
            last = idle_since = time.monotonic()
            try:
                while count < n and \
                        time.monotonic() - idle_since < IDLE_SECONDS:
                    # A short timeout: a chunk that waits to fill at the
                    # end of the topics would count its wait as reading.
                    chunk = consumer.consume(500, 0.1)
                    for message in chunk:
                        if message.error() is None:
                            if start is None:
                                start = now()
                            message.value()
                            count += 1
                            if count % 1000 == 0:
                                consumer.commit(asynchronous=False)
                    if chunk:
                        last = idle_since = time.monotonic()
                end = _ended(last)
            finally:
                consumer.close()
            return count, n, start, end
        if librdkafka_defaults:
            return self._passes('raw consume loop, librdkafka defaults',
                                size, read_once,
                                'fetch.queue.backoff.ms=1000')
        return self._passes('raw confluent-kafka consume loop', size,
                            read_once, 'baseline, commit per 1000')

    def iterate(self, size, topics, n):
        def read_once():
            idle = IdleStop()
            consumer = kafka_consumer.KafkaConsumer(
                self.servers, 'bench-' + uuid.uuid4().hex[:8], topics,
                commit_callback=idle, max_commit_interval=IDLE_SECONDS)
            idle.consumer = consumer
            count = 0
            start = None
            last = time.monotonic()
            try:
                for message in consumer:
                    if start is None:
                        start = now()
                    message.value()
                    count += 1
                    if count % 1000 == 0:
                        consumer.commit()
                        idle.count = count
                        last = time.monotonic()
                    if count >= n:
                        last = time.monotonic()
                        break
                end = _ended(last)
            finally:
                consumer.close()
            return count, n, start, end
        return self._passes('KafkaConsumer iteration', size, read_once,
                            'commit per 1000')

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
        """Every scenario; those behind a ratio once per round."""
        results = []
        for size in sizes:
            results.extend(self._rounds([
                self.raw_produce_loop,
                lambda size: self.raw_produce_loop(size, with_callback=True),
                self.publish_list,
                self.publish_list_errors_only,
            ], size, afresh=True))
            ceiling = self.kcat_produce(size)
            if ceiling is not None:
                results.append(ceiling)
            for scenario in (self.publish_one, self.publish_sync,
                             self.old_wrapper_pattern):
                results.append(scenario(size))
                self._afresh()
            topics, n = self.fill_topics(size)
            results.extend(self._rounds([
                lambda size: self.raw_consume_loop(size, topics, n),
                lambda size: self.iterate(size, topics, n),
            ], size))
            results.append(self.raw_consume_loop(size, topics, n,
                                                 librdkafka_defaults=True))
            for topic in topics:
                self._done_with(topic)
            self._afresh()
        if latency:
            results.append(self.latency(100))
        return results

    def _afresh(self) -> None:
        if self._renew is not None:
            self.servers = self._renew()

    def _rounds(self, scenarios, size, afresh=False) -> list[Result]:
        # Interleaved: a slow minute of the machine hits every scenario
        # of a round, not all rounds of one scenario.
        results = []
        for number in range(self.rounds):
            for scenario in scenarios:
                result = scenario(size)
                result.round = number
                results.append(result)
                if afresh:
                    self._afresh()
        return results


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


@dataclasses.dataclass(frozen=True)
class Spread:
    """A ratio's median over the rounds, and its lowest and highest."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))

    @property
    def unclear(self) -> bool:
        """The rounds spread wider than the ratio is from 1."""
        return self.high - self.low > abs(self.median - 1.0)


@dataclasses.dataclass(frozen=True)
class Ratio:
    """A scenario against its baseline, round by round.

    :ivar rate: msgs/s of the scenario over the baseline's (above 1:
        faster).
    :ivar cpu: CPU per message of the scenario over the baseline's
        (below 1: cheaper); the one to quote, being far steadier than
        wall-clock rates on a shared machine.
    """

    label: str
    size: int
    rate: Spread
    cpu: Spread | None

    @property
    def quoted(self) -> Spread:
        return self.cpu if self.cpu is not None else self.rate

    def as_dict(self) -> dict:
        return {'ratio': self.label, 'size': self.size,
                'rate': dataclasses.asdict(self.rate),
                'cpu': None if self.cpu is None else
                dataclasses.asdict(self.cpu),
                'spread_wider_than_effect': self.quoted.unclear}


def _by_round(results: list[Result]) -> dict[tuple[str, int], list[Result]]:
    found: dict[tuple[str, int], list[Result]] = {}
    for result in results:
        found.setdefault((result.scenario, result.size), []).append(result)
    return found


def summary(results: list[Result]) -> list[Result]:
    """One row per scenario and size: its median round (by msgs/s)."""
    rows = []
    for (scenario, size), runs in _by_round(results).items():
        ordered = sorted(runs, key=lambda r: r.rate)
        row = dataclasses.replace(ordered[(len(ordered) - 1) // 2])
        if len(runs) > 1:
            row.note = ('%s; median of %d' % (row.note, len(runs))
                        ).lstrip('; ')
        rows.append(row)
    return rows


def ratios(results: list[Result]) -> list[Ratio]:
    """Each ratio of :data:`RATIOS`, per message size, over the rounds.

    A round of the scenario is set against the same round of its
    baseline (they ran side by side), or against the baseline's only run.
    """
    by = _by_round(results)
    found = []
    for size in sorted({r.size for r in results}):
        for label, measured, baseline in RATIOS:
            ours = by.get((measured, size), [])
            theirs = {r.round: r for r in by.get((baseline, size), [])}
            pairs = [(r, theirs.get(r.round, next(iter(theirs.values()))))
                     for r in ours if theirs]
            pairs = [(a, b) for a, b in pairs if a.rate and b.rate]
            if not pairs:
                continue
            cpu = [a.cpu_per_message / b.cpu_per_message for a, b in pairs
                   if a.cpu_per_message and b.cpu_per_message]
            found.append(Ratio(label, size,
                               Spread.of([a.rate / b.rate for a, b in pairs]),
                               Spread.of(cpu) if cpu else None))
    return found
