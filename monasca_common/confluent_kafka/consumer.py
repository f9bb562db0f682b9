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

"""The consumer-group Kafka consumer, at-least-once.

Kafka manages the group (no ZooKeeper). The consumer remembers, per
partition, the last message it *handed* to the caller (see
:mod:`~monasca_common.confluent_kafka.offsets`); ``commit()`` commits the
offsets after those, and nothing else ever commits: not librdkafka (auto
commit and auto offset store are off), not ``close()``. A message the
service has not processed is therefore never committed, and after a crash
the group redelivers from the last commit.

Before a commit, whatever the process published is delivered first (see
:mod:`~monasca_common.confluent_kafka.published`): a service that reads,
publishes the outcome and commits never commits an input whose output is
not in Kafka. A background thread keeps the consumer a live group member
while the service is busy (see :mod:`~monasca_common.confluent_kafka.member`).
"""

from __future__ import annotations

import collections.abc
import itertools
import logging
import os
import threading
import typing

import confluent_kafka

from monasca_common.confluent_kafka import _client
from monasca_common.confluent_kafka import committing
from monasca_common.confluent_kafka import config as kafka_config
from monasca_common.confluent_kafka import errors
from monasca_common.confluent_kafka import exactly_once as transaction_link
from monasca_common.confluent_kafka import lag
from monasca_common.confluent_kafka import member as group_member
from monasca_common.confluent_kafka import metrics as client_metrics
from monasca_common.confluent_kafka import offsets as offset_ledger
from monasca_common.confluent_kafka import opts as kafka_opts
from monasca_common.confluent_kafka import rebalancing
from monasca_common.confluent_kafka import reporting

LOG = logging.getLogger(__name__)

# How often librdkafka reports each partition's fetch state, by which
# partitions whose fetch is stuck are found (see fetching.py);
# ``statistics.interval.ms=0`` turns that off.
_STATISTICS_INTERVAL_MS = 5000

KafkaError = confluent_kafka.KafkaError
Message = confluent_kafka.Message
TopicPartition = confluent_kafka.TopicPartition
CommitCallback = typing.Callable[[], typing.Any]


