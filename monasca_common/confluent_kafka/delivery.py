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

"""What each publish call covers, and what Kafka reported of it.

Pure bookkeeping, no librdkafka call: the producer opens a
:class:`PublishResult` per call, hands librdkafka the ledger's reporter as
the delivery callback, and seals the result once queueing ends. Reports
may come before the seal; whichever of the two sees the last one completes
the call. The :class:`DeliveryLedger` keeps the producer's counts, the
calls still unfinished (what a commit waits for) and a condition that
``flush()`` waits on. Failures are logged by :class:`FailureLog`: the
first of a kind at once, then a count every ten seconds.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import typing

import confluent_kafka

from monasca_common.confluent_kafka import errors
from monasca_common.confluent_kafka import published

LOG = logging.getLogger('monasca_common.confluent_kafka.producer')

DeliveryCallback = typing.Callable[
    [typing.Optional[confluent_kafka.KafkaError], confluent_kafka.Message],
    typing.Any]

_LEADER_ERRORS = frozenset((
    confluent_kafka.KafkaError.LEADER_NOT_AVAILABLE,
    confluent_kafka.KafkaError.NOT_LEADER_FOR_PARTITION,
))
SUMMARY_INTERVAL = 10.0


def call_safely(callback, *args) -> None:
    try:
        callback(*args)
    except BaseException:
        # A user callback must neither stop the poller (SystemExit
        # included: it would end only that thread) nor surface in an
        # unrelated later call.
        LOG.exception('Kafka delivery callback %r raised', callback)


class PublishResult:
    """The outcome of one ``publish`` call, filled in as reports arrive.

    With ``delivery_reports='errors'`` Kafka reports failures only:
    ``delivered`` stays 0 and the call can not be waited for.

    :ivar queued: messages of the call handed to librdkafka.
    :ivar not_queued: messages of the call never queued (queue full).
    :ivar delivered: messages acknowledged by Kafka so far.
    :ivar failed: :class:`FailedMessage` for each message that failed.
    """

    __slots__ = ('topic', 'queued', 'not_queued', 'delivered', 'failed',
                 'successes_reported', '_sealed', '_complete', '_event',
                 '_ledger', '_outputs')

    def __init__(self, topic: str, successes_reported: bool = True,
                 ledger: DeliveryLedger | None = None):
        self.topic = topic
        self.successes_reported = successes_reported
        self.queued = 0
        self.not_queued = 0
        self.delivered = 0
        self.failed: list[errors.FailedMessage] = []
        self._sealed = False
        self._complete = False
        # Created only for a caller that waits: most never do.
        self._event: threading.Event | None = None
        self._ledger = ledger
        # The scope a commit waits on (see published.py), if any.
        self._outputs: published.Outputs | None = None

    @property
    def reported(self) -> int:
        return self.delivered + len(self.failed)

    def done(self) -> bool:
        """True once every queued message has been delivered or failed."""
        return self._complete

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until :meth:`done`; False if ``timeout`` passed first.

        :raises ConfigurationError: the producer reports errors only, so
            the end of the call is never known.
        """
        if self._complete:
            return True
        if not self.successes_reported:
            raise errors.ConfigurationError(
                "a publish can not be waited for with delivery_reports="
                "'errors': Kafka reports failures only")
        with _completion:
            if self._complete:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        event.wait(timeout)
        # Woken early when Kafka refuses the client (see
        # DeliveryLedger.refuse): not done then.
        return self._complete

    def _interrupt(self) -> None:
        with _completion:
            if self._event is not None:
                self._event.set()
                # The next waiter waits afresh.
                self._event = None

    def raise_for_failures(self) -> None:
        """Raise if any message of the call is not (yet) delivered."""
        if self.not_queued or self.failed:
            if self.failed and all(f.error.code() in _LEADER_ERRORS
                                   for f in self.failed):
                cls: type[errors.PublishError] = \
                    errors.LeaderNotAvailableError
            else:
                cls = errors.DeliveryFailedError
            first = (errors.explain(self.failed[0].error) if self.failed
                     else 'queue full')
            raise cls('%d of %d messages to topic %r were not delivered '
                      '(first error: %s)'
                      % (len(self.failed) + self.not_queued,
                         self.queued + self.not_queued, self.topic, first),
                      failed=self.failed, not_queued=self.not_queued)
        if self.successes_reported and not self.done():
            raise errors.DeliveryFailedError(
                '%d of %d messages to topic %r not acknowledged in time; '
                'they may still be delivered'
                % (self.queued - self.reported, self.queued, self.topic))

    def _finish(self) -> None:
        with _completion:
            self._complete = True
            if self._event is not None:
                self._event.set()
        if self._ledger is not None:
            self._ledger.unfinished.pop(self, None)
        if self._outputs is not None:
            self._outputs.unfinished.pop(self, None)

    def __repr__(self) -> str:
        return ('<PublishResult topic=%r queued=%d delivered=%d failed=%d '
                'not_queued=%d>' % (self.topic, self.queued, self.delivered,
                                    len(self.failed), self.not_queued))


