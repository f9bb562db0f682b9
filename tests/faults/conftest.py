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

"""The broker behind a fault-injecting proxy, shared by the fault tests."""

import os

import pytest

from tests import conftest
from tests.faults import proxy as kafka_proxy
from tools import kafka_broker


@pytest.fixture(scope='session')
def proxied():
    """A broker advertising a proxy's address: all traffic crosses it."""
    if os.environ.get('KAFKA_BOOTSTRAP_SERVERS'):
        pytest.skip('the broker must advertise the test proxy')
    cluster = kafka_broker.KafkaCluster(1, heap='384m')
    node = cluster.nodes[0]
    proxy = kafka_proxy.KafkaProxy(node.port)
    cluster.advertised[node.node_id] = proxy.address
    conftest._started_clusters.append(cluster)
    cluster.start()
    yield cluster, proxy
    proxy.close()
    cluster.stop()
