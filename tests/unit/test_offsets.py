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

"""The offset ledger and the publish barrier, without a broker."""

import sys
import threading
import time
import types

import confluent_kafka
import pytest

from monasca_common.confluent_kafka import errors
from monasca_common.confluent_kafka import offsets
from monasca_common.confluent_kafka import published
from monasca_common.confluent_kafka import versions
from monasca_common.kafka import legacy_kafka_message


def Message(topic, partition, offset):
    return legacy_kafka_message.LegacyKafkaMessage(
        [partition, (offset, (None, None))], topic)


@pytest.mark.parametrize('single', ['t', None])
def test_a_commit_covers_the_offset_after_the_last_handed(single):
    ledger = offsets.OffsetLedger(single)
    for offset in range(5):
        ledger.hand(Message('t', 0, offset))
    ledger.hand(Message('t', 1, 7))
    assert ledger.pending() == {('t', 0): 5, ('t', 1): 8}
    assert ledger.pending(only={('t', 1)}) == {('t', 1): 8}
    assert ledger.pending(owned={('t', 0)}) == {('t', 0): 5}


def test_failed_commit_keeps_offsets_pending_until_one_lands():
    ledger = offsets.OffsetLedger('t')
    ledger.hand(Message('t', 0, 3))
    # A commit answered REBALANCE_IN_PROGRESS records nothing.
    assert ledger.pending() == {('t', 0): 4}
    ledger.record_commit([(('t', 0), 4)])
    assert ledger.pending() == {}
    assert ledger.committed(('t', 0)) == 4
    ledger.hand(Message('t', 0, 4))
    assert ledger.pending() == {('t', 0): 5}


def test_a_late_answer_never_moves_the_committed_offset_back():
    ledger = offsets.OffsetLedger('t')
    ledger.record_commit([(('t', 0), 9)])
    ledger.record_commit([(('t', 0), 4)])
    assert ledger.committed(('t', 0)) == 9


def test_only_a_partition_leaving_the_assignment_is_forgotten():
    ledger = offsets.OffsetLedger(None)
    ledger.hand(Message('a', 0, 1))
    ledger.hand(Message('b', 0, 1))
    ledger.record_commit([(('a', 0), 1)])
    ledger.forget([('a', 0)])
    assert ledger.committed(('a', 0)) is None
    assert ledger.pending() == {('b', 0): 2}
    ledger.forget_handed([('b', 0)])
    assert ledger.pending() == {}


def test_same_partition_number_in_two_topics_does_not_mix():
    ledger = offsets.OffsetLedger(None)
    ledger.hand(Message('a', 0, 10))
    ledger.hand(Message('b', 0, 20))
    assert ledger.pending() == {('a', 0): 11, ('b', 0): 21}


def test_barrier_waits_for_nothing_in_a_scope_that_published_nothing():
    assert published.await_delivery(
        [published.Outputs()], time.monotonic() + 10) == 0


def answer(topic, partition, offset, code=None):
    """A TopicPartition of Kafka's answer (its error is read-only there)."""
    return types.SimpleNamespace(
        topic=topic, partition=partition, offset=offset,
        error=None if code is None else confluent_kafka.KafkaError(code))


def test_settle_records_what_kafka_took_and_defers_what_passes():
    ledger = offsets.OffsetLedger('t')
    ledger.hand(Message('t', 0, 4))
    ledger.hand(Message('t', 1, 8))
    with pytest.raises(offsets.CommitDeferred) as info:
        ledger.settle([answer('t', 0, 5),
                       answer('t', 1, 9,
                              confluent_kafka.KafkaError.
                              REBALANCE_IN_PROGRESS)])
    assert [(tp.topic, tp.partition) for tp in info.value.committed] == [
        ('t', 0)]
    assert info.value.partitions[0][:3] == ('t', 1, 9)
    # Partition 1 stays pending for the next commit; 0 is done.
    assert ledger.pending() == {('t', 1): 9}


def test_settle_raises_for_an_error_that_does_not_pass():
    ledger = offsets.OffsetLedger('t')
    ledger.hand(Message('t', 0, 4))
    with pytest.raises(errors.CommitFailedError, match='t\\[0\\]@5'):
        ledger.settle([answer('t', 0, 5, confluent_kafka.KafkaError.
                              TOPIC_AUTHORIZATION_FAILED)])
    assert ledger.pending() == {('t', 0): 5}


