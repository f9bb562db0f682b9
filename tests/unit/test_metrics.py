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

"""Snapshots from counters and librdkafka statistics; the statsd reporter."""

import json
import logging
import os
import signal

from oslo_config import cfg
import pytest

from monasca_common.confluent_kafka import errors
from monasca_common.confluent_kafka import metrics
from monasca_common.confluent_kafka import opts
from monasca_common.confluent_kafka import reporting
from tests import statsd_listener
from tests import waiting

# The parts of a librdkafka statistics document the snapshots read, as
# librdkafka 2.x writes them (round trips in microseconds).
STATISTICS = {
    'name': 'rdkafka#producer-1', 'client_id': 'api', 'type': 'producer',
    'msg_cnt': 12, 'msg_size': 3400,
    'brokers': {
        '127.0.0.1:9092/bootstrap': {
            'nodeid': -1, 'source': 'configured', 'waitresp_msg_cnt': 99,
            'txretries': 99, 'rtt': {'cnt': 3, 'p50': 9, 'p99': 9}},
        'GroupCoordinator': {
            'nodeid': 1, 'source': 'logical', 'waitresp_msg_cnt': 99,
            'txretries': 99, 'rtt': {'cnt': 3, 'p50': 9, 'p99': 9}},
        '127.0.0.1:9092/1': {
            'nodeid': 1, 'source': 'learned', 'waitresp_msg_cnt': 7,
            'txretries': 2,
            'rtt': {'cnt': 40, 'p50': 1500, 'p99': 12000},
            'throttle': {'cnt': 40, 'avg': 0, 'max': 5}},
        '127.0.0.1:9093/2': {
            'nodeid': 2, 'source': 'learned', 'waitresp_msg_cnt': 1,
            'txretries': 1, 'rtt': {'cnt': 0, 'p50': 0, 'p99': 0},
            'throttle': {'cnt': 0}},
    },
    'topics': {
        'metrics': {'partitions': {
            '-1': {'partition': -1, 'hi_offset': -1001},
            '0': {'partition': 0, 'lo_offset': 10, 'hi_offset': 110,
                  'committed_offset': 60, 'rxmsgs': 50},
            '1': {'partition': 1, 'lo_offset': 5, 'hi_offset': 25,
                  'committed_offset': -1001, 'rxmsgs': 0},
            '2': {'partition': 2, 'lo_offset': 0, 'hi_offset': 7,
                  'committed_offset': 7},
        }},
    },
}


def statistics(document=None):
    found = metrics.Statistics()
    assert found.update(json.dumps(STATISTICS if document is None
                                   else document)) is not None
    return found


COUNTS = {'queued': 100, 'delivered': 80, 'failed': 8, 'pending': 12}


def test_producer_counters_are_there_without_statistics():
    snapshot = metrics.producer_snapshot('api', COUNTS, metrics.Statistics())
    assert snapshot.values == {
        'queue.messages': 12, 'published.messages': 100,
        'delivered.messages': 80, 'failed.messages': 8}
    assert snapshot.brokers == {} and snapshot.statistics_age is None


def test_producer_statistics_count_real_brokers_only():
    snapshot = metrics.producer_snapshot('api', COUNTS, statistics())
    assert snapshot['queue.bytes'] == 3400
    # The bootstrap and coordinator stand-ins would count twice.
    assert snapshot['inflight.messages'] == 8
    assert snapshot['retried.requests'] == 3
    assert snapshot.brokers == {'127.0.0.1:9092/1': {
        'rtt.p50_ms': 1.5, 'rtt.p99_ms': 12.0,
        'throttle.avg_ms': 0.0, 'throttle.max_ms': 5.0}}
    assert 0 <= snapshot.statistics_age < 5


def test_unreadable_statistics_keep_the_last_report():
    found = statistics()
    assert found.update('{"truncated') is None
    assert found.update('[1, 2]') is None
    assert found.document['client_id'] == 'api'


def test_statistics_partitions_leave_out_the_unassigned_one():
    assert sorted(metrics.partitions(STATISTICS)) == [
        ('metrics', 0), ('metrics', 1), ('metrics', 2)]
    assert metrics.partitions(None) == {}
    assert metrics.partitions({'topics': {'t': {'partitions': {
        'x': {}, '3': 'not a dict'}}}}) == {}


