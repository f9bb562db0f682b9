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

import time

import pytest

from monasca_common.confluent_kafka import offsets
from monasca_common.confluent_kafka import published


class Message:
    def __init__(self, topic, partition, offset):
        self._t, self._p, self._o = topic, partition, offset

    def topic(self):
        return self._t

    def partition(self):
        return self._p

    def offset(self):
        return self._o


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


def test_barrier_costs_nothing_without_producers():
    started = time.monotonic()
    assert published.await_delivery(time.monotonic() + 10) == 0
    assert time.monotonic() - started < 1
