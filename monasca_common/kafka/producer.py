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

"""``KafkaProducer(url)`` as monasca-log-api and monasca-events-api build it.

The old class published synchronously and raised when Kafka did not take
the messages; this one does the same on the new producer: ``publish``
returns once Kafka acknowledged every message, or raises a
:class:`~monasca_common.kafka_lib.common.FailedPayloadsError`.
"""

import typing

from monasca_common.confluent_kafka import producer

#: How long a publish call waits for Kafka before it raises.
PUBLISH_TIMEOUT = 10.0


class KafkaProducer(producer.KafkaProducer):
    """A producer whose ``publish`` waits for acknowledgement."""

    def __init__(self, url, **config: typing.Any):
        super().__init__(url, **config)

    def publish(self, topic, messages, key=None, timeout=None, **kwargs):
        kwargs.setdefault('sync', True)
        if timeout is None:
            timeout = PUBLISH_TIMEOUT
        return super().publish(topic, messages, key, timeout, **kwargs)
