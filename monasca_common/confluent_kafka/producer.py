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
threads send them. A background thread serves delivery reports (see
:mod:`~monasca_common.confluent_kafka.poller`), so callbacks run promptly
whether or not the application publishes again, and it is the only thread
that ever serves them: per-call bookkeeping (see
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

import confluent_kafka

from monasca_common.confluent_kafka import _client
from monasca_common.confluent_kafka import config as kafka_config
from monasca_common.confluent_kafka import delivery
from monasca_common.confluent_kafka import encoding
from monasca_common.confluent_kafka import errors
from monasca_common.confluent_kafka import exactly_once as transaction_link
from monasca_common.confluent_kafka import metrics as client_metrics
from monasca_common.confluent_kafka import opts as kafka_opts
from monasca_common.confluent_kafka import poller
from monasca_common.confluent_kafka import published
from monasca_common.confluent_kafka import queueing
from monasca_common.confluent_kafka import reporting

LOG = logging.getLogger(__name__)

DeliveryCallback = delivery.DeliveryCallback
FailedMessage = errors.FailedMessage
PublishResult = delivery.PublishResult
StatsdReporter = reporting.StatsdReporter
Messages = typing.Union[str, bytes, collections.abc.Sequence]

_getpid = os.getpid
# How often a synchronous publish looks whether Kafka is away.
_OUTAGE_CHECK_EVERY = 0.5


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
        default. ``statistics.interval.ms`` (off by default) adds
        librdkafka's figures to :meth:`metrics`.
    :param metrics_reporter: a :class:`StatsdReporter` that sends
        :meth:`metrics` every interval; by default the one
        ``[kafka_metrics] statsd_address`` configures, if any.
    :param commit_barrier: whose commits wait until Kafka has what this
        producer published (see ``deliver_before_commit`` of
        :class:`KafkaConsumer`): ``'thread'`` (default) those of the
        consumers read in the thread that published; ``'process'`` those
        of every consumer of the process (publishing from a worker pool);
        ``'none'`` nobody's (a reporter).
    :param exactly_once: publish in the transactions of this process's
        exactly-once consumer, if one was built before (see
        :mod:`~monasca_common.confluent_kafka.exactly_once`); default:
        ``[kafka_client] exactly_once``.
    :raises ConfigurationError: a property is unknown or invalid.
    """

    _role = 'producer'
    _log = LOG

    def __init__(self, bootstrap_servers: str | collections.abc.Iterable[str],
                 *, delivery_callback: DeliveryCallback | None = None,
                 unavailable_after: float = 10.0,
                 block_timeout: float = 10.0,
                 delivery_reports: str = 'all',
                 metrics_reporter: reporting.StatsdReporter | None = None,
                 commit_barrier: str = 'thread',
                 exactly_once: bool | None = None,
                 **config: typing.Any):
        if delivery_reports not in ('all', 'errors'):
            raise errors.ConfigurationError(
                "delivery_reports must be 'all' or 'errors', got %r"
                % (delivery_reports,))
        if commit_barrier not in published.BARRIERS:
            raise errors.ConfigurationError(
                'commit_barrier must be one of %s, got %r'
                % (', '.join(published.BARRIERS), commit_barrier))
        self._barrier = commit_barrier
        config = kafka_config.with_options('producer', config)
        kafka_config.refuse(config, ('delivery.report.only.error',),
                            "set delivery_reports='errors' instead: the "
                            "producer must know")
        self._link: transaction_link.Link | None = None
        if kafka_opts.exactly_once(exactly_once):
            self._link = transaction_link.link_for_producer(
                kafka_config.bootstrap_servers(bootstrap_servers))
            if self._link is not None:
                config = self._link.producer_config(config)
        self._init_client(kafka_config.merge(kafka_config.PRODUCER_DEFAULTS,
                                             bootstrap_servers, config))
        self._successes_reported = delivery_reports == 'all'
        if not self._successes_reported:
            self._config['delivery.report.only.error'] = True
        self._max_bytes = kafka_config.int_property(
            self._config, 'message.max.bytes', 1000000)
        self._max_messages = kafka_config.int_property(
            self._config, 'queue.buffering.max.messages', 100000)
        self._delivery_callback = delivery_callback
        self._unavailable_after = unavailable_after
        self.block_timeout = block_timeout
        self._legal_topics: set[str] = set()
        # Calls queueing now, which close() waits for; it wakes them from
        # a wait for room. Publish takes the plain lock (the fast path);
        # close() waits on a condition over it.
        self._calls_lock = threading.Lock()
        self._calls = threading.Condition(self._calls_lock)
        self._publishing = 0
        self._closing = False
        self._close_lock = threading.Lock()
        self._start()
        if self._link is not None:
            self._link.join(self._producer)
        published.register(self)
        self._start_reporting(metrics_reporter)

    # -- life cycle ---------------------------------------------------------

    def _start(self) -> None:
        self._pid = os.getpid()
        self._producer = _client.create(confluent_kafka.Producer,
                                        self._config)
        self._ledger = delivery.DeliveryLedger(
            self._successes_reported, self._delivery_callback,
            in_flight=self._producer.__len__)
        self._queue = queueing.SendQueue(self._producer, self._max_messages)
        self._poller = poller.ReportPoller(self, self._producer, self._ledger,
                                           self._queue, self._runtime)
        # Started once assigned: its first poll may report an error, whose
        # handling asks self._poller.
        self._poller.start()

    def _forked(self) -> None:
        # librdkafka's threads did not survive fork(): the child gets a
        # client of its own. What the parent had queued stays the parent's
        # to deliver and report.
        LOG.info('Kafka producer used in a forked process (%d); creating a '
                 'new client for it', os.getpid())
        _client.abandon_inherited(self._producer)
        if self._link is not None:
            # The transactions belong to the parent's consumer.
            LOG.warning('Kafka producer forked: it publishes at-least-once '
                        'in process %d, outside the parent\'s transactions',
                        os.getpid())
            self._link = None
            for name in ('transactional.id', 'transaction.timeout.ms'):
                self._config.pop(name, None)
        self._start()
        self._start_reporting(self._reporter)

    def _on_client_error(self, err: confluent_kafka.KafkaError) -> None:
        if err.code() == confluent_kafka.KafkaError._ALL_BROKERS_DOWN:
            self._poller.all_brokers_down()
        elif _client.is_refusal(err):
            # The probe first: it starts only for a new outage, which the
            # refusal then marks.
            self._poller.all_brokers_down()
            self._ledger.refuse(err)
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
                self._queue.stop_waiting()
                while self._publishing and time.monotonic() < deadline:
                    self._calls.wait(deadline - time.monotonic())
            if self._link is not None:
                # What no commit covered is aborted, not delivered.
                self._link.leave(self._producer)
            ledger = self._ledger
            before = ledger.failed
            self.flush(max(0.0, deadline - time.monotonic()))
            self._closed = True
            stopped = self._poller.stop(max(0.0,
                                            deadline - time.monotonic()))
            published.unregister(self)
            self._stop_reporting()
            if not stopped:
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
        if self._poller.is_current():
            raise RuntimeError('%s from a delivery callback would wait for '
                               'itself: the callback runs on the thread '
                               'that serves the reports' % what)

    def _await_published(self, deadline: float) -> int:
        """Wait for the reports of every call queued so far.

        :returns: how many of those messages are still unreported at
            ``deadline`` (``time.monotonic()``).
        """
        if self._poller.is_current():
            # From a delivery callback: those reports wait for this thread.
            return max(0, self._ledger.outstanding())
        return self._ledger.wait_published(deadline)

    def __len__(self) -> int:
        """Messages queued or in flight whose report has not come yet."""
        return max(0, self._ledger.outstanding())

    def stats(self) -> dict:
        """Counters since construction: queued, delivered, failed, pending."""
        return self._ledger.stats()

    def metrics(self) -> client_metrics.Snapshot:
        """What the producer is doing now; safe from any thread.

        Its own counters are always there: messages queued and not yet
        reported, published, delivered and failed. With librdkafka's
        statistics on (``statistics.interval.ms``) it adds bytes queued,
        messages awaiting a broker's answer, retried requests, and round
        trip and throttle times per broker. See ``doc/source/metrics.rst``
        for every name.
        """
        return client_metrics.producer_snapshot(
            self.client_id, self._ledger.stats(), self._statistics)

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
            key = encoding.encode_key(key)
        payloads = encoding.encode_all(messages, key, self._max_bytes)
        if sync or ledger.down_since is not None or \
                ledger.refusal is not None:
            self._check_publishable(len(payloads), sync)

        with self._calls_lock:
            if self._closing:
                raise errors.ClientClosedError('the Kafka producer is '
                                               'closing')
            self._publishing += 1
        try:
            # Opened only now: a call refused above must not hold up the
            # commits that wait for unfinished calls.
            if self._link is not None:
                self._link.begin()
            outputs = published.scope(self._barrier)
            result = ledger.open(topic, outputs)
            if outputs is not None and not self._successes_reported:
                outputs.producers.add(self)
            try:
                unqueued = self._queue.put(
                    topic, payloads, key,
                    ledger.reporter(result, callback, self, outputs),
                    time.monotonic() + timeout)
            except queueing.Refused as refused:
                ledger.seal(result, refused.queued, refused.not_queued)
                raise errors.InvalidMessageError(
                    'Kafka refused message %d of the publish call to topic '
                    '%r: %s; %d of the call are queued, %d not'
                    % (refused.index, topic, refused.error.str(),
                       refused.queued, refused.not_queued),
                    not_queued=refused.not_queued) from None
            ledger.seal(result, len(payloads) - len(unqueued), len(unqueued))
            if self._poller.idle:
                self._poller.queued()
        finally:
            with self._calls_lock:
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
                failed=[FailedMessage(topic, encoding.as_bytes(p), key,
                                      queueing.QUEUE_FULL)
                        for p in unqueued],
                not_queued=len(unqueued))
        if sync:
            self._await_delivery(result, timeout)
            result.raise_for_failures()
        return result

    def _await_delivery(self, result: delivery.PublishResult,
                        timeout: float) -> None:
        """Wait for ``result``'s reports; raise if Kafka is away or refuses.

        An outage that began while the call waited ends the wait once it
        has lasted ``unavailable_after``: the old client raised as soon as
        its connection was refused, and a service (a Spark job) acts on
        that instead of waiting out a two-minute timeout.
        """
        deadline = time.monotonic() + timeout
        ledger = self._ledger
        while True:
            left = deadline - time.monotonic()
            if result.wait(min(left, _OUTAGE_CHECK_EVERY)) or left <= 0:
                return
            if ledger.refusal is not None:
                raise self._refused(ledger.refusal, 0)
            down_for = self._unavailable_for()
            if down_for is not None:
                raise errors.PublishUnavailableError(
                    'no Kafka broker reachable at %s for %.0f s; %d messages '
                    'of the call not yet delivered stay queued and go if '
                    'Kafka is back within message.timeout.ms'
                    % (self._servers, down_for,
                       result.queued - result.reported))

    def _refused(self, err: confluent_kafka.KafkaError,
                 not_queued: int) -> errors.AuthenticationError:
        return errors.AuthenticationError(
            'Kafka at %s refused the producer: %s' % (
                self._servers, kafka_config.scrub(err.str(), self._config)),
            not_queued=not_queued)

    def _unavailable_for(self) -> float | None:
        """Seconds no broker answered, once ``unavailable_after`` passed."""
        down_since = self._ledger.down_since
        if down_since is None or not self._unavailable_after:
            return None
        down_for = time.monotonic() - down_since
        return down_for if down_for >= self._unavailable_after else None

    def _check_publishable(self, count: int, sync: bool) -> None:
        if self._ledger.refusal is not None:
            raise self._refused(self._ledger.refusal, count)
        down_for = self._unavailable_for()
        if down_for is not None:
            raise errors.PublishUnavailableError(
                'no Kafka broker reachable at %s for %.0f s; %d messages not '
                'queued' % (self._servers, down_for, count),
                not_queued=count)
        if sync and not self._successes_reported:
            raise errors.ConfigurationError(
                "publish(sync=True) needs delivery_reports='all': with "
                "'errors' Kafka reports failures only")
        if sync and self._poller.is_current():
            raise RuntimeError('publish(sync=True) from a delivery callback '
                               'would wait for itself')
