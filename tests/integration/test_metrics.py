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

"""Client metrics against a real Apache Kafka: they move with traffic."""

import threading
import time

import confluent_kafka
from oslo_config import cfg
import pytest

from monasca_common.confluent_kafka import opts
from monasca_common.confluent_kafka import reporting
from monasca_common import kafka
from monasca_common.kafka import client_factory
from tests import statsd_listener
from tests import waiting

pytestmark = pytest.mark.integration

# What doc/source/metrics.rst documents, as sent.
PRODUCER_NAMES = {'kafka.client.producer.' + name for name in (
    'queue.messages', 'queue.bytes', 'inflight.messages',
    'published.messages', 'delivered.messages', 'failed.messages',
    'retried.requests', 'broker.rtt.p50_ms', 'broker.rtt.p99_ms')}
CONSUMER_NAMES = {'kafka.client.consumer.' + name for name in (
    'consumed.messages', 'buffered.messages', 'commits.done',
    'commits.failed', 'undeliverable.outputs', 'rebalances',
    'assigned.partitions',
    'last_commit.age_seconds', 'lag.messages', 'end.offset',
    'committed.offset', 'broker.rtt.p50_ms', 'broker.rtt.p99_ms')}


def fill(servers, topic, per_partition):
    """``per_partition[p]`` messages into partition p."""
    producer = confluent_kafka.Producer({'bootstrap.servers': servers})
    for partition, count in enumerate(per_partition):
        for i in range(count):
            producer.produce(topic, b'm%d' % i, partition=partition)
    assert producer.flush(30) == 0


def test_producer_queue_rises_then_drains_and_counts_every_delivery(
        bootstrap_servers, topic):
    with kafka.KafkaProducer(bootstrap_servers,
                             **{'statistics.interval.ms': 200}) as producer:
        before = producer.metrics()
        assert before['queue.messages'] == 0
        assert before.statistics_age is None or before['queue.bytes'] == 0
        producer.publish(topic, [b'x' * 100] * 50000)
        queued = producer.metrics()['queue.messages']
        assert 0 < queued <= 50000
        assert producer.flush(60) == 0

        seen = []

        def settled():
            snapshot = producer.metrics()
            seen[:] = [snapshot]
            return (snapshot.statistics_age is not None and
                    snapshot.statistics_age < 0.2 and
                    snapshot['queue.bytes'] == 0 and snapshot.brokers and
                    snapshot)
        try:
            after = waiting.until(settled, 15, 'statistics after the flush')
        except waiting.Timeout:
            raise AssertionError('no fresh statistics of an empty queue '
                                 'after the flush; the last snapshot: %s'
                                 % (seen[0].as_dict(),)) from None
    assert after['queue.messages'] == 0
    assert after['inflight.messages'] == 0
    assert after['published.messages'] == after['delivered.messages'] \
        == 50000
    assert after['failed.messages'] == 0
    (broker, figures), = after.brokers.items()
    assert broker.startswith(bootstrap_servers.split(',')[0])
    assert 0 < figures['rtt.p50_ms'] <= figures['rtt.p99_ms'] < 10000


def test_producer_counts_failures_without_statistics(unreachable_servers):
    producer = kafka.KafkaProducer(
        unreachable_servers, unavailable_after=0,
        **{'message.timeout.ms': 500})
    try:
        producer.publish('metrics', [b'a', b'b', b'c'])
        assert producer.flush(10) == 0
        snapshot = producer.metrics()
    finally:
        producer.close(1)
    assert snapshot.values == {
        'queue.messages': 0, 'published.messages': 3,
        'delivered.messages': 0, 'failed.messages': 3}
    assert snapshot.statistics_age is None


@pytest.mark.parametrize('statistics_ms', [200, 0],
                         ids=['from-statistics', 'from-kafka'])
