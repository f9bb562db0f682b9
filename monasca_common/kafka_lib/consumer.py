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

"""The old ``SimpleConsumer``, as the agent's lag check uses it: the
group's committed offsets, read without joining the group.

::

    consumer = SimpleConsumer(client, 'persister', 'metrics',
                              auto_commit=False)
    consumer.offsets          # {partition: committed offset, 0 if none}
    consumer.stop()

Reading messages moved to :class:`monasca_common.kafka.KafkaConsumer`.
"""

from __future__ import annotations

import logging

from monasca_common.confluent_kafka import config as kafka_config
from monasca_common import kafka_lib
from monasca_common.kafka_lib import client as kafka_client

LOG = logging.getLogger(__name__)


class SimpleConsumer:
    """A group's committed offsets in one topic, fetched at creation.

    Creating one never joins the group, so the group's members keep their
    partitions. ``auto_commit`` and the fetch and buffer arguments of the
    old signature are accepted and mean nothing: nothing is read.
    """

    def __init__(self, client: kafka_client.KafkaClient, group, topic,
                 auto_commit: bool = True, partitions=None,
                 auto_commit_every_n=100, auto_commit_every_t=5000,
                 fetch_size_bytes=4096, buffer_size=4096,
                 max_buffer_size=32768, iter_timeout=None):
        self.client = client
        self.group = kafka_config.check_group_id(
            kafka_client.topic_name(group))
        self.topic = kafka_client.topic_name(topic)
        self.offsets: dict[int, int] = {}
        self.fetch_last_known_offsets(partitions)

    def fetch_last_known_offsets(self, partitions=None) -> None:
        """Fill ``offsets`` with the group's committed offsets (0 if none).

        ``partitions`` defaults to every partition of the topic; a topic
        Kafka does not have has none.
        """
        if partitions is None:
            partitions = self.client.get_partition_ids_for_topic(self.topic)
            if not partitions:
                LOG.warning('Kafka has no topic %s: no offsets for group %s',
                            self.topic, self.group)
                return
        committed = self.client.admin.committed_offsets(
            self.group, self.topic, list(partitions), self.client.timeout)
        for (_, partition), offset in committed.items():
            self.offsets[partition] = 0 if offset is None else offset

    def stop(self) -> None:
        """Nothing to stop: nothing was read or joined."""

    def __getattr__(self, name: str):
        if name.startswith('_'):
            raise AttributeError(name)
        raise AttributeError(
            'SimpleConsumer.%s of the old kafka-python client is gone; read '
            'with monasca_common.kafka.KafkaConsumer, and see lag with '
            'monasca_common.kafka.admin.KafkaAdmin.group_lag' % name)

    def __repr__(self) -> str:
        return '<SimpleConsumer group=%s topic=%s>' % (
            self.group, self.topic)


# The old consumer was a package (base, simple, multiprocess, kafka): a
# path makes Python look those up, and the package's finder then says they
# are gone.
__path__: list = []
__getattr__ = kafka_lib.module_getattr(__name__, {
    'MultiProcessConsumer': 'monasca_common.kafka.KafkaConsumer in each '
                            'process, one group',
    'KafkaConsumer': 'monasca_common.kafka.KafkaConsumer'})
