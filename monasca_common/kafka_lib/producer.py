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

"""The old ``SimpleProducer``, on the new producer.

monasca-transform publishes each metric with
``SimpleProducer(client).send_messages(topic, json_string)``. The call
stays synchronous: it returns once Kafka has every message and raises
``FailedPayloadsError`` otherwise. Idempotence keeps a retried send from
being stored twice, and str messages are sent UTF-8 encoded (the old code
refused them under Python 3).
"""

from __future__ import annotations

import warnings

from monasca_common.confluent_kafka import producer
from monasca_common import kafka_lib
from monasca_common.kafka_lib import client as kafka_client
from monasca_common.kafka_lib import common

# kafka-python 0.9.5's codec constants.
_CODECS = {None: 'none', 0: 'none', 1: 'gzip', 2: 'snappy'}
# Arguments of the old signature that mean nothing now: batching and acks
# belong to librdkafka, and every send is acknowledged by all replicas.
_IGNORED = frozenset(('async', 'async_send', 'req_acks', 'ack_timeout',
                      'batch_send', 'batch_send_every_n',
                      'batch_send_every_t', 'random_start',
                      'async_retry_limit', 'async_retry_backoff_ms',
                      'async_retry_on_timeouts', 'async_queue_maxsize',
                      'async_queue_put_timeout', 'async_log_messages_on_error',
                      'async_stop_timeout', 'sync_fail_on_error'))


class SimpleProducer:
    """Sends to ``topic`` synchronously; librdkafka picks the partitions.

    :param client: a :class:`~monasca_common.kafka_lib.client.KafkaClient`;
        its hosts and timeout are used.
    :param codec: 0/None none, 1 gzip, 2 snappy (the old constants).
    """

    def __init__(self, client: kafka_client.KafkaClient, codec=None,
                 **legacy):
        unknown = set(legacy) - _IGNORED
        if unknown:
            raise TypeError('SimpleProducer got unexpected arguments: %s'
                            % ', '.join(sorted(unknown)))
        if legacy:
            warnings.warn('SimpleProducer ignores %s: sends are synchronous '
                          'and acknowledged by all in-sync replicas'
                          % ', '.join(sorted(legacy)),
                          DeprecationWarning, stacklevel=2)
        if codec not in _CODECS:
            raise common.KafkaConfigurationError(
                'codec must be 0 (none), 1 (gzip) or 2 (snappy), got %r'
                % (codec,))
        self.client = client
        self.timeout = client.timeout
        self._producer = producer.KafkaProducer(
            client.hosts, block_timeout=client.timeout,
            **{'client.id': client.client_id,
               'compression.type': _CODECS[codec]})

    def send_messages(self, topic, *msgs) -> list:
        """Send ``msgs`` (str or bytes) to ``topic``; wait for Kafka.

        :returns: a :class:`ProduceResponse` per partition written, with
            the offset of its first message.
        :raises FailedPayloadsError: some message was not delivered
            (``exc.failed`` lists them).
        """
        written: dict = {}

        def note(err, msg):
            if err is None:
                offset = written.get(msg.partition())
                if offset is None or msg.offset() < offset:
                    written[msg.partition()] = msg.offset()

        self._producer.publish(kafka_client.topic_name(topic), list(msgs),
                               callback=note, sync=True,
                               timeout=self.timeout)
        return [common.ProduceResponse(topic, partition, 0, offset)
                for partition, offset in sorted(written.items())]

    def stop(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (within ``timeout``), then close."""
        self._producer.close(timeout)

    def __getattr__(self, name: str):
        if name.startswith('_'):
            raise AttributeError(name)
        raise AttributeError('SimpleProducer.%s of the old kafka-python '
                             'client is gone; use %s'
                             % (name, kafka_lib.NEW_API))

    def __repr__(self) -> str:
        return '<SimpleProducer hosts=%s>' % self.client.hosts


# The old producer was a package (base, simple, keyed): a path makes
# Python look those up, and the package's finder then says they are gone.
__path__: list = []
__getattr__ = kafka_lib.module_getattr(__name__, {
    'KeyedProducer': 'monasca_common.kafka.KafkaProducer: '
                     'publish(topic, messages, key=...)'})
