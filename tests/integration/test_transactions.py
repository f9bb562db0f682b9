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

"""The transactional processor on a real broker: kills, fencing, aborts."""

import collections
import os
import pathlib
import random
import signal
import subprocess
import sys
import threading
import time

import confluent_kafka
import pytest

from monasca_common import kafka
from tests import waiting

pytestmark = pytest.mark.integration

CHILD = pathlib.Path(__file__).with_name('processor_child.py')
KILLS = 5


def fill(servers, topic, count, partitions):
    """``id-0`` .. ``id-<count-1>``, spread over the partitions."""
    producer = confluent_kafka.Producer({'bootstrap.servers': servers,
                                         'linger.ms': 20})
    for i in range(count):
        while True:
            try:
                producer.produce(topic, b'id-%d' % i, partition=i % partitions)
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0


def copies(servers, topic, expected, isolation='read_committed',
           timeout=120):
    return collections.Counter(
        m.value().decode() for m in waiting.read_topic(
            servers, topic, expected=expected, timeout=timeout,
            isolation=isolation))


def assert_exactly_once(counts, count):
    wanted = {'copy-%d' % i for i in range(count)}
    lost = wanted - set(counts)
    assert not lost, 'lost %d, e.g. %s' % (len(lost), sorted(lost)[:5])
    extra = set(counts) - wanted
    assert not extra, 'unexpected %s' % sorted(extra)[:5]
    repeated = {k: v for k, v in counts.items() if v > 1}
    assert not repeated, 'repeated %d, e.g. %s' % (
        len(repeated), sorted(repeated.items())[:5])


def copy_transform(output):
    return lambda batch: [(output, b'copy-' + m.value()[3:])
                          for m in batch]


def run_in_thread(processor):
    outcome = {}

    def run():
        try:
            processor.run()
        except BaseException as exc:  # handed to the test
            outcome['error'] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def run_until_copied(processor, servers, output, count):
    """Run ``processor`` until ``count`` copies are readable.

    It must not raise, and each copy must be there exactly once.
    """
    thread, outcome = run_in_thread(processor)
    try:
        counts = copies(servers, output, count)
    finally:
        processor.stop()
        thread.join(30)
    assert 'error' not in outcome, outcome
    assert_exactly_once(counts, count)


def test_processor_copies_each_input_once(bootstrap_servers, make_topic,
                                          group_id):
    source, output = make_topic(partitions=3), make_topic(partitions=2)
    fill(bootstrap_servers, source, 3000, 3)
    processor = kafka.Processor(bootstrap_servers, group_id, source,
                                copy_transform(output), 'one',
                                batch_size=100, batch_timeout=0.2)
    try:
        run_until_copied(processor, bootstrap_servers, output, 3000)
    finally:
        processor.close()
    # The input offsets went in with the outputs.
    committed = waiting.committed_offsets(bootstrap_servers, group_id,
                                          source, range(3))
    assert committed == {0: 1000, 1: 1000, 2: 1000}
    assert processor.counts['batches'] >= 30
    assert processor.counts['published'] == 3000


