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

"""What keeps a consumer a live member of its group.

A service may stop reading for a long time: monasca-notification's retry
engine sleeps up to 30 s between messages. If rebalances were served only
while the service reads, the whole group would wait for that member. So
the member has a thread of its own that polls whenever the reading thread
does not: it serves the group's rebalances and fills a buffer the reading
thread takes messages from when it comes back.

While the service reads, the reading thread polls librdkafka itself
(:meth:`GroupMember.read`): messages handed from one thread to another
cost more CPU than the rest of the loop (see doc/source/performance.rst).
The member thread polls in its place once it has been away half a
second. Who calls librdkafka's consumer when is
:mod:`~monasca_common.confluent_kafka.handle`'s to say.

How it lets go of partitions a rebalance takes away, with the reading
thread when that one holds some of them, is in
:mod:`~monasca_common.confluent_kafka.rebalancing`.

Since the member thread polls whenever the service does not,
librdkafka's own ``max.poll.interval.ms`` never fires. The member applies
it itself: when the reading thread has taken no message for that long
while messages wait for it, the member leaves the group (an ERROR says
so), its partitions go to the other members without a commit, and it
joins again when the reader comes back for messages.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import typing

import confluent_kafka

from monasca_common.confluent_kafka import buffering
from monasca_common.confluent_kafka import config as kafka_config
from monasca_common.confluent_kafka import errors
from monasca_common.confluent_kafka import flow
from monasca_common.confluent_kafka import handle as consumer_handle
from monasca_common.confluent_kafka import offsets as offset_ledger
from monasca_common.confluent_kafka import rebalancing
from monasca_common.confluent_kafka import runtime as client_runtime

LOG = logging.getLogger(__name__)

KafkaError = confluent_kafka.KafkaError
Key = typing.Tuple[str, int]
RetryCommits = typing.Callable[['GroupMember'], None]

# One poll waits at most this long, so a job waits at most this long too:
# briefly while messages come and commits are made (a service committing
# each message waits for every one), longer when all is quiet.
_POLL_WAIT = 0.05
_POLL_WAIT_ACTIVE = 0.002
_ACTIVE_FOR = 1.0
_CHUNK = 500
_JOBS_PER_TURN = 8
# One poll of the reading thread waits at most this long, so that stop()
# and the member's revocations reach it soon.
_READ_SLICE = 0.1
# How often the member looks whether the reading thread still takes
# messages.
_WATCH_EVERY = 0.5


class GroupMember(buffering.Buffering, rebalancing.Rebalancing):
    """Owns a librdkafka consumer on a daemon thread.

    :param consumer: the librdkafka consumer, not yet subscribed; its
        ``on_commit`` must call :meth:`on_commit`.
    :param topics: what to subscribe to.
    :param revoke_timeout: longest wait for the reading thread to serve a
        revocation, in seconds.
    :param needs_reader: ``needs_reader(keys)``: whether revoking these
        (topic, partition) keys needs the reading thread.
    :param max_idle: seconds the reading thread may take no message while
        messages wait before the member leaves the group
        (``max.poll.interval.ms``).
    :param retry_commits: ``retry_commits(member)``, called on the member
        thread twice a second between polls, to send again commits Kafka
        turned away.
    :param buffer_bytes: bytes of fetched messages the buffer may hold.
    :param on_turn: ``on_turn(now)``, called on the member thread every
        turn (at least every 50 ms); it must be quick.
    :param on_abandon: called when partitions go without the reading
        thread (it stalled, did not come back in time, or the session was
        lost), before they move.
    :param ledger: the offset ledger the reading thread hands chunks out
        through (:meth:`take_chunk`); what it has not handed of one comes
        back to the buffer when the member needs the reader between two
        messages (:meth:`interrupt`).
    """

    def __init__(self, consumer: confluent_kafka.Consumer, topics: list,
                 revoke_timeout: float,
                 needs_reader: typing.Callable[[set], bool],
                 max_idle: float = 300.0,
                 retry_commits: RetryCommits | None = None,
                 buffer_bytes: int = 64 * 1024 * 1024,
                 on_turn: typing.Callable[[float], None] | None = None,
                 on_abandon: typing.Callable[[], None] | None = None,
                 ledger: offset_ledger.OffsetLedger | None = None,
                 runtime: client_runtime.Runtime | None = None):
        self.consumer = consumer
        self.topics = topics
        self.revoke_timeout = revoke_timeout
        self.max_idle = max_idle
        #: When the member left the group for a reader that stopped
        #: taking messages; None while it is in the group.
        self.left_at: float | None = None
        self._needs_reader = needs_reader
        self._retry_commits = retry_commits
        self._on_turn = on_turn
        self._on_abandon = on_abandon
        #: Messages fetched, not yet taken by the reading thread.
        self.buffer: collections.deque = collections.deque()
        self.ledger = ledger or offset_ledger.OffsetLedger()
        #: Revocations for the reading thread, oldest first.
        self.revocations: collections.deque = collections.deque()
        #: Guards buffer changes other than popleft (reentrant: a signal
        #: handler may interrupt the reading thread inside it).
        self.buffer_lock = threading.RLock()
        #: Partitions owned; kept here so any thread may read it.
        self.assigned: set[Key] = set()
        #: Messages put in the buffer, and taken back out of it unread
        #: (to be fetched again), since the start; of those put in, how
        #: many the reading thread fetched for itself.
        self.fetched = 0
        self.dropped = 0
        self.fetched_by_reader = 0
        #: Rebalances the member went through: each ends with an
        #: assignment, maybe empty; partitions lost count as one too.
        self.rebalances = 0
        self.fatal: KafkaError | None = None
        #: Kafka refused the consumer (credentials, TLS): the reader says
        #: so, then waits again.
        self.refusal: KafkaError | None = None
        #: Whoever calls the librdkafka consumer holds it.
        self.handle = consumer_handle.Handle(consumer, runtime)
        self.submit = self.handle.submit
        self.call = self.handle.call
        # What releases partitions for the reading thread while it polls
        # (see rebalancing.py).
        self._reader_release: typing.Callable | None = None
        #: The reading thread waits in :meth:`read`.
        self.reading = False
        self._commits: collections.deque = collections.deque()
        self._revoking = False
        self._closing = False
        self._assignment_changed = False
        #: Pauses, stalls and stuck fetches (see flow.py).
        self.flow = flow.FlowControl(consumer, self.assigned, buffer_bytes)
        self._taken_seen = -1
        self._taken_since = self._watched = time.monotonic()
        self._thread = threading.Thread(target=self._run,
                                        name='kafka-consumer-member',
                                        daemon=True)
        self.handle.member = self._thread
        self._thread.start()

    # -- commits ------------------------------------------------------------

    def commit(self, offsets: list,
               asynchronous: bool = False) -> consumer_handle.Answer:
        """Commit ``offsets``; the future gets librdkafka's answer.

        Synchronous, on the member thread: librdkafka's synchronous commit
        waits for Kafka's answer without a bound of its own, and the
        caller waits at most its own deadline. Without a coordinator the
        member waits with it (there is nothing to fetch or rebalance
        then). Inside a revoke callback it runs there and then, on the
        thread whose poll that is. With ``asynchronous`` the answer comes
        through ``on_commit``, from whoever polls next.
        """
        def job(consumer, future):
            if asynchronous and not self._revoking:
                self._commits.append(future)
                consumer.commit(offsets=offsets, asynchronous=True)
            else:
                future.set_result(self.handle.blocking_call(
                    consumer.commit, offsets=offsets, asynchronous=False))
        return self.handle.submit_answering(
            job, may_block=not asynchronous or self._revoking)

    def on_commit(self, err, partitions) -> None:
        """librdkafka's ``on_commit``: answers commits in sending order."""
        if not self._commits:
            return
        future = self._commits.popleft()
        if err is not None and err.code() != KafkaError._NO_OFFSET:
            future.set_exception(confluent_kafka.KafkaException(err))
        else:
            future.set_result(partitions)

    # -- flow control (jobs) -------------------------------------------------

    def pause(self, keys: set[Key], next_offsets: dict[Key, int]) -> None:
        """Stop fetching ``keys``; what is buffered of them comes again.

        Runs on the member thread. ``next_offsets`` gives, per partition,
        the offset after the last message handed out.
        """
        rewind = self.drop_buffered(keys)
        for key, offset in next_offsets.items():
            if key in keys:
                rewind.setdefault(key, offset)
        self.flow.pause(keys, rewind)

    def resume(self, keys: set[Key]) -> None:
        self.flow.resume(keys)

    def on_statistics(self, document: dict) -> None:
        """librdkafka's statistics, inside ``poll`` (see flow.py)."""
        self.flow.on_statistics(document)

    def refused(self, err: KafkaError) -> None:
        """Kafka refused the consumer's credentials or TLS handshake."""
        with self.buffer_lock:
            self.refusal = err

    def raise_errors(self, servers: str, config: dict) -> None:
        """Raise ConsumerError for a fatal error or a refusal (once)."""
        with self.buffer_lock:
            fatal, refusal = self.fatal, self.refusal
            self.refusal = None
        if fatal is not None:
            raise errors.ConsumerError('Kafka consumer error: %s'
                                       % errors.explain(fatal))
        if refusal is not None:
            raise errors.ConsumerError(
                'Kafka at %s refused the consumer: %s'
                % (servers, kafka_config.scrub(refusal.str(), config)))

    # -- the loop -----------------------------------------------------------

    def _subscribe(self, consumer) -> None:
        consumer.subscribe(self.topics, on_assign=self._on_assign,
                           on_revoke=self._on_revoke, on_lost=self._on_lost)

    def read(self, timeout: float, release: typing.Callable,
             stopped: typing.Callable[[], bool]) -> None:
        """On the reading thread: poll for messages into the buffer.

        Returns once messages are there, or a revocation, ``stopped()``,
        an error, or ``timeout`` seconds. ``release(revocation)`` lets go
        of partitions a rebalance inside this poll takes away.
        """
        deadline = time.monotonic() + timeout
        self.reading = True
        try:
            self._read(deadline, release, stopped)
        finally:
            self.reading = False

    def _read(self, deadline, release, stopped) -> None:
        handle = self.handle
        while True:
            handle.reader_at = time.monotonic()
            with handle.holding(True, _READ_SLICE) as holding:
                if holding and not self._closing:
                    self._reader_release = release
                    try:
                        messages = handle.poll(self._consume_chunk, max(
                            0.0, min(_READ_SLICE,
                                     deadline - time.monotonic())))
                    finally:
                        self._reader_release = None
                        handle.reader_at = time.monotonic()
                    stored = self._store(messages, False) if messages else 0
                    self.fetched_by_reader += stored
                    if stored:
                        return
            if (self.buffer or self.revocations or stopped() or
                    self._closing or self.fatal is not None or
                    self.refusal is not None or
                    time.monotonic() >= deadline):
                return

    def _consume_chunk(self, timeout: float) -> list:
        return self.consumer.consume(_CHUNK, timeout)

    def _consume_rest(self, timeout: float) -> list:
        return self.consumer.consume(_CHUNK - 1, timeout)

    def _run(self) -> None:
        handle = self.handle
        with handle.holding():
            self._subscribe(self.consumer)
        while not self._closing:
            with handle.holding():
                wait = self._turn()
            if wait:
                handle.wake.wait(wait)
                handle.wake.clear()
        with handle.holding():
            handle.run_jobs()

    def _turn(self) -> float:
        """One turn of the member thread; how long to wait before the next.

        Bounded: however many threads hand it jobs, it polls too.
        """
        handle = self.handle
        handle.run_jobs(_JOBS_PER_TURN)
        now = time.monotonic()
        if self._on_turn is not None:
            self._on_turn(now)
        if now - self._watched >= _WATCH_EVERY:
            self._watched = now
            self._watch_reader(now)
            if self._retry_commits is not None:
                try:
                    self._retry_commits(self)
                except Exception:
                    LOG.exception('Kafka consumer: sending a commit '
                                  'again failed')
        if self.flow.statistics_waiting:
            self.flow.assign_stuck_again()
        # First: a reader back from a stall gets its partitions resumed.
        full = self.flow.too_full(self.waiting(), bool(self._commits))
        if handle.reader_polls():
            return 0 if handle.jobs_waiting else _POLL_WAIT
        if full:
            return _POLL_WAIT_ACTIVE
        try:
            first = handle.poll(
                self.consumer.poll,
                _POLL_WAIT_ACTIVE if self._commits or
                time.monotonic() - handle.active < _ACTIVE_FOR
                else _POLL_WAIT)
            if first is None:
                return 0
            messages = [first]
            messages.extend(handle.poll(self._consume_rest, 0))
        except Exception:
            LOG.exception('Kafka consumer: unexpected error while fetching')
            return _POLL_WAIT
        if self._store(messages, True):
            handle.active = time.monotonic()
        return 0

    def _watch_reader(self, now: float) -> None:
        """Leave the group when the reading thread stopped taking messages.

        Counted from what the member put in the buffer and what is left of
        it, so the reading thread pays nothing for it.
        """
        if self.left_at is not None:
            return
        waiting = self.waiting()
        taken = self.fetched - self.dropped - waiting
        if taken != self._taken_seen or not waiting:
            self._taken_seen, self._taken_since = taken, now
            return
        if now - self._taken_since <= self.max_idle:
            return
        LOG.error('Kafka consumer: the service has taken no message for '
                  '%.0f s while %d wait (max.poll.interval.ms is %.0f s); '
                  'leaving the group so that its partitions go to the other '
                  'members, without a commit. It joins again when the '
                  'service reads again.', now - self._taken_since, waiting,
                  self.max_idle)
        self.left_at = now
        self.consumer.unsubscribe()

    def rejoin(self) -> None:
        """The reading thread is back for messages: join the group again.

        Called by the reading thread when it waits for messages; the
        subscription is made on the member thread.
        """
        left_at = self.left_at
        if left_at is None:
            return

        def join(consumer):
            if self.left_at is None:
                return
            LOG.info('Kafka consumer: the service reads again, %.0f s after '
                     'the member left the group; joining it again',
                     time.monotonic() - left_at)
            self.left_at = None
            self._taken_seen = -1
            self._subscribe(consumer)
        self.submit(join)

    def _on_message_error(self, err: KafkaError) -> None:
        code = err.code()
        if code == KafkaError._PARTITION_EOF:
            return
        if errors.ends_consuming(err):
            LOG.error('Kafka consumer fatal error: %s', errors.explain(err))
            self.fatal = err
            return
        # The broker going away, a topic not there yet, a leader moving:
        # librdkafka retries by itself.
        LOG.warning('Kafka consumer: %s (retrying)', err.str())

    # -- closing ------------------------------------------------------------

    def close(self, timeout: float) -> bool:
        """Leave the group; False if that took longer than ``timeout``."""
        self._closing = True
        self.handle.wake.set()
        deadline = time.monotonic() + timeout
        runtime = self.handle.runtime
        if not runtime.join(self._thread, timeout):
            return False
        if not runtime.green:
            return runtime.run_within(self._close_consumer,
                                      deadline - time.monotonic())
        # Green: the revoke callbacks must run on this thread, on the hub;
        # the OS thread that then leaves the group runs no Python.
        with self.handle.holding(True, max(
                0.0, deadline - time.monotonic())) as holding:
            if not holding:
                return False
            self._unsubscribe_within(deadline)
            return runtime.run_within(self.consumer.close,
                                      deadline - time.monotonic())

    def _close_consumer(self) -> None:
        # Not in the middle of the reading thread's poll.
        with self.handle.holding():
            self.consumer.close()

    def _unsubscribe_within(self, deadline: float) -> None:
        """Give up the assignment, serving its revocation here."""
        self.consumer.unsubscribe()
        while self.assigned and time.monotonic() < deadline:
            self.handle.poll(self.consumer.poll, min(
                0.05, max(0.0, deadline - time.monotonic())))

    @property
    def thread(self) -> threading.Thread:
        return self._thread
