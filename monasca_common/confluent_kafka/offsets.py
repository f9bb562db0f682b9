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

"""The offset ledger: what a commit covers. Pure bookkeeping.

Per partition, the ledger knows the last message *handed* to the caller and
the offset last *committed*. A commit covers, for each partition still
owned, the offset after the last handed message, when that differs from
what was committed. A failed commit changes nothing: the offsets stay
pending and the next commit covers them again. Only a partition that left
the assignment (revoked or lost) is forgotten.

:meth:`OffsetLedger.settle` reads Kafka's answer to a commit: it records
what was taken and says whether what was not will pass (a rebalance, the
coordinator moving: :class:`CommitDeferred`) or not
(:class:`~monasca_common.confluent_kafka.errors.CommitFailedError`).
:class:`CommitRetries` keeps what Kafka turned away, to send it again
once the group has settled.
"""

from __future__ import annotations

import collections.abc
import operator
import threading
import typing

import confluent_kafka

from monasca_common.confluent_kafka import errors

Key = tuple[str, int]
KafkaError = confluent_kafka.KafkaError
_partition = confluent_kafka.Message.partition
_topic = confluent_kafka.Message.topic

# Commit answers that leave the offsets pending for the next commit: the
# group is rebalancing, the coordinator moves or is away, Kafka is slow.
# Only a partition leaving the assignment drops its offsets.
PASSING = frozenset((
    KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID, KafkaError.STALE_MEMBER_EPOCH,
    KafkaError._STATE, KafkaError._TRANSPORT, KafkaError._TIMED_OUT,
    KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError._WAIT_COORD,
    KafkaError.REQUEST_TIMED_OUT, KafkaError._ALL_BROKERS_DOWN,
    KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION,
    KafkaError.FENCED_INSTANCE_ID,
))


def passes(err: KafkaError) -> bool:
    """A commit error after which the offsets stay pending."""
    return err.code() in PASSING or err.retriable()


def describe(partitions) -> str:
    return ', '.join('%s[%d]' % (tp.topic, tp.partition)
                     for tp in partitions) or 'none'


class CommitDeferred(Exception):
    """A commit that did not (all) happen, for a reason that passes.

    :ivar reason: a short name of the reason, to log it once per reason.
    :ivar partitions: ``(topic, partition, offset, error)`` not committed.
    :ivar committed: the TopicPartitions that were committed.
    """

    def __init__(self, reason: str, message: str, partitions: list,
                 committed: list | None = None):
        super().__init__(message)
        self.reason = reason
        self.partitions = partitions
        self.committed = list(committed or ())


def commit_error(err: KafkaError, offsets: list) -> Exception:
    """The exception for a commit of ``offsets`` that failed as a whole."""
    partitions = [(tp.topic, tp.partition, tp.offset, err) for tp in offsets]
    if passes(err):
        return CommitDeferred(
            err.name(), 'Kafka commit of %s did not happen (%s); the offsets '
            'stay pending for the next commit' % (describe(offsets),
                                                  err.str()), partitions)
    return errors.CommitFailedError('Kafka commit of %s failed: %s'
                                    % (describe(offsets), err.str()),
                                    partitions)