@pytest.mark.compat
def test_consumer_lag_is_end_minus_committed(bootstrap_servers, make_topic,
                                             group_id, statistics_ms):
    topic = make_topic(partitions=3)
    fill(bootstrap_servers, topic, [100, 100, 100])
    consumer = kafka.KafkaConsumer(
        bootstrap_servers, group_id, topic, client_id='lag-test',
        **{'statistics.interval.ms': statistics_ms})
    admin = kafka.KafkaAdmin(bootstrap_servers)
    try:
        waiting.take(consumer, 180, timeout=60)
        assert len(consumer.commit()) >= 1
        rows = admin.group_lag(group_id, topic)
        assert sum(row.lag for row in rows) == 120

        expected = {(topic, row.partition): dict(
            {'end.offset': row.end, 'lag.messages': row.lag},
            **({} if row.committed is None else
               {'committed.offset': row.committed})) for row in rows}

        def agrees():
            snapshot = consumer.metrics()
            return snapshot.partitions == expected and snapshot
        snapshot = waiting.until(agrees, 15, 'lag as Kafka has it')
        assert snapshot['lag.messages'] == 120
        assert snapshot['consumed.messages'] + \
            snapshot['buffered.messages'] <= 300
        assert snapshot['consumed.messages'] == 180
        assert snapshot['commits.done'] == 1
        assert snapshot['commits.failed'] == 0
        assert snapshot['rebalances'] >= 1
        assert snapshot['assigned.partitions'] == 3
        assert 0 <= snapshot['last_commit.age_seconds'] < 30
        assert snapshot.client_id == 'lag-test'
        if statistics_ms:
            assert snapshot.statistics_age is not None
        else:
            assert snapshot.statistics_age is None

        # Reading the rest and committing it brings the lag to 0.
        waiting.take(consumer, 120, timeout=60)
        consumer.commit()
        waiting.until(lambda: consumer.metrics().get('lag.messages') == 0, 15,
                      'no lag after the last commit')
    finally:
        admin.close()
        consumer.close()


