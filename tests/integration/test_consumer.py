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

"""KafkaConsumer against a real Apache Kafka: at-least-once, exactly."""

import collections
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest

from monasca_common.confluent_kafka import versions
from monasca_common import kafka
from tests import waiting

pytestmark = [pytest.mark.integration, pytest.mark.compat]

CHILD = pathlib.Path(__file__).with_name('consumer_child.py')


def produce(servers, topic, payloads, **publish):
    with kafka.KafkaProducer(servers) as producer:
        producer.publish(topic, payloads, sync=True, timeout=60, **publish)


def new_consumer(servers, group, topic, **kw):
    kw.setdefault('timeout', 6000)
    return kafka.KafkaConsumer(servers, group, topic, **kw)


@pytest.mark.core
def test_restart_resumes_right_after_last_commit(bootstrap_servers, topic,
                                                 group_id):
    produce(bootstrap_servers, topic, ['m%d' % i for i in range(10)])
    first = new_consumer(bootstrap_servers, group_id, topic)
    assert [m.value() for m in waiting.take(first, 4)] == [
        b'm0', b'm1', b'm2', b'm3']
    committed = first.commit()
    assert [(tp.partition, tp.offset) for tp in committed] == [(0, 4)]
    assert first.commit() == []  # nothing new: not an error
    # Handed out, never committed: must come again.
    assert [m.value() for m in waiting.take(first, 2)] == [b'm4', b'm5']
    first.close()

    second = new_consumer(bootstrap_servers, group_id, topic)
    try:
        assert [m.value() for m in waiting.take(second, 6)] == [
            b'm4', b'm5', b'm6', b'm7', b'm8', b'm9']
    finally:
        second.close()


@pytest.mark.core
def test_two_topics_commit_each_partition_of_each(bootstrap_servers,
                                                  make_topic, group_id):
    topics = [make_topic(partitions=2), make_topic(partitions=2)]
    for topic in topics:
        # Same partition numbers in both topics: offsets must not mix.
        produce(bootstrap_servers, topic, ['%s-a' % topic] * 3, key='a')
        produce(bootstrap_servers, topic, ['%s-b' % topic] * 5, key='bb')
    first = new_consumer(bootstrap_servers, group_id, topics)
    taken = waiting.take(first, 16)
    committed = first.commit()
    first.close()
    ends = collections.Counter()
    for m in taken:
        ends[(m.topic(), m.partition())] = max(
            ends[(m.topic(), m.partition())], m.offset() + 1)
    assert {(tp.topic, tp.partition): tp.offset for tp in committed} == ends

    for topic in topics:
        produce(bootstrap_servers, topic, ['%s-new' % topic])
    second = new_consumer(bootstrap_servers, group_id, topics)
    try:
        assert sorted(m.value() for m in waiting.take(second, 2)) == sorted(
            b'%s-new' % t.encode() for t in topics)
    finally:
        second.close()


def test_commit_never_covers_fetched_but_not_handed(bootstrap_servers,
                                                    topic, group_id):
    produce(bootstrap_servers, topic, ['m%d' % i for i in range(1000)])
    consumer = new_consumer(bootstrap_servers, group_id, topic)
    try:
        waiting.take(consumer, 3)
        # librdkafka has fetched far more than 3 by now.
        consumer.commit()
        assert waiting.committed_offsets(bootstrap_servers, group_id, topic,
                                         [0]) == {0: 3}
    finally:
        consumer.close()


def test_a_session_timeout_the_broker_refuses_raises_naming_it(
        bootstrap_servers, topic, group_id):
    # The test brokers' group.min.session.timeout.ms is 1,000 ms. Joining
    # is refused each time; librdkafka would ask again without end.
    produce(bootstrap_servers, topic, ['m0'])
    consumer = new_consumer(bootstrap_servers, group_id, topic, timeout=500)
    try:
        with pytest.raises(kafka.ConsumerError) as raised:
            waiting.take(consumer, 1, timeout=30)
        assert 'session.timeout.ms' in str(raised.value)
        assert 'group.min.session.timeout.ms' in str(raised.value)
    finally:
        consumer.close()


