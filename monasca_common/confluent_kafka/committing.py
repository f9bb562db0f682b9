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

"""What one commit does, from the offsets pending to Kafka's answer.

1. Take from the offset ledger what the commit covers (handed out since
   the last commit, in partitions still owned).
2. Wait until Kafka has the outputs that belong to the commit: what the
   threads reading the consumer published before it (see
   :mod:`~monasca_common.confluent_kafka.published`). If one of them
   failed since the last commit for a reason that passes, commit nothing
   and rewind the partitions to their committed offsets: what was read
   since is read, and its outputs published, again. A permanent failure
   (too large, unknown topic, not authorized) is logged once, naming the
   message, and the commit goes on.
3. Have the member thread commit, synchronously, within ``commit_timeout``,
   and settle the answer in the ledger. With ``exactly_once`` and a
   producer that joined (see
   :mod:`~monasca_common.confluent_kafka.exactly_once`), the offsets go
   into the producer's transaction instead, which commits; if it is
   aborted, the partitions are rewound to their committed offsets.

A commit that does not happen for a reason that passes raises
:class:`~monasca_common.confluent_kafka.offsets.CommitDeferred`; its
offsets stay pending for the next commit. Those Kafka itself turned away
(a rebalance, the coordinator moving) are also sent again by the member
thread, a second later and then less and less often, for as long as the
partitions stay owned and no newer commit covers them.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
import typing
import weakref

import confluent_kafka

from monasca_common.confluent_kafka import errors
from monasca_common.confluent_kafka import exactly_once
from monasca_common.confluent_kafka import offsets as offset_ledger
from monasca_common.confluent_kafka import published

LOG = logging.getLogger('monasca_common.confluent_kafka.consumer')

KafkaError = confluent_kafka.KafkaError
TopicPartition = confluent_kafka.TopicPartition
# A reason for a deferred commit is logged once a minute, not each time.
_LOG_AGAIN_AFTER = 60.0


class Committer:
    """Commits a consumer's handed offsets; see the module.

    :param commit_timeout: seconds one commit may take, in all: the wait
        for published messages, then Kafka's answer.
    :param deliver_before_commit: wait for published messages first.
    """

    def __init__(self, ledger: offset_ledger.OffsetLedger,
                 commit_timeout: float, deliver_before_commit: bool = True):
        self._ledger = ledger
        self._timeout = commit_timeout
        self._deliver_first = deliver_before_commit
        # Transient failures seen per scope, at the last commit.
        self._failures_seen: weakref.WeakKeyDictionary = \
            weakref.WeakKeyDictionary()
        self._readers: weakref.WeakSet = weakref.WeakSet()
        self._scope_list: list[published.Outputs] = []
        self._readers_listed = 0
        self.retries = offset_ledger.CommitRetries()
        #: Outputs that failed for good, reported by a commit.
        self.undeliverable = 0
        self._logged: dict[str, float] = {}
        #: Commits Kafka took, and commits that did not happen (deferred
        #: or refused), since the start.
        self.done = 0
        self.failed = 0
        #: When Kafka last took a commit (``time.monotonic()``).
        self.last_done: float | None = None
        #: The consumer's transactions, with ``exactly_once``.
        self.link: exactly_once.Link | None = None

    def counts(self) -> dict[str, float]:
        """The consumer's commit figures, for its metrics."""
        counts: dict[str, float] = {
            'consumed': 0, 'buffered': 0, 'rebalances': 0, 'assigned': 0,
            'commits.done': self.done, 'commits.failed': self.failed,
            'undeliverable': self.undeliverable}
        if self.last_done is not None:
            counts['last_commit_age'] = time.monotonic() - self.last_done
        return counts

    def release(self, member, revocation, callback, consumer) -> None:
        """On the reading thread: let go of partitions a rebalance takes.

        Unless they are lost already (another member may own them), the
        service's repartition ``callback(consumer, partitions)`` runs, then
        what was handed of them is committed.
        """
        if not revocation.abandoned:
            if callback is not None:
                try:
                    callback(consumer, revocation.partitions)
                except Exception:
                    LOG.exception('Kafka repartition callback raised')
            try:
                self.commit(member, revocation.keys, revoking=True)
            except (errors.CommitFailedError,
                    offset_ledger.CommitDeferred) as exc:
                LOG.error('Kafka commit on revoke failed: %s; what was '
                          'handed of %s since will come again to its new '
                          'owner', exc,
                          offset_ledger.describe(revocation.partitions))
        self.forget(revocation.keys)

    def commit(self, member, only=None, revoking: bool = False,
               asynchronous: bool = False) -> list[TopicPartition]:
        """Commit what was handed out (``only``: for these partitions).

        :returns: the offsets committed (sent, if ``asynchronous``).
        :raises CommitDeferred: nothing or not all committed, for a reason
            that passes; what is not committed stays pending.
        :raises CommitFailedError: Kafka refused the commit for good.
        """
        link = self.link
        if link is not None and link.producer is None:
            link = None
        if link is not None:
            # A transaction carries every offset handed out: its outputs
            # came from all of them.
            only = None
        pending = self._ledger.pending(member.assigned, only)
        if not pending and not (link is not None and link.open):
            return []
        try:
            return self._commit(member, pending, revoking, asynchronous,
                                link)
        except offset_ledger.CommitDeferred as exc:
            self.failed += 1
            if not revoking:
                self.retries.add(exc.partitions, time.monotonic())
            raise
        except Exception:
            self.failed += 1
            raise

    def _commit(self, member, pending, revoking, asynchronous, link=None):
        deadline = time.monotonic() + self._timeout
        if self._deliver_first:
            self._await_outputs(member, pending, deadline, revoking, link)
        offsets = [TopicPartition(t, p, o) for (t, p), o in pending.items()]
        self.retries.superseded(pending)
        if link is not None:
            return self._commit_in_transaction(member, link, offsets,
                                               pending, deadline, revoking)
        future = member.commit(offsets, asynchronous)
        if asynchronous:
            future.add_done_callback(
                lambda future: self._settle_later(offsets, future))
            return offsets
        try:
            result = future.result(max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            raise offset_ledger.commit_error(KafkaError(
                KafkaError._TIMED_OUT,
                'Kafka did not answer within %.1f s (commit_timeout); it '
                'may still land' % self._timeout), offsets) from None
        except confluent_kafka.KafkaException as exc:
            if exc.args[0].code() == KafkaError._NO_OFFSET:
                return []
            raise offset_ledger.commit_error(exc.args[0], offsets) from None
        return self._settle(result)

    def _commit_in_transaction(self, member, link, offsets, pending,
                               deadline, revoking) -> list[TopicPartition]:
        metadata = member.call(
            lambda consumer: consumer.consumer_group_metadata(),
            max(0.1, deadline - time.monotonic()))
        try:
            link.commit(offsets, metadata,
                        max(0.1, deadline - time.monotonic()))
        except errors.TransactionAborted as exc:
            # The outputs are gone: every input since the last commit
            # comes again, revoked or not (the new owner's start there).
            self._rewind(member, pending)
            raise offset_ledger.CommitDeferred(
                'transaction', 'Kafka transaction of the commit of %s '
                'aborted (%s): what was read since the last commit is read '
                'again' % (offset_ledger.describe(offsets), exc),
                [(t, p, o, None) for (t, p), o in pending.items()]
            ) from None
        return self._settle(offsets)

    def _settle(self, result: list) -> list[TopicPartition]:
        done = self._ledger.settle(result)
        self.done += 1
        self.last_done = time.monotonic()
        return done

    def _settle_later(self, offsets: list, future,
                      retried: bool = False) -> None:
        try:
            self._settle(future.result())
        except Exception as exc:
            self.failed += 1
            if isinstance(exc, confluent_kafka.KafkaException):
                exc = offset_ledger.commit_error(exc.args[0], offsets)
            if isinstance(exc, offset_ledger.CommitDeferred):
                self.retries.add(exc.partitions, time.monotonic())
            self.log_once('retry' if retried else 'async',
                          'Kafka asynchronous commit: %s', exc)
        else:
            if retried:
                self.retries.succeeded()
                LOG.info('Kafka took the commit of %s it had turned away '
                         'before', offset_ledger.describe(offsets))

    def retry_refused(self, member) -> None:
        """On the member thread: send again what Kafka turned away, if due."""
        again = self.retries.take(time.monotonic(), member.assigned,
                                  self._ledger.committed)
        if not again:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in again.items()]
        member.commit(offsets, asynchronous=True).add_done_callback(
            lambda future: self._settle_later(offsets, future, True))

    def forget(self, keys) -> None:
        """The partitions left the assignment."""
        self._ledger.forget(keys)
        self.retries.superseded(keys)

    def reading(self) -> None:
        """The calling thread reads the consumer: its outputs count."""
        outputs = published.thread_outputs()
        if outputs not in self._readers:
            self._readers.add(outputs)
            self._failures_seen[outputs] = outputs.transient

    def _scopes(self) -> list[published.Outputs]:
        current = published.thread_outputs()
        scopes = self._scope_list
        # The same threads commit and read, commit after commit: the list
        # is made again only when one comes or goes.
        if (len(self._readers) != self._readers_listed or
                not any(s is current for s in scopes)):
            scopes = [published.PROCESS, current]
            scopes.extend(s for s in list(self._readers) if s is not current)
            for outputs in scopes:
                self._failures_seen.setdefault(outputs, outputs.transient)
            self._scope_list = scopes
            self._readers_listed = len(self._readers)
        return scopes

    def _report_poison(self, scopes) -> None:
        for outputs in scopes:
            for failure in outputs.take_permanent():
                self.undeliverable += 1
                LOG.error(
                    'Kafka: %s. The input it came from is committed: '
                    'reading it again would fail the same way.',
                    errors.undeliverable(failure.error, failure.topic,
                                         failure.value))

    def _await_outputs(self, member, pending, deadline, revoking,
                       link=None) -> None:
        scopes = self._scopes()
        if all(s.quiet for s in scopes):
            # Nothing published, nothing failed, ever: the commit of a
            # service that only reads.
            return
        unreported = published.await_delivery(scopes, deadline)
        described = ', '.join('%s[%d]' % key for key in pending)
        partitions = [(t, p, o, None) for (t, p), o in pending.items()]
        if unreported:
            raise offset_ledger.CommitDeferred(
                'outputs', 'Kafka commit of %s waits: %d messages the process '
                'published before it are not yet in Kafka; the offsets stay '
                'pending' % (described, unreported), partitions)
        self._report_poison(scopes)
        changed = [s for s in scopes
                   if s.transient != self._failures_seen.get(s)]
        if not changed:
            return
        for outputs in changed:
            self._failures_seen[outputs] = outputs.transient
        if link is not None:
            # The outputs that did land go too: a transaction is whole.
            link.abort('outputs failed')
        if not revoking or link is not None:
            self._rewind(member, pending)
        raise offset_ledger.CommitDeferred(
            'outputs', 'Kafka commit of %s not done: messages the process '
            'published since the last commit failed; what was read since '
            'then is read again' % described, partitions)

    def _rewind(self, member, pending) -> None:
        ledger = self._ledger

        def rewind(consumer):
            known = {key: ledger.committed(key) for key in pending}
            unknown = [TopicPartition(*key) for key, off in known.items()
                       if off is None]
            if unknown:
                for tp in member.handle.blocking_call(
                        consumer.committed, unknown, timeout=self._timeout):
                    known[(tp.topic, tp.partition)] = tp.offset
            member.drop_buffered(set(pending))
            for (topic, partition), offset in known.items():
                if offset is None or offset < 0:
                    offset = confluent_kafka.OFFSET_BEGINNING
                consumer.seek(TopicPartition(topic, partition, offset))
            ledger.forget_handed(pending)
        try:
            member.call(rewind, self._timeout)
        except Exception as exc:
            LOG.error('Kafka consumer could not rewind %s: %s',
                      ', '.join('%s[%d]' % key for key in pending), exc)

    def log_once(self, reason: str, text: str, *args) -> None:
        """Log at warning once a minute per ``reason``, else at debug."""
        now = time.monotonic()
        if now - self._logged.get(reason, -_LOG_AGAIN_AFTER) >= \
                _LOG_AGAIN_AFTER:
            self._logged[reason] = now
            LOG.warning(text, *args)
        else:
            LOG.debug(text, *args)