class CommitRetries:
    """Offsets Kafka turned away for a reason that passes, to send again.

    Kafka's own advice for a commit refused while the group rebalances:
    once the rebalance is over, commit again the offsets of the partitions
    still owned. Without it a service that commits after its last message
    and then waits for more would leave that commit undone until its next
    one: a restart meanwhile reads those messages twice.

    Only offsets Kafka itself refused come here (a commit held back
    because published messages are not yet in Kafka does not). A commit
    the service sends later for the same partitions supersedes them; a
    partition leaving the assignment drops them. The first retry waits
    ``first_wait`` seconds, then each refusal in a row doubles the wait up
    to ``longest_wait``.
    """

    def __init__(self, first_wait: float = 1.0, longest_wait: float = 30.0):
        self._first_wait = self._wait = first_wait
        self._longest_wait = longest_wait
        self._offsets: dict[Key, int] = {}
        self._due: float | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._offsets)

    def add(self, partitions: list, now: float) -> None:
        """Kafka refused ``(topic, partition, offset, error)`` commits."""
        with self._lock:
            for topic, partition, offset, err in partitions:
                if err is None or not passes(err):
                    continue
                key = (topic, partition)
                if offset > self._offsets.get(key, -1):
                    self._offsets[key] = offset
            if self._offsets and self._due is None:
                self._due = now + self._wait
                self._wait = min(self._wait * 2, self._longest_wait)

    def superseded(self, keys: typing.Iterable[Key]) -> None:
        """A newer commit of these partitions goes to Kafka, or they left."""
        if not self._offsets:  # each commit calls this: keep it cheap
            return
        with self._lock:
            for key in keys:
                self._offsets.pop(key, None)

    def take(self, now: float, owned: collections.abc.Container[Key],
             committed: typing.Callable[[Key], int | None]
             ) -> dict[Key, int]:
        """The offsets to send again now: due, owned, not yet committed."""
        if self._due is None or now < self._due:
            return {}
        with self._lock:
            self._due = None
            offsets, self._offsets = self._offsets, {}
        again = {}
        for key, offset in offsets.items():
            done = committed(key)
            if key in owned and (done is None or offset > done):
                again[key] = offset
        return again

    def succeeded(self) -> None:
        """A retry went through: the next refusal waits the least again."""
        self._wait = self._first_wait


