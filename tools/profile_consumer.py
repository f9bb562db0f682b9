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

"""Where the consumer's CPU per message goes, against a raw loop.

Reads the same filled topics (12 partitions on the mock cluster, or
``-b``) in several shapes, interleaved, ``--runs`` times each, and prints
CPU µs per message of the whole process, then split by thread: the
reading thread, the member thread, librdkafka's threads:

* ``raw``: confluent-kafka's consume loop, synchronous commit of the
  stored offsets every ``--commit-every`` messages;
* ``threaded``: the same, but a second thread consumes into a deque that
  this one takes from (the member thread's shape, without the library);
* ``ours``: ``KafkaConsumer`` iteration, ``commit()`` as often;
* ``ours-nocommit``: the iteration alone.

Then the CPU and wall time of one commit: raw (stored offsets, explicit
offsets, explicit offsets from another thread) and the library's.

    python tools/profile_consumer.py [--commit-every 1000] [--runs 3]
                                     [-b host:port] [-n 300000]
"""

import argparse
import collections
import glob
import os
import threading
import time
import uuid

import confluent_kafka

from monasca_common.cli import bench
from monasca_common.confluent_kafka import consumer as kafka_consumer


class ThreadClock:
    """CPU seconds of this process's threads since it started, by kind."""

    _TICK = 1.0 / os.sysconf('SC_CLK_TCK')

    def __init__(self) -> None:
        self._start = self._read()

    @staticmethod
    def _read() -> dict:
        names = {t.native_id: t.name for t in threading.enumerate()}
        reader = threading.main_thread().native_id
        times = {}
        for task in glob.glob('/proc/self/task/*'):
            tid = int(os.path.basename(task))
            try:
                with open(task + '/comm') as f:
                    comm = f.read().strip()
                with open(task + '/stat') as f:
                    fields = f.read().rsplit(')', 1)[1].split()
            except OSError:  # the thread ended meanwhile
                continue
            if tid == reader:
                kind = 'reader'
            elif 'member' in names.get(tid, ''):
                kind = 'member'
            elif comm.startswith('rdk:'):
                kind = 'librdkafka'
            else:
                kind = 'other'
            times[tid] = (kind, int(fields[11]) + int(fields[12]))
        return times

    def stop(self) -> dict:
        """Seconds per kind of thread since the clock started."""
        split: dict = collections.Counter()
        for tid, (kind, ticks) in self._read().items():
            split[kind] += (ticks - self._start.get(tid, (kind, 0))[1]) * \
                self._TICK
        return split


def raw_conf(servers):
    return bench._raw_config(
        'consumer', bench.kafka_config.CONSUMER_DEFAULTS, servers, **{
            'auto.offset.reset': 'earliest', 'enable.auto.commit': False,
            'enable.auto.offset.store': True})


def raw(servers, topics, n, every):
    consumer = confluent_kafka.Consumer(dict(
        raw_conf(servers), **{'group.id': uuid.uuid4().hex}))
    consumer.subscribe(topics)
    got, start, clock = 0, None, None
    while got < n:
        for message in consumer.consume(500, 0.1):
            if start is None:
                start, clock = bench.now(), ThreadClock()
            message.value()
            got += 1
            if every and got % every == 0:
                consumer.commit(asynchronous=False)
    end = bench.now()
    split = clock.stop()
    consumer.close()
    return got, start, end, split


def threaded(servers, topics, n, every):
    consumer = confluent_kafka.Consumer(dict(
        raw_conf(servers), **{'group.id': uuid.uuid4().hex}))
    consumer.subscribe(topics)
    buffer = collections.deque()
    ready = threading.Condition()
    done = []

    def member():
        while not done:
            first = consumer.poll(0.05)
            if first is None:
                continue
            messages = [first]
            messages.extend(consumer.consume(499, 0))
            good = [m for m in messages if m.error() is None]
            with ready:
                buffer.extend(good)
                ready.notify_all()
    thread = threading.Thread(target=member, name='member', daemon=True)
    thread.start()
    got, start, clock, handed = 0, None, None, {}
    while got < n:
        if not buffer:
            with ready:
                if not buffer:
                    ready.wait(0.1)
        while buffer:
            message = buffer.popleft()
            if start is None:
                start, clock = bench.now(), ThreadClock()
            handed[message.partition()] = message
            message.value()
            got += 1
    end = bench.now()
    split = clock.stop()
    done.append(True)
    thread.join()
    consumer.close()
    return got, start, end, split


