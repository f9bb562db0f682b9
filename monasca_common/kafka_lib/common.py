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

"""Exception names services catch, bound to the new client's errors.

monasca-api turns these into HTTP 503. Each name is the class the new
producer raises in that situation, or a base of it, so old except
clauses keep working.
"""

from monasca_common.confluent_kafka import errors

KafkaError = errors.KafkaClientError
# Anything Kafka did not take: queue full, delivery failed, unavailable.
FailedPayloadsError = errors.PublishError
KafkaUnavailableError = errors.KafkaUnavailableError
LeaderNotAvailableError = errors.LeaderNotAvailableError
ConnectionError = errors.KafkaUnavailableError
BufferUnderflowError = errors.ConsumerError
KafkaConfigurationError = errors.ConfigurationError

__all__ = ['BufferUnderflowError', 'ConnectionError', 'FailedPayloadsError',
           'KafkaConfigurationError', 'KafkaError', 'KafkaUnavailableError',
           'LeaderNotAvailableError']
