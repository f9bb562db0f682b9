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

"""Kafka refuses a commit, as while the group rebalances.

The service commits after its last message and then waits for more that
do not come: monasca-notification between alarms. The offsets Kafka turned
away must reach it anyway, and nothing beyond what the service asked.
"""

import logging
import threading
import uuid

from confluent_kafka import admin as kafka_admin
import pytest

from monasca_common import kafka
from tests import conftest
from tests.faults import proxy as kafka_proxy
from tests import waiting

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def publish(servers, topic, payloads):
    with kafka.KafkaProducer(servers) as producer:
        producer.publish(topic, payloads, sync=True, timeout=60)


def test_a_refused_commit_is_sent_again_while_the_service_waits(
        proxied, caplog):
    cluster, proxy = proxied
    servers = proxy.address
    admin = kafka_admin.AdminClient({'bootstrap.servers': servers})
    topic = conftest.create_topic(admin, partitions=1)
    group = 'group-' + uuid.uuid4().hex[:12]
    consumer = kafka.KafkaConsumer(servers, group, topic)
    taken = []
    commits = []

    def service():
        # Take, and commit after the 5th and the 10th message only.
        for message in consumer:
            taken.append(message.offset())
            if message.offset() in (4, 9):
                commits.append(consumer.commit())

    def committed():
        return waiting.committed_offsets(servers, group, topic, [0])[0]

    reader = threading.Thread(target=service, daemon=True)
    caplog.set_level(logging.INFO, 'monasca_common')
    try:
        reader.start()
        publish(servers, topic, ['m%d' % i for i in range(5)])
        waiting.until(lambda: committed() == 5, 60, 'the first commit')
        # The second commit is refused twice: the service's own, then the
        # first time it is sent again.
        proxy.policy = kafka_proxy.Policy(refuse_commits=2)
        publish(servers, topic, ['m%d' % i for i in range(5, 10)])
        waiting.until(lambda: len(commits) == 2, 60, 'the second commit')
        assert commits[1] == []  # refused: nothing committed
        # More messages the service takes and does not commit (yet).
        publish(servers, topic, ['n%d' % i for i in range(5)])
        waiting.until(lambda: len(taken) == 15, 60, 'five more taken')
        waiting.until(lambda: committed() == 10, 30,
                      'the refused commit, sent again, in Kafka')
        assert proxy.policy.commits_refused == 2
        assert any('had turned away before' in r.getMessage()
                   for r in caplog.records)
        # Only what the service asked: not the five taken since.
        assert committed() == 10
        assert consumer.metrics().values['commits.done'] == 2
    finally:
        proxy.policy = kafka_proxy.Policy()
        consumer.stop()
        reader.join(10)
        consumer.close()