@pytest.mark.parametrize('end, committed, low, expected', [
    (110, 60, 10, 50),      # end minus committed
    (25, -1001, 5, 20),     # nothing committed: all Kafka holds
    (25, None, None, None),  # nothing committed, no low offset: unknown
    (-1001, 3, 0, None),    # end unknown
    (7, 7, 0, 0),
    (7, 9, 0, 0),           # committed ahead of a stale end
    (100, 5, 20, 80),       # committed, then deleted by retention
    (100, 5, None, 95),
])
def test_lag(end, committed, low, expected):
    assert metrics.lag(end, committed, low) == expected


def test_consumer_lag_per_assigned_partition_and_in_all():
    counts = {'consumed': 500, 'buffered': 20, 'commits.done': 3,
              'commits.failed': 1, 'undeliverable': 1, 'rebalances': 2,
              'assigned': 2, 'last_commit_age': 1.5}
    offsets = metrics.offsets_from_statistics(
        STATISTICS, {('metrics', 0), ('metrics', 1)})
    assert offsets == {('metrics', 0): (10, 110, 60),
                       ('metrics', 1): (5, 25, -1001)}
    snapshot = metrics.consumer_snapshot('persister', counts, offsets,
                                         statistics())
    assert snapshot['lag.messages'] == 70
    assert snapshot.partitions == {
        ('metrics', 0): {'end.offset': 110, 'committed.offset': 60,
                         'lag.messages': 50},
        ('metrics', 1): {'end.offset': 25, 'lag.messages': 20}}
    assert snapshot['last_commit.age_seconds'] == 1.5
    assert snapshot['commits.failed'] == 1
    assert snapshot['undeliverable.outputs'] == 1


def test_no_total_lag_while_a_partition_is_unknown():
    counts = {'consumed': 0, 'buffered': 0, 'commits.done': 0,
              'commits.failed': 0, 'rebalances': 1, 'assigned': 2}
    partial = metrics.consumer_snapshot(
        'persister', counts, {('metrics', 0): (10, 110, 60)},
        metrics.Statistics())
    assert partial.partitions[('metrics', 0)]['lag.messages'] == 50
    assert 'lag.messages' not in partial.values
    unknown = metrics.consumer_snapshot(
        'persister', counts, {('metrics', 0): (-1, -1, -1),
                              ('metrics', 1): (-1, -1, -1)},
        metrics.Statistics())
    assert 'lag.messages' not in unknown.values


def test_samples_are_named_and_dimensioned_as_documented():
    snapshot = metrics.Snapshot(
        'consumer', 'persister', {'lag.messages': 5},
        {('metrics', 3): {'lag.messages': 5}},
        {'127.0.0.1:9092/1': {'rtt.p99_ms': 2.0}})
    assert list(snapshot.samples()) == [
        ('kafka.client.consumer.lag.messages', 5, {}),
        ('kafka.client.consumer.lag.messages', 5,
         {'topic': 'metrics', 'partition': '3'}),
        ('kafka.client.consumer.broker.rtt.p99_ms', 2.0,
         {'broker': '127.0.0.1:9092/1'})]
    assert json.loads(json.dumps(snapshot.as_dict()))['partitions'] == {
        'metrics[3]': {'lag.messages': 5}}


# -- the statsd reporter ----------------------------------------------------


class FakeClient:
    def __init__(self, snapshot):
        self.snapshot = snapshot

    def metrics(self):
        if isinstance(self.snapshot, Exception):
            raise self.snapshot
        return self.snapshot


@pytest.fixture
def listener():
    with statsd_listener.Listener() as found:
        yield found


def test_reporter_sends_what_the_monasca_agent_reads(listener):
    reporter = reporting.StatsdReporter(listener.address, interval=60,
                                        service='monasca-persister',
                                        dimensions={'region': 'r1'})
    client = FakeClient(metrics.consumer_snapshot(
        'persister-1', {'consumed': 9, 'buffered': 0, 'commits.done': 1,
                        'commits.failed': 0, 'rebalances': 1, 'assigned': 1},
        {('metrics', 0): (0, 12, 9)}, metrics.Statistics()))
    broken = FakeClient(RuntimeError('closed meanwhile'))
    reporter.add(client)
    reporter.add(broken)
    try:
        # 8 figures of the consumer, 3 of its partition; none of the
        # broken client.
        assert reporter.report() == 11
        waiting.until(lambda: len(listener.metrics) >= 11, 10,
                      'the datagrams')
        base = {'service': 'monasca-persister', 'client_id': 'persister-1',
                'region': 'r1'}
        assert ('kafka.client.consumer.lag.messages', 3.0, 'g',
                dict(base, topic='metrics', partition='0')) \
            in listener.metrics
        assert ('kafka.client.consumer.consumed.messages', 9.0, 'g',
                base) in listener.metrics
    finally:
        reporter.close()


