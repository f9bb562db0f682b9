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

"""The old ``KafkaClient``: cluster metadata and offsets, on
:class:`~monasca_common.kafka.admin.KafkaAdmin`.

What the health checks, monasca-transform and the agent's lag check call::

    client = KafkaClient(hosts='127.0.0.1:9092')   # KafkaUnavailableError
    b'metrics' in client.topics                     # bytes or str alike
    client.topic_partitions['metrics'].keys()       # partition ids
    client.send_offset_request([OffsetRequest('metrics', 0, -1, 1)])
    client.close()

Differences from kafka-python 0.9.5, on purpose: topic names are str
(lookups by the old bytes keys still work); no metadata request ever
creates a topic; offset responses list one offset.
"""

from __future__ import annotations

import collections
import collections.abc
import time
import typing

import confluent_kafka

from monasca_common.confluent_kafka import config as kafka_config
from monasca_common.confluent_kafka import errors
from monasca_common.kafka import admin
from monasca_common import kafka_lib
from monasca_common.kafka_lib import common

KafkaUnavailableError = common.KafkaUnavailableError

DEFAULT_PORT = 9092
#: The old client's default socket timeout, in seconds: here the bound of
#: every call. A cluster that refuses connections fails at once.
DEFAULT_TIMEOUT = 120


def topic_name(topic):
    """``topic`` as str: the old client's topics were bytes."""
    if isinstance(topic, (bytes, bytearray)):
        return bytes(topic).decode('utf-8')
    return topic


class TopicMap(dict):
    """{topic: value} that answers lookups by str or bytes names."""

    def __contains__(self, topic) -> bool:
        return dict.__contains__(self, topic_name(topic))

    def __getitem__(self, topic):
        return dict.__getitem__(self, topic_name(topic))

    def get(self, topic, default=None):
        return dict.get(self, topic_name(topic), default)


class TopicList(list):
    """Topic names; ``in`` takes str or bytes."""

    def __contains__(self, topic) -> bool:
        return list.__contains__(self, topic_name(topic))


def legacy_hosts(hosts) -> str:
    """``host[:port]`` items, as the old client took them, with ports."""
    if isinstance(hosts, (bytes, bytearray)):
        hosts = bytes(hosts).decode('utf-8')
    if isinstance(hosts, str):
        hosts = hosts.split(',')
    if not isinstance(hosts, collections.abc.Iterable):
        raise errors.ConfigurationError(
            'hosts must be a "host:port,..." string or a list, got %r'
            % (hosts,))
    items = [h.strip() for item in hosts for h in str(item).split(',')]
    return kafka_config.bootstrap_servers(
        [h if ':' in h else '%s:%d' % (h, DEFAULT_PORT)
         for h in items if h])


def legacy_error_code(err: confluent_kafka.KafkaError) -> int:
    """Kafka's error code for ``err``, as the old responses carried it.

    librdkafka's local unknown-partition and unknown-topic errors are the
    broker's UNKNOWN_TOPIC_OR_PARTITION.
    """
    if err.code() in (confluent_kafka.KafkaError._UNKNOWN_PARTITION,
                      confluent_kafka.KafkaError._UNKNOWN_TOPIC):
        return common.UNKNOWN_TOPIC_OR_PARTITION
    return err.code()


def offset_responses(payloads: list, answers: dict, fail_on_error: bool,
                     callback=None) -> list:
    """OffsetResponses in request order, from ``answers[time][(t, p)]``.

    :raises UnknownTopicOrPartitionError: with ``fail_on_error``, for the
        first request whose topic or partition Kafka does not have.
    """
    responses = []
    for request in payloads:
        answer = answers[request.time][(topic_name(request.topic),
                                        request.partition)]
        if isinstance(answer, confluent_kafka.KafkaError):
            code = legacy_error_code(answer)
            if fail_on_error:
                if code == common.UNKNOWN_TOPIC_OR_PARTITION:
                    raise common.UnknownTopicOrPartitionError(
                        'Kafka has no partition %s[%s]'
                        % (topic_name(request.topic), request.partition))
                raise common.KafkaError('offsets of %s[%s]: %s' % (
                    topic_name(request.topic), request.partition,
                    answer.str()))
            response = common.OffsetResponse(request.topic, request.partition,
                                             code, [])
        else:
            response = common.OffsetResponse(
                request.topic, request.partition, 0,
                [answer][:max(0, request.max_offsets)])
        responses.append(callback(response) if callback else response)
    return responses


