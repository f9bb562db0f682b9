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

"""The real broker is there: produce through it and read back."""

import pytest

from monasca_common import kafka
from tests import waiting

pytestmark = [pytest.mark.integration, pytest.mark.compat, pytest.mark.core]


def test_produce_and_consume_through_real_broker(bootstrap_servers, topic,
                                                 group_id):
    with kafka.KafkaProducer(bootstrap_servers) as producer:
        producer.publish(topic, ['one', 'two', 'three'], sync=True)

    consumer = kafka.KafkaConsumer(bootstrap_servers, group_id, topic)
    try:
        seen = [m.value() for m in waiting.take(consumer, 3)]
        consumer.commit()
    finally:
        consumer.close()
    assert seen == [b'one', b'two', b'three']


def test_broker_reports_its_kafka_version(kafka, admin):
    metadata = admin.list_topics(timeout=10)
    assert metadata.brokers, 'no broker in metadata'
    if kafka.nodes:
        assert all(node.running() for node in kafka.nodes)
        assert 'Kafka version: %s' % kafka.version in waiting.until(
            lambda: kafka.nodes[0].log_path.read_text(errors='replace'),
            10, 'broker log')
