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

"""The broker tool the test suite stands on."""

import threading
import uuid

import pytest

from tools import kafka_broker

pytestmark = pytest.mark.integration


def test_storage_formats_with_a_cluster_id_that_begins_with_a_dash(
        tmp_path):
    # One random id in 64 begins with '-'; the storage tool must not take
    # it for an option.
    while True:
        value = str(uuid.uuid4())
        cluster_id = kafka_broker._kraft_cluster_id(value)
        if cluster_id.startswith('-'):
            break
    cluster = kafka_broker.KafkaCluster(1, workdir=tmp_path)
    node = cluster.node(1)
    node.format(cluster_id)
    meta = (node.dir / 'data' / 'meta.properties').read_text()
    assert 'cluster.id=%s\n' % cluster_id in meta


def test_a_broker_restarted_from_a_helper_thread_outlives_it(
        controllable_kafka):
    node = controllable_kafka.nodes[0]
    node.kill()
    helper = threading.Thread(target=node.start)
    helper.start()
    helper.join(60)
    # The helper thread is gone; the broker must still come up and stay.
    controllable_kafka.wait_ready()
    assert node.running()