def test_metrics_callers_never_hold_up_reading(bootstrap_servers,
                                               make_topic, group_id):
    # Eight threads ask for the metrics every 0.2 s, statistics off, so the
    # lag must come from Kafka: a busy reporter, several health endpoints.
    total = 20000

    def read_all(hammer):
        topic = make_topic(partitions=4)
        fill(bootstrap_servers, topic, [1])
        consumer = kafka.KafkaConsumer(
            bootstrap_servers, '%s-%d' % (group_id, hammer), topic,
            **{'statistics.interval.ms': 0})
        stop = threading.Event()
        answers = []

        def ask():
            while not stop.is_set():
                answers.append(consumer.metrics(timeout=1.0))
                stop.wait(0.2)
        askers = [threading.Thread(target=ask) for _ in range(hammer)]
        try:
            waiting.take(consumer, 1, timeout=60)
            member = consumer._member
            submitted = []
            submit = member.handle.submit_answering
            member.handle.submit_answering = \
                lambda job: submitted.append(job) or submit(job)
            for asker in askers:
                asker.start()
            started = time.monotonic()
            filler = threading.Thread(target=fill, args=(
                bootstrap_servers, topic, [total // 4] * 4))
            filler.start()
            read = 0
            with waiting.stop_after(consumer, 120):
                for _ in consumer:
                    read += 1
                    if read % 100 == 0:
                        time.sleep(0.01)  # the service writes a batch
                    if read == total:
                        break
            took = time.monotonic() - started
            filler.join(30)
            asked = consumer._lag.asked
        finally:
            stop.set()
            for asker in askers:
                asker.join(10)
            consumer.close()
        return read, took, submitted, answers, asked

    quiet_read, quiet, _, _, _ = read_all(0)
    read, hammered, submitted, answers, asked = read_all(8)
    print('\n%d messages published and read in %.2f s alone, %.2f s with 8 '
          'threads asking for metrics (%d answers, %d questions to Kafka)'
          % (total, quiet, hammered, len(answers), asked))
    assert quiet_read == read == total
    # Nothing of the metrics ran on the member thread; one question served
    # many callers.
    assert submitted == []
    assert any('lag.messages' in a.values for a in answers)
    assert asked <= 2 + hammered / 5.0
    assert hammered <= 1.2 * quiet + 1.0


def test_metrics_with_no_time_to_ask_answers_at_once(bootstrap_servers,
                                                     topic, group_id):
    fill(bootstrap_servers, topic, [10])
    consumer = kafka.KafkaConsumer(bootstrap_servers, group_id, topic,
                                   **{'statistics.interval.ms': 0})
    try:
        waiting.take(consumer, 10)
        assert 'lag.messages' not in consumer.metrics(timeout=0).values
        assert consumer.metrics()['lag.messages'] == 10  # asked
        assert consumer.metrics(timeout=0)['lag.messages'] == 10  # known
    finally:
        consumer.close()


def test_consumer_counters_before_it_reads(bootstrap_servers, topic,
                                           group_id):
    with kafka.KafkaConsumer(bootstrap_servers, group_id,
                             topic) as consumer:
        snapshot = consumer.metrics()
    assert snapshot.values == {
        'consumed.messages': 0, 'buffered.messages': 0, 'commits.done': 0,
        'commits.failed': 0, 'undeliverable.outputs': 0, 'rebalances': 0,
        'assigned.partitions': 0, 'lag.messages': 0}


def test_statsd_listener_gets_the_documented_names(bootstrap_servers, topic,
                                                   group_id):
    with statsd_listener.Listener() as listener:
        reporter = kafka.StatsdReporter(listener.address, interval=0.3,
                                        service='monasca-test')
        producer = kafka.KafkaProducer(
            bootstrap_servers, metrics_reporter=reporter,
            **{'statistics.interval.ms': 200, 'client.id': 'api-1'})
        consumer = kafka.KafkaConsumer(
            bootstrap_servers, group_id, topic, client_id='persister-1',
            metrics_reporter=reporter, **{'statistics.interval.ms': 200})
        try:
            producer.publish(topic, [b'm'] * 1000, sync=True, timeout=30)
            waiting.take(consumer, 1000, timeout=60)
            consumer.commit()
            # Rebalance, commit and fetch answers give every broker
            # figure within a few reports.
            documented = PRODUCER_NAMES | CONSUMER_NAMES
            try:
                waiting.until(lambda: documented <= listener.names(), 30,
                              'every documented name')
            except waiting.Timeout:
                raise AssertionError('never reported: %s' % sorted(
                    documented - listener.names())) from None
            waiting.until(
                lambda: listener.latest(
                    'kafka.client.consumer.lag.messages', topic=topic,
                    partition='0', client_id='persister-1',
                    service='monasca-test') == 0 and
                listener.latest(
                    'kafka.client.producer.delivered.messages',
                    client_id='api-1', service='monasca-test') == 1000, 30,
                'the figures after the traffic')
        finally:
            producer.close()
            consumer.close()
            reporter.close()
    # Closed clients are not reported any more.
    assert reporter.report() == 0


@pytest.fixture
def conf():
    opts.register_opts(cfg.CONF)
    yield cfg.CONF
    for name in ('statsd_address', 'service', 'interval'):
        cfg.CONF.clear_override(name, 'kafka_metrics')
    if reporting._shared is not None:
        reporting._shared.close()
    reporting._shared = reporting._shared_settings = None


def test_services_report_through_the_options_alone(bootstrap_servers,
                                                   topic, group_id, conf):
    # What an operator sets in the service's configuration file; the
    # service builds its clients through the factory as ever.
    with statsd_listener.Listener() as listener:
        conf.set_override('statsd_address', listener.address,
                          'kafka_metrics')
        conf.set_override('service', 'monasca-persister', 'kafka_metrics')
        conf.set_override('interval', 1.0, 'kafka_metrics')
        consumer = client_factory.get_kafka_consumer(
            bootstrap_servers, group_id, topic, client_id='persister-7')
        producer = client_factory.get_kafka_producer(bootstrap_servers)
        try:
            producer.publish(topic, [b'm'] * 10, sync=True, timeout=30)
            waiting.take(consumer, 10, timeout=60)
            consumer.commit()
            waiting.until(
                lambda: listener.latest(
                    'kafka.client.consumer.consumed.messages',
                    client_id='persister-7',
                    service='monasca-persister') == 10 and
                listener.latest(
                    'kafka.client.producer.delivered.messages',
                    service='monasca-persister') == 10, 30,
                'metrics of both clients')
        finally:
            producer.close()
            consumer.close()
