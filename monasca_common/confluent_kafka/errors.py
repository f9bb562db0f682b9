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

"""The exceptions raised by the Kafka clients.

One hierarchy. Services written for the old vendored client catch
``KafkaUnavailableError``, ``LeaderNotAvailableError`` and
``FailedPayloadsError`` from ``monasca_common.kafka_lib.common``; those names
are bound to classes here, so an ``except`` written years ago still catches
what the new producer raises::

    KafkaClientError                      kafka_lib: KafkaError
     +-- ConfigurationError (ValueError)
     +-- ClientClosedError
     +-- ForkedClientError
     +-- KafkaUnavailableError            kafka_lib: same name
     +-- KafkaTimeoutError (TimeoutError) kafka_lib: same name
     +-- UnknownTopicError (LookupError)
     |                 kafka_lib: UnknownTopicOrPartitionError
     +-- UnknownGroupError (LookupError)
     +-- ZooKeeperUnavailableError
     +-- MigrationRefusedError
     +-- PublishError                     kafka_lib: FailedPayloadsError
     |    +-- InvalidMessageError (ValueError)
     |    +-- QueueFullError (BufferError)
     |    +-- DeliveryFailedError
     |    |    +-- LeaderNotAvailableError   kafka_lib: same name
     |    +-- PublishUnavailableError (also KafkaUnavailableError)
     |         +-- AuthenticationError
     +-- ConsumerError
          +-- CommitFailedError

A publish that finds no broker raises ``PublishUnavailableError``: both
``except KafkaUnavailableError`` and ``except FailedPayloadsError`` catch it,
as they caught the old client's error.
"""

from __future__ import annotations

import typing

import confluent_kafka


class FailedMessage(typing.NamedTuple):
    """A message that was not delivered, with the reason."""
    topic: str
    value: typing.Optional[bytes]
    key: typing.Optional[bytes]
    error: confluent_kafka.KafkaError


_HINTS = {
    confluent_kafka.KafkaError.UNSUPPORTED_FOR_MESSAGE_FORMAT:
        'the topic keeps a message format older than v2 (its '
        'message.format.version is below 0.11, as topics read by the legacy '
        'client were kept), which an idempotent producer cannot write: '
        'remove that setting once no legacy client reads the topic, or set '
        'enable.idempotence=false',
    # A group the broker will not let the consumer join as configured:
    # librdkafka would ask again and again, never reading.
    confluent_kafka.KafkaError.INVALID_SESSION_TIMEOUT:
        'session.timeout.ms (the consumer\'s timeout) must lie within the '
        'broker\'s group.min.session.timeout.ms and '
        'group.max.session.timeout.ms (6,000 and 1,800,000 ms by default)',
    confluent_kafka.KafkaError.INCONSISTENT_GROUP_PROTOCOL:
        'partition.assignment.strategy (or group.protocol) differs from that '
        'of the members already in the group; all members must share one',
    confluent_kafka.KafkaError.INVALID_GROUP_ID:
        'the broker does not accept this group.id',
    confluent_kafka.KafkaError.UNSUPPORTED_ASSIGNOR:
        'group.remote.assignor names an assignor the broker does not offer '
        '(its group.consumer.assignors)',
    confluent_kafka.KafkaError.GROUP_MAX_SIZE_REACHED:
        'the group already has as many members as the broker\'s '
        'group.max.size allows',
}

_K = confluent_kafka.KafkaError
#: Delivery failures that publishing the same message again meets again.
PERMANENT_DELIVERY = frozenset((
    _K.MSG_SIZE_TOO_LARGE, _K.RECORD_LIST_TOO_LARGE,
    _K.INVALID_RECORD, _K.INVALID_MSG, _K.INVALID_MSG_SIZE,
    _K.INVALID_TIMESTAMP, _K._INVALID_ARG, _K._BAD_MSG,
    _K.UNSUPPORTED_FOR_MESSAGE_FORMAT,
    _K._UNKNOWN_TOPIC, _K._UNKNOWN_PARTITION, _K.UNKNOWN_TOPIC_OR_PART,
    _K.TOPIC_EXCEPTION, _K.POLICY_VIOLATION,
    _K.TOPIC_AUTHORIZATION_FAILED, _K.CLUSTER_AUTHORIZATION_FAILED,
))


def is_permanent(err: confluent_kafka.KafkaError) -> bool:
    """A delivery failure that publishing the message again meets again."""
    return err.code() in PERMANENT_DELIVERY


#: Errors joining a group that only a change of configuration mends.
MISCONFIGURED_GROUP = frozenset((
    confluent_kafka.KafkaError.INVALID_SESSION_TIMEOUT,
    confluent_kafka.KafkaError.INCONSISTENT_GROUP_PROTOCOL,
    confluent_kafka.KafkaError.INVALID_GROUP_ID,
    confluent_kafka.KafkaError.UNSUPPORTED_ASSIGNOR,
    confluent_kafka.KafkaError.GROUP_MAX_SIZE_REACHED,
))


_ENDS_CONSUMING = frozenset((
    _K._AUTHENTICATION, _K.TOPIC_AUTHORIZATION_FAILED,
    _K.GROUP_AUTHORIZATION_FAILED, _K._INVALID_ARG,
)) | MISCONFIGURED_GROUP