class OffsetLedger:
    """Handed and committed offsets per (topic, partition).

    The iteration hands a whole chunk of messages out through one list
    iterator (:meth:`handing`), with no bookkeeping per message: what it
    handed of the chunk is what that iterator has gone past, and is
    reckoned only when asked (:meth:`pending`) or when the chunk is done.
    Another thread takes the rest of the chunk back with
    :meth:`take_back`, in one step the iterator cannot race: a revocation,
    a pause or ``stop()`` does not wait for the reader to finish it.

    :param single_topic: the topic, when the consumer reads only one. The
        ledger then files handed messages under the partition number
        alone: asking each message its topic builds and hashes a new string,
        the largest per-message cost of the bookkeeping.
    """

    def __init__(self, single_topic: str | None = None):
        self.single_topic = single_topic
        #: The last message handed out, by partition (one topic) or by
        #: (topic, partition).
        self.handed: dict = {}
        self._committed: dict[Key, int] = {}
        # The chunk being handed, its iterator, and how much of it is in
        # ``handed`` already.
        self._chunk: list = []
        self._iterator: typing.Iterator | None = None
        self._folded = 0
        # Reentrant: stop() may run in a signal handler that interrupted
        # the reading thread inside it.
        self._lock = threading.RLock()

    def handing(self, chunk: list) -> typing.Iterator:
        """The iterator that hands ``chunk`` out; the last one is done."""
        with self._lock:
            self._settle_chunk()
            iterator = iter(chunk)
            self._chunk, self._iterator, self._folded = chunk, iterator, 0
            return iterator

    def done_handing(self, iterator: typing.Iterator) -> None:
        """``iterator`` came to its end (or was taken back)."""
        with self._lock:
            if iterator is self._iterator:
                self._settle_chunk()

    def take_back(self) -> list:
        """What the iterator has not handed yet, which it never will now."""
        with self._lock:
            if self._iterator is None:
                return []
            # One C call: the reading thread cannot take one more meanwhile.
            rest = list(self._iterator)
            self._fold(len(self._chunk) - len(rest))
            self._chunk, self._iterator, self._folded = [], None, 0
            return rest

    def unhanded(self) -> int:
        """Messages of the chunk the iterator has not handed yet."""
        iterator = self._iterator
        return 0 if iterator is None else \
            operator.length_hint(iterator)

    def _fold_chunk(self) -> None:
        with self._lock:
            if self._iterator is not None:
                self._fold()

    def _settle_chunk(self) -> None:
        if self._iterator is not None:
            self._fold()
            self._chunk, self._iterator, self._folded = [], None, 0

    def _fold(self, end: int | None = None) -> None:
        """Note what the iterator has handed since the last fold."""
        chunk = self._chunk
        if end is None:
            end = len(chunk) - operator.length_hint(self._iterator)
        if end <= self._folded:
            return
        taken = chunk[self._folded:end]
        self._folded = end
        if self.single_topic is not None:
            keys: list = list(map(_partition, taken))
        else:
            keys = list(zip(map(_topic, taken), map(_partition, taken)))
        if keys.count(keys[0]) == len(keys):
            # librdkafka hands messages in runs of one partition.
            self.handed[keys[0]] = taken[-1]
        else:
            self.handed.update(zip(keys, taken))

    def hand(self, message) -> None:
        """Note ``message`` as given to the caller."""
        if self.single_topic is not None:
            self.handed[message.partition()] = message
        else:
            self.handed[(message.topic(), message.partition())] = message

    def pending(self, owned: collections.abc.Container[Key] | None = None,
                only: collections.abc.Container[Key] | None = None
                ) -> dict[Key, int]:
        """Offsets to commit: after the last handed, not yet committed.

        :param owned: partitions still assigned (None: all).
        :param only: restrict to these partitions (None: all).
        """
        self._fold_chunk()
        single_topic = self.single_topic
        pending = {}
        # A copy first: the reading thread may add to it meanwhile.
        for key, message in list(self.handed.items()):
            if single_topic is not None:
                key = (single_topic, key)
            if owned is not None and key not in owned:
                continue
            if only is not None and key not in only:
                continue
            offset = message.offset() + 1
            if self._committed.get(key) != offset:
                pending[key] = offset
        return pending

    def record_commit(self, committed: typing.Iterable[tuple[Key, int]]
                      ) -> None:
        """Kafka took these offsets."""
        for key, offset in committed:
            if offset > self._committed.get(key, -1):
                self._committed[key] = offset

    def settle(self, result: list) -> list:
        """Record Kafka's answer to a commit (TopicPartitions with errors).

        :returns: the TopicPartitions committed.
        :raises CommitDeferred: some were not, for reasons that pass.
        :raises CommitFailedError: some were not, for good.
        """
        done = [tp for tp in result if tp.error is None]
        # An answer that comes after its partition was revoked is not
        # recorded: the next owner commits from there on.
        self.record_commit(((tp.topic, tp.partition), tp.offset)
                           for tp in done if self._handed_key(tp) in
                           self.handed)
        failed = [tp for tp in result if tp.error is not None]
        if not failed:
            return done
        detail = ', '.join('%s[%d]@%d: %s' % (
            tp.topic, tp.partition, tp.offset, tp.error.str())
            for tp in failed)
        partitions = [(tp.topic, tp.partition, tp.offset, tp.error)
                      for tp in failed]
        if all(passes(tp.error) for tp in failed):
            raise CommitDeferred(
                failed[0].error.name(), 'Kafka commit did not happen for %s; '
                'the offsets stay pending' % detail, partitions, done)
        raise errors.CommitFailedError('Kafka commit failed for %s' % detail,
                                       partitions)

    def next_offsets(self, keys: typing.Iterable[Key]) -> dict[Key, int]:
        """Where each partition resumes reading.

        After the last message handed out, or else at the last commit.
        """
        found = self.pending(None, set(keys))
        for key in keys:
            if key not in found and self._committed.get(key) is not None:
                found[key] = self._committed[key]
        return found

    def committed(self, key: Key) -> int | None:
        """The offset last committed through this ledger, if any."""
        return self._committed.get(key)

    def _handed_key(self, tp) -> Key | int:
        if self.single_topic is not None:
            return tp.partition
        return (tp.topic, tp.partition)

    def forget(self, keys: typing.Iterable[Key]) -> None:
        """The partitions left the assignment, or were rewound."""
        # What the chunk handed before now is forgotten too.
        self._fold_chunk()
        single_topic = self.single_topic
        for key in keys:
            self.handed.pop(key[1] if single_topic is not None else key,
                            None)
            self._committed.pop(key, None)

    def forget_handed(self, keys: typing.Iterable[Key]) -> None:
        """Nothing of these partitions counts as handed any more."""
        self._fold_chunk()
        single_topic = self.single_topic
        for key in keys:
            self.handed.pop(key[1] if single_topic is not None else key,
                            None)