def ours(servers, topics, n, every):
    consumer = kafka_consumer.KafkaConsumer(servers, uuid.uuid4().hex,
                                            topics)
    got, start, clock = 0, None, None
    for message in consumer:
        if start is None:
            start, clock = bench.now(), ThreadClock()
        message.value()
        got += 1
        if every and got % every == 0:
            consumer.commit()
        if got >= n:
            break
    end = bench.now()
    split = clock.stop()
    consumer.close()
    return got, start, end, split


def commit_cost(servers, topics, n, every):
    """(shape, CPU µs, wall µs) per commit."""
    costs = []
    for shape in ('raw, stored offsets', 'raw, explicit offsets',
                  'raw, explicit offsets, other thread'):
        consumer = confluent_kafka.Consumer(dict(
            raw_conf(servers), **{'group.id': uuid.uuid4().hex}))
        consumer.subscribe(topics)
        got = commits = 0
        cpu = wall = 0.0
        last = {}
        while got < n:
            for message in consumer.consume(500, 0.1):
                got += 1
                last[(message.topic(), message.partition())] = \
                    message.offset()
                if got % every:
                    continue
                offsets = [confluent_kafka.TopicPartition(t, p, o + 1)
                           for (t, p), o in last.items()]
                w, c = time.perf_counter(), time.process_time()
                if shape.endswith('stored offsets'):
                    consumer.commit(asynchronous=False)
                elif shape.endswith('thread'):
                    other = threading.Thread(target=lambda: consumer.commit(
                        offsets=offsets, asynchronous=False))
                    other.start()
                    other.join()
                else:
                    consumer.commit(offsets=offsets, asynchronous=False)
                cpu += time.process_time() - c
                wall += time.perf_counter() - w
                commits += 1
        consumer.close()
        costs.append((shape, cpu / commits * 1e6, wall / commits * 1e6))
    consumer = kafka_consumer.KafkaConsumer(servers, uuid.uuid4().hex,
                                            topics)
    got = commits = 0
    cpu = wall = 0.0
    for message in consumer:
        got += 1
        if got % every == 0:
            w, c = time.perf_counter(), time.process_time()
            consumer.commit()
            cpu += time.process_time() - c
            wall += time.perf_counter() - w
            commits += 1
        if got >= n:
            break
    consumer.close()
    costs.append(('KafkaConsumer.commit()', cpu / commits * 1e6,
                  wall / commits * 1e6))
    return costs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--bootstrap-servers', '-b')
    parser.add_argument('--commit-every', type=int, default=1000)
    parser.add_argument('--runs', type=int, default=3,
                        help='rounds of the shapes, interleaved')
    parser.add_argument('--messages', '-n', type=int, default=300000,
                        help='on a broker: messages to fill and read')
    args = parser.parse_args()
    mock = None
    servers = args.bootstrap_servers
    if not servers:
        mock = bench.MockCluster()
        servers = mock.bootstrap_servers
    # 0.1 s of mock topics: 3 topics, 12 partitions.
    runner = bench.Bench(servers, args.messages, mock is not None,
                         seconds=0.1)
    topics, n = runner.fill_topics(100)
    print('%d messages of 100 B in %d topics; commit every %d'
          % (n, len(topics), args.commit_every))
    print('%-14s %9s %9s   %s' % (
        'shape', 'CPU µs', 'msgs/s',
        'µs per message: reader / member / librdkafka threads'))
    for _ in range(args.runs):
        for name, shape, every in (
                ('raw', raw, args.commit_every),
                ('threaded', threaded, 0),
                ('ours', ours, args.commit_every),
                ('ours-nocommit', ours, 0)):
            got, start, end, split = shape(servers, topics, n, every)
            print('%-14s %9.3f %9.0f   %.3f / %.3f / %.3f' % (
                name, (end[1] - start[1]) / got * 1e6,
                got / (end[0] - start[0]),
                split['reader'] / got * 1e6, split['member'] / got * 1e6,
                split['librdkafka'] / got * 1e6), flush=True)
    for shape, cpu, wall in commit_cost(servers, topics, n,
                                        args.commit_every):
        print('one commit, %-36s CPU %5.0f us  wall %5.0f us'
              % (shape, cpu, wall))
    if mock is not None:
        mock.close()


if __name__ == '__main__':
    main()