# Guards only the moment a result completes or a waiter arrives: once per
# call, never per message.
_completion = threading.Lock()


class FailureLog:
    """Logs the first failure of a kind at once, then a count per interval.

    An outage fails thousands of messages: the log gets one line per topic
    and error every :data:`SUMMARY_INTERVAL` seconds, not one per message.
    """

    def __init__(self, interval: float = SUMMARY_INTERVAL):
        self.interval = interval
        self._burst: collections.Counter = collections.Counter()
        self._last_summary = time.monotonic()

    def __bool__(self) -> bool:
        return bool(self._burst)

    def note(self, topic: str, err: confluent_kafka.KafkaError) -> None:
        key = (topic, err.code())
        if key not in self._burst:
            LOG.error('Kafka delivery to topic %s failed: %s', topic,
                      errors.explain(err))
        self._burst[key] += 1

    def summarise(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_summary < self.interval:
            return
        self._last_summary = now
        for (topic, code), count in self._burst.items():
            if count > 1 or force:
                LOG.error('Kafka delivery failures: %d messages to topic %s '
                          '(%s)', count, topic,
                          confluent_kafka.KafkaError(code).name())
        self._burst.clear()

    def clear(self) -> None:
        self._burst.clear()


class DeliveryLedger:
    """A producer's record of what it queued and what Kafka reported.

    :param successes_reported: False when librdkafka reports failures only
        (``delivery.report.only.error``); then only librdkafka knows what
        is still on its way, and ``in_flight`` tells.
    :param delivery_callback: the producer-level ``callback(err, msg)``.
    :param in_flight: how many messages librdkafka still holds.
    """

    def __init__(self, successes_reported: bool = True,
                 delivery_callback: DeliveryCallback | None = None,
                 in_flight: typing.Callable[[], int] = lambda: 0):
        self.successes_reported = successes_reported
        self.delivery_callback = delivery_callback
        self.in_flight = in_flight
        self.queued = 0
        self.delivered = 0
        self.failed = 0
        # Calls whose messages are not all reported yet, oldest first:
        # what a consumer's commit waits for.
        self.unfinished: dict[PublishResult, None] = {}
        self.failures = FailureLog()
        #: When every broker went down (``time.monotonic()``); None while
        #: one is reachable. A delivered message clears it.
        self.down_since: float | None = None
        #: Kafka's refusal of the client (credentials, TLS), until a broker
        #: answers again.
        self.refusal: confluent_kafka.KafkaError | None = None
        self._count_lock = threading.Lock()
        # flush() waits here; reports wake it only while someone waits.
        self._drained = threading.Condition(threading.Lock())
        self._drain_waiters = 0

    def open(self, topic: str, outputs: published.Outputs | None = None
             ) -> PublishResult:
        """A result for a new call, counted unfinished until complete.

        :param outputs: the scope whose commits wait for the call.
        """
        result = PublishResult(topic, self.successes_reported,
                               self if self.successes_reported else None)
        if self.successes_reported:
            self.unfinished[result] = None
            if outputs is not None:
                result._outputs = outputs
                outputs.unfinished[result] = None
        return result

    def seal(self, result: PublishResult, queued: int,
             not_queued: int) -> None:
        """Queueing of ``result``'s call ended: ``queued`` messages went in.

        The reporter counts before it reads ``_sealed``, and this seals
        before it reads the count, so one of the two always sees the last
        report.
        """
        result.queued = queued
        result.not_queued = not_queued
        result._sealed = True
        with self._count_lock:
            # Counted once queueing ends: reports may come first, so the
            # outstanding count can dip below zero for a moment.
            self.queued += queued
        if self.successes_reported and \
                result.delivered + len(result.failed) >= queued:
            result._finish()
        if self._drain_waiters:
            self._wake_drain_waiters()

    def outstanding(self) -> int:
        """Messages queued whose report has not come yet."""
        if not self.successes_reported:
            return self.in_flight()
        return self.queued - self.delivered - self.failed

    def reporter(self, result: PublishResult,
                 callback: DeliveryCallback | None = None,
                 owner: object = None,
                 outputs: published.Outputs | None = None):
        """The delivery callback for the messages of ``result``'s call.

        Kept flat: it is the per-message cost of reporting. It holds
        ``owner``: librdkafka holds the callback until the message is
        reported, so a producer dropped with messages in flight lives on
        (and delivers them at exit) until then.
        """
        producer_callback = self.delivery_callback
        failed = result.failed

        def report(err, msg, _owner=owner):
            if err is None:
                self.delivered += 1
                result.delivered += 1
                if self.down_since is not None:
                    self.down_since = None
                    self.refusal = None
            else:
                self.failed += 1
                self.failures.note(msg.topic(), err)
                failure = errors.FailedMessage(msg.topic(), msg.value(),
                                               msg.key(), err)
                failed.append(failure)
                if outputs is not None:
                    outputs.failed(failure)
            if callback is not None:
                call_safely(callback, err, msg)
            if producer_callback is not None:
                call_safely(producer_callback, err, msg)
            if result._sealed and \
                    result.delivered + len(failed) >= result.queued:
                result._finish()
            if self._drain_waiters:
                self._wake_drain_waiters()
        return report

    def refuse(self, err: confluent_kafka.KafkaError) -> None:
        """Kafka refused the client: calls waiting for it stop waiting.

        It counts as an outage too: the first delivery ends both.
        """
        self.refusal = err
        if self.down_since is None:
            self.down_since = time.monotonic()
        for result in list(self.unfinished):
            result._interrupt()

    def _wake_drain_waiters(self) -> None:
        if self._drain_waiters and self.outstanding() <= 0:
            with self._drained:
                self._drained.notify_all()

    def wake(self) -> None:
        """Let ``wait_drained`` look again (librdkafka's count changed)."""
        self._wake_drain_waiters()

    def wait_drained(self, deadline: float | None) -> int:
        """Wait until every queued message is reported, or ``deadline``.

        :param deadline: a ``time.monotonic()`` value; None waits as long
            as it takes.
        :returns: messages still unreported (0 when done).
        """
        with self._drained:
            self._drain_waiters += 1
            try:
                while True:
                    remaining = self.outstanding()
                    if remaining <= 0:
                        return 0
                    if deadline is None:
                        self._drained.wait()
                        continue
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return remaining
                    self._drained.wait(left)
            finally:
                self._drain_waiters -= 1

    def wait_published(self, deadline: float) -> int:
        """Wait for the reports of every call queued so far.

        :returns: how many of those messages are still unreported at
            ``deadline`` (``time.monotonic()``).
        """
        if not self.successes_reported:
            return self.wait_drained(deadline)
        waiting = list(self.unfinished)
        for result in waiting:
            # Refused by Kafka: what waits now waits for nothing.
            if self.refusal is not None or not result.wait(
                    max(0.0, deadline - time.monotonic())):
                return sum(r.queued - r.reported for r in waiting
                           if not r.done())
        return 0

    def stats(self) -> dict:
        """Counters since the producer was built."""
        pending = max(0, self.outstanding())
        delivered = self.delivered
        if not self.successes_reported:
            delivered = max(0, self.queued - self.failed - pending)
        return {'queued': self.queued, 'delivered': delivered,
                'failed': self.failed, 'pending': pending}
