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
partition, the offset after the last message it *handed* to the caller;
``commit()`` commits exactly those, synchronously by default, and nothing
else ever commits: not librdkafka (auto commit and auto offset store are
off), not ``close()``. A message the service has not processed is therefore
never committed, and after a crash the group redelivers from the last
commit: at most what was handed but not committed comes twice.
"""

from __future__ import annotations

import collections
import collections.abc
import concurrent.futures
import inspect
import logging
import os
import queue
import threading
import time
import typing

import confluent_kafka

from monasca_common.confluent_kafka import config as kafka_config
from monasca_common.confluent_kafka import errors

LOG = logging.getLogger(__name__)

KafkaError = confluent_kafka.KafkaError
Message = confluent_kafka.Message
TopicPartition = confluent_kafka.TopicPartition
CommitCallback = typing.Callable[[], typing.Any]

# librdkafka hands messages to Python in chunks of this many; the iterator
# then yields them one by one.
_FETCH_CHUNK = 500
# Commit errors meaning "this partition is no longer ours": the new owner
# will start from the last commit.
_NOT_OWNED = frozenset((
    KafkaError._STATE, KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.FENCED_INSTANCE_ID, KafkaError.STALE_MEMBER_EPOCH,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
))
_FATAL_CONSUME = frozenset((
    KafkaError._AUTHENTICATION, KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED, KafkaError._INVALID_ARG,
))


def _adapt_repartition_callback(callback):
    """Call ``callback(consumer, partitions)`` or ``callback()``."""
    if callback is None:
        return None
    try:
        params = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        return callback
    positional = [p for p in params
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    takes_args = any(p.kind == p.VAR_POSITIONAL for p in params)
    if not positional and not takes_args:
        return lambda consumer, partitions: callback()
    return callback


class KafkaConsumer:
    """Reads a topic as a member of a consumer group.

    :param bootstrap_servers: ``"host:port,..."`` or a list of them.
    :param group_id: the consumer group; must not be empty.
    :param topic: a topic name or a list of them.
    :param fetch_min_bytes: ``fetch.min.bytes`` (librdkafka's default when
        None: answer as soon as there is data).
    :param client_id: ``client.id``, when not empty.
    :param repartition_callback: called before partitions are revoked in a
        rebalance, as ``callback(consumer, partitions)`` or ``callback()``,
        so the service can flush and commit; then what was handed out for
        the revoked partitions is committed.
    :param commit_callback: ``commit_callback()``, called from the
        iteration once ``max_commit_interval`` seconds have passed since the
        last commit, whether or not messages arrive.
    :param max_commit_interval: seconds, see ``commit_callback``.
    :param timeout: ``session.timeout.ms``: how long the group waits for a
        member that stopped answering before giving its partitions away.
    :param poll_timeout: longest single wait for messages, in seconds; it
        bounds how soon ``stop()`` takes effect.
    :param commit_timeout: how long ``commit()`` retries a retriable error
        (broker away, coordinator moving) before raising.
    :param config: librdkafka properties, checked now. Defaults:
        ``enable.auto.commit=false``, ``enable.auto.offset.store=false``,
        ``auto.offset.reset=earliest``,
        ``partition.assignment.strategy=cooperative-sticky``,
        ``fetch.queue.backoff.ms=50`` (a backlog is read without pauses).
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
                 **config: typing.Any):
        self._user_error_cb = config.pop('error_cb', None)
        extra = {'group.id': kafka_config.check_group_id(group_id),
                 'session.timeout.ms': timeout}
        if fetch_min_bytes is not None:
            extra['fetch.min.bytes'] = fetch_min_bytes
        if client_id:
            extra['client.id'] = client_id
        extra.update(config)
        if 'heartbeat.interval.ms' not in extra and timeout:
            # librdkafka heartbeats every 3 s by default: with a session
            # shorter than ~9 s the member would time itself out and lose
            # its partitions over and over.
            extra['heartbeat.interval.ms'] = max(100, min(3000, timeout // 3))
        self._config = kafka_config.merge(kafka_config.CONSUMER_DEFAULTS,
                                          bootstrap_servers, extra)
        self._config['error_cb'] = self._on_client_error
        self._topics = self._topic_list(topic)
        self._repartition_callback = _adapt_repartition_callback(
            repartition_callback)
        self._commit_callback = commit_callback
        self._max_commit_interval = max_commit_interval
        self._poll_timeout = poll_timeout
        self._commit_timeout = commit_timeout
        self._closed = False
        self._stop = False
        self._close_lock = threading.Lock()
        self._start()

    @staticmethod
    def _topic_list(topic) -> list[str]:
        topics = [topic] if isinstance(topic, str) else list(topic or ())
        if not topics:
            raise errors.ConfigurationError('no topic to consume given')
        for name in topics:
            if not isinstance(name, str) or not name or len(name) > 249 or \
                    not all(c.isascii() and (c.isalnum() or c in '._-')
                            for c in name):
                raise errors.ConfigurationError(
                    'illegal Kafka topic name %r: 1 to 249 of a-z A-Z 0-9 '
                    '. _ -' % (name,))
        return topics

    def _start(self) -> None:
        self._pid = os.getpid()
        # The last message handed out per partition (keyed by partition
        # alone when reading one topic: asking each message its topic
        # builds and hashes a new string), and per (topic, partition) the
        # last offset committed.
        self._single_topic = (self._topics[0] if len(self._topics) == 1
                              else None)
        self._last_handed: dict = {}
        self._committed: dict[tuple[str, int], int] = {}
        self._buffer: collections.deque = collections.deque()
        # Kept here, not asked of librdkafka: calling into the client from
        # another thread while the reader runs a rebalance callback
        # deadlocks (the callback waits for the GIL that caller holds).
        self._assigned: set[tuple[str, int]] = set()
        self._reading = threading.Event()
        self._committer: _Committer | None = None
        # The thread running a revoke callback, while it runs.
        self._rebalancing: int | None = None
        self._last_commit = time.monotonic()
        self._consumer = kafka_config.create(confluent_kafka.Consumer,
                                             self._config)
        # The group is joined on first read, not here: a consumer built
        # before fork() and read only in the children must not hold the
        # group's partitions from a parent that never polls.
        self._subscribed = False

    def _subscribe(self) -> None:
        self._consumer.subscribe(self._topics, on_assign=self._on_assign,
                                 on_revoke=self._on_revoke,
                                 on_lost=self._on_lost)
        self._subscribed = True

    def _check_usable(self) -> None:
        if self._closed:
            raise errors.ClientClosedError('the Kafka consumer is closed')
        if self._pid != os.getpid():
            # Group membership, offsets handed out and librdkafka's threads
            # all belong to the parent. A consumer re-created here did not
            # reliably get its partitions, so say so instead of guessing.
            raise errors.ForkedClientError(
                'this Kafka consumer was created in process %d and is used '
                'in forked process %d; create the consumer after fork()'
                % (self._pid, os.getpid()))

    # -- reading ------------------------------------------------------------

    def __iter__(self) -> typing.Iterator[Message]:
        """Yield messages until :meth:`stop` (or :meth:`close`)."""
        self._check_usable()
        self._stop = False
        self._last_commit = time.monotonic()
        # Locals: this loop is the per-message cost of every service.
        buffer = self._buffer
        last_handed = self._last_handed
        single_topic = self._single_topic is not None
        timed = self._commit_callback is not None
        while not self._stop:
            if not buffer:
                self._fill(self._wait_time())
            while buffer:
                message = buffer.popleft()
                if single_topic:
                    last_handed[message.partition()] = message
                else:
                    last_handed[(message.topic(), message.partition())] = \
                        message
                yield message
                if self._stop:
                    break
                if timed:
                    self._check_commit_interval()
            if timed:
                self._check_commit_interval()

    def consume_batch(self, max_messages: int = 500,
                      timeout: float | None = None) -> list[Message]:
        """Up to ``max_messages`` messages, waiting at most ``timeout``.

        An empty list means none arrived in time. The commit callback is
        served here as in the iteration.
        """
        self._check_usable()
        if timeout is None:
            timeout = self._poll_timeout
        if not self._buffer:
            self._fill(self._wait_time(timeout), max_messages)
        batch = []
        while self._buffer and len(batch) < max_messages:
            batch.append(self._buffer.popleft())
        single_topic = self._single_topic is not None
        for message in batch:
            self._last_handed[
                message.partition() if single_topic else
                (message.topic(), message.partition())] = message
        self._check_commit_interval()
        return batch

    def stop(self) -> None:
        """End the iteration at its next turn (at most ``poll_timeout``).

        Only sets a flag: safe from a signal handler or another thread.
        """
        self._stop = True

    def _wait_time(self, limit: float | None = None) -> float:
        """How long one poll may wait.

        ``limit`` (``poll_timeout`` by default), less if the commit
        callback falls due sooner.
        """
        wait = self._poll_timeout if limit is None else limit
        if self._commit_callback is None:
            return wait
        due = self._last_commit + self._max_commit_interval - time.monotonic()
        return max(0.0, min(wait, due))

    def _fill(self, timeout: float, count: int = _FETCH_CHUNK) -> None:
        if not self._subscribed:
            self._subscribe()
        # Wait for the first message only, then take what is already there:
        # consume(n, timeout) would hold a lone message until n arrive or
        # the timeout ends, adding up to poll_timeout of latency.
        self._reading.set()
        try:
            first = self._consumer.poll(timeout)
            if first is None:
                return
            messages = [first]
            if count > 1:
                messages.extend(self._consumer.consume(count - 1, 0))
        finally:
            self._reading.clear()
        good = [m for m in messages if m.error() is None]
        self._buffer.extend(good)
        if len(good) != len(messages):
            for message in messages:
                err = message.error()
                if err is not None:
                    self._on_message_error(err)

    def _on_message_error(self, err: KafkaError) -> None:
        code = err.code()
        if code == KafkaError._PARTITION_EOF:
            return
        if err.fatal() or code in _FATAL_CONSUME:
            LOG.error('Kafka consumer fatal error: %s', err.str())
            raise errors.ConsumerError('Kafka consumer error: %s' % err.str())
        # The broker going away, a topic not there yet, a leader moving:
        # librdkafka retries by itself; say so and keep waiting.
        LOG.warning('Kafka consumer: %s (retrying)', err.str())

    def _check_commit_interval(self) -> None:
        if self._commit_callback is None:
            return
        now = time.monotonic()
        if now - self._last_commit >= self._max_commit_interval:
            # Restart the interval even if the callback does not commit, so
            # it is called once per interval, not on every turn.
            self._last_commit = now
            self._commit_callback()

    # -- committing ---------------------------------------------------------

    def commit(self, asynchronous: bool = False) -> list[TopicPartition]:
        """Commit the offsets of what was handed out so far.

        Only partitions with something new are committed; nothing to
        commit is not an error. A partition no longer owned is dropped with
        a log line (its new owner resumes from its last commit).

        :param asynchronous: send the commit without waiting for it.
        :returns: the offsets committed (sent, if asynchronous).
        :raises CommitFailedError: the commit failed, or kept failing for
            ``commit_timeout`` seconds of retries.
        """
        self._check_usable()
        self._last_commit = time.monotonic()
        return self._commit(None, asynchronous)

    def _key_in_last_handed(self, topic: str, partition: int):
        return partition if self._single_topic is not None else (
            topic, partition)

    def _handed(self) -> dict[tuple[str, int], int]:
        """Per (topic, partition), the offset after the last handed out."""
        single_topic = self._single_topic
        # A copy first: commit() may run on another thread than the
        # iteration that adds to it.
        return {(single_topic, key) if single_topic is not None else key:
                message.offset() + 1
                for key, message in list(self._last_handed.items())}

    def _forget_handed(self, topic: str, partition: int) -> None:
        self._last_handed.pop(self._key_in_last_handed(topic, partition),
                              None)

    def _commit(self, keys, asynchronous: bool = False):
        """Commit what was handed out for ``keys`` (None: everything)."""
        handed = self._handed()
        offsets = [TopicPartition(t, p, offset)
                   for (t, p), offset in handed.items()
                   if (keys is None or (t, p) in keys) and
                   self._committed.get((t, p)) != offset]
        if not offsets:
            return []
        if asynchronous:
            self._consumer.commit(offsets=offsets, asynchronous=True)
            return offsets
        deadline = time.monotonic() + self._commit_timeout
        backoff = 0.1
        while True:
            try:
                if self._rebalancing == threading.get_ident():
                    # Inside a rebalance callback (ours, or the service's
                    # repartition callback committing): the group waits for
                    # it to return, and a commit from another thread would
                    # wait for the group.
                    result = self._consumer.commit(offsets=offsets,
                                                   asynchronous=False)
                else:
                    result = self._commit_within(offsets, deadline)
                break
            except confluent_kafka.KafkaException as exc:
                err = exc.args[0]
                if err.code() == KafkaError._NO_OFFSET:
                    return []
                if err.code() in _NOT_OWNED:
                    return self._drop_unowned(offsets, err)
                retriable = err.retriable() or err.code() in (
                    KafkaError._TRANSPORT, KafkaError._TIMED_OUT,
                    KafkaError.COORDINATOR_NOT_AVAILABLE,
                    KafkaError.NOT_COORDINATOR,
                    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                    KafkaError._WAIT_COORD, KafkaError.REQUEST_TIMED_OUT)
                if not retriable or time.monotonic() >= deadline:
                    raise errors.CommitFailedError(
                        'Kafka commit of %s failed: %s' % (
                            _describe(offsets), err.str()),
                        [(tp.topic, tp.partition, tp.offset, err)
                         for tp in offsets]) from None
                LOG.warning('Kafka commit failed (%s); retrying', err.str())
                time.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
        failed = []
        for tp in result:
            key = (tp.topic, tp.partition)
            if tp.error is None:
                self._committed[key] = tp.offset
            elif tp.error.code() in _NOT_OWNED:
                self._drop_unowned([tp], tp.error)
            else:
                failed.append((tp.topic, tp.partition, tp.offset, tp.error))
        if failed:
            raise errors.CommitFailedError(
                'Kafka commit failed for %s' % ', '.join(
                    '%s[%d]@%d: %s' % (t, p, o, e.str())
                    for t, p, o, e in failed), failed)
        return [tp for tp in result if tp.error is None]

    def _commit_within(self, offsets, deadline: float):
        # librdkafka's synchronous commit has no timeout of its own: with
        # no coordinator to send it to, it waits for one to appear. It runs
        # on one worker thread, so commits still reach Kafka in order, and
        # the caller waits only until the deadline.
        if self._committer is None:
            self._committer = _Committer(self._consumer)
        future = self._committer.submit(offsets)
        try:
            return future.result(max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            timed_out = KafkaError(KafkaError._TIMED_OUT)
            raise errors.CommitFailedError(
                'Kafka did not answer the commit of %s within %.1f s '
                '(commit_timeout); it stays queued and may still land'
                % (_describe(offsets), self._commit_timeout),
                [(tp.topic, tp.partition, tp.offset, timed_out)
                 for tp in offsets]) from None

    def _drop_unowned(self, offsets, err) -> list:
        LOG.warning('Kafka commit of %s skipped: partitions no longer owned '
                    '(%s); their new owner resumes from the last commit',
                    _describe(offsets), err.str())
        for tp in offsets:
            self._forget_handed(tp.topic, tp.partition)
        return []

    # -- rebalancing --------------------------------------------------------

    def _on_assign(self, consumer, partitions) -> None:
        self._assigned.update((tp.topic, tp.partition) for tp in partitions)
        LOG.info('Kafka consumer assigned %s', _describe(partitions))

    def _on_revoke(self, consumer, partitions) -> None:
        # Rebalance callbacks run inside consume(), which is only called
        # with an empty buffer: nothing fetched for these partitions is
        # waiting to be handed out.
        self._assigned.difference_update(
            (tp.topic, tp.partition) for tp in partitions)
        if self._closed:
            LOG.info('Kafka consumer closing; released %s without '
                     'committing', _describe(partitions))
            return
        LOG.info('Kafka consumer: partitions revoked %s',
                 _describe(partitions))
        keys = {(tp.topic, tp.partition) for tp in partitions}
        self._rebalancing = threading.get_ident()
        try:
            if self._repartition_callback is not None:
                try:
                    self._repartition_callback(self, partitions)
                except Exception:
                    LOG.exception('Kafka repartition callback raised')
            self._commit(keys)
        except errors.CommitFailedError as exc:
            LOG.error('Kafka commit on revoke failed: %s', exc)
        finally:
            self._rebalancing = None
        for key in keys:
            self._forget_handed(*key)
            self._committed.pop(key, None)

    def _on_lost(self, consumer, partitions) -> None:
        LOG.warning('Kafka consumer lost partitions %s (session timed out '
                    'or fenced); not committing them: messages handed out '
                    'since the last commit will be redelivered',
                    _describe(partitions))
        self._assigned.difference_update(
            (tp.topic, tp.partition) for tp in partitions)
        for tp in partitions:
            self._forget_handed(tp.topic, tp.partition)
            self._committed.pop((tp.topic, tp.partition), None)

    # -- flow control -------------------------------------------------------

    def assignment(self) -> list[TopicPartition]:
        """The partitions this member owns; safe from any thread."""
        return [TopicPartition(t, p) for t, p in sorted(self._assigned)]

    def pause(self, partitions: list[TopicPartition] | None = None) -> None:
        """Stop fetching (all assigned partitions by default).

        Messages fetched but not yet handed out are put back: after
        ``resume()`` they come again, in order.
        """
        self._check_usable()
        partitions = partitions or self.assignment()
        paused = {(tp.topic, tp.partition) for tp in partitions}
        rewind: dict[tuple[str, int], int] = {}
        kept = []
        for message in self._buffer:
            key = (message.topic(), message.partition())
            if key in paused:
                rewind.setdefault(key, message.offset())
            else:
                kept.append(message)
        # In place: a running iteration holds this deque.
        self._buffer.clear()
        self._buffer.extend(kept)
        self._consumer.pause(partitions)
        for (topic, partition), offset in rewind.items():
            self._consumer.seek(TopicPartition(topic, partition, offset))

    def resume(self, partitions: list[TopicPartition] | None = None) -> None:
        self._check_usable()
        self._consumer.resume(partitions or self.assignment())

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
            self._stop = True
            if self._pid != os.getpid():
                # The parent's: never destroy it here (see config).
                kafka_config.abandon_inherited(self._consumer)
                return
            # Called from another thread while the reader is inside
            # consume(): let it come out first (poll_timeout at most).
            deadline = time.monotonic() + timeout
            while self._reading.is_set() and time.monotonic() < deadline:
                time.sleep(0.01)
            if self._committer is not None:
                self._committer.stop()
            closer = threading.Thread(target=self._consumer.close,
                                      name='kafka-consumer-close',
                                      daemon=True)
            closer.start()
            closer.join(max(0.0, deadline - time.monotonic()))
            if closer.is_alive():
                LOG.warning('Kafka consumer did not leave its group within '
                            '%.1f s; the broker will expire the member',
                            timeout)

    def __enter__(self) -> 'KafkaConsumer':
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return '<KafkaConsumer servers=%s group=%s topics=%s closed=%s>' % (
            self._config['bootstrap.servers'], self._config['group.id'],
            ','.join(self._topics), self._closed)

    def _on_client_error(self, err: KafkaError) -> None:
        kafka_config.log_client_error(LOG, 'consumer', err,
                                      self._config['bootstrap.servers'])
        if self._user_error_cb is not None:
            try:
                self._user_error_cb(err)
            except Exception:
                LOG.exception('Kafka error callback raised')


class _Committer:
    """Runs synchronous commits one after another on a daemon thread.

    Daemon: a commit stuck waiting for Kafka must not keep the process
    from exiting.
    """

    def __init__(self, consumer: confluent_kafka.Consumer):
        self._consumer = consumer
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name='kafka-consumer-commit',
                         daemon=True).start()

    def submit(self, offsets) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._jobs.put((future, offsets))
        return future

    def stop(self) -> None:
        self._jobs.put(None)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, offsets = job
            future.set_running_or_notify_cancel()
            try:
                future.set_result(self._consumer.commit(
                    offsets=offsets, asynchronous=False))
            except BaseException as exc:  # handed to the caller
                future.set_exception(exc)


def _describe(partitions) -> str:
    return ', '.join('%s[%d]' % (tp.topic, tp.partition)
                     for tp in partitions) or 'none'
