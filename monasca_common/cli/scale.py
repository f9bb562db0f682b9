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

"""``monasca-kafka bench --scale``: how the clients scale out.

One producer shared by 1, 2 and 4 threads (an API's worker threads), and a
consumer group of 1, 2 and 4 processes reading a topic of 8 partitions
(the persister's scale-out). The group's members join, settle and pause
before the topic is filled, so the figures are reading, not rebalancing:
from the first message any member reads to the last.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
import uuid

import confluent_kafka

from monasca_common.cli import bench
from monasca_common.confluent_kafka import consumer as kafka_consumer
from monasca_common.confluent_kafka import producer as kafka_producer

PARTITIONS = 8
# How long the group must stay settled before the topic is filled.
_SETTLED_FOR = 1.0


def producer_threads(runner: bench.Bench, threads: int,
                     size: int) -> bench.Result:
    """``threads`` threads publishing lists of 1000 through one producer."""
    payloads = [b'x' * size] * bench.CHUNK
    sent = [0] * threads
    with kafka_producer.KafkaProducer(runner.servers) as producer:
        topic = runner.topic()
        producer.publish(topic, b'warm-up', sync=True, timeout=30)
        start = bench.now()
        deadline = start[0] + runner.seconds

        def publish(index):
            while time.perf_counter() < deadline:
                producer.publish(topic, payloads)
                sent[index] += len(payloads)
        workers = [threading.Thread(target=publish, args=(i,))
                   for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        left = producer.flush(120)
        end = bench.now()
    runner._done_with(topic)
    return bench._measured(
        'one producer, %d publishing thread%s' % (
            threads, 's' if threads > 1 else ''),
        size, sum(sent), start, end,
        '%d undelivered' % left if left else '')


def _member(servers, group, topic, settle, go, out):
    """One process of the group: join, pause when told, read when told."""
    # Waiting for the group to settle is not idle reading: a stop() then
    # would end the iteration before it starts.
    idle = bench.IdleStop(armed=False)
    consumer = kafka_consumer.KafkaConsumer(
        servers, group, topic, commit_callback=idle,
        max_commit_interval=3.0)
    idle.consumer = consumer
    try:
        while not settle.is_set():
            # The topic is empty: this only takes part in the group.
            consumer.consume_batch(100, 0.2)
        consumer.pause()
        out.put(('paused', len(consumer.assignment())))
        go.wait(600)
        idle.armed = True
        consumer.resume()
        count = 0
        first = last = None
        cpu_first = 0.0
        cpu_last = None
        # Written out, as in bench.py: a helper would add a call per
        # message to what is measured.
        for message in consumer:
            if first is None:
                first = time.monotonic()
                cpu_first = time.process_time()
            message.value()
            count += 1
            if count % 1000 == 0:
                consumer.commit()
                idle.count = count
                # Timed at every thousandth: the rate counts the
                # messages up to the last of them.
                last = time.monotonic()
                cpu_last = time.process_time()
        consumer.commit()
        # A member that read fewer than a thousand has no timed part.
        out.put(('read', count, count - count % 1000, first, last,
                 0.0 if cpu_last is None else cpu_last - cpu_first))
    finally:
        consumer.close()


def _group_settled(admin, group, members):
    try:
        description = admin.describe_consumer_groups(
            [group])[group].result(10)
    except confluent_kafka.KafkaException:
        return False  # not formed yet, or its coordinator moving
    owned = sum(len(m.assignment.topic_partitions)
                for m in description.members)
    return (str(description.state).endswith('STABLE') and
            len(description.members) == members and owned == PARTITIONS and
            all(m.assignment.topic_partitions for m in description.members))


def consumer_group(runner: bench.Bench, processes: int, size: int,
                   messages: int) -> bench.Result:
    """A group of ``processes`` reading ``messages`` off 8 partitions."""
    from confluent_kafka import admin as kafka_admin
    topic = bench._topic('scale')
    bench._create_topic(runner.servers, topic, PARTITIONS)
    group = 'bench-scale-' + uuid.uuid4().hex[:8]
    context = multiprocessing.get_context('spawn')
    settle, go = context.Event(), context.Event()
    out: multiprocessing.Queue = context.Queue()
    children = [context.Process(target=_member, args=(
        runner.servers, group, topic, settle, go, out), daemon=True)
        for _ in range(processes)]
    for child in children:
        child.start()
    admin = kafka_admin.AdminClient(bench._raw_config('admin', {},
                                                      runner.servers))
    try:
        settled_since = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if _group_settled(admin, group, processes):
                settled_since = settled_since or time.monotonic()
                if time.monotonic() - settled_since >= _SETTLED_FOR:
                    break
            else:
                settled_since = None
            time.sleep(0.2)
        else:
            raise RuntimeError('the group of %d did not settle' % processes)
        settle.set()
        for _ in children:
            out.get(timeout=60)
        with kafka_producer.KafkaProducer(runner.servers) as producer:
            for i in range(0, messages, bench.CHUNK):
                producer.publish(topic, [b'x' * size] *
                                 min(bench.CHUNK, messages - i))
            producer.flush(300)
        go.set()
        reports = []
        for _ in children:
            reports.append(out.get(timeout=600))
    except queue.Empty:
        raise RuntimeError('a member of the group did not answer') from None
    finally:
        go.set()
        for child in children:
            child.join(30)
            if child.is_alive():
                child.kill()
        runner._done_with(topic)
    read = sum(r[1] for r in reports)
    timed = sum(r[2] for r in reports)
    firsts = [r[3] for r in reports if r[3] is not None]
    lasts = [r[4] for r in reports if r[4] is not None]
    seconds = (max(lasts) - min(firsts)) if firsts and lasts else 0.0
    note = 'only %d of %d read' % (read, messages) if read < messages \
        else 'each read %s' % '/'.join(str(r[1]) for r in reports)
    return bench.Result(
        'consumer group of %d process%s, %d partitions' % (
            processes, 'es' if processes > 1 else '', PARTITIONS),
        size, timed, seconds, note, cpu=sum(r[5] for r in reports))


def run(runner: bench.Bench, size: int = 100,
        consumer_messages: int = 1000000) -> list[bench.Result]:
    results = [producer_threads(runner, threads, size)
               for threads in (1, 2, 4)]
    if not runner.mock:
        results.extend(consumer_group(runner, processes, size,
                                      consumer_messages)
                       for processes in (1, 2, 4))
    return results
