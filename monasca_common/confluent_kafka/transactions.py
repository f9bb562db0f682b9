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

"""Exactly-once consume → process → publish → commit, in Kafka transactions.

The service gives ``process(batch) -> outputs``; :class:`Processor` owns
the loop. For each batch:

1. a ``read_committed`` consumer takes up to ``batch_size`` messages (the
   aborted outputs of other processors never reach it);
2. a transaction begins, and ``process(batch)``'s outputs are produced in
   it;
3. the offsets after the batch go into the same transaction, with the
   consumer's group metadata (KIP-447: the group's generation fences a
   member that lost its partitions);
4. the transaction commits: outputs and input offsets land together, or
   neither does.

When a step fails, the transaction is aborted and the consumer goes back
to the batch's first offsets, which are the committed ones: the batch
comes again. A process killed anywhere leaves at most an open
transaction; the next processor with the same ``transactional.id``
aborts it when it starts, and Kafka does after ``transaction.timeout.ms``
otherwise. ``read_committed`` readers never see its outputs.

A second processor started with the same ``transactional.id`` fences the
first: the first's next transactional call fails with
:class:`~monasca_common.confluent_kafka.errors.TransactionFencedError`, its
open transaction is aborted by Kafka, and it stops without committing.

What it does not cover: effects outside Kafka (a database write, an
e-mail) happen once per *attempt*; they stay at-least-once.

With ``exactly_once=False`` the same loop publishes, waits for delivery,
then commits the offsets: at-least-once, the figure transactions are
measured against.
"""

from __future__ import annotations

import collections.abc
import logging
import time
import typing

import confluent_kafka

from monasca_common.confluent_kafka import _client
from monasca_common.confluent_kafka import config as kafka_config
from monasca_common.confluent_kafka import encoding
from monasca_common.confluent_kafka import errors
from monasca_common.confluent_kafka import runtime

LOG = logging.getLogger(__name__)

KafkaError = confluent_kafka.KafkaError
Message = confluent_kafka.Message
TopicPartition = confluent_kafka.TopicPartition

#: An output: ``(topic, value)`` or ``(topic, value, key)``; value and key
#: str (UTF-8) or bytes.
Output = typing.Tuple
Process = typing.Callable[[typing.List[Message]], typing.Iterable[Output]]

# One wait for messages: so long stop() may take to be seen.
_CONSUME_SLICE = 0.5
# Another transactional call still in progress inside librdkafka.
_CONFLICT = KafkaError._CONFLICT


def next_offsets(batch: list) -> list[TopicPartition]:
    """The offsets after ``batch``, one per partition."""
    last: dict[tuple[str, int], int] = {}
    for message in batch:
        last[(message.topic(), message.partition())] = message.offset()
    return [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]


def first_offsets(batch: list) -> list[TopicPartition]:
    """Each partition's first offset in ``batch``: where it comes again."""
    first: dict[tuple[str, int], int] = {}
    for message in batch:
        first.setdefault((message.topic(), message.partition()),
                         message.offset())
    return [TopicPartition(t, p, o) for (t, p), o in first.items()]


def checked_output(output) -> tuple[str, bytes, bytes | None]:
    """``(topic, value[, key])`` as librdkafka takes it, or ValueError."""
    if not isinstance(output, (tuple, list)) or len(output) not in (2, 3):
        raise errors.InvalidMessageError(
            'process() must give (topic, value) or (topic, value, key) '
            'outputs, got %r' % (output,))
    topic = kafka_config.check_topic(output[0], errors.InvalidMessageError)
    value = _as_bytes('value', output[1], topic)
    key = None
    if len(output) == 3 and output[2] is not None:
        key = _as_bytes('key', output[2], topic)
    return topic, value, key


def _as_bytes(what: str, value, topic: str) -> bytes:
    if not isinstance(value, (str, bytes)):
        raise errors.InvalidMessageError(
            'an output %s for topic %s must be str or bytes, got %s'
            % (what, topic, type(value).__name__))
    try:
        return encoding.as_bytes(value)
    except UnicodeEncodeError as exc:
        raise errors.InvalidMessageError(
            'an output %s for topic %s is not valid UTF-8: %s'
            % (what, topic, exc)) from None


