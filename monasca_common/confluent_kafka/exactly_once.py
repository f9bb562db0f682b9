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

"""``exactly_once``: an unchanged service's commits as Kafka transactions.

A service that iterates a consumer, publishes the outcome and calls
``commit()`` (monasca-notification's engines) gets exactly-once outputs
by one option, ``[kafka_client] exactly_once = true`` (or the keyword of
the same name on both clients). The rules:

* **Pairs.** A process has at most one exactly-once consumer: a second
  one is refused, naming the first (whose offsets would a transaction
  carry?). The first exactly-once producer built *after* it in the same
  process joins its transactions. A producer built before it, a second
  producer, or one in a process without such a consumer (monasca-api,
  a script) publishes as usual, at-least-once, and says so once at INFO:
  a shared configuration file may set the option for every service.
* **Transactions.** The first publish after a commit begins a
  transaction. ``commit()`` sends the offsets handed out since the last
  commit into it, with the consumer's group metadata, and commits it:
  outputs and input offsets land together or not at all. A commit with
  nothing published commits the offsets in a transaction all the same.
  A commit from a revocation, between two messages, is such a commit of
  everything handed out.
* **What never reaches a commit is aborted**: when either client closes,
  when a commit fails (the inputs are read again), and when the group
  takes partitions away without the reading thread (a stalled service,
  a lost session) before they move; the reading thread's next commit is
  aborted too (what it published meanwhile may come from a moved input).
  If the process dies, Kafka aborts it
  after ``transaction.timeout.ms`` (60 s here): until then
  ``read_committed`` readers of those output partitions wait.
* The producer's ``transactional.id`` is ``<group>.<host>.<pid>``: unique
  per process, so the six engines of an instance never fence each other.
* Another process with the same id fences this one:
  :class:`~monasca_common.confluent_kafka.errors.TransactionFencedError`
  from ``publish`` or ``commit``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import typing

import confluent_kafka

from monasca_common.confluent_kafka import config as kafka_config
from monasca_common.confluent_kafka import errors

LOG = logging.getLogger(__name__)

TransactionAborted = errors.TransactionAborted

#: ``transaction.timeout.ms`` unless the producer is given one.
TRANSACTION_TIMEOUT_MS = 60000

_lock = threading.Lock()
_links: dict[int, 'Link'] = {}  # by process id: fork() leaves them behind


class Link:
    """One consumer's transactions, and the producer that joins them.

    :param group_id: the consumer's group.
    :param owner: the consumer's description, for errors.
    """

    def __init__(self, group_id: str, owner: str):
        self.group_id = group_id
        self.owner = owner
        self.transactional_id = '%s.%s.%d' % (
            group_id, socket.gethostname(), os.getpid())
        #: The joined producer's librdkafka handle, once one joined.
        self.producer: confluent_kafka.Producer | None = None
        #: A producer is joining or joined.
        self.taken = False
        self._timeout = TRANSACTION_TIMEOUT_MS / 1000.0
        self._lock = threading.RLock()
        self._ready = False
        #: Whether a transaction is open.
        self.open = False
        #: The consumer closed.
        self.closed = False
        #: Partitions left with a transaction open: outputs the reading
        #: thread publishes until its next commit belong to inputs that
        #: may have moved, so that commit is aborted too.
        self.abandoned = False

    def producer_config(self, config: dict) -> dict:
        """Properties a joining producer adds to ``config``."""
        extra: dict[str, typing.Any] = {
            'transactional.id': self.transactional_id,
            'transaction.timeout.ms': TRANSACTION_TIMEOUT_MS,
            # See transactions.py: a send right after a commit waits
            # retry.backoff.ms for the commit markers.
            'retry.backoff.ms': 10}
        extra.update(config)
        timeout_ms = kafka_config.int_property(
            extra, 'transaction.timeout.ms', TRANSACTION_TIMEOUT_MS)
        extra['message.timeout.ms'] = min(kafka_config.int_property(
            extra, 'message.timeout.ms', timeout_ms), timeout_ms)
        self._timeout = timeout_ms / 1000.0
        return extra

    def join(self, producer: confluent_kafka.Producer) -> None:
        self.producer = producer

    def leave(self, producer: confluent_kafka.Producer) -> None:
        """The producer closes: what it published uncommitted is aborted."""
        with self._lock:
            if self.producer is not producer:
                return
            self.abort('the producer closes')
            self.producer = None
            self.taken = False
            self._ready = False

    def begin(self) -> None:
        """Before a publish: open a transaction if none is.

        :raises ConsumerError: the consumer is closed: nothing could
            commit what is published.
        :raises PublishError: Kafka did not let a transaction begin.
        """
        if self.open:
            return
        with self._lock:
            if self.closed:
                raise errors.ConsumerError(
                    'exactly_once: %s, whose transactions this producer '
                    'joins, is closed; nothing would commit what it '
                    'publishes' % self.owner)
            if self.open or self.producer is None:
                return
            try:
                self._call(self._init_once)
                self._call(self.producer.begin_transaction)
            except TransactionAborted as exc:
                raise errors.PublishError(
                    'Kafka did not begin a transaction: %s' % exc) from None
            self.open = True

    def commit(self, offsets: list, group_metadata, timeout: float) -> None:
        """Commit the open transaction (or a new one) with ``offsets``.

        :raises TransactionAborted: it was aborted instead.
        :raises TransactionFencedError: another process took the id.
        """
        with self._lock:
            producer = self.producer
            if producer is None:
                raise errors.ConsumerError(
                    'no producer joined the transactions of %s' % self.owner)
            # Closed to publishes meanwhile: another thread's publish
            # waits for the lock and begins the next transaction.
            begun, self.open = self.open, False
            try:
                if self.abandoned:
                    self.abandoned = False
                    raise TransactionAborted(
                        'partitions were taken away from the reading '
                        'thread since the last commit')
                if not begun:
                    self._call(self._init_once)
                    self._call(producer.begin_transaction)
                    begun = True
                if offsets:
                    self._call(producer.send_offsets_to_transaction,
                               offsets, group_metadata, timeout)
                self._call(producer.commit_transaction, timeout)
            except TransactionAborted:
                self.open = begun
                self.abort('the commit failed')
                raise

    def abandon(self) -> None:
        """Partitions go without the reading thread, before they move."""
        with self._lock:
            if self.open:
                self.abandoned = True
                self.abort('partitions left without the reading thread')

    def abort(self, why: str) -> None:
        """Abort the open transaction, if any; never raises."""
        with self._lock:
            if not self.open or self.producer is None:
                return
            self.open = False
            try:
                self.producer.abort_transaction(self._timeout)
                LOG.warning('Kafka: transaction aborted (%s); its outputs '
                            'are discarded and its inputs come again', why)
            except confluent_kafka.KafkaException as exc:
                LOG.error('Kafka: aborting the transaction (%s) failed: %s; '
                          'Kafka aborts it after transaction.timeout.ms',
                          why, exc.args[0].str())

    def _init_once(self) -> None:
        if not self._ready and self.producer is not None:
            self.producer.init_transactions(self._timeout)
            self._ready = True

    def _call(self, call: typing.Callable, *args):
        try:
            return call(*args)
        except confluent_kafka.KafkaException as exc:
            errors.raise_for_transaction(exc.args[0], self.transactional_id)


def register_consumer(group_id: str, owner: str) -> Link:
    """The link of this process's exactly-once consumer (at most one)."""
    pid = os.getpid()
    with _lock:
        existing = _links.get(pid)
        if existing is not None:
            raise errors.ConfigurationError(
                'exactly_once: this process already has an exactly-once '
                'consumer (%s); a transaction carries the offsets of one '
                'consumer' % existing.owner)
        link = _links[pid] = Link(group_id, owner)
        return link


def unregister_consumer(link: Link) -> None:
    link.abort('the consumer closes')
    link.closed = True
    with _lock:
        if _links.get(os.getpid()) is link:
            del _links[os.getpid()]


def link_for_producer(description: str) -> Link | None:
    """The link a new exactly-once producer joins, if any."""
    with _lock:
        link = _links.get(os.getpid())
        if link is not None and not link.taken:
            link.taken = True
            return link
    LOG.info('Kafka producer %s: exactly_once asked, but %s; it publishes '
             'at-least-once', description,
             'no exactly-once consumer was built before it in this process'
             if link is None else
             'another producer already joins the transactions of %s'
             % link.owner)
    return None
