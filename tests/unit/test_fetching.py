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

"""The fetch watch: which assigned partitions are silent, which stuck."""

import time
import uuid

import pytest

from monasca_common.confluent_kafka import fetching
from monasca_common import kafka
from tests import waiting

A, B, C = ('t', 0), ('t', 1), ('u', 0)


def test_a_partition_is_due_only_after_its_grace():
    watch = fetching.FetchWatch(grace=15)
    watch.assigned([A, B], now=100)
    assert watch.due(now=114.9) == set()
    assert watch.due(now=115) == {A, B}


def test_a_message_restarts_the_clock():
    watch = fetching.FetchWatch(grace=15)
    watch.assigned([A, B], now=100)
    watch.reset([A, C], now=110)  # C was never assigned: not watched
    assert watch.due(now=115) == {B}
    assert watch.due(now=125) == {A, B}
    assert C not in watch.due(now=1000)


def test_received_counts_that_move_restart_the_clock():
    watch = fetching.FetchWatch(grace=15)
    watch.assigned([A, B], now=100)
    watch.progress({A: 10, B: 7}, now=101)  # first counts: both moved
    watch.progress({A: 10, B: 9, C: 3}, now=110)  # only B moved
    assert watch.due(now=116) == {A}
    assert watch.due(now=125) == {A, B}
    watch.forget([A])
    watch.assigned([A], now=130)
    watch.progress({A: 10}, now=131)  # back: its count is news again
    assert watch.due(now=145) == {B}


def test_assigning_again_keeps_the_first_clock():
    # A rebalance that hands the same partition again does not hide it.
    watch = fetching.FetchWatch(grace=15)
    watch.assigned([A], now=100)
    watch.assigned([A, B], now=110)
    assert watch.due(now=115) == {A}


def test_revoked_or_lost_partitions_are_forgotten():
    watch = fetching.FetchWatch(grace=15)
    watch.assigned([A, B], now=100)
    watch.forget({A})
    assert watch.due(now=200) == {B}


def stats(**fields):
    state = {'fetch_state': 'active', 'fetchq_cnt': 0, 'next_offset': 5700,
             'hi_offset': 9003}
    state.update(fields)
    return state


def test_an_active_fetch_below_the_high_watermark_with_nothing_queued():
    # As seen after a broker restart: active, 3303 behind, nothing fetched.
    assert fetching.stuck(stats())
    assert fetching.stuck(stats(next_offset=0, hi_offset=10997))


def test_a_fetcher_never_started_is_stuck():
    assert fetching.stuck(stats(fetch_state='none'))
    assert fetching.stuck(stats(fetch_state='stopped'))


def test_idle_busy_or_still_starting_fetches_are_not_stuck():
    assert not fetching.stuck(stats(next_offset=9003))  # at the end
    assert not fetching.stuck(stats(fetchq_cnt=12))  # messages queued
    assert not fetching.stuck(stats(fetch_state='offset-query'))
    assert not fetching.stuck(stats(fetch_state='offset-wait'))
    assert not fetching.stuck(stats(hi_offset=-1001))  # not known yet
    assert not fetching.stuck(stats(next_offset=-1001))
    assert not fetching.stuck({})  # not in the statistics at all


@pytest.mark.parametrize('strategy', ['cooperative-sticky', 'range'])
def test_a_stuck_partition_is_assigned_again_and_read_on(
        mock_cluster, strategy, monkeypatch, caplog):
    # Incremental re-assignment under the cooperative protocol; the whole
    # assignment, positions kept, under the eager one.
    topic = 'stuck-' + uuid.uuid4().hex[:8]
    with kafka.KafkaProducer(mock_cluster) as producer:
        producer.publish(topic, ['a%d' % i for i in range(100)], key='k',
                         sync=True, timeout=30)
    consumer = kafka.KafkaConsumer(
        mock_cluster, 'g-' + uuid.uuid4().hex[:8], topic, **{
            'partition.assignment.strategy': strategy,
            'statistics.interval.ms': 200})
    try:
        taken = waiting.take(consumer, 100)
        consumer.commit(raise_errors=True)
        member = consumer._member
        key = (topic, taken[0].partition())
        looked_at = []

        def stuck(state):
            looked_at.append(state)
            return True

        # Silent long enough, and stuck by its statistics.
        monkeypatch.setattr(fetching, 'stuck', stuck)
        member.call(lambda c: member.flow.fetch_watch._since.__setitem__(
            key, time.monotonic() - 100), 10)
        waiting.until(lambda: 'assigning them again' in caplog.text, 30,
                      'the stuck partition assigned again')
        monkeypatch.undo()
        assert looked_at
        assert sorted(tp.partition for tp in consumer.assignment()) == \
            [0, 1, 2, 3]
        with kafka.KafkaProducer(mock_cluster) as producer:
            producer.publish(topic, ['b%d' % i for i in range(100)],
                             key='k', sync=True, timeout=30)
        again = [m.value() for m in waiting.take(consumer, 100, 30)]
        assert again == [b'b%d' % i for i in range(100)]
    finally:
        consumer.close()