class CommitInterval:
    """When the consumer's commit callback falls due.

    ``callback()`` is called from the reading thread once ``interval``
    seconds have passed since the last commit (or since reading started),
    whether or not messages arrive; the interval restarts then even if the
    callback does not commit, so it is called once per interval.

    The reading loop does not read the clock for each message: the member
    thread :meth:`watch` es it, and :attr:`due` is not empty once the
    callback may be due (a test of a list, against a clock reading and a
    call).
    """

    def __init__(self, callback: typing.Callable[[], typing.Any] | None,
                 interval: float):
        self.callback = callback
        self._interval = interval
        self._last = time.monotonic()
        #: Not empty once the callback may be due.
        self.due: list = []

    def restart(self) -> None:
        self._last = time.monotonic()

    def wait_time(self, limit: float) -> float:
        """``limit``, or less if the callback falls due sooner."""
        if self.callback is None:
            return limit
        due = self._last + self._interval - time.monotonic()
        return max(0.0, min(limit, due))

    def watch(self, now: float) -> bool:
        """On the member thread, every turn: flag the callback if due.

        :returns: whether it has just fallen due.
        """
        if self.callback is not None and not self.due and \
                now - self._last >= self._interval:
            self.due.append(True)
            return True
        return False

    def check(self) -> None:
        """On the reading thread: call the callback if it is due."""
        if self.callback is None:
            return
        self.due.clear()
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            self.callback()
