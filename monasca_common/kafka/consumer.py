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

"""The old ZooKeeper-era consumer signature, on the new consumer.

``KafkaConsumer(kafka_url, zookeeper_url, zookeeper_path, group, topic,
...)``: ZooKeeper is not used any more (Kafka manages the group); its
arguments are accepted and ignored with a DeprecationWarning.
``commit_timeout`` is the old name of ``max_commit_interval``, and the
repartition callback is still called with no arguments.
"""

import warnings

from monasca_common.confluent_kafka import consumer


class KafkaConsumer(consumer.KafkaConsumer):

    def __init__(self, kafka_url, zookeeper_url, zookeeper_path, group,
                 topic, fetch_size=None, repartition_callback=None,
                 commit_callback=None, commit_timeout=30, timeout=None,
                 **config):
        """Accept the old arguments.

        :param fetch_size: ignored (librdkafka sizes its fetches).
        :param timeout: ignored (it was a socket timeout in seconds).
        """
        if zookeeper_url or zookeeper_path:
            warnings.warn('zookeeper_url and zookeeper_path are ignored: '
                          'Kafka manages consumer groups itself; offsets '
                          'the old client kept in ZooKeeper move once with '
                          'monasca-kafka migrate-offsets',
                          DeprecationWarning, stacklevel=2)
        super().__init__(kafka_url, group, topic,
                         repartition_callback=repartition_callback,
                         commit_callback=commit_callback,
                         max_commit_interval=commit_timeout, **config)
