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

"""Fixtures: a real Apache Kafka, unique topics, librdkafka's mock cluster.

The session's broker is started here (``tools/kafka_broker.py``) unless
``KAFKA_BOOTSTRAP_SERVERS`` names an existing one; tests that stop or kill
the broker then skip, since they cannot control it. It is Kafka 4.3.1 in
KRaft mode, or, with ``--kafka-version 3.9.1``, the old world: Kafka 3.9.1
in ZooKeeper mode, as older Monasca deployments run it (``-m compat``
selects the tests that run there too).

``old_world`` is that old world for the upgrade tests, beside the session's
broker when that one is not it, and ``legacy_python`` the python of a venv
holding the old client (monasca-common 3.8.0).
"""

import os
import uuid

import confluent_kafka
from confluent_kafka import admin as kafka_admin
import pytest

from tests import waiting
from tools import kafka_broker
from tools import legacy_client

_started_clusters = []

#: The old world's broker. Inter-broker protocol 2.8 lets a topic keep the
#: message format 0.9.0 (``OLD_CLIENT_TOPIC``) that the old client's
#: Fetch v0 decoder reads whole; every other topic keeps format v2, which
#: idempotent producers need.
OLD_WORLD_VERSION = '3.9.1'
OLD_WORLD_BROKER = {'inter.broker.protocol.version': '2.8',
                    'log.message.format.version': '2.8'}
OLD_CLIENT_TOPIC = {'message.format.version': '0.9.0'}


def pytest_addoption(parser):
    parser.addoption(
        '--kafka-version', default=kafka_broker.KAFKA_VERSION,
        help='the Apache Kafka release the session broker runs; a 3.x one '
             'runs in ZooKeeper mode, as the old world (default %(default)s)')


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'integration: runs against a real Apache Kafka broker')
    config.addinivalue_line(
        'markers', 'faults: stops, kills or isolates brokers')
    config.addinivalue_line(
        'markers', 'compat: core behaviour, run again on the old world '
                   '(--kafka-version 3.9.1 -m compat)')
    config.addinivalue_line(
        'markers', 'upgrade: the old client, ZooKeeper and the migration')
    config.addinivalue_line(
        'markers', 'core: the core integration set, run again on each '
                   "OpenStack release's pins (tox -e release-*)")


def _start_cluster(version):
    old = int(version.split('.')[0]) < 4
    cluster = kafka_broker.KafkaCluster(
        1, version=version, zookeeper=old,
        broker_properties=OLD_WORLD_BROKER if old else None)
    _started_clusters.append(cluster)
    cluster.start()
    return cluster


class ExternalKafka:
    """A broker this run did not start and so cannot stop or kill."""

    def __init__(self, servers):
        self.bootstrap_servers = servers
        self.nodes = []

    def log_tail(self, lines=60):
        return '(external broker: no log here)'


@pytest.fixture(scope='session')
def kafka(request):
    servers = os.environ.get('KAFKA_BOOTSTRAP_SERVERS')
    if servers:
        yield ExternalKafka(servers)
        return
    cluster = _start_cluster(request.config.getoption('--kafka-version'))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def broker_version(kafka):
    """(major, minor) of the session broker; None for one not started here."""
    version = getattr(kafka, 'version', None)
    return None if version is None else tuple(
        int(x) for x in version.split('.')[:2])


@pytest.fixture(scope='session')
def old_world(request):
    """Kafka 3.9.1 in ZooKeeper mode, with its ZooKeeper.

    The session's broker when it is that, else one started beside it.
    """
    if request.config.getoption('--kafka-version') == OLD_WORLD_VERSION \
            and not os.environ.get('KAFKA_BOOTSTRAP_SERVERS'):
        yield request.getfixturevalue('kafka')
        return
    cluster = _start_cluster(OLD_WORLD_VERSION)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope='session')
def legacy_python():
    """The python of a venv holding the old client (monasca-common 3.8.0)."""
    return str(legacy_client.install())


@pytest.fixture
def controllable_kafka(kafka):
    """The session broker, when this run controls its process."""
    if not kafka.nodes:
        pytest.skip('the broker in KAFKA_BOOTSTRAP_SERVERS is not ours to '
                    'stop or kill')
    yield kafka
    # Whatever a test did to it, the next test gets a running broker.
    for node in kafka.nodes:
        node.unpause()
        if not node.running():
            node.start()
    kafka.wait_ready()


@pytest.fixture
def bootstrap_servers(kafka):
    return kafka.bootstrap_servers


@pytest.fixture(scope='session')
def admin(kafka):
    return kafka_admin.AdminClient(
        {'bootstrap.servers': kafka.bootstrap_servers})


def create_topic(admin_client, name=None, partitions=1, replication=1,
                 config=None, timeout=30):
    name = name or 'test-' + uuid.uuid4().hex[:12]
    futures = admin_client.create_topics([kafka_admin.NewTopic(
        name, num_partitions=partitions, replication_factor=replication,
        config=config or {})], operation_timeout=timeout)
    futures[name].result(timeout)
    # Leaders are elected asynchronously: wait until every partition has
    # one, so a test's first produce does not race the election.
    waiting.until(lambda: _has_leaders(admin_client, name, partitions),
                  timeout, 'leaders for topic %s' % name)
    return name


def _has_leaders(admin_client, name, partitions):
    md = admin_client.list_topics(name, timeout=5).topics.get(name)
    return (md is not None and md.error is None and
            len(md.partitions) == partitions and
            all(p.leader >= 0 for p in md.partitions.values()))


@pytest.fixture
def make_topic(admin):
    return lambda **kw: create_topic(admin, **kw)


@pytest.fixture
def topic(make_topic):
    return make_topic()


@pytest.fixture
def group_id():
    return 'group-' + uuid.uuid4().hex[:12]


@pytest.fixture(scope='session')
def mock_cluster():
    """librdkafka's in-process mock cluster; its bootstrap address.

    The holder client owns the cluster; every other client points at it.
    """
    holder = confluent_kafka.Producer({'test.mock.num.brokers': 1,
                                       'log_level': 0})
    brokers = holder.list_topics(timeout=10).brokers
    servers = ','.join('%s:%d' % (b.host, b.port) for b in brokers.values())
    yield servers
    holder.flush(1)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if exitstatus != 0:
        for cluster in _started_clusters:
            terminalreporter.section('Kafka broker log (tail)')
            terminalreporter.write_line(cluster.log_tail(80))


@pytest.fixture
def unreachable_servers():
    """An address where nothing listens: connections are refused at once."""
    return '127.0.0.1:%d' % kafka_broker.free_port()