class KafkaClient:
    """Metadata and offsets of a Kafka cluster, fetched at creation.

    :param hosts: ``"host[:port],..."`` or a list of them (port 9092 when
        none is given).
    :param client_id: the client id brokers log.
    :param timeout: bound, in seconds, of creation and of every call.
    :raises KafkaUnavailableError: no broker answered within ``timeout``;
        at once when every broker refuses the connection.
    """

    def __init__(self, hosts, client_id: str | bytes = 'kafka-python',
                 timeout: float = DEFAULT_TIMEOUT, correlation_id: int = 0,
                 **config: typing.Any):
        self.client_id = topic_name(client_id)
        self.timeout = kafka_config.check_timeout('timeout', timeout)
        self.hosts = legacy_hosts(hosts)
        config.setdefault('client.id', self.client_id)
        self.admin = admin.KafkaAdmin(self.hosts, self.timeout, **config)
        self.topic_partitions: TopicMap = TopicMap()
        self.topics: TopicList = TopicList()
        try:
            self.load_metadata_for_topics()
        except errors.KafkaTimeoutError as exc:
            raise KafkaUnavailableError(str(exc)) from None

    def load_metadata_for_topics(self, *topics) -> None:
        """Refresh the metadata (of every topic: ``topics`` is ignored)."""
        found = self.admin.topics(self.timeout)
        self.topic_partitions = TopicMap(
            (name, {p: common.PartitionMetadata(name, p, info.leader,
                                                info.replicas, info.isr,
                                                info.error)
                    for p, info in partitions.items()})
            for name, partitions in found.items())
        self.topics = TopicList(self.topic_partitions)

    def has_metadata_for_topic(self, topic) -> bool:
        return topic in self.topic_partitions

    def get_partition_ids_for_topic(self, topic) -> list[int]:
        """Sorted partition ids; [] for a topic Kafka does not have."""
        return sorted(self.topic_partitions.get(topic, ()))

    def ensure_topic_exists(self, topic, timeout: float = 30) -> None:
        """Wait until Kafka has ``topic`` (created by someone else).

        :raises KafkaTimeoutError: it did not appear within ``timeout``.
        """
        deadline = time.monotonic() + kafka_config.check_timeout(
            'timeout', timeout)
        while True:
            self.load_metadata_for_topics()
            if self.has_metadata_for_topic(topic):
                return
            if time.monotonic() >= deadline:
                raise common.KafkaTimeoutError(
                    'topic %s not found in Kafka within %.1f s'
                    % (topic_name(topic), timeout))
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    def send_offset_request(self, payloads=(), fail_on_error: bool = True,
                            callback=None) -> list:
        """An :class:`OffsetResponse` per :class:`OffsetRequest`, in order.

        ``time`` -1 answers the next offset to be written, -2 the first
        available, a timestamp in ms the first offset at or after it.
        """
        payloads = list(payloads)
        by_time: dict = collections.defaultdict(dict)
        for request in payloads:
            by_time[request.time][(topic_name(request.topic),
                                   request.partition)] = request.time
        answers = {spec: self.admin.list_offsets(requests, self.timeout)
                   for spec, requests in by_time.items()}
        return offset_responses(payloads, answers, fail_on_error, callback)

    def send_offset_fetch_request(self, group, payloads=(),
                                  fail_on_error: bool = True,
                                  callback=None) -> list:
        """The group's committed offset per :class:`OffsetFetchRequest`.

        -1 where the group committed nothing. Does not join the group.
        """
        payloads = list(payloads)
        by_topic: dict = collections.defaultdict(set)
        for request in payloads:
            by_topic[topic_name(request.topic)].add(request.partition)
        committed = {}
        for topic, partitions in by_topic.items():
            committed.update(self.admin.committed_offsets(
                topic_name(group), topic, sorted(partitions), self.timeout))
        responses = []
        for request in payloads:
            offset = committed.get((topic_name(request.topic),
                                    request.partition))
            response = common.OffsetFetchResponse(
                request.topic, request.partition,
                -1 if offset is None else offset, '', 0)
            responses.append(callback(response) if callback else response)
        return responses

    def close(self) -> None:
        self.admin.close()

    def __getattr__(self, name: str):
        if name.startswith('_'):
            raise AttributeError(name)
        raise AttributeError('KafkaClient.%s of the old kafka-python client '
                             'is gone; use %s' % (name, kafka_lib.NEW_API))

    def __repr__(self) -> str:
        return '<KafkaClient hosts=%s>' % self.hosts


__getattr__ = kafka_lib.module_getattr(__name__, {
    'SimpleClient': 'monasca_common.kafka.admin.KafkaAdmin'})