def test_an_answer_after_the_revoke_is_not_recorded():
    # The commit was sent, the partition revoked and forgotten, then the
    # answer came: the partition's next owner commits from there on.
    ledger = offsets.OffsetLedger(None)
    ledger.hand(Message('t', 0, 4))
    pending = ledger.pending()
    ledger.forget(pending)
    assert ledger.settle([answer('t', 0, 5)]) == [answer('t', 0, 5)]
    assert ledger.committed(('t', 0)) is None


@pytest.mark.parametrize('code, kind', [
    (confluent_kafka.KafkaError.ILLEGAL_GENERATION, offsets.CommitDeferred),
    (confluent_kafka.KafkaError._TIMED_OUT, offsets.CommitDeferred),
    (confluent_kafka.KafkaError.GROUP_AUTHORIZATION_FAILED,
     errors.CommitFailedError),
])
def test_a_whole_commit_failing(code, kind):
    offsets_sent = [answer('t', 0, 5)]
    raised = offsets.commit_error(confluent_kafka.KafkaError(code),
                                  offsets_sent)
    assert isinstance(raised, kind)
    assert raised.partitions[0][:3] == ('t', 0, 5)


def test_pause_resumes_after_the_handed_or_at_the_committed():
    ledger = offsets.OffsetLedger('t')
    ledger.hand(Message('t', 0, 4))
    ledger.record_commit([(('t', 1), 30)])
    assert ledger.next_offsets([('t', 0), ('t', 1), ('t', 2)]) == {
        ('t', 0): 5, ('t', 1): 30}


def refused(code, *offsets_by_partition):
    err = confluent_kafka.KafkaError(code)
    return [('t', p, o, err) for p, o in offsets_by_partition]


def test_refused_offsets_are_sent_again_once_due():
    retries = offsets.CommitRetries(first_wait=1.0, longest_wait=4.0)
    retries.add(refused(confluent_kafka.KafkaError.REBALANCE_IN_PROGRESS,
                        (0, 5), (1, 7)), now=100.0)
    assert len(retries) == 2
    owned = {('t', 0), ('t', 1)}
    assert retries.take(100.9, owned, lambda key: None) == {}
    assert retries.take(101.0, owned, lambda key: None) == {
        ('t', 0): 5, ('t', 1): 7}
    assert len(retries) == 0
    assert retries.take(200.0, owned, lambda key: None) == {}


def test_each_refusal_in_a_row_waits_twice_as_long_up_to_the_longest():
    retries = offsets.CommitRetries(first_wait=1.0, longest_wait=3.0)
    code = confluent_kafka.KafkaError.NOT_COORDINATOR
    now, waits = 0.0, []
    for _ in range(4):
        retries.add(refused(code, (0, 5)), now)
        due = now
        while not retries.take(due, {('t', 0)}, lambda key: None):
            due += 0.5
        waits.append(due - now)
        now = due
    assert waits == [1.0, 2.0, 3.0, 3.0]
    retries.succeeded()
    retries.add(refused(code, (0, 6)), now)
    assert retries.take(now + 1.0, {('t', 0)}, lambda key: None) == {
        ('t', 0): 6}


def test_only_what_kafka_refused_for_a_passing_reason_is_kept():
    retries = offsets.CommitRetries()
    retries.add([('t', 0, 5, None)], 0.0)  # held back: outputs not in Kafka
    retries.add(refused(confluent_kafka.KafkaError.OFFSET_METADATA_TOO_LARGE,
                        (1, 3)), 0.0)
    assert len(retries) == 0
    assert retries.take(100.0, {('t', 0), ('t', 1)}, lambda key: None) == {}


def test_a_newer_commit_a_lost_partition_or_kafka_having_it_drops_a_retry():
    retries = offsets.CommitRetries()
    retries.add(refused(confluent_kafka.KafkaError.ILLEGAL_GENERATION,
                        (0, 5), (1, 7), (2, 9), (3, 4)), 0.0)
    retries.add(refused(confluent_kafka.KafkaError.ILLEGAL_GENERATION,
                        (3, 2)), 0.0)  # an older offset never wins
    retries.superseded([('t', 0)])
    committed = {('t', 2): 9}
    assert retries.take(10.0, {('t', 0), ('t', 2), ('t', 3)},
                        committed.get) == {('t', 3): 4}