def ends_consuming(err: confluent_kafka.KafkaError) -> bool:
    """A consume error no retry mends: the reader must be told."""
    return err.fatal() or err.code() in _ENDS_CONSUMING


def undeliverable(err: confluent_kafka.KafkaError, topic: str,
                  value: bytes | None) -> str:
    """What to log of an output Kafka refuses for good."""
    value = value or b''
    return ('an output can never be delivered (%s), to topic %s: %d bytes, '
            'starting %r' % (explain(err), topic, len(value), value[:60]))


#: A transactional call failing with these: another client took the
#: ``transactional.id``.
_FENCED = frozenset((_K._FENCED, _K.PRODUCER_FENCED,
                     _K.INVALID_PRODUCER_EPOCH,
                     _K.TRANSACTIONAL_ID_AUTHORIZATION_FAILED))


class TransactionAborted(Exception):
    """The open transaction must be aborted; what it covered is read again.

    Kept inside the library: callers see the consequence (a deferred
    commit, a batch read again), not this.
    """


def raise_for_transaction(err: confluent_kafka.KafkaError,
                          transactional_id: str) -> typing.NoReturn:
    """Raise what a failed transactional call means.

    :raises TransactionFencedError: another client took the id.
    :raises ConsumerError: a fatal error: nothing more can be committed.
    :raises TransactionAborted: anything else: abort, then read again.
    """
    if err.code() in _FENCED:
        raise TransactionFencedError(
            'Kafka fenced this client: another one uses its '
            'transactional.id %s (%s); nothing more is committed'
            % (transactional_id, err.str()))
    if err.fatal():
        raise ConsumerError('Kafka transaction error: %s' % explain(err))
    raise TransactionAborted(err.str())


def explain(err: confluent_kafka.KafkaError) -> str:
    """librdkafka's text for ``err``, and what to do where that is known."""
    hint = _HINTS.get(err.code())
    return err.str() if hint is None else '%s: %s' % (err.str(), hint)


class KafkaClientError(Exception):
    """Base of every error raised by the Kafka clients."""


class ConfigurationError(KafkaClientError, ValueError):
    """A configuration value is missing, unknown or invalid."""


class ClientClosedError(KafkaClientError):
    """The client was used after ``close()``."""


class ForkedClientError(KafkaClientError):
    """The client was created in another process (before ``os.fork()``)."""


class KafkaUnavailableError(KafkaClientError):
    """No Kafka broker answered."""


class KafkaTimeoutError(KafkaClientError, TimeoutError):
    """Kafka did not answer a request within its time bound."""


class UnknownTopicError(KafkaClientError, LookupError):
    """Kafka has no such topic, or the topic no such partition."""


class UnknownGroupError(KafkaClientError, LookupError):
    """The consumer group has no offsets where they were looked for."""


class ZooKeeperUnavailableError(KafkaClientError):
    """ZooKeeper (where the old client kept its offsets) did not answer."""


class MigrationRefusedError(KafkaClientError):
    """An offset migration found a reason not to write anything.

    :ivar migration: the :class:`~monasca_common.kafka.upgrade.Migration`
        that was planned, each refused partition with its reason, and the
        group-wide reasons in ``migration.refusals``.
    """

    def __init__(self, message: str, migration: typing.Any = None):
        super().__init__(message)
        self.migration = migration


class PublishError(KafkaClientError):
    """Kafka did not take (all of) the messages of a publish call.

    :ivar failed: the messages that were not delivered, as
        :class:`FailedMessage`
        (index in the call, value, key, error); retry exactly these.
    :ivar not_queued: how many messages of the call were never queued.
    """

    def __init__(self, message: str, failed: list[FailedMessage] | None = None,
                 not_queued: int = 0):
        super().__init__(message)
        self.failed = list(failed or ())
        self.not_queued = not_queued


class InvalidMessageError(PublishError, ValueError):
    """A message can never be sent as given (type, size, topic name)."""


class QueueFullError(PublishError, BufferError):
    """The local send queue stayed full for the whole wait bound."""


class DeliveryFailedError(PublishError):
    """Kafka answered with an error, or not at all, for some messages."""


class LeaderNotAvailableError(DeliveryFailedError):
    """Some messages failed because their partition had no leader."""


class PublishUnavailableError(PublishError, KafkaUnavailableError):
    """No broker has been reachable; nothing of this call was queued."""


class AuthenticationError(PublishUnavailableError):
    """Kafka refused the client: its credentials, or the TLS handshake.

    A wrong SASL password, a broker certificate the client does not trust,
    a client certificate the broker does not accept. Nothing of the call
    was queued, or, from ``sync=True``, the call's messages stay queued
    and are reported when they fail.
    """


class ConsumerError(KafkaClientError):
    """The consumer met an error it cannot retry."""


class CommitFailedError(ConsumerError):
    """Offsets could not be committed.

    :ivar partitions: ``(topic, partition, offset, error)`` for each
        partition whose commit failed.
    """

    def __init__(self, message: str, partitions: list | None = None):
        super().__init__(message)
        self.partitions = list(partitions or ())


class TransactionFencedError(ConsumerError):
    """Another instance took this processor's ``transactional.id``.

    The fenced processor commits nothing more: Kafka aborts its open
    transaction, and it must stop (its successor carries on).
    """