@pytest.mark.parametrize('how', ['close', 'stop'])
def test_close_or_stop_wakes_a_waiting_consume_batch(
        bootstrap_servers, topic, group_id, how):
    # A service thread waits up to 30 s for a batch on a quiet topic while
    # another thread shuts the service down.
    produce(bootstrap_servers, topic, ['m0'])
    consumer = new_consumer(bootstrap_servers, group_id, topic)
    try:
        waiting.until(lambda: consumer.consume_batch(10, 1.0), 30,
                      'the first message')
        returned = []
        waiter = threading.Thread(target=lambda: returned.append(
            consumer.consume_batch(500, 30)))
        waiter.start()
        waiting.until(lambda: consumer._member.reading, 10,
                      'consume_batch waiting')
        getattr(consumer, how)()
        waiting.until(lambda: returned, 5, 'consume_batch woken')
        waiter.join(5)
        assert returned == [[]]
        if how == 'close':
            with pytest.raises(kafka.ClientClosedError):
                consumer.consume_batch(10, 1.0)
        else:  # the stop ended that call only
            produce(bootstrap_servers, topic, ['m1'])
            batch = waiting.until(lambda: consumer.consume_batch(10, 1.0),
                                  30, 'the next message')
            assert [m.value() for m in batch] == [b'm1']
    finally:
        consumer.close()


def test_batch_call_and_pause_resume(bootstrap_servers, topic, group_id):
    produce(bootstrap_servers, topic, ['m%d' % i for i in range(50)])
    consumer = new_consumer(bootstrap_servers, group_id, topic)
    try:
        batch = waiting.until(lambda: consumer.consume_batch(10, 1.0), 30,
                              'a first batch')
        assert [m.offset() for m in batch] == list(range(len(batch)))
        handed = len(batch)
        consumer.pause()
        paused_until = time.monotonic() + 2
        while time.monotonic() < paused_until:
            assert consumer.consume_batch(10, 0.5) == []
        consumer.resume()
        rest = []

        def all_of_the_rest():
            rest.extend(consumer.consume_batch(100, 1.0))
            return len(rest) >= 50 - handed
        waiting.until(all_of_the_rest, 30, 'the rest')
        # Nothing skipped, nothing repeated across the pause.
        assert [m.offset() for m in rest] == list(range(handed, 50))
    finally:
        consumer.close()


def test_commit_callback_fires_on_idle_topic(bootstrap_servers, topic,
                                             group_id):
    fired = []
    consumer = new_consumer(bootstrap_servers, group_id, topic,
                            commit_callback=lambda: fired.append(
                                time.monotonic()),
                            max_commit_interval=1)
    thread = threading.Thread(target=lambda: list(consumer))
    thread.start()
    try:
        waiting.until(lambda: len(fired) >= 3, 20,
                      'commit callback three times on an idle topic')
    finally:
        consumer.stop()
        thread.join(10)
        consumer.close()
    assert not thread.is_alive(), 'stop() did not end the iteration'
    gaps = [b - a for a, b in zip(fired, fired[1:])]
    assert all(gap >= 0.9 for gap in gaps), gaps


def test_commit_callback_falls_due_between_two_messages(
        bootstrap_servers, topic, group_id):
    # The persister's shape: a steady stream, its flush every interval,
    # not only when the messages fetched so far run out.
    produce(bootstrap_servers, topic, ['m%d' % i for i in range(2000)])
    left_at_fire = []
    consumer = new_consumer(
        bootstrap_servers, group_id, topic, max_commit_interval=0.3,
        commit_callback=lambda: left_at_fire.append(
            len(consumer._member.buffer)))
    taken = 0
    try:
        with waiting.stop_after(consumer, 60):
            for message in consumer:
                time.sleep(0.001)  # each message's work
                taken += 1
                if taken == 2000:
                    break
    finally:
        consumer.close()
    assert taken == 2000
    assert len(left_at_fire) >= 3, left_at_fire
    assert max(left_at_fire) > 0, 'due only when the fetched ran out'