def _chunk(*spec):
    """Real librdkafka messages: ``(topic, partition, offset)`` each."""
    try:
        return [confluent_kafka.Message(topic=t, partition=p, offset=o)
                for t, p, o in spec]
    except TypeError:
        pytest.skip('confluent-kafka %s cannot build a Message outside '
                    'librdkafka' % versions.INSTALLED)


@pytest.mark.parametrize('single', ['t', None])
def test_a_chunk_counts_only_what_its_iterator_handed(single):
    ledger = offsets.OffsetLedger(single)
    chunk = _chunk(('t', 0, 10), ('t', 1, 20), ('t', 0, 11), ('t', 1, 21))
    iterator = ledger.handing(chunk)
    assert ledger.pending() == {}
    assert ledger.unhanded() == 4
    next(iterator)
    assert ledger.pending() == {('t', 0): 11}
    next(iterator)
    next(iterator)
    assert ledger.pending() == {('t', 0): 12, ('t', 1): 21}
    assert ledger.unhanded() == 1
    next(iterator)
    ledger.done_handing(iterator)
    assert ledger.pending() == {('t', 0): 12, ('t', 1): 22}
    assert ledger.unhanded() == 0


def test_what_is_taken_back_is_never_handed_nor_committed():
    ledger = offsets.OffsetLedger('t')
    chunk = _chunk(*[('t', 0, offset) for offset in range(5)])
    iterator = ledger.handing(chunk)
    assert [next(iterator).offset() for _ in range(2)] == [0, 1]
    rest = ledger.take_back()
    assert [m.offset() for m in rest] == [2, 3, 4]
    # The reading loop finds its iterator at its end.
    assert list(iterator) == []
    ledger.done_handing(iterator)
    assert ledger.pending() == {('t', 0): 2}
    assert ledger.take_back() == []
    # The rest comes again in the next chunk.
    again = ledger.handing(rest)
    next(again)
    assert ledger.pending() == {('t', 0): 3}


def test_two_topics_with_the_same_partition_number_in_one_chunk():
    ledger = offsets.OffsetLedger(None)
    iterator = ledger.handing(_chunk(('a', 0, 5), ('b', 0, 9), ('a', 0, 6)))
    next(iterator)
    next(iterator)
    assert ledger.pending() == {('a', 0): 6, ('b', 0): 10}


def test_a_forgotten_partition_is_not_brought_back_by_its_chunk():
    ledger = offsets.OffsetLedger('t')
    iterator = ledger.handing(_chunk(('t', 0, 1), ('t', 1, 1), ('t', 0, 2)))
    next(iterator)
    ledger.forget_handed([('t', 0)])
    next(iterator)
    assert ledger.pending() == {('t', 1): 2}
    next(iterator)
    assert ledger.pending() == {('t', 0): 3, ('t', 1): 2}


def test_taking_back_from_another_thread_never_counts_one_not_handed():
    # The reading thread hands as fast as it can while another takes the
    # rest back, thread switches as often as Python allows: what the ledger
    # says was handed is exactly what the reader got, never one more.
    ledger = offsets.OffsetLedger('t')
    size = 20000
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(20):
            _hand_and_take_back(ledger, size)
    finally:
        sys.setswitchinterval(switch)


def _hand_and_take_back(ledger, size):
    chunk = _chunk(*[('t', 0, offset) for offset in range(size)])
    iterator = ledger.handing(chunk)
    got = []
    started = threading.Event()

    def read():
        for message in iterator:
            got.append(message)
            if len(got) == 1:
                started.set()
    reader = threading.Thread(target=read)
    reader.start()
    assert started.wait(10)
    rest = ledger.take_back()
    reader.join()
    ledger.done_handing(iterator)
    handed = len(got)
    assert handed >= 1
    assert handed + len(rest) == size
    assert [m.offset() for m in got + rest] == list(range(size))
    assert ledger.pending() == {('t', 0): handed}
    ledger.forget([('t', 0)])