def transactional_id(group_id: str, instance_id: str) -> str:
    """The producer's ``transactional.id``: the group, then the instance."""
    kafka_config.check_group_id(group_id)
    if not isinstance(instance_id, str) or not instance_id.strip():
        raise errors.ConfigurationError(
            'instance_id must be a non-empty string that stays the same '
            'across restarts of this instance, got %r' % (instance_id,))
    return '%s.%s' % (group_id, instance_id)


class Processor:
    """Reads a topic, hands batches to ``process``, publishes what it gives.

    :param bootstrap_servers: ``"host:port,..."`` or a list of them.
    :param group_id: the consumer group.
    :param topic: a topic name or a list of them.
    :param process: ``process(batch)``: the outputs of a list of messages,
        as ``(topic, value)`` or ``(topic, value, key)``. It may be called
        again with the same messages after a failure: it should have no
        effect outside Kafka that must not be repeated.
    :param instance_id: what tells this instance from the others of the
        group, the same across its restarts (a host name plus a process
        index, a pod's stable name). ``transactional.id`` is
        ``<group_id>.<instance_id>``: a restart with the same id aborts
        what the previous run left open at once; two live instances with
        the same id fence each other.
    :param batch_size: most messages per transaction.
    :param batch_timeout: longest wait, in seconds, for a batch to fill.
    :param transaction_timeout: ``transaction.timeout.ms``, in seconds.
        Kafka aborts a transaction left open longer (a process that died
        and is not restarted); until then ``read_committed`` readers of
        the output partitions wait. It must exceed the longest
        ``process`` call plus the commit. Also the producer's
        ``message.timeout.ms``.
    :param exactly_once: False: no transactions; outputs are published
        and delivered, then the offsets committed (at-least-once).
    :param consumer_config: librdkafka properties for the consumer
        (``isolation.level=read_committed`` is set).
    :param producer_config: librdkafka properties for the producer
        (``retry.backoff.ms=10`` with transactions, unless given).
    :raises ConfigurationError: a bad argument or property.
    """

    def __init__(self, bootstrap_servers: str | collections.abc.Iterable[str],
                 group_id: str, topic: str | list[str], process: Process,
                 instance_id: str, *, batch_size: int = 100,
                 batch_timeout: float = 1.0,
                 transaction_timeout: float = 60.0,
                 exactly_once: bool = True,
                 consumer_config: dict | None = None,
                 producer_config: dict | None = None):
        if not callable(process):
            raise errors.ConfigurationError('process must be callable')
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) \
                or batch_size < 1:
            raise errors.ConfigurationError(
                'batch_size must be a positive int, got %r' % (batch_size,))
        self._batch_timeout = kafka_config.check_timeout(
            'batch_timeout', batch_timeout)
        timeout_ms = int(kafka_config.check_timeout(
            'transaction_timeout', transaction_timeout) * 1000)
        self._process = process
        self._batch_size = batch_size
        self._topics = kafka_config.check_topics(topic)
        self._exactly_once = exactly_once
        self.transactional_id = transactional_id(group_id, instance_id)
        #: Seconds a transactional call waits for Kafka.
        self._call_timeout = max(10.0, timeout_ms / 1000.0)
        consumer_overrides = dict(consumer_config or {})
        consumer_overrides.setdefault('isolation.level', 'read_committed')
        self._consumer_config = kafka_config.consumer_config(
            bootstrap_servers, group_id, 10000, None, '', consumer_overrides)
        producer_overrides = kafka_config.with_options(
            'producer', dict(producer_config or {}))
        producer_overrides.setdefault('message.timeout.ms', min(
            timeout_ms, kafka_config.PRODUCER_DEFAULTS['message.timeout.ms']))
        if exactly_once:
            producer_overrides.setdefault('transactional.id',
                                          self.transactional_id)
            producer_overrides.setdefault('transaction.timeout.ms',
                                          timeout_ms)
            # A transaction's first send right after the previous commit
            # meets CONCURRENT_TRANSACTIONS while Kafka writes the commit
            # markers; librdkafka waits retry.backoff.ms before trying
            # again. Its 100 ms default capped small batches at ~16
            # transactions/s (doc/source/performance.rst).
            producer_overrides.setdefault('retry.backoff.ms', 10)
        self._producer_config = kafka_config.merge(
            kafka_config.PRODUCER_DEFAULTS, bootstrap_servers,
            producer_overrides)
        self._runtime = runtime.current()
        self._runtime.require_threads('kafka.Processor')
        self._stop = False
        self._closed = False
        #: Batches committed and aborted, messages read and published.
        self.counts = {'batches': 0, 'aborted': 0, 'consumed': 0,
                       'published': 0}
        self._producer = _client.create(confluent_kafka.Producer,
                                        self._producer_config)
        self._consumer = _client.create(confluent_kafka.Consumer,
                                        self._consumer_config)
        self._in_transaction = False
        self._ready = False

    # -- the loop -----------------------------------------------------------

    def run(self) -> None:
        """Process batches until :meth:`stop`.

        :raises TransactionFencedError: another instance took the
            ``transactional.id``; nothing more is committed.
        :raises ConsumerError: Kafka refused the consumer for good.
        :raises Exception: what ``process`` raised, after the batch's
            transaction was aborted and its messages put back; calling
            ``run()`` again reads them again.
        """
        self.start()
        while not self._stop:
            batch = self._take()
            if batch:
                self._handle(batch)
        self._stop = False

    def stop(self) -> None:
        """End :meth:`run` after the batch in hand.

        Safe from a signal handler or another thread.
        """
        self._stop = True

    def start(self) -> None:
        """Take the ``transactional.id`` and join the group; run() does it.

        Aborts what an earlier run with this id left open, and fences that
        run if it still lives. Idempotent.
        """
        if self._closed:
            raise errors.ClientClosedError('this processor is closed')
        if self._ready:
            return
        if self._exactly_once:
            self._transactional(self._producer.init_transactions,
                                self._call_timeout)
        self._consumer.subscribe(self._topics, on_revoke=self._on_revoke,
                                 on_lost=self._on_revoke)
        self._ready = True

    def _take(self) -> list:
        deadline = time.monotonic() + self._batch_timeout
        batch: list = []
        while len(batch) < self._batch_size and not self._stop:
            wait = min(_CONSUME_SLICE, deadline - time.monotonic())
            if wait <= 0:
                break
            got = self._consumer.consume(self._batch_size - len(batch), wait)
            for message in got:
                err = message.error()
                if err is None:
                    batch.append(message)
                elif errors.ends_consuming(err):
                    raise errors.ConsumerError(
                        'Kafka consumer error: %s' % errors.explain(err))
                elif err.code() != KafkaError._PARTITION_EOF:
                    LOG.warning('Kafka processor: %s (retrying)', err.str())
            if batch and not got:
                break
        return batch

    def _handle(self, batch: list) -> None:
        self.counts['consumed'] += len(batch)
        try:
            outputs = [checked_output(o) for o in self._process(batch)]
        except Exception:
            self._rewind(batch)
            raise
        if self._exactly_once:
            self._commit_in_transaction(batch, outputs)
        else:
            self._publish_then_commit(batch, outputs)

    def _commit_in_transaction(self, batch: list, outputs: list) -> None:
        producer = self._producer
        undeliverable: list = []
        try:
            self._transactional(producer.begin_transaction)
            self._in_transaction = True
            self._produce(outputs, _recorder(undeliverable))
            self._transactional(
                producer.send_offsets_to_transaction, next_offsets(batch),
                self._consumer.consumer_group_metadata(),
                self._call_timeout)
            self._transactional(producer.commit_transaction,
                                self._call_timeout)
            self._in_transaction = False
        except errors.TransactionAborted as exc:
            LOG.warning('Kafka processor: transaction aborted (%s); the '
                        'batch of %d comes again', exc, len(batch))
            self.counts['aborted'] += 1
            self._abort()
            self._rewind(batch)
            _raise_undeliverable(undeliverable)
            return
        except errors.KafkaClientError:
            # Fenced, or fatal: Kafka aborts the open transaction itself.
            self._in_transaction = False
            raise
        self.counts['batches'] += 1
        self.counts['published'] += len(outputs)

    def _publish_then_commit(self, batch: list, outputs: list) -> None:
        failed: list = []
        self._produce(outputs, _recorder(failed))
        left = self._producer.flush(self._call_timeout)
        if left or failed:
            LOG.warning('Kafka processor: %d outputs not delivered (%s); '
                        'the batch of %d comes again', left + len(failed),
                        failed[0][0].str() if failed else 'timed out',
                        len(batch))
            self._rewind(batch)
            _raise_undeliverable(failed)
            return
        try:
            self._consumer.commit(offsets=next_offsets(batch),
                                  asynchronous=False)
        except confluent_kafka.KafkaException as exc:
            LOG.warning('Kafka processor: commit failed (%s); the batch of '
                        '%d comes again', exc.args[0].str(), len(batch))
            self._rewind(batch)
            return
        self.counts['batches'] += 1
        self.counts['published'] += len(outputs)

    def _produce(self, outputs: list, on_delivery=None) -> None:
        produce = self._producer.produce
        for topic, value, key in outputs:
            while True:
                try:
                    produce(topic, value, key, on_delivery=on_delivery)
                    break
                except BufferError:
                    # librdkafka's queue is full: let it send.
                    self._producer.poll(0.05)
                except confluent_kafka.KafkaException as exc:
                    errors.raise_for_transaction(exc.args[0],
                                                 self.transactional_id)
        self._producer.poll(0)

    def _transactional(self, call, *args):
        """``call(*args)``, retried while Kafka says it may pass.

        A call that timed out (``send_offsets_to_transaction`` while a
        leader moves) goes on inside librdkafka, which refuses the next
        one (an abort) as ``_CONFLICT`` until it ended: that is waited
        out too: given up at once, the abort left the transaction open.
        """
        deadline = time.monotonic() + self._call_timeout
        while True:
            try:
                return call(*args)
            except confluent_kafka.KafkaException as exc:
                err = exc.args[0]
                passing = (err.retriable() and not err.txn_requires_abort()
                           ) or err.code() == _CONFLICT
                if passing and time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                errors.raise_for_transaction(err, self.transactional_id)

    def _abort(self) -> None:
        """Abort the open transaction; raises only if fenced or fatal."""
        if not self._in_transaction:
            return
        try:
            self._transactional(self._producer.abort_transaction,
                                self._call_timeout)
        except errors.TransactionAborted as exc:
            LOG.error('Kafka processor: aborting the transaction failed '
                      '(%s); Kafka aborts it after transaction.timeout.ms',
                      exc)
        finally:
            self._in_transaction = False

    def _rewind(self, batch: list) -> None:
        """Read ``batch`` again: its first offsets are the committed ones."""
        assigned = {(tp.topic, tp.partition)
                    for tp in self._consumer.assignment()}
        for tp in first_offsets(batch):
            if (tp.topic, tp.partition) in assigned:
                self._consumer.seek(tp)

    def _on_revoke(self, consumer, partitions) -> None:
        # Only inside consume(), between batches: no transaction is open
        # unless a failed one could not be aborted.
        if self._in_transaction:
            LOG.warning('Kafka processor: partitions revoked with a '
                        'transaction open; aborting it')
            try:
                self._abort()
            except errors.KafkaClientError as exc:
                LOG.error('Kafka processor: abort failed: %s', exc)

    # -- closing ------------------------------------------------------------

    def close(self, timeout: float = 10.0) -> None:
        """Leave the group; an open transaction is aborted. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._abort()
        except errors.KafkaClientError as exc:
            LOG.warning('Kafka processor: abort at close failed: %s', exc)
        if not self._runtime.run_within(self._consumer.close, timeout):
            LOG.warning('Kafka processor did not leave its group within '
                        '%.1f s', timeout)

    def __enter__(self) -> 'Processor':
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return '<%s transactional.id=%s topics=%s>' % (
            type(self).__name__, self.transactional_id,
            ','.join(self._topics))


def _recorder(failures: list):
    """A delivery callback that keeps ``(error, message)`` of failures."""
    def delivered(err, message):
        if err is not None:
            failures.append((err, message))
    return delivered


def _raise_undeliverable(failures: list) -> None:
    """Raise for an output Kafka refuses for good: it would loop forever."""
    for err, message in failures:
        if errors.is_permanent(err):
            raise errors.DeliveryFailedError(
                '%s; the batch was not committed' % errors.undeliverable(
                    err, message.topic(), message.value()))
