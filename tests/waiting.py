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

"""Waiting on conditions with deadlines, and reading topics back."""

import contextlib
import threading
import time
import uuid

import confluent_kafka


class Timeout(AssertionError):
    pass


def until(condition, timeout, what, interval=0.05):
    """Return condition()'s first truthy value; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise Timeout('not within %.1f s: %s' % (timeout, what))
        time.sleep(interval)


@contextlib.contextmanager
def stop_after(consumer, timeout):
    """End ``consumer``'s iteration at the deadline, message or not.

    A loop over a consumer blocks while no message comes; this bounds it
    (the iteration ends within the consumer's ``poll_timeout``).
    """
    timer = threading.Timer(timeout, consumer.stop)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def take(consumer, count, timeout=60):
    """The next ``count`` messages of the iteration; fail at ``timeout``."""
    taken = []
    with stop_after(consumer, timeout):
        for message in consumer:
            taken.append(message)
            if len(taken) == count:
                return taken
    raise Timeout('only %d of %d messages within %.0f s'
                  % (len(taken), count, timeout))


def in_threads(target, count, timeout):
    """Run ``target(n)`` for n below ``count``, a thread each, and join.

    Fails if a thread is still running after ``timeout``.
    """
    threads = [threading.Thread(target=target, args=(n,))
               for n in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        raise Timeout('threads still running after %.1f s' % timeout)


def read_topic(servers, topic, expected=None, timeout=60, idle=3.0,
               isolation='read_committed'):
    """Every message in ``topic``, read with a throwaway group.

    Stops once ``expected`` messages are read, or when nothing new came
    for ``idle`` seconds after the end offsets were reached.
    ``isolation``: ``read_uncommitted`` shows aborted transactions too.
    """
    consumer = confluent_kafka.Consumer({
        'bootstrap.servers': servers,
        'isolation.level': isolation,
        'group.id': 'reader-' + uuid.uuid4().hex,
        'auto.offset.reset': 'earliest',
        'enable.auto.commit': False,
        'enable.partition.eof': True,
    })
    consumer.subscribe([topic])
    messages = []
    eof = set()
    partitions = None
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            if expected is not None and len(messages) >= expected:
                break
            batch = consumer.consume(1000, 0.5)
            for m in batch:
                if m.error():
                    if m.error().code() == \
                            confluent_kafka.KafkaError._PARTITION_EOF:
                        eof.add(m.partition())
                    continue
                messages.append(m)
                eof.discard(m.partition())
                last = time.monotonic()
            if partitions is None:
                partitions = len(consumer.assignment()) or None
            if (expected is None and partitions and
                    len(eof) >= partitions and
                    time.monotonic() - last >= idle):
                break
    finally:
        consumer.close()
    return messages


def committed_offsets(servers, group_id, topic, partitions):
    """The group's committed offset per partition (negative: none)."""
    reader = confluent_kafka.Consumer({'bootstrap.servers': servers,
                                       'group.id': group_id})
    try:
        committed = reader.committed(
            [confluent_kafka.TopicPartition(topic, p) for p in partitions],
            timeout=30)
    finally:
        reader.close()
    return {tp.partition: tp.offset for tp in committed}