@pytest.mark.core
def test_rebalance_loses_and_duplicates_nothing(bootstrap_servers,
                                                make_topic, group_id):
    topic = make_topic(partitions=6)
    total = 6000
    processed = collections.Counter()
    lock = threading.Lock()
    revoked = collections.defaultdict(list)
    members = {}

    def run(name, callback):
        consumer = new_consumer(bootstrap_servers, group_id, topic,
                                repartition_callback=callback)
        members[name] = consumer
        for message in consumer:
            with lock:
                processed[message.value()] += 1
            if message.offset() % 50 == 0:
                consumer.commit()
        consumer.commit()

    def two_args(consumer, partitions):
        revoked['c1'].append(sorted(tp.partition for tp in partitions))
        # As a persister does: flush, then commit, before they go.
        consumer.commit()

    def no_args():
        revoked['c2'].append(True)

    def count():
        with lock:
            return sum(processed.values())

    threads = [threading.Thread(target=run, args=('c1', two_args)),
               threading.Thread(target=run, args=('c2', no_args))]
    for t in threads:
        t.start()
    try:
        produce(bootstrap_servers, topic,
                ['a%05d' % i for i in range(total // 2)])
        waiting.until(lambda: count() >= total // 4, 60, 'first quarter')
        third = threading.Thread(target=run, args=('c3', None))
        threads.append(third)
        third.start()
        waiting.until(lambda: 'c3' in members and members['c3'].assignment(),
                      60, 'c3 assigned')
        produce(bootstrap_servers, topic,
                ['b%05d' % i for i in range(total // 2)])
        waiting.until(lambda: count() >= total, 120, 'all messages')
        # Anything extra would be a duplicate; give it a moment to show.
        time.sleep(1)
    finally:
        for consumer in list(members.values()):
            consumer.stop()
        for t in threads:
            t.join(30)
        for consumer in members.values():
            consumer.close()
    assert revoked['c1'] or revoked['c2'], 'no revoke callback ran'
    assert len(processed) == total, 'lost %d' % (total - len(processed))
    dupes = {k: v for k, v in processed.items() if v > 1}
    assert not dupes, 'duplicates: %d' % len(dupes)


@pytest.mark.core
def test_sigkilled_consumer_successor_redelivers_only_uncommitted(
        bootstrap_servers, make_topic, group_id, tmp_path):
    topic = make_topic(partitions=2)
    produce(bootstrap_servers, topic, ['m%d' % i for i in range(2000)])
    log = tmp_path / 'child.log'
    child = subprocess.Popen([sys.executable, str(CHILD), bootstrap_servers,
                              group_id, topic, str(log), '100', '750'])
    try:
        # It holds after 750 messages: 50 past its last commit.
        waiting.until(lambda: log.exists() and 'HOLDING' in log.read_text(),
                      60, 'child handed 750 messages')
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(10)
    lines = log.read_text().splitlines()
    handed = [tuple(map(int, line.split()[1:])) for line in lines
              if line.startswith('H ')]
    committed = {}
    for line in lines:
        if line.startswith('C '):
            partition, offset = map(int, line.split()[1:])
            committed[partition] = offset
    uncommitted = {(p, o) for p, o in handed if o >= committed.get(p, 0)}
    assert len(uncommitted) == 50

    successor = new_consumer(bootstrap_servers, group_id, topic,
                             timeout=3000)
    try:
        again = waiting.take(successor, 2000 - sum(committed.values()),
                             timeout=90)
    finally:
        successor.close()
    seen = {(m.partition(), m.offset()) for m in again}
    redelivered = seen & set(handed)
    assert redelivered == uncommitted
    # And nothing committed comes back; nothing is skipped.
    for partition in (0, 1):
        offsets = sorted(o for p, o in seen if p == partition)
        start = committed.get(partition, 0)
        assert offsets == list(range(start, start + len(offsets)))


def test_close_is_bounded_with_broker_down(controllable_kafka, topic,
                                           group_id):
    servers = controllable_kafka.bootstrap_servers
    produce(servers, topic, ['m'])
    consumer = new_consumer(servers, group_id, topic)
    waiting.take(consumer, 1)
    for node in controllable_kafka.nodes:
        node.kill()
    started = time.monotonic()
    consumer.close(timeout=3)
    assert time.monotonic() - started < 6
    consumer.close()  # idempotent
    with pytest.raises(kafka.ClientClosedError):
        consumer.commit()


def test_a_lone_message_is_not_held_until_the_poll_timeout(
        bootstrap_servers, topic, group_id):
    # With a 60 s poll timeout, a consumer that waited for a full chunk
    # (or the timeout) would sit on this message for a minute.
    consumer = new_consumer(bootstrap_servers, group_id, topic,
                            poll_timeout=60)
    got = []
    reader = threading.Thread(
        target=lambda: got.extend(waiting.take(consumer, 1)))
    try:
        reader.start()
        waiting.until(lambda: consumer.assignment(), 30, 'assignment')
        produce(bootstrap_servers, topic, ['lonely'])
        waiting.until(lambda: got, 15, 'the lone message')
    finally:
        reader.join(70)
        consumer.close()
    assert got[0].value() == b'lonely'


def test_backlog_is_read_without_fetch_pauses(bootstrap_servers, topic,
                                              group_id):
    # A prefetch queue of 1000 messages: librdkafka's default reaction
    # to a full one (fetch.queue.backoff.ms=1000) would halt the partition
    # for a second after every fetch, about ten times here.
    total = 20000
    with kafka.KafkaProducer(bootstrap_servers) as producer:
        # 1 KB each: a fetch (1 MB a partition) brings about a queueful.
        producer.publish(topic, [b'%05d' % i + b'x' * 1019
                                 for i in range(total)],
                         sync=True, timeout=60)
    consumer = kafka.KafkaConsumer(bootstrap_servers, group_id, topic,
                                   **{'queued.min.messages': 1000})
    pauses = []
    count = 0
    last = None
    try:
        with waiting.stop_after(consumer, 120):
            for _message in consumer:
                time.sleep(0.0001)  # some work: the queue stays full
                now = time.monotonic()
                if last is not None and now - last >= 0.5:
                    pauses.append(round(now - last, 2))
                last = now
                count += 1
                if count == total:
                    break
    finally:
        consumer.close()
    assert count == total
    # A scheduling hiccup on a busy machine may make one; ten would be
    # the backoff.
    assert len(pauses) < 3, pauses


def test_consume_batch_commit_callback_covers_only_what_caller_has(
        bootstrap_servers, topic, group_id):
    produce(bootstrap_servers, topic, ['m%d' % i for i in range(300)])
    received = []
    commits = []

    def flush_batch():
        # The persister writes what it holds, then commits.
        for tp in consumer.commit():
            commits.append((tp.offset, len(received)))

    consumer = new_consumer(bootstrap_servers, group_id, topic,
                            commit_callback=flush_batch,
                            max_commit_interval=0.01)
    try:
        while len(received) < 300:
            received.extend(consumer.consume_batch(50, 5.0))
            # Writing the batch takes longer than the commit interval.
            time.sleep(0.02)
    finally:
        consumer.close()
    assert commits
    # Never a commit past the messages the caller had been given.
    assert all(offset <= had for offset, had in commits), commits


@pytest.mark.core
def test_auto_group_protocol_takes_what_every_broker_offers(
        bootstrap_servers, make_topic, group_id):
    """``group.protocol=auto``: KIP-848 where offered, classic elsewhere.

    Runs on Kafka 4 (offered) and, with ``-m compat``, on 3.9.1 (not
    offered, where an explicit ``consumer`` is refused at once instead of
    reading nothing).
    """
    with kafka.KafkaAdmin(bootstrap_servers) as admin:
        offered = admin.group_protocols()
    assert 'classic' in offered
    topic = make_topic(partitions=2)
    produce(bootstrap_servers, topic, ['m%d' % i for i in range(20)])
    consumer = new_consumer(bootstrap_servers, group_id, topic,
                            **{'group.protocol': 'auto'})
    # KIP-848 needs the brokers' offer and confluent-kafka 2.12.
    takes_it = 'consumer' in offered and versions.offers(
        'group.protocol=consumer')
    try:
        assert consumer._config['group.protocol'] == (
            'consumer' if takes_it else 'classic')
        assert sorted(m.value() for m in waiting.take(consumer, 20)) == \
            sorted(b'm%d' % i for i in range(20))
        consumer.commit()
    finally:
        consumer.close()
    if not versions.offers('group.protocol=consumer'):
        with pytest.raises(kafka.ConfigurationError,
                           match='needs confluent-kafka 2.12.0'):
            kafka.KafkaConsumer(bootstrap_servers, group_id, topic,
                                **{'group.protocol': 'consumer'})
    elif 'consumer' not in offered:
        with pytest.raises(kafka.ConfigurationError, match='read nothing'):
            kafka.KafkaConsumer(bootstrap_servers, group_id, topic,
                                **{'group.protocol': 'consumer'})


@pytest.mark.core
def test_next_generation_group_protocol(bootstrap_servers, make_topic,
                                        group_id, broker_version):
    """group.protocol=consumer (KIP-848) on Kafka 4.

    Two members share the topic, nothing lost or read twice, commits exact.
    Before confluent-kafka 2.12 such a member is refused, naming why.
    """
    if not versions.offers('group.protocol=consumer'):
        with pytest.raises(kafka.ConfigurationError,
                           match='group.protocol=consumer needs '
                                 'confluent-kafka 2.12.0 or later'):
            kafka.KafkaConsumer(bootstrap_servers, group_id, make_topic(),
                                **{'group.protocol': 'consumer'})
        return
    if broker_version is not None and broker_version < (4, 0):
        pytest.skip('KIP-848 needs Kafka 4.0; on %d.%d such a member reads '
                    'nothing (doc/source/upgrade.rst)' % broker_version)
    topic = make_topic(partitions=4)
    produce(bootstrap_servers, topic, ['m%d' % i for i in range(400)])
    seen = collections.Counter()
    members = [kafka.KafkaConsumer(bootstrap_servers, group_id, topic,
                                   **{'group.protocol': 'consumer'})
               for _ in range(2)]
    lock = threading.Lock()

    def read(consumer):
        for message in consumer:
            with lock:
                seen[message.value()] += 1
            consumer.commit()

    threads = [threading.Thread(target=read, args=(c,)) for c in members]
    for thread in threads:
        thread.start()
    try:
        waiting.until(lambda: len(seen) == 400, 60, 'all 400 read')
        waiting.until(lambda: all(c.assignment() for c in members), 30,
                      'both members owning partitions')
        waiting.until(
            lambda: sum(waiting.committed_offsets(
                bootstrap_servers, group_id, topic, range(4)).values()) ==
            400, 30, 'everything committed')
    finally:
        for consumer in members:
            consumer.stop()
        for thread in threads:
            thread.join(10)
        for consumer in members:
            consumer.close()
    assert max(seen.values()) == 1


def test_partitions_taken_while_stalled_fetch_when_they_come_back(
        bootstrap_servers, make_topic, group_id):
    # A service that stops reading for a while (the retry engine asleep)
    # has its partitions paused; a rebalance takes some away meanwhile and
    # later gives them back, once it reads again. librdkafka keeps a pause
    # across a partition's leaving and coming back: unless the consumer
    # resumes them as they leave, they come back assigned and silent.
    # (Statistics off: the stuck-fetch watch would mend it after 15 s.)
    topic = make_topic(partitions=4)
    total = 16000
    produce(bootstrap_servers, topic, ['m%05d' % i for i in range(total)])
    values = collections.Counter()
    sleeper = new_consumer(bootstrap_servers, group_id, topic,
                           **{'statistics.interval.ms': 0})
    try:
        values.update(m.value() for m in waiting.take(sleeper, 1))
        sleeper.commit(raise_errors=True)  # nothing for a revoke to wait on
        member = sleeper._member
        waiting.until(lambda: member.flow.stalled, 60,
                      'the sleeping reader stops fetching')
        joiner = new_consumer(bootstrap_servers, group_id, topic)
        try:
            batch = joiner.consume_batch(100, 30)
            values.update(m.value() for m in batch)
            joiner.commit(raise_errors=True)
            waiting.until(lambda: len(sleeper.assignment()) == 2, 60,
                          'half the partitions taken from the sleeper')
            # Awake: it reads what it had and fetches again.
            while member.flow.stalled or member.buffer:
                values.update(m.value()
                              for m in sleeper.consume_batch(500, 1.0))
        finally:
            joiner.close()
        waiting.until(lambda: len(sleeper.assignment()) == 4, 60,
                      'the partitions back with the sleeper')
        deadline = time.monotonic() + 60
        while len(values) < total and time.monotonic() < deadline:
            values.update(m.value() for m in sleeper.consume_batch(500, 1.0))
    finally:
        sleeper.close()
    assert len(values) == total, 'never read: %d' % (total - len(values))


def test_a_hung_reader_leaves_its_group_and_joins_again(
        bootstrap_servers, make_topic, group_id, caplog):
    """A service whose reading thread hangs gives its partitions away.

    Two members; one takes a message and hangs without closing. Within
    ``max.poll.interval.ms`` plus the session timeout the other owns every
    partition and reads everything, the hung one's message included (it
    was never committed). When the hung thread comes back it joins again
    and reads its share of what comes next.
    """
    topic = make_topic(partitions=4)
    produce(bootstrap_servers, topic, ['a%d' % i for i in range(400)])
    limits = {'timeout': 3000, 'max.poll.interval.ms': 5000}
    seen = {'hung': collections.Counter(), 'alive': collections.Counter()}
    lock = threading.Lock()
    hang, back = threading.Event(), threading.Event()
    members = {}

    def run(name):
        consumer = new_consumer(bootstrap_servers, group_id, topic,
                                **limits)
        members[name] = consumer
        for message in consumer:
            with lock:
                seen[name][message.value()] += 1
            if name == 'hung' and not back.is_set():
                hang.set()
                back.wait()
            elif message.offset() % 10 == 0:
                consumer.commit()

    hung = threading.Thread(target=run, args=('hung',), daemon=True)
    hung.start()
    waiting.until(hang.is_set, 60, 'the first member taking a message')
    started = time.monotonic()
    alive = threading.Thread(target=run, args=('alive',), daemon=True)
    alive.start()
    try:
        waiting.until(lambda: len(seen['alive']) == 400, 60,
                      'the live member reading all 400')
        took = time.monotonic() - started
        assert len(members['alive'].assignment()) == 4
        assert members['hung'].assignment() == []
        assert any('has taken no message for' in r.getMessage() and
                   r.levelname == 'ERROR' for r in caplog.records)
        print('\nthe live member had all 400 %.1f s after the other hung '
              '(max.poll.interval.ms 5 s, session 3 s)' % took)
        # Back: it joins again and takes part in what comes next.
        back.set()
        produce(bootstrap_servers, topic, ['b%d' % i for i in range(400)])
        waiting.until(lambda: members['hung'].assignment(), 60,
                      'the member back in the group')
        # Keyed, so that every partition, the hung one's too, has some:
        # unkeyed, a burst like this sticks to one partition.
        with kafka.KafkaProducer(bootstrap_servers) as producer:
            for i in range(400):
                producer.publish(topic, 'c%d' % i, key=i)
            assert producer.flush(60) == 0
        waiting.until(lambda: {v for c in seen.values() for v in c} >=
                      {b'%s%d' % (k, i) for k in (b'b', b'c')
                       for i in range(400)}, 60, 'everything after read')
        assert sum(seen['hung'][b'c%d' % i] for i in range(400)) > 0
    finally:
        back.set()
        for consumer in members.values():
            consumer.stop()
        hung.join(30)
        alive.join(30)
        for consumer in members.values():
            consumer.close()


def test_a_reader_that_keeps_up_fetches_for_itself(
        bootstrap_servers, make_topic, group_id):
    """No hand-over between threads while the service keeps reading.

    The reading thread polls librdkafka itself; once it has been away
    longer than the member waits for it, the member fetches in its place,
    and what it fetched comes first, in order, each message once. Back
    and keeping up with a backlog, the reading thread fetches for itself
    again: the member does not keep the buffer full ahead of it.
    """
    topic = make_topic(partitions=2)
    first, backlog = 6000, 30000

    def produce_keyed(start, count):
        with kafka.KafkaProducer(bootstrap_servers) as producer:
            for chunk in range(start, start + count, 500):  # both partitions
                producer.publish(topic, ['%06d' % i for i in
                                         range(chunk, chunk + 500)],
                                 key=str(chunk), sync=True, timeout=60)
    produce_keyed(0, first)
    consumer = new_consumer(bootstrap_servers, group_id, topic)
    seen = collections.Counter()
    last = {}

    def take(count):
        for message in waiting.take(consumer, count, timeout=60):
            value = int(message.value())
            assert value > last.get(message.partition(), -1), 'out of order'
            last[message.partition()] = value
            seen[value] += 1
    try:
        take(2000)
        member = consumer._member
        # The member may have fetched a first chunk before the reader came.
        assert member.fetched_by_reader >= 2000 - 500
        # Away: a backlog comes, and the member fills the buffer with it.
        produce_keyed(first, backlog)
        waiting.until(lambda: len(member.buffer) >= 9000, 30,
                      'the member fetching for a reader away')
        take(first - 2000 + backlog)
        by_reader = member.fetched_by_reader
    finally:
        consumer.close()
    assert sorted(seen) == list(range(first + backlog))
    assert set(seen.values()) == {1}
    # At most the member's buffer bound (10,000) went through the buffer
    # after the reader came back.
    assert by_reader >= 2000 - 500 + backlog - 10000, by_reader
