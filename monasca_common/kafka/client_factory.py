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

"""The factory Monasca services call: same signatures as ever.

Both calls return the confluent-kafka based clients. What the old client
needed and the new one does not (ZooKeeper, the legacy switch) is accepted,
warned about once, and ignored.
"""

import typing
import warnings

from monasca_common.confluent_kafka import consumer
from monasca_common.confluent_kafka import producer

_warned: set[str] = set()


def _deprecated_once(what: str) -> None:
    if what not in _warned:
        _warned.add(what)
        warnings.warn(what, DeprecationWarning, stacklevel=3)


def get_kafka_consumer(kafka_url, kafka_consumer_group, kafka_topic,
                       zookeeper_url=None, zookeeper_path=None,
                       use_legacy_client=False, repartition_callback=None,
                       commit_callback=None, max_commit_interval=30,
                       client_id='') -> consumer.KafkaConsumer:
    """A consumer in group kafka_consumer_group reading kafka_topic.

    :param kafka_url: brokers, a list or a "host:port,..." string.
    :param zookeeper_url: ignored: Kafka manages the group.
    :param zookeeper_path: ignored.
    :param use_legacy_client: ignored: the vendored client is gone.
    """
    if zookeeper_url or zookeeper_path:
        _deprecated_once('zookeeper_url and zookeeper_path are ignored: '
                         'Kafka manages consumer groups itself; offsets '
                         'the old client kept in ZooKeeper move once with '
                         'monasca-kafka migrate-offsets')
    if use_legacy_client:
        _deprecated_once('use_legacy_client=True is ignored: the legacy '
                         'Kafka client was removed; using the new client')
    return consumer.KafkaConsumer(
        kafka_url, kafka_consumer_group, kafka_topic, client_id=client_id,
        repartition_callback=repartition_callback,
        commit_callback=commit_callback,
        max_commit_interval=max_commit_interval)


def get_kafka_producer(kafka_url, use_legacy_client=False,
                       **config: typing.Any) -> producer.KafkaProducer:
    """An asynchronous producer; config holds librdkafka properties.

    :param kafka_url: brokers, a list or a "host:port,..." string.
    :param use_legacy_client: ignored: the vendored client is gone.
    """
    if use_legacy_client:
        _deprecated_once('use_legacy_client=True is ignored: the legacy '
                         'Kafka client was removed; using the new client')
    return producer.KafkaProducer(kafka_url, **config)
