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

"""The asynchronous Kafka producer.

``publish`` queues messages in librdkafka and returns at once; librdkafka's
threads send them. A background thread serves delivery reports, so
callbacks run promptly whether or not the application publishes again, and
it is the only thread that ever serves them: per-call bookkeeping (see
:mod:`~monasca_common.confluent_kafka.delivery`) needs no lock. Each call
gets a :class:`PublishResult` that learns the outcome of every one of its
messages; ``sync=True`` waits for it. A producer made with
``delivery_reports='errors'`` hears of failures only: nothing is served per
delivered message, which makes it the fastest way to send.

No loss, no duplicate: idempotence (on by default) makes the broker drop a
retried batch it already has, so a lost response never duplicates data;
every message that is not delivered is reported (result, callbacks, log and
counters), so the caller can retry exactly those.
"""

from __future__ import annotations

import collections.abc
import logging
import os
import threading
import time
import typing
import weakref

import confluent_kafka

from monasca_common.confluent_kafka import _client
from monasca_common.confluent_kafka import config as kafka_config
from monasca_common.confluent_kafka import delivery
from monasca_common.confluent_kafka import errors
from monasca_common.confluent_kafka import published

LOG = logging.getLogger(__name__)

DeliveryCallback = delivery.DeliveryCallback
FailedMessage = errors.FailedMessage
PublishResult = delivery.PublishResult
Messages = typing.Union[str, bytes, collections.abc.Sequence]

_getpid = os.getpid
# How long the poller waits for an event; it returns as soon as one comes,
# so this only bounds how quickly close() can stop it.
_POLL_INTERVAL = 0.1
# How long one metadata request of the broker probe may take.
_PROBE_TIMEOUT = 1.0
# Longest wait for room in a full queue between two attempts.
_ROOM_WAIT = 0.01
_QUEUE_FULL = confluent_kafka.KafkaError(
    confluent_kafka.KafkaError._QUEUE_FULL)
# librdkafka's per-message overhead within message.max.bytes (record
# headers of the v2 format): a value of exactly message.max.bytes is
# refused by produce(), so it is refused here, before the call queues any.
_MESSAGE_OVERHEAD = 36


def _int_property(config: dict, name: str, default: int) -> int:
    try:
        return int(config.get(name, default))
    except (TypeError, ValueError):
        raise errors.ConfigurationError(
            'invalid Kafka client configuration: %s must be an integer, '
            'got %r' % (name, config[name])) from None


def _encode_value(value, position: int) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode('utf-8')
    raise TypeError('message %d of the publish call is %s; messages must be '
                    'str or bytes' % (position, type(value).__name__))


def _encode_key(key) -> bytes | None:
    if key is None or isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode('utf-8')
    if isinstance(key, int) and not isinstance(key, bool):
        # The old client's keys were millisecond timestamps given as ints.
        return str(key).encode('ascii')
    raise TypeError('message key is %s; keys must be str, bytes or int'
                    % type(key).__name__)


def _serve_reports(owner_ref, handle, stop: threading.Event) -> None:
    # Holds the producer weakly: one dropped without close() goes, thread
    # and librdkafka handle with it, once every message it queued is
    # reported (until then its reports hold it).
    while not stop.is_set():
        try:
            served = handle.poll(_POLL_INTERVAL)
            owner = owner_ref()
            if owner is None:
                return
            owner._after_poll(served)
            del owner
        except Exception:
            LOG.exception('Kafka producer poller: unexpected error')


def _probe_brokers(ledger: delivery.DeliveryLedger, handle,
                   stop: threading.Event) -> None:
    # librdkafka says when all brokers went down, never when one came
    # back; a metadata request tells. Apart from the poller, so reports
    # are served while a request waits.
    while ledger.down_since is not None and not stop.is_set():
        try:
            handle.list_topics(timeout=_PROBE_TIMEOUT)
        except confluent_kafka.KafkaException:
            stop.wait(_PROBE_TIMEOUT / 4)
            continue
        if ledger.down_since is not None:
            LOG.info('Kafka is reachable again')
        ledger.down_since = None