def test_sigkilled_processor_copies_every_input_exactly_once(
        bootstrap_servers, make_topic, group_id):
    # Batches of 10 keep it copying for a while: the kills land mid-way.
    count, partitions = int(os.environ.get('TXN_KILL_INPUTS', 20000)), 3
    source = make_topic(partitions=partitions)
    output = make_topic(partitions=2)
    fill(bootstrap_servers, source, count, partitions)
    rng = random.Random(7)
    kills = 0
    child = None

    def start():
        process = subprocess.Popen(
            [sys.executable, str(CHILD), bootstrap_servers, group_id,
             source, output, 'copier', '10'],
            stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip() == 'STARTED'
        return process

    def progress():
        # Asked only while a processor runs: a transaction the last kill
        # left open holds the group's offsets unstable until the next
        # processor with the same id aborts it.
        committed = waiting.committed_offsets(bootstrap_servers, group_id,
                                              source, range(partitions))
        return sum(max(0, o) for o in committed.values())
    seen = []
    try:
        while kills < KILLS:
            child = start()
            seen.append(progress())
            # Killed at a random point once it has committed some more.
            waiting.until(lambda: seen.append(progress()) or
                          seen[-1] > seen[-2], 60, 'the processor commits',
                          interval=0.3)
            time.sleep(rng.uniform(0, 0.5))
            child.kill()
            child.wait(10)
            kills += 1
        assert seen[-1] < count, 'the kills came too late to count'
        child = start()
        counts = copies(bootstrap_servers, output, count, timeout=180)
    finally:
        if child is not None and child.poll() is None:
            child.terminate()
            child.wait(30)
    assert_exactly_once(counts, count)
    # The kills did land inside transactions: aborted copies are there
    # for a reader that does not skip them.
    everything = copies(bootstrap_servers, output, None,
                        isolation='read_uncommitted', timeout=60)
    print('%d kills; %d aborted copies a read_uncommitted reader sees'
          % (kills, sum(everything.values()) - count))
    assert progress() == count


def test_second_instance_fences_the_first(bootstrap_servers, make_topic,
                                          group_id):
    source, output = make_topic(partitions=1), make_topic(partitions=1)
    fill(bootstrap_servers, source, 500, 1)
    in_process = threading.Event()
    fenced_now = threading.Event()

    def slow_copy(batch):
        in_process.set()
        fenced_now.wait(60)
        return copy_transform(output)(batch)
    first = kafka.Processor(bootstrap_servers, group_id, source, slow_copy,
                            'same', batch_size=50, batch_timeout=0.2)
    thread, outcome = run_in_thread(first)
    second = None
    try:
        assert in_process.wait(60)
        second = kafka.Processor(bootstrap_servers, group_id, source,
                                 copy_transform(output), 'same',
                                 batch_size=50, batch_timeout=0.2)
        second.start()
        fenced_now.set()
        thread.join(60)
        assert isinstance(outcome.get('error'),
                          kafka.TransactionFencedError), outcome
        assert 'transactional.id' in str(outcome['error'])
        first.close()
        run_until_copied(second, bootstrap_servers, output, 500)
    finally:
        fenced_now.set()
        first.close()
        if second is not None:
            second.close()
    assert first.counts['batches'] == 0


def test_undeliverable_output_aborts_and_names_it(bootstrap_servers,
                                                  make_topic, group_id):
    source, output = make_topic(partitions=1), make_topic(partitions=1)
    fill(bootstrap_servers, source, 300, 1)
    calls = []

    def copy_with_poison(batch):
        calls.append(len(batch))
        outputs = copy_transform(output)(batch)
        if len(calls) == 2:
            # Larger than the broker takes: never deliverable.
            outputs.append((output, b'x' * (2 * 1024 * 1024)))
        return outputs
    processor = kafka.Processor(
        bootstrap_servers, group_id, source, copy_with_poison, 'poison',
        batch_size=100, batch_timeout=0.2,
        producer_config={'message.max.bytes': 4 * 1024 * 1024})
    try:
        with pytest.raises(kafka.DeliveryFailedError,
                           match='never be delivered.*%s' % output):
            processor.run()
        # The first batch is in; the second was aborted, and comes again.
        assert processor.counts['batches'] == 1
        assert processor.counts['aborted'] == 1
        run_until_copied(processor, bootstrap_servers, output, 300)
    finally:
        processor.close()
    # The aborted batch's copies are in the log, skipped by the reader.
    assert sum(copies(bootstrap_servers, output, None,
                      isolation='read_uncommitted').values()) == 400


def test_process_raising_puts_the_batch_back(bootstrap_servers, make_topic,
                                             group_id):
    source, output = make_topic(partitions=1), make_topic(partitions=1)
    fill(bootstrap_servers, source, 200, 1)
    calls = []

    def fails_once(batch):
        calls.append([m.offset() for m in batch])
        if len(calls) == 2:
            raise RuntimeError('the database is away')
        return copy_transform(output)(batch)
    processor = kafka.Processor(bootstrap_servers, group_id, source,
                                fails_once, 'raiser', batch_size=100,
                                batch_timeout=0.2)
    try:
        with pytest.raises(RuntimeError, match='database'):
            processor.run()
        run_until_copied(processor, bootstrap_servers, output, 200)
    finally:
        processor.close()
    assert calls[2][0] == calls[1][0] == 100


@pytest.mark.parametrize('exactly_once', [True, False])
def test_stop_from_another_thread_ends_run(bootstrap_servers, topic,
                                           group_id, exactly_once):
    processor = kafka.Processor(bootstrap_servers, group_id, topic,
                                lambda batch: [], 'stopper',
                                exactly_once=exactly_once)
    thread, outcome = run_in_thread(processor)
    try:
        processor.stop()
        thread.join(10)
        assert not thread.is_alive()
    finally:
        processor.close()
    assert outcome == {}


def settled(servers, topic, partitions):
    """No transaction is open on ``topic``: read_committed reaches the end."""
    ends = {}
    for isolation in ('read_committed', 'read_uncommitted'):
        reader = confluent_kafka.Consumer({
            'bootstrap.servers': servers, 'group.id': 'ends',
            'isolation.level': isolation})
        try:
            ends[isolation] = [reader.get_watermark_offsets(
                confluent_kafka.TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)]
        finally:
            reader.close()
    return ends['read_committed'] == ends['read_uncommitted']


@pytest.mark.parametrize('exactly_once', [True, False])
def test_engine_killed_between_publish_and_commit(bootstrap_servers,
                                                  make_topic, group_id,
                                                  tmp_path, exactly_once):
    """The notification engine's loop, unchanged, killed 5 times.

    Each kill comes after the outcome of a message is in Kafka and before
    its commit: at-least-once repeats that outcome every time; with
    ``[kafka_client] exactly_once`` the killed transaction is aborted and
    a read_committed reader sees each outcome once.
    """
    from tests.integration import test_consume_publish_commit as engines
    inputs, partitions, kills = 60, 2, 5
    in_topic = make_topic(partitions=partitions)
    out_topic = make_topic()
    engines.publish_inputs(bootstrap_servers, in_topic,
                           [b'%d' % i for i in range(inputs)])
    config = tmp_path / 'engine.conf'
    config.write_text(
        '[kafka_client]\nexactly_once = %s\n'
        # Kafka aborts a killed engine's transaction after 10 s.
        'librdkafka_properties = transaction.timeout.ms:10000\n'
        % str(exactly_once).lower())
    log = tmp_path / 'engine.log'
    rng = random.Random(5)
    for _ in range(kills):
        child = engines.start_engine(
            bootstrap_servers, group_id, in_topic, out_topic, log,
            kill_at=rng.randint(2, 8), kill_mode='before', config=config)
        assert child.wait(120) == -signal.SIGKILL
    last = engines.start_engine(bootstrap_servers, group_id, in_topic,
                                out_topic, log, config=config)
    try:
        waiting.until(lambda: engines.all_committed(
            bootstrap_servers, group_id, in_topic, partitions), 180,
            'every input committed', interval=0.5)
        assert last.poll() is None, 'the engine died'
    finally:
        last.kill()
        last.wait(30)
    waiting.until(lambda: settled(bootstrap_servers, out_topic, 1), 60,
                  'the killed transactions aborted', interval=0.5)
    produced = engines.outcomes(bootstrap_servers, out_topic)
    seen = {tuple(v.split()[1:]) for v in produced}
    duplicated = sum(n - 1 for n in produced.values())
    print('\nexactly_once=%s: %d inputs, %d kills before the commit: %d '
          'lost, %d repeated' % (exactly_once, inputs, kills,
                                 inputs - len(seen), duplicated))
    assert len(seen) == inputs, 'outcomes lost'
    assert duplicated == (0 if exactly_once else kills)


def test_exactly_once_outcomes_show_at_the_commit(bootstrap_servers,
                                                  make_topic, group_id):
    in_topic, out_topic = make_topic(), make_topic()
    fill(bootstrap_servers, in_topic, 3, 1)
    consumer = kafka.KafkaConsumer(bootstrap_servers, group_id, in_topic,
                                   exactly_once=True)
    producer = kafka.KafkaProducer(bootstrap_servers, exactly_once=True)
    try:
        it = iter(consumer)
        first = next(it)
        producer.publish(out_topic, [b'outcome of 0'], sync=True)
        # Delivered, in an open transaction: invisible until the commit.
        assert copies(bootstrap_servers, out_topic, None, timeout=10) == {}
        assert sum(copies(bootstrap_servers, out_topic, None, timeout=10,
                          isolation='read_uncommitted').values()) == 1
        committed = consumer.commit()
        assert [(tp.partition, tp.offset) for tp in committed] == [
            (0, first.offset() + 1)]
        assert copies(bootstrap_servers, out_topic, 1) == {'outcome of 0': 1}
        # Nothing published: the offsets commit in a transaction alone.
        next(it)
        assert [tp.offset for tp in consumer.commit()] == [2]
        assert waiting.committed_offsets(bootstrap_servers, group_id,
                                         in_topic, [0]) == {0: 2}
        # Published, never committed: aborted at close.
        next(it)
        producer.publish(out_topic, [b'outcome of 2'], sync=True)
    finally:
        consumer.close()
        producer.close()
    assert copies(bootstrap_servers, out_topic, None, timeout=10) == {
        'outcome of 0': 1}
    assert waiting.committed_offsets(bootstrap_servers, group_id, in_topic,
                                     [0]) == {0: 2}


def test_stalled_engine_aborts_before_its_partition_moves(
        bootstrap_servers, make_topic, group_id, tmp_path):
    """A reader stuck mid-message: its open transaction goes first."""
    from tests.integration import test_consume_publish_commit as engines
    in_topic, out_topic = make_topic(), make_topic()
    engines.publish_inputs(bootstrap_servers, in_topic, [b'0', b'1'])
    stuck = kafka.KafkaConsumer(
        bootstrap_servers, group_id, in_topic, timeout=6000,
        exactly_once=True, **{'max.poll.interval.ms': 6000})
    producer = kafka.KafkaProducer(bootstrap_servers, exactly_once=True)
    config = tmp_path / 'engine.conf'
    config.write_text('[kafka_client]\nexactly_once = true\n')
    other = None
    try:
        message = next(iter(stuck))
        outcome = b'%s 0 %d' % (in_topic.encode(), message.offset())
        producer.publish(out_topic, [outcome], sync=True)
        # Now it hangs: no commit, no next message, no close.
        other = engines.start_engine(bootstrap_servers, group_id, in_topic,
                                     out_topic, tmp_path / 'other.log',
                                     config=config)
        waiting.until(lambda: engines.all_committed(
            bootstrap_servers, group_id, in_topic, 1), 90,
            'the other engine handles both inputs', interval=0.5)
        assert stuck._member.left_at is not None
        # Read while the stuck one still lives: its transaction is
        # already aborted, not left open in front of the others' outputs.
        produced = copies(bootstrap_servers, out_topic, 2, timeout=30)
        # It wakes up and finishes its message: that outcome must not
        # land either, though it carries no offset of a moved partition.
        producer.publish(out_topic, [outcome], sync=True)
        with pytest.raises(kafka.CommitFailedError, match='taken away'):
            stuck.commit(raise_errors=True)
        produced = copies(bootstrap_servers, out_topic, None, timeout=10)
    finally:
        if other is not None:
            other.kill()
            other.wait(30)
        stuck.close()
        producer.close()
    assert sorted(produced.values()) == [1, 1], produced


def last_line(log):
    lines = log.read_text().splitlines() if log.exists() else []
    return lines[-1] if lines else ''


def test_engines_in_one_group_killed_at_random_stay_exactly_once(
        bootstrap_servers, make_topic, group_id, tmp_path, monkeypatch):
    """Three engines share the alarms, with ``exactly_once``.

    Five times one is SIGKILLed mid-stream and another takes its place:
    rebalances, aborted transactions, revocations served between
    messages.
    """
    from tests.integration import test_consume_publish_commit as engines
    inputs, partitions, kills = 1000, 6, 5
    in_topic = make_topic(partitions=partitions)
    out_topic = make_topic(partitions=2)
    fill(bootstrap_servers, in_topic, inputs, partitions)
    config = tmp_path / 'engine.conf'
    config.write_text('[kafka_client]\nexactly_once = true\n'
                      'librdkafka_properties = transaction.timeout.ms:10000\n')
    rng = random.Random(3)
    running, killed = [], []

    # They linger between publishing an outcome and committing its input:
    # most kills land inside a transaction.
    monkeypatch.setenv('ENGINE_SLEEP_AFTER_PUBLISH', '1')

    def start(n):
        log = tmp_path / ('engine%d.log' % n)
        running.append((engines.start_engine(
            bootstrap_servers, group_id, in_topic, out_topic, log,
            sleep=0.03, config=config), log))
    for n in range(3):
        start(n)

    def committed_outcomes():
        return sum(engines.lines(log, 'C') for _, log in running)
    try:
        for kill in range(kills):
            before = committed_outcomes()
            waiting.until(lambda: committed_outcomes() >= before + 60, 120,
                          'the engines handling alarms', interval=0.2)
            time.sleep(rng.uniform(0, 0.3))
            # One in the middle of a message, between its outcome and its
            # commit if it can be caught there.
            alive = [(e, log) for e, log in running if e not in killed]
            busy = []

            def in_a_message():
                busy[:] = [e for e, log in alive
                           if last_line(log).startswith('H')]
                return busy
            waiting.until(in_a_message, 30,
                          'an engine in the middle of a message',
                          interval=0.005)
            victim = rng.choice(busy)
            killed.append(victim)
            victim.kill()
            victim.wait(30)
            start(3 + kill)
        assert committed_outcomes() < inputs, 'the kills came too late'
        waiting.until(lambda: engines.all_committed(
            bootstrap_servers, group_id, in_topic, partitions), 240,
            'every input committed', interval=0.5)
        died = [e for e, _ in running
                if e not in killed and e.poll() is not None]
        assert not died, 'engines died'
    finally:
        for engine, _ in running:
            engine.kill()
            engine.wait(30)
    waiting.until(lambda: settled(bootstrap_servers, out_topic, 2), 60,
                  'the killed transactions aborted', interval=0.5)
    produced = engines.outcomes(bootstrap_servers, out_topic)
    everything = copies(bootstrap_servers, out_topic, None,
                        isolation='read_uncommitted', timeout=60)
    print('\n%d inputs, 3 engines, %d kills: %d outcomes read_committed, '
          '%d in the log' % (inputs, kills, sum(produced.values()),
                             sum(everything.values())))
    assert len(produced) == inputs, 'outcomes lost'
    assert max(produced.values()) == 1, 'outcomes repeated'
    # The kills did land inside transactions.
    assert sum(everything.values()) > inputs


def test_exactly_once_never_drops_an_undeliverable_outcome(
        bootstrap_servers, make_topic, group_id):
    """An outcome Kafka refuses for good holds its input back.

    At-least-once logs such an outcome and commits; a transaction can
    not: the input stays uncommitted until the cause is fixed.
    """
    in_topic, out_topic = make_topic(), make_topic()
    fill(bootstrap_servers, in_topic, 1, 1)
    consumer = kafka.KafkaConsumer(bootstrap_servers, group_id, in_topic,
                                   exactly_once=True, commit_timeout=20)
    producer = kafka.KafkaProducer(bootstrap_servers, exactly_once=True,
                                   **{'message.max.bytes': 4 * 1024 * 1024})
    try:
        message = next(iter(consumer))
        producer.publish(out_topic, [b'fine'])
        producer.publish(out_topic, [b'x' * (2 * 1024 * 1024)])
        with pytest.raises(kafka.CommitFailedError,
                           match='(?s)transaction.*aborted'):
            consumer.commit(raise_errors=True)
    finally:
        consumer.close()
        producer.close()
    assert message.offset() == 0
    assert waiting.committed_offsets(bootstrap_servers, group_id, in_topic,
                                     [0]) == {0: -1001}
    assert copies(bootstrap_servers, out_topic, None, timeout=10) == {}