class KafkaConsumer(_client.Client):
    """Reads a topic as a member of a consumer group.

    :param bootstrap_servers: ``"host:port,..."`` or a list of them.
    :param group_id: the consumer group; must not be empty.
    :param topic: a topic name or a list of them.
    :param fetch_min_bytes: ``fetch.min.bytes`` (librdkafka's default when
        None: answer as soon as there is data).
    :param client_id: ``client.id``, when not empty.
    :param repartition_callback: called before partitions are revoked in a
        rebalance, as ``callback(consumer, partitions)`` or ``callback()``,
        from the reading thread between two messages, so the service can
        flush and commit; then what was handed out for the revoked
        partitions is committed.
    :param commit_callback: ``commit_callback()``, called from the
        iteration once ``max_commit_interval`` seconds have passed since the
        last commit, whether or not messages arrive.
    :param max_commit_interval: seconds, see ``commit_callback``.
    :param timeout: ``session.timeout.ms``: how long the group waits for a
        member that stopped answering before giving its partitions away.
    :param poll_timeout: longest single wait for messages, in seconds; it
        bounds how soon ``stop()`` takes effect. Must be positive.
    :param commit_timeout: how long ``commit()`` waits, in all, for what
        the process published and then for Kafka to take the offsets.
    :param commit_errors: ``'log'`` (default): a commit that fails for a
        passing reason (a rebalance, the coordinator away, outputs not yet
        delivered) is logged once per reason, its offsets stay pending for
        the next commit or the revoke, and ``commit()`` returns what it did
        commit. ``'raise'``: such a commit raises
        :class:`CommitFailedError` (the offsets stay pending all the same).
    :param deliver_before_commit: wait, before each commit, until Kafka
        has the outputs that belong to it: what the threads reading this
        consumer (and the one committing) published through this library,
        and what producers with ``commit_barrier='process'`` published (a
        commit never covers an input whose output is not in Kafka). If
        such an output failed for a reason that passes, nothing is
        committed and the partitions read since the last commit are read
        again from it; one that fails for good (too large, unknown topic,
        not authorized) is logged once, naming it, and the commit goes on.
    :param revoke_timeout: longest wait, in seconds, for the reading thread
        to come back and release partitions a rebalance takes away
        (``max.poll.interval.ms`` by default, 300 s).
    :param config: librdkafka properties, checked now. Defaults:
        ``enable.auto.commit=false``, ``enable.auto.offset.store=false``,
        ``auto.offset.reset=earliest``,
        ``partition.assignment.strategy=cooperative-sticky``,
        ``fetch.queue.backoff.ms=50`` (a backlog is read without pauses),
        ``statistics.interval.ms=5000``: a partition that received nothing
        for 15 s while its statistics show its fetch stuck (never started,
        or below the high watermark with nothing queued) is assigned
        again; 0 turns that off. A ``stats_cb`` of the caller still gets
        every report. ``queued.max.messages.kbytes`` (64 MiB by default)
        bounds, besides librdkafka's queue, the messages fetched that the
        service has not taken yet (at most 10,000 of them too).
    :param exactly_once: commit in Kafka transactions, with the outputs
        of the producer that joins them (see
        :mod:`~monasca_common.confluent_kafka.exactly_once` for the rules);
        default: ``[kafka_client] exactly_once``. ``asynchronous`` commits
        are then synchronous.
    :param metrics_reporter: a :class:`StatsdReporter` that sends
        :meth:`metrics` every interval; by default the one
        ``[kafka_metrics] statsd_address`` configures, if any.
    :raises ConfigurationError: empty group id, illegal topic, or an unknown
        or invalid property.
    """

    def __init__(self, bootstrap_servers: str | collections.abc.Iterable[str],
                 group_id: str, topic: str | list[str],
                 fetch_min_bytes: int | None = None, client_id: str = '',
                 repartition_callback: typing.Callable | None = None,
                 commit_callback: CommitCallback | None = None,
                 max_commit_interval: float = 30,
                 timeout: int = 10000, *,
                 poll_timeout: float = 1.0,
                 commit_timeout: float = 10.0,
                 commit_errors: str = 'log',
                 deliver_before_commit: bool = True,
                 revoke_timeout: float | None = None,
                 exactly_once: bool | None = None,
                 metrics_reporter: reporting.StatsdReporter | None = None,
                 **config: typing.Any):
        if commit_errors not in ('log', 'raise'):
            raise errors.ConfigurationError(
                "commit_errors must be 'log' or 'raise', got %r"
                % (commit_errors,))
        self._poll_timeout = kafka_config.check_timeout(
            'poll_timeout', poll_timeout)
        self._commit_timeout = kafka_config.check_timeout(
            'commit_timeout', commit_timeout)
        self._init_client(kafka_config.consumer_config(
            bootstrap_servers, group_id, timeout, fetch_min_bytes, client_id,
            config, _offered_group_protocols))
        self._topics = kafka_config.check_topics(topic)
        self._repartition_callback = rebalancing.adapt_repartition_callback(
            repartition_callback)
        self._interval = committing.CommitInterval(commit_callback,
                                                   max_commit_interval)
        self._raise_commit_errors = commit_errors == 'raise'
        self._deliver_before_commit = deliver_before_commit
        # The longest the reading thread may be away, in seconds: past it
        # the member leaves the group (see member.py).
        self._max_poll_interval = int(self._config.get(
            'max.poll.interval.ms', 300000)) / 1000.0
        self._revoke_timeout = (self._max_poll_interval if revoke_timeout
                                is None else revoke_timeout)
        self._stop = False
        self._close_lock = threading.Lock()
        if kafka_opts.exactly_once(exactly_once):
            self._runtime.require_threads('exactly_once')
        self._start()
        if kafka_opts.exactly_once(exactly_once):
            self._committer.link = transaction_link.register_consumer(
                self._config['group.id'], repr(self))
        self._start_reporting(metrics_reporter)

    def _start(self) -> None:
        self._pid = os.getpid()
        self._ledger = offset_ledger.OffsetLedger(
            self._topics[0] if len(self._topics) == 1 else None)
        self._committer = committing.Committer(
            self._ledger, self._commit_timeout, self._deliver_before_commit)
        self._config['on_commit'] = self._on_commit
        # The member reads which partitions fetch from the statistics.
        self._config.setdefault('statistics.interval.ms',
                                _STATISTICS_INTERVAL_MS)
        self._consumer = _client.create(confluent_kafka.Consumer,
                                        self._config)
        self._lag = lag.LagQuestion(self._config, self._config['group.id'])
        # The group is joined on first read, not here: a consumer built
        # before fork() and read only in the children must not hold the
        # group's partitions from a parent that never polls.
        self._member: group_member.GroupMember | None = None

    def _join(self) -> group_member.GroupMember:
        if self._member is None:
            self._member = group_member.GroupMember(
                self._consumer, self._topics, self._revoke_timeout,
                self._needs_reader, self._max_poll_interval,
                self._committer.retry_refused,
                1024 * kafka_config.int_property(
                    self._config, 'queued.max.messages.kbytes', 65536),
                self._watch_interval, self._released_without_reader,
                self._ledger, self._runtime)
        return self._member

    def _watch_interval(self, now: float) -> None:
        if self._interval.watch(now) and self._member is not None:
            # The reading thread calls the callback before its next message.
            self._member.interrupt()

    def _released_without_reader(self) -> None:
        # The reading thread may be mid-message: its transaction must not
        # commit outputs of partitions now moving.
        if self._committer.link is not None:
            self._committer.link.abandon()

    def _needs_reader(self, keys) -> bool:
        return (self._repartition_callback is not None or
                bool(self._ledger.pending(None, keys)))

    def _on_commit(self, err, partitions) -> None:
        if self._member is not None:
            self._member.on_commit(err, partitions)

    def _statistics_received(self, document: dict) -> None:
        if self._member is not None:
            self._member.on_statistics(document)

    def _forked(self) -> None:
        # Group membership, offsets handed out and librdkafka's threads all
        # belong to the parent. A consumer re-created here did not reliably
        # get its partitions, so say so instead of guessing.
        raise errors.ForkedClientError(
            'this Kafka consumer was created in process %d and is used in '
            'forked process %d; create the consumer after fork()'
            % (self._pid, os.getpid()))

    # -- reading ------------------------------------------------------------

    def __iter__(self) -> typing.Iterator[Message]:
        """Yield messages until :meth:`stop` (or :meth:`close`)."""
        self._check_usable()
        # Messages go from librdkafka's chunks to the caller through list
        # iterators, with no Python per message: this is the per-message
        # cost of every service (see doc/source/performance.rst).
        return itertools.chain.from_iterable(self._chunks())

    def _chunks(self) -> typing.Iterator[typing.Iterator[Message]]:
        member = self._join()
        self._committer.reading()
        self._interval.restart()
        revocations = member.revocations
        done_handing = self._ledger.done_handing
        timed = self._interval.callback is not None
        check_interval = self._interval.check
        chunk = None
        try:
            while not self._stop:
                if chunk is not None:
                    done_handing(chunk)
                    chunk = None
                if revocations:
                    member.serve_revocations(self._release)
                if timed:
                    check_interval()
                if not member.buffer:
                    self._wait_for_messages(
                        member, self._interval.wait_time(self._poll_timeout))
                    if revocations:
                        # Buffered messages of revoked partitions go first.
                        continue
                if member.buffer and not self._stop:
                    chunk = member.take_chunk()
                    if self._stop:
                        # stop() from a signal handler while the chunk was
                        # being taken: the finally puts it back.
                        break
                    yield chunk
        finally:
            # Left early (the caller broke off): the rest comes next time.
            member.interrupt()
            self._stop = False

    def consume_batch(self, max_messages: int = 500,
                      timeout: float | None = None) -> list[Message]:
        """Up to ``max_messages`` messages, waiting at most ``timeout``.

        An empty list means none arrived in time. The commit callback is
        served here as in the iteration, before the batch is taken: what
        it commits never covers messages the caller has not got yet.
        """
        self._check_usable()
        if timeout is None:
            timeout = self._poll_timeout
        else:
            timeout = kafka_config.check_timeout('timeout', timeout,
                                                 zero=True)
        if not isinstance(max_messages, int) or max_messages < 1:
            raise ValueError('max_messages must be a positive int, got %r'
                             % (max_messages,))
        member = self._join()
        # An iteration's chunk not all handed goes first.
        member.interrupt()
        self._committer.reading()
        self._interval.check()
        if member.revocations:
            member.serve_revocations(self._release)
        if not member.buffer:
            self._wait_for_messages(member, self._interval.wait_time(timeout))
            if self._closed:
                return []
            self._stop = False  # a stop() ends this call, not the next
            if member.revocations:
                member.serve_revocations(self._release)
        buffer = member.buffer
        batch: list[Message] = []
        hand = self._ledger.hand
        while buffer and len(batch) < max_messages:
            try:
                message = buffer.popleft()
            except IndexError:
                break
            hand(message)
            batch.append(message)
        return batch

    def stop(self) -> None:
        """End the iteration, or a waiting ``consume_batch``, now.

        Safe from a signal handler or another thread, and before the
        iteration starts (it then ends at once). A ``consume_batch`` it
        wakes returns what is there; the next one waits again.
        """
        self._stop = True
        if self._member is not None:
            self._member.interrupt()

    def _stopped(self) -> bool:
        return self._stop

    def _wait_for_messages(self, member: group_member.GroupMember,
                           timeout: float) -> None:
        if member.left_at is not None:
            member.rejoin()
        if not (member.buffer or member.revocations or self._stop or
                member.fatal is not None or member.refusal is not None):
            member.read(timeout, self._release, self._stopped)
        member.raise_errors(self._servers, self._config)

    # -- rebalancing (reading thread) ---------------------------------------

    def _release(self, revocation) -> None:
        self._committer.release(self._member, revocation,
                                self._repartition_callback, self)

    # -- committing ---------------------------------------------------------

    def commit(self, asynchronous: bool = False, *,
               raise_errors: bool | None = None) -> list[TopicPartition]:
        """Commit the offsets after what was handed out so far.

        First waits until what the process published is in Kafka (see
        ``deliver_before_commit``). Only partitions with something new are
        committed; nothing to commit is not an error. Safe from any thread.

        :param asynchronous: send the commit without waiting for Kafka's
            answer (the wait for published messages still happens).
        :param raise_errors: raise instead of logging a commit that did not
            happen (default: the ``commit_errors`` setting).
        :returns: the offsets committed (sent, if asynchronous).
        :raises CommitFailedError: with ``commit_errors='raise'`` or
            ``raise_errors``, when the offsets could not all be committed
            (they stay pending); always, for an error that does not pass.
        """
        self._check_usable()
        self._interval.restart()
        if raise_errors is None:
            raise_errors = self._raise_commit_errors
        try:
            return self._commit(asynchronous=asynchronous)
        except offset_ledger.CommitDeferred as exc:
            if raise_errors:
                raise errors.CommitFailedError(str(exc),
                                               exc.partitions) from None
            self._committer.log_once(exc.reason, '%s', exc)
            return exc.committed

    def _commit(self, only=None, revoking=False,
                asynchronous=False) -> list[TopicPartition]:
        if self._member is None:
            return []
        return self._committer.commit(self._member, only, revoking,
                                      asynchronous)

    # -- flow control -------------------------------------------------------

    def assignment(self) -> list[TopicPartition]:
        """The partitions this member owns; safe from any thread."""
        if self._member is None:
            return []
        return [TopicPartition(t, p) for t, p in sorted(self._member.assigned)]

    def pause(self, partitions: list[TopicPartition] | None = None) -> None:
        """Stop fetching (all assigned partitions by default).

        Messages fetched but not yet handed out are put back: after
        ``resume()`` they come again, in order.
        """
        self._check_usable()
        member = self._join()
        keys = ({(tp.topic, tp.partition) for tp in partitions} if partitions
                else set(member.assigned))
        next_offsets = self._ledger.next_offsets(keys)
        member.call(lambda consumer: member.pause(keys, next_offsets),
                    self._commit_timeout)

    def resume(self, partitions: list[TopicPartition] | None = None) -> None:
        self._check_usable()
        member = self._join()
        keys = ({(tp.topic, tp.partition) for tp in partitions} if partitions
                else set(member.assigned))
        member.call(lambda consumer: member.resume(keys),
                    self._commit_timeout)

    # -- metrics ------------------------------------------------------------

    def metrics(self, timeout: float = 5.0) -> client_metrics.Snapshot:
        """What the consumer is doing now; safe from any thread.

        Its own counters are always there: messages consumed (handed out)
        and buffered, commits done and failed, rebalances, partitions
        assigned, seconds since the last commit Kafka took. Lag per
        partition (end minus committed offset; everything Kafka holds
        when nothing is committed) comes from librdkafka's statistics
        while they are on and recent; otherwise Kafka is asked, within
        ``timeout`` seconds, by a client apart from the one that reads (no
        lag figures if it does not answer; with ``timeout`` 0, the last
        answer). An answer serves every caller for 5 s. See
        ``doc/source/metrics.rst`` for every name.
        """
        timeout = kafka_config.check_timeout('timeout', timeout, zero=True)
        member = self._member
        counts = self._committer.counts()
        offsets: dict = {}
        if member is not None:
            counts.update(member.counts())
            offsets = self._lag.partition_offsets(
                member.assigned, self._statistics,
                int(self._config.get('statistics.interval.ms') or 0),
                0 if self._closed else timeout)
        return client_metrics.consumer_snapshot(
            self.client_id, counts, offsets, self._statistics)

    # -- closing ------------------------------------------------------------

    def close(self, timeout: float = 10.0) -> None:
        """Leave the group, without committing. Idempotent and bounded.

        Uncommitted messages handed out will be redelivered to the group.
        If leaving takes longer than ``timeout`` (no broker to answer), the
        consumer is abandoned to finish in the background.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self.stop()
            self._stop_reporting()
            self._lag.close()
            if self._committer.link is not None:
                transaction_link.unregister_consumer(self._committer.link)
            if self._pid != os.getpid():
                # The parent's: never destroy it here (see _client).
                _client.abandon_inherited(self._consumer)
                return
            if self._member is not None:
                if threading.current_thread() in (
                        self._member.thread, self._member.handle.holder):
                    raise errors.ConsumerError(
                        'close() from inside a rebalance would wait for '
                        'itself')
                left = self._member.close(timeout)
            else:
                left = self._runtime.run_within(self._consumer.close,
                                                timeout)
            if not left:
                LOG.warning('Kafka consumer did not leave its group within '
                            '%.1f s; the broker will expire the member',
                            timeout)

    def _on_client_error(self, err: KafkaError) -> None:
        if _client.is_refusal(err) and self._member is not None:
            self._member.refused(err)
        super()._on_client_error(err)

    def _repr_fields(self) -> str:
        return ' group=%s topics=%s' % (
            self._config['group.id'], ','.join(self._topics))


def _offered_group_protocols(config: dict) -> set | None:
    # Imported here: the admin module builds on this package.
    from monasca_common.kafka import admin
    return admin.offered_group_protocols(config)
