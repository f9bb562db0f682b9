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

"""Monasca's Kafka client: what new code imports.

::

    from monasca_common import kafka

    producer = kafka.KafkaProducer('127.0.0.1:9092')
    producer.publish('metrics', ['{"a": 1}', '{"b": 2}'])

    consumer = kafka.KafkaConsumer('127.0.0.1:9092', 'persister', 'metrics')
    for message in consumer:
        ...
        consumer.commit()

    with kafka.KafkaAdmin('127.0.0.1:9092') as admin:
        admin.group_lag('persister', 'metrics')

``kafka.KafkaProducer`` here is asynchronous: ``publish`` queues and
returns (``sync=True`` waits). ``monasca_common.kafka.producer.KafkaProducer``
is another class, kept for the services that build it by that path: its
``publish`` always waits for Kafka.
"""

from monasca_common.confluent_kafka.consumer import KafkaConsumer
from monasca_common.confluent_kafka.errors import AuthenticationError
from monasca_common.confluent_kafka.errors import ClientClosedError
from monasca_common.confluent_kafka.errors import CommitFailedError
from monasca_common.confluent_kafka.errors import ConfigurationError
from monasca_common.confluent_kafka.errors import ConsumerError
from monasca_common.confluent_kafka.errors import DeliveryFailedError
from monasca_common.confluent_kafka.errors import ForkedClientError
from monasca_common.confluent_kafka.errors import InvalidMessageError
from monasca_common.confluent_kafka.errors import KafkaClientError
from monasca_common.confluent_kafka.errors import KafkaTimeoutError
from monasca_common.confluent_kafka.errors import KafkaUnavailableError
from monasca_common.confluent_kafka.errors import LeaderNotAvailableError
from monasca_common.confluent_kafka.errors import MigrationRefusedError
from monasca_common.confluent_kafka.errors import PublishError
from monasca_common.confluent_kafka.errors import PublishUnavailableError
from monasca_common.confluent_kafka.errors import QueueFullError
from monasca_common.confluent_kafka.errors import TransactionFencedError
from monasca_common.confluent_kafka.errors import UnknownGroupError
from monasca_common.confluent_kafka.errors import UnknownTopicError
from monasca_common.confluent_kafka.errors import ZooKeeperUnavailableError
from monasca_common.confluent_kafka.producer import FailedMessage
from monasca_common.confluent_kafka.producer import KafkaProducer
from monasca_common.confluent_kafka.producer import PublishResult
from monasca_common.confluent_kafka.reporting import StatsdReporter
from monasca_common.confluent_kafka.transactions import Processor
from monasca_common.kafka.admin import KafkaAdmin

__all__ = [
    'AuthenticationError',
    'ClientClosedError', 'CommitFailedError', 'ConfigurationError',
    'ConsumerError', 'DeliveryFailedError', 'FailedMessage',
    'ForkedClientError', 'InvalidMessageError', 'KafkaAdmin',
    'KafkaClientError', 'KafkaConsumer', 'KafkaProducer',
    'KafkaTimeoutError', 'KafkaUnavailableError', 'LeaderNotAvailableError',
    'MigrationRefusedError', 'Processor', 'PublishError', 'PublishResult',
    'PublishUnavailableError', 'QueueFullError', 'StatsdReporter',
    'TransactionFencedError', 'UnknownGroupError', 'UnknownTopicError',
    'ZooKeeperUnavailableError',
]