def test_reporter_sends_every_interval_and_forgets_removed_clients(
        listener):
    reporter = reporting.StatsdReporter(listener.address, interval=0.2)
    client = FakeClient(metrics.producer_snapshot(
        'api', COUNTS, metrics.Statistics()))
    reporter.add(client)
    try:
        waiting.until(lambda: len(listener.datagrams) >= 3, 10,
                      'three reports')
        reporter.remove(client)
        assert reporter.report() == 0
    finally:
        reporter.close()


def test_reporter_with_no_listener_neither_raises_nor_floods(caplog):
    # A port nobody listens on: sends fail with ECONNREFUSED.
    with statsd_listener.Listener() as gone:
        address = gone.address
    reporter = reporting.StatsdReporter(address, interval=60)
    reporter.add(FakeClient(metrics.producer_snapshot(
        'api', COUNTS, metrics.Statistics())))
    try:
        with caplog.at_level(logging.INFO):
            for _ in range(20):
                reporter.report()
        lines = [r for r in caplog.records
                 if r.name.startswith('monascastatsd')]
        assert len(lines) <= 2
    finally:
        reporter.close()


@pytest.mark.parametrize('address', ['8125', 'host:', 'host:port',
                                     'host:70000', 'no-such-host.invalid:1'])
def test_reporter_refuses_a_bad_address(address):
    with pytest.raises(errors.ConfigurationError, match='statsd address'):
        reporting.StatsdReporter(address)


def test_reporter_refuses_a_bad_interval():
    with pytest.raises(errors.ConfigurationError, match='interval'):
        reporting.StatsdReporter('127.0.0.1:8125', interval=0)


@pytest.fixture
def conf():
    opts.register_opts(cfg.CONF)
    yield cfg.CONF
    cfg.CONF.clear_override('statsd_address', 'kafka_metrics')
    cfg.CONF.clear_override('service', 'kafka_metrics')
    reporting._shared = None
    reporting._shared_settings = None


def test_no_reporter_unless_configured(conf):
    assert reporting.resolve(None) is None


def test_options_configure_one_reporter_per_process(conf, listener):
    conf.set_override('statsd_address', listener.address, 'kafka_metrics')
    conf.set_override('service', 'monasca-api', 'kafka_metrics')
    first = reporting.resolve(None)
    assert first is reporting.resolve(None)
    assert first.dimensions['service'] == 'monasca-api'
    assert first.interval == 30.0
    given = reporting.StatsdReporter(listener.address)
    assert reporting.resolve(given) is given
    first.close()
    given.close()


def test_a_forked_child_reports_its_own_clients(listener):
    reporter = reporting.StatsdReporter(listener.address, interval=60)
    # Held weakly by the reporter: the test holds them.
    parent = FakeClient(metrics.producer_snapshot(
        'parent', COUNTS, metrics.Statistics()))
    child = FakeClient(metrics.producer_snapshot(
        'child', COUNTS, metrics.Statistics()))
    reporter.add(parent)
    # Held at the fork, as the reporter thread may hold them.
    reporter._lock.acquire()
    reporter._sending.acquire()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            reporter.add(child)
            code = 0 if reporter.report() == 4 else 2
        finally:
            os._exit(code)
    reporter._lock.release()
    reporter._sending.release()
    try:
        def exited():
            done, status = os.waitpid(pid, os.WNOHANG)
            return done and (status,)
        try:
            status, = waiting.until(exited, 10, 'the child to report')
        except waiting.Timeout:
            os.kill(pid, signal.SIGKILL)  # deadlocked on a held lock
            os.waitpid(pid, 0)
            raise
        assert os.WEXITSTATUS(status) == 0
        waiting.until(lambda: listener.latest(
            'kafka.client.producer.queue.messages', client_id='child')
            is not None, 10, "the child's report")
        assert listener.latest('kafka.client.producer.queue.messages',
                               client_id='parent') is None
    finally:
        reporter.close()
