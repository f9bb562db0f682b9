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

"""A 3-broker KRaft cluster: the partition leader dies mid-stream."""

import collections
import os

from confluent_kafka import admin as kafka_admin
import pytest

from monasca_common import kafka
from tests import conftest
from tests import waiting
from tools import kafka_broker

pytestmark = [pytest.mark.integration, pytest.mark.faults]


@pytest.fixture(scope='module')
def cluster():
    if os.environ.get('KAFKA_BOOTSTRAP_SERVERS'):
        pytest.skip('needs brokers this run starts and kills')
    nodes = kafka_broker.KafkaCluster(3, heap='384m')
    conftest._started_clusters.append(nodes)
    nodes.start()
    yield nodes
    nodes.stop()


def test_leader_sigkill_while_producing_loses_and_duplicates_nothing(
        cluster):
    client = kafka_admin.AdminClient(
        {'bootstrap.servers': cluster.bootstrap_servers})
    topic = conftest.create_topic(client, partitions=1, replication=3,
                                  config={'min.insync.replicas': '2'})
    leader = client.list_topics(topic, timeout=10).topics[
        topic].partitions[0].leader
    payloads = ['id-%06d' % i for i in range(20000)]
    results = []
    with kafka.KafkaProducer(cluster.bootstrap_servers) as producer:
        for i in range(0, len(payloads), 500):
            results.append(producer.publish(topic, payloads[i:i + 500]))
            if i == 10000:
                cluster.node(leader).kill()
        assert producer.flush(120) == 0
    failed = [f.value for r in results for f in r.failed]
    # Every message was either delivered or reported, never silently lost.
    assert sum(r.delivered for r in results) + len(failed) == len(payloads)
    assert failed == [], 'retried to success: nothing should fail'

    stored = waiting.read_topic(cluster.bootstrap_servers, topic,
                                expected=len(payloads), timeout=120)
    counts = collections.Counter(m.value().decode() for m in stored)
    assert set(counts) == set(payloads), 'lost %d' % (
        len(set(payloads) - set(counts)))
    assert max(counts.values()) == 1, 'duplicated %d' % sum(
        1 for c in counts.values() if c > 1)
    new_leader = client.list_topics(topic, timeout=10).topics[
        topic].partitions[0].leader
    assert new_leader != leader


def test_processor_stays_exactly_once_through_a_leader_kill(cluster):
    from tests.integration import test_transactions as copying
    for node in cluster.nodes:
        node.start()  # the test before left one dead
    cluster.wait_ready()
    servers = cluster.bootstrap_servers
    client = kafka_admin.AdminClient({'bootstrap.servers': servers})
    replicated = {'min.insync.replicas': '2'}
    source = conftest.create_topic(client, partitions=3, replication=3,
                                   config=replicated)
    output = conftest.create_topic(client, partitions=1, replication=3,
                                   config=replicated)
    count = 20000
    copying.fill(servers, source, count, 3)
    processor = kafka.Processor(
        servers, 'group-' + source, source, copying.copy_transform(output),
        'leader-kill', batch_size=100, batch_timeout=0.2,
        consumer_config={'session.timeout.ms': 6000})
    thread, outcome = copying.run_in_thread(processor)
    try:
        waiting.until(lambda: processor.counts['published'] >= count // 4,
                      120, 'a quarter copied')
        leader = client.list_topics(output, timeout=10).topics[
            output].partitions[0].leader
        at_kill = processor.counts['published']
        cluster.node(leader).kill()
        counts = copying.copies(servers, output, count, timeout=240)
    finally:
        processor.stop()
        thread.join(60)
        processor.close()
    assert 'error' not in outcome, outcome
    assert at_kill < count, 'the kill came too late to count'
    copying.assert_exactly_once(counts, count)
