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

"""The old client's request and response tuples and exception names.

The tuples keep their old fields, so services and their tests build them
as before. Each exception name is the class the new clients raise in that
situation, or a base of it, so old except clauses keep working: monasca-api
turns ``KafkaUnavailableError``, ``LeaderNotAvailableError`` and
``FailedPayloadsError`` into HTTP 503.
"""

import collections

from monasca_common.confluent_kafka import errors
from monasca_common import kafka_lib

#: ``time`` is -1 (latest: the next offset to be written), -2 (earliest
#: available) or a timestamp in ms; ``max_offsets`` is how many offsets
#: the response may list (the new client answers one).
OffsetRequest = collections.namedtuple(
    'OffsetRequest', ['topic', 'partition', 'time', 'max_offsets'])
#: ``error`` is Kafka's error code (0: none); ``offsets`` a list.
OffsetResponse = collections.namedtuple(
    'OffsetResponse', ['topic', 'partition', 'error', 'offsets'])
OffsetFetchRequest = collections.namedtuple(
    'OffsetFetchRequest', ['topic', 'partition'])
#: ``offset`` is -1 where the group committed nothing.
OffsetFetchResponse = collections.namedtuple(
    'OffsetFetchResponse', ['topic', 'partition', 'offset', 'metadata',
                            'error'])
ProduceResponse = collections.namedtuple(
    'ProduceResponse', ['topic', 'partition', 'error', 'offset'])
PartitionMetadata = collections.namedtuple(
    'PartitionMetadata', ['topic', 'partition', 'leader', 'replicas',
                          'isr', 'error'])

KafkaError = errors.KafkaClientError
# Anything Kafka did not take: queue full, delivery failed, unavailable.
FailedPayloadsError = errors.PublishError
KafkaUnavailableError = errors.KafkaUnavailableError
LeaderNotAvailableError = errors.LeaderNotAvailableError
KafkaTimeoutError = errors.KafkaTimeoutError
UnknownTopicOrPartitionError = errors.UnknownTopicError
ConnectionError = errors.KafkaUnavailableError
BufferUnderflowError = errors.ConsumerError
KafkaConfigurationError = errors.ConfigurationError

#: Kafka's error code for an unknown topic or partition.
UNKNOWN_TOPIC_OR_PARTITION = 3

__all__ = ['BufferUnderflowError', 'ConnectionError', 'FailedPayloadsError',
           'KafkaConfigurationError', 'KafkaError', 'KafkaTimeoutError',
           'KafkaUnavailableError', 'LeaderNotAvailableError',
           'OffsetFetchRequest', 'OffsetFetchResponse', 'OffsetRequest',
           'OffsetResponse', 'PartitionMetadata', 'ProduceResponse',
           'UnknownTopicOrPartitionError']

__getattr__ = kafka_lib.module_getattr(__name__, {})