class KafkaProducer(_client.Client):
    """Publishes messages to Kafka asynchronously.

    :param bootstrap_servers: ``"host:port,..."`` or a list of them.
    :param delivery_callback: called as ``callback(err, msg)`` for every
        message of every call (``err`` is None on success), from the
        producer's poller thread. Exceptions it raises are logged.
    :param unavailable_after: seconds after which, while no broker has been
        reachable, ``publish`` raises :class:`PublishUnavailableError`
        instead of queueing (0 disables it).
    :param block_timeout: default bound, in seconds, on how long ``publish``
        may block: waiting for room in a full queue, and with ``sync=True``
        waiting for acknowledgements.
    :param delivery_reports: ``'all'`` (default): every message's outcome
        is reported, so results count deliveries and ``sync=True`` works.
        ``'errors'``: librdkafka reports failures only
        (``delivery.report.only.error``); callbacks, results, logs and
        counters still get every failure, successes cost nothing, and a
        publish can not be waited for. The fastest way to send.
    :param config: librdkafka properties, checked now. Defaults:
        ``enable.idempotence=true`` (so ``acks=all``), ``linger.ms=5``,
        ``batch.num.messages=10000``, ``message.timeout.ms=120000``,
        ``compression.type=none``,
        ``topic.metadata.propagation.max.ms=5000``;
        ``queue.buffering.max.messages`` and ``queue.buffering.max.kbytes``
        bound memory however long Kafka is away. A value of None unsets a
        default.
    :raises ConfigurationError: a property is unknown or invalid.
    """

    _role = 'producer'
    _log = LOG

    def __init__(self, bootstrap_servers: str | collections.abc.Iterable[str],
                 *, delivery_callback: DeliveryCallback | None = None,
                 unavailable_after: float = 10.0,
                 block_timeout: float = 10.0,
                 delivery_reports: str = 'all',
                 **config: typing.Any):
        if delivery_reports not in ('all', 'errors'):
            raise errors.ConfigurationError(
                "delivery_reports must be 'all' or 'errors', got %r"
                % (delivery_reports,))
        kafka_config.refuse(config, ('delivery.report.only.error',),
                            "set delivery_reports='errors' instead: the "
                            "producer must know")
        self._init_client(kafka_config.merge(kafka_config.PRODUCER_DEFAULTS,
                                             bootstrap_servers, config))
        self._successes_reported = delivery_reports == 'all'
        if not self._successes_reported:
            self._config['delivery.report.only.error'] = True
        self._max_bytes = _int_property(self._config, 'message.max.bytes',
                                        1000000)
        self._max_messages = _int_property(
            self._config, 'queue.buffering.max.messages', 100000)
        self._delivery_callback = delivery_callback
        self._unavailable_after = unavailable_after
        self.block_timeout = block_timeout
        self._legal_topics: set[str] = set()
        self._last_queue_full_log = -delivery.SUMMARY_INTERVAL
        # Calls queueing now, which close() waits for; it wakes them from
        # a wait for room.
        self._calls = threading.Condition(threading.Lock())
        self._publishing = 0
        self._closing = False
        self._close_lock = threading.Lock()
        self._start()
        published.register(self)

    # -- life cycle ---------------------------------------------------------

    def _start(self) -> None:
        self._pid = os.getpid()
        self._producer = _client.create(confluent_kafka.Producer,
                                        self._config)
        self._ledger = delivery.DeliveryLedger(
            self._successes_reported, self._delivery_callback,
            in_flight=self._producer.__len__)
        self._stop_polling = threading.Event()
        self._room = threading.Event()
        self._room_wanted = False
        self._prober: threading.Thread | None = None
        self._poller = threading.Thread(
            target=_serve_reports, name='kafka-producer-poller',
            args=(weakref.ref(self), self._producer, self._stop_polling),
            daemon=True)
        self._poller.start()

    def _forked(self) -> None:
        # librdkafka's threads did not survive fork(): the child gets a
        # client of its own. What the parent had queued stays the parent's
        # to deliver and report.
        LOG.info('Kafka producer used in a forked process (%d); creating a '
                 'new client for it', os.getpid())
        _client.abandon_inherited(self._producer)
        self._start()

    def _after_poll(self, served: int) -> None:
        if served and self._room_wanted:
            self._room_wanted = False
            self._room.set()
        if self._ledger.failures:
            self._ledger.failures.summarise()
        if not self._successes_reported:
            # Only librdkafka's count says when a flush may end.
            self._ledger.wake()

    def _on_client_error(self, err: confluent_kafka.KafkaError) -> None:
        if err.code() == confluent_kafka.KafkaError._ALL_BROKERS_DOWN and \
                self._ledger.down_since is None:
            self._ledger.down_since = time.monotonic()
            if self._prober is None or not self._prober.is_alive():
                self._prober = threading.Thread(
                    target=_probe_brokers, name='kafka-producer-probe',
                    args=(self._ledger, self._producer, self._stop_polling),
                    daemon=True)
                self._prober.start()
        super()._on_client_error(err)

    def flush(self, timeout: float | None = None) -> int:
        """Wait until everything queued is delivered or failed.

        :returns: the number of messages still undelivered (0 when done).
        :raises RuntimeError: called from a delivery callback, whose
            thread serves the reports it would wait for.
        """
        self._check_usable()
        self._refuse_in_callback('flush()')
        if timeout is not None:
            timeout = kafka_config.check_timeout('timeout', timeout,
                                                 zero=True)
        return self._ledger.wait_drained(
            None if timeout is None else time.monotonic() + timeout)

    def close(self, timeout: float = 10.0) -> int:
        """Flush with a deadline, then purge and report what is left.

        Messages purged get a failed delivery report (``_PURGE_QUEUE`` or
        ``_PURGE_INFLIGHT``: the latter may still have reached Kafka).
        Idempotent; returns within ``timeout`` plus a moment.

        :returns: the number of messages not delivered.
        """
        timeout = kafka_config.check_timeout('timeout', timeout, zero=True)
        self._refuse_in_callback('close()')
        with self._close_lock:
            if self._closed:
                return 0
            if self._pid != os.getpid():
                self._closed = True
                return 0
            deadline = time.monotonic() + timeout
            # A publish waiting for room gives up now (its caller learns
            # which messages were not queued); one queueing finishes, and
            # its messages are flushed and reported too.
            with self._calls:
                self._closing = True
                self._room.set()
                while self._publishing and time.monotonic() < deadline:
                    self._calls.wait(deadline - time.monotonic())
            ledger = self._ledger
            before = ledger.failed
            self.flush(max(0.0, deadline - time.monotonic()))
            self._closed = True
            self._stop_polling.set()
            # A slow delivery callback may hold the poller: wait for it only
            # as long as the deadline allows, plus the end of its last poll.
            self._poller.join(max(0.0, deadline - time.monotonic()) +
                              2 * _POLL_INTERVAL)
            published.unregister(self)
            if self._poller.is_alive():
                LOG.warning('Kafka producer closed while a delivery '
                            'callback was still running; %d messages '
                            'unreported', ledger.outstanding())
                return max(0, ledger.outstanding())
            if ledger.outstanding() > 0:
                self._producer.purge(in_queue=True, in_flight=True)
                # Purged messages' reports are ready at once; serve them
                # here, the poller being gone.
                self._producer.poll(0)
                self._producer.flush(0)
            if ledger.failures:
                ledger.failures.summarise(force=True)
            undelivered = ledger.failed - before
            if undelivered:
                LOG.warning('Kafka producer closed; %d messages were not '
                            'delivered', undelivered)
            return undelivered

    def _refuse_in_callback(self, what: str) -> None:
        if threading.current_thread() is self._poller:
            raise RuntimeError('%s from a delivery callback would wait for '
                               'itself: the callback runs on the thread '
                               'that serves the reports' % what)

    def _await_published(self, deadline: float) -> int:
        """Wait for the reports of every call queued so far.

        :returns: how many of those messages are still unreported at
            ``deadline`` (``time.monotonic()``).
        """
        if threading.current_thread() is self._poller:
            # From a delivery callback: those reports wait for this thread.
            return max(0, self._ledger.outstanding())
        return self._ledger.wait_published(deadline)

    def __len__(self) -> int:
        """Messages queued or in flight whose report has not come yet."""
        return max(0, self._ledger.outstanding())

    def stats(self) -> dict:
        """Counters since construction: queued, delivered, failed, pending."""
        return self._ledger.stats()

    # -- publishing ---------------------------------------------------------

    def publish(self, topic: str, messages: Messages,
                key: str | bytes | int | None = None,
                timeout: float | None = None, *,
                callback: DeliveryCallback | None = None,
                sync: bool = False) -> PublishResult:
        """Queue one message or a list of them for ``topic``.

        Non-blocking unless the local queue is full (then it waits up to
        ``timeout`` for room while reports are served) or ``sync`` is true.

        Validation is all-or-nothing: a message of the wrong type or too
        large raises before anything of the call is queued. Queueing is
        not: on :class:`QueueFullError` the first messages of the call are
        queued (they will be reported) and ``exc.not_queued`` of the last
        ones are not; ``exc.failed`` and the result say which.

        :param messages: str (UTF-8 encoded) or bytes, or a list of them;
            an empty list publishes nothing.
        :param key: partitioning key for every message of the call. None
            lets librdkafka spread messages over the partitions.
        :param timeout: bound on blocking, in seconds (default
            ``block_timeout``).
        :param callback: ``callback(err, msg)`` for each message of this
            call, from the poller thread.
        :param sync: wait until every message is acknowledged or failed and
            raise :class:`DeliveryFailedError` unless all were delivered.
        :returns: the call's :class:`PublishResult`.
        :raises TypeError: a message or the key is of an unusable type.
        :raises InvalidMessageError: a message is too large, or the topic
            name is illegal. A topic Kafka does not have (and will not
            create) fails the call's messages with ``_UNKNOWN_TOPIC`` after
            ``topic.metadata.propagation.max.ms`` (5 s): with ``sync`` as
            :class:`DeliveryFailedError`, otherwise in the result and the
            callbacks.
        :raises QueueFullError: the queue stayed full for ``timeout``.
        :raises PublishUnavailableError: (a :class:`KafkaUnavailableError`)
            no broker has been reachable for ``unavailable_after`` seconds;
            nothing was queued.
        """
        if self._closed or self._pid != _getpid():
            self._check_usable()
        if type(messages) is not list:
            messages = (list(messages) if isinstance(
                messages, collections.abc.Sequence) and not isinstance(
                    messages, (str, bytes, bytearray)) else [messages])
        if topic not in self._legal_topics:
            self._legal_topics.add(kafka_config.check_topic(
                topic, errors.InvalidMessageError))
        if timeout is None:
            timeout = self.block_timeout
        elif timeout.__class__ is not float or not 0 < timeout < 1e9:
            timeout = kafka_config.check_timeout('timeout', timeout,
                                                 zero=not sync)
        ledger = self._ledger
        if not messages:
            result = ledger.open(topic)
            ledger.seal(result, 0, 0)
            return result
        if key is not None:
            key = _encode_key(key)
        payloads = self._encode(messages, key)
        self._check_publishable(len(payloads), sync)

        with self._calls:
            if self._closing:
                raise errors.ClientClosedError('the Kafka producer is '
                                               'closing')
            self._publishing += 1
        try:
            # Opened only now: a call refused above must not hold up the
            # commits that wait for unfinished calls.
            result = ledger.open(topic)
            unqueued = self._queue(topic, payloads, key, result, timeout,
                                   ledger.reporter(result, callback, self))
            ledger.seal(result, len(payloads) - len(unqueued), len(unqueued))
        finally:
            with self._calls:
                self._publishing -= 1
                if self._closing:
                    self._calls.notify_all()
        if unqueued:
            raise errors.QueueFullError(
                '%s: %d of %d messages to topic %r not queued (exc.failed '
                'lists them)' % (
                    'Kafka producer closed while the queue was full'
                    if self._closing else
                    'Kafka producer queue full for %.1f s' % timeout,
                    len(unqueued), len(payloads), topic),
                failed=[FailedMessage(topic, p, key, _QUEUE_FULL)
                        for p in unqueued],
                not_queued=len(unqueued))
        if sync:
            result.wait(timeout)
            result.raise_for_failures()
        return result

    def _check_publishable(self, count: int, sync: bool) -> None:
        down_since = self._ledger.down_since
        if (down_since is not None and self._unavailable_after and
                time.monotonic() - down_since >= self._unavailable_after):
            raise errors.PublishUnavailableError(
                'no Kafka broker reachable at %s for %.0f s; %d messages not '
                'queued' % (self._servers, time.monotonic() - down_since,
                            count),
                not_queued=count)
        if sync and not self._successes_reported:
            raise errors.ConfigurationError(
                "publish(sync=True) needs delivery_reports='all': with "
                "'errors' Kafka reports failures only")
        if sync and threading.current_thread() is self._poller:
            raise RuntimeError('publish(sync=True) from a delivery callback '
                               'would wait for itself')

    def _encode(self, messages: list, key) -> list[bytes]:
        payloads = []
        append = payloads.append
        for message in messages:
            kind = type(message)
            if kind is bytes:
                append(message)
            elif kind is str:
                append(message.encode('utf-8'))
            else:
                append(_encode_value(message, len(payloads)))
        key_size = len(key) if key else 0
        limit = self._max_bytes - _MESSAGE_OVERHEAD - key_size
        if limit < 0:
            raise errors.InvalidMessageError(
                'the message key is %d bytes, over the producer limit '
                'message.max.bytes=%d; nothing of the call was queued'
                % (key_size, self._max_bytes))
        if max(map(len, payloads)) > limit:
            position, payload = next((i, p) for i, p in enumerate(payloads)
                                     if len(p) > limit)
            raise errors.InvalidMessageError(
                'message %d of the publish call is %d bytes%s, over the '
                'producer limit message.max.bytes=%d (%d bytes of each '
                'message are librdkafka\'s); nothing of the call was queued'
                % (position, len(payload),
                   ' with a %d-byte key' % key_size if key_size else '',
                   self._max_bytes, _MESSAGE_OVERHEAD))
        return payloads

    def _queue(self, topic: str, payloads: list[bytes], key: bytes | None,
               result: PublishResult, timeout: float,
               report) -> list[bytes]:
        """Queue ``payloads`` in order; return those not queued at timeout.

        As many as the queue has room for go in one C call; when it is
        full, this waits for the poller to free room, up to ``timeout``.
        """
        count = len(payloads)
        deadline = time.monotonic() + timeout
        if count == 1:
            return self._queue_each(topic, payloads, key, report, result,
                                    deadline, 0)
        produce_batch = self._producer.produce_batch
        position = 0
        while position < count:
            room = self._max_messages - len(self._producer)
            if room > 0:
                end = min(count, position + room)
                chunk = payloads[position:end]
                batch = ([{'value': p} for p in chunk] if key is None else
                         [{'value': p, 'key': key} for p in chunk])
                queued = produce_batch(topic, batch, on_delivery=report)
                if queued == len(batch):
                    position = end
                    continue
                refused = [i for i, m in enumerate(batch) if '_error' in m]
                first = batch[refused[0]]['_error']
                if any(batch[i]['_error'].code() != _QUEUE_FULL.code()
                       for i in refused):
                    self._refuse(result, topic, position + queued,
                                 count - position - queued,
                                 position + refused[0], first)
                if refused[0] == queued:
                    # The queue filled up at message ``queued``: the rest
                    # waits for room, in order.
                    position += queued
                else:
                    # Another thread took the room meanwhile: the refused
                    # ones follow the later ones of this chunk.
                    unqueued = self._queue_each(
                        topic, [chunk[i] for i in refused], key, report,
                        result, deadline, position + queued)
                    if unqueued:
                        return unqueued + payloads[end:]
                    position = end
                    continue
            if not self._wait_for_room(deadline):
                break
        return payloads[position:]

    def _queue_each(self, topic, payloads, key, report, result, deadline,
                    already):
        """Queue one by one, in order, waiting until ``deadline`` for room.

        :returns: the payloads not queued (a suffix of ``payloads``).
        """
        produce = self._producer.produce
        position = 0
        count = len(payloads)
        while position < count:
            try:
                for position in range(position, count):
                    produce(topic, payloads[position], key,
                            on_delivery=report)
                position = count
            except BufferError:
                if not self._wait_for_room(deadline):
                    break
            except confluent_kafka.KafkaException as exc:
                self._refuse(result, topic, already + position,
                             count - position, already + position,
                             exc.args[0])
        return payloads[position:]

    def _wait_for_room(self, deadline: float) -> bool:
        """Wait a moment for room in the queue; False past ``deadline``."""
        now = time.monotonic()
        if now >= deadline or self._closing:
            return False
        if now - self._last_queue_full_log >= delivery.SUMMARY_INTERVAL:
            self._last_queue_full_log = now
            LOG.warning('Kafka producer queue full; publish waits up to '
                        '%.1f s for room', deadline - now)
        # The poller frees room as it serves reports and says so; the cap
        # covers a report served between the failed attempt and this wait.
        self._room_wanted = True
        self._room.wait(min(deadline - now, _ROOM_WAIT))
        self._room.clear()
        return True

    def _refuse(self, result, topic, queued, not_queued, index, err):
        self._ledger.seal(result, queued, not_queued)
        raise errors.InvalidMessageError(
            'Kafka refused message %d of the publish call to topic %r: %s; '
            '%d of the call are queued, %d not'
            % (index, topic, err.str(), queued, not_queued),
            not_queued=not_queued)
