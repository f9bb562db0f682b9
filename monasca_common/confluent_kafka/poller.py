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

"""The producer's report thread, and its broker probe during outages.

One thread polls librdkafka (without waiting in it under green threads,
see runtime.py), so delivery reports and their callbacks run
promptly whether or not the application publishes again; it is the only
thread that ever serves them, so the per-call bookkeeping needs no lock.
After each poll it tells the send queue that room may have come, logs
failure summaries, and (when only failures are reported) lets a flush look
at librdkafka's count again.

librdkafka says when every broker went down, never when one came back: a
second, short-lived thread then asks for metadata until one answers. It is
apart from the report thread, so reports are served while it waits.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref

import confluent_kafka

from monasca_common.confluent_kafka import delivery
from monasca_common.confluent_kafka import published
from monasca_common.confluent_kafka import queueing
from monasca_common.confluent_kafka import runtime as client_runtime

LOG = logging.getLogger('monasca_common.confluent_kafka.producer')

# How long one poll waits for an event; it returns as soon as one comes,
# so this only bounds how quickly stop() takes effect.
POLL_INTERVAL = 0.1
# Green, a report waits at most this long to be served while messages are
# in flight (see runtime.py).
_GREEN_REPORT_PAUSE = 0.002
# How long one metadata request of the broker probe may take.
_PROBE_TIMEOUT = 1.0


class ReportPoller:
    """Serves the delivery reports of ``owner``'s librdkafka ``handle``.

    The thread holds ``owner`` weakly: a producer dropped without
    ``close()`` goes, thread and librdkafka handle with it, once every
    message it queued is reported (until then its reports hold it).
    """

    def __init__(self, owner, handle, ledger: delivery.DeliveryLedger,
                 send_queue: queueing.SendQueue,
                 runtime: client_runtime.Runtime | None = None):
        self._handle = handle
        self._runtime = runtime or client_runtime.current()
        self._ledger = ledger
        self._queue = send_queue
        self._stopping = threading.Event()
        #: Green, the report thread sleeps on this while librdkafka has
        #: nothing queued: a publish wakes it (:meth:`queued`).
        self.idle = False
        self._work = threading.Event()
        self._prober: threading.Thread | None = None
        self.thread = threading.Thread(
            target=self._serve, args=(weakref.ref(owner),),
            name='kafka-producer-poller', daemon=True)

    def start(self) -> None:
        self.thread.start()

    def is_current(self) -> bool:
        """True on the report thread (in a delivery or error callback)."""
        return threading.current_thread() is self.thread

    def _serve(self, owner_ref) -> None:
        published.serving_reports()
        ledger = self._ledger
        errors_only = not ledger.successes_reported
        poll, handle_poll = self._runtime.poll, self._handle.poll
        green = self._runtime.green
        pause = _GREEN_REPORT_PAUSE if green else None
        while not self._stopping.is_set():
            try:
                if green and not len(self._handle):
                    # Nothing to report until a publish: polling without
                    # waiting would wake the hub 200 times a second.
                    self.idle = True
                    self._work.wait(POLL_INTERVAL)
                    self._work.clear()
                    self.idle = False
                    served = handle_poll(0)
                else:
                    served = poll(handle_poll, POLL_INTERVAL, pause)
                if owner_ref() is None:
                    return
                if served:
                    self._queue.freed()
                if ledger.failures:
                    ledger.failures.summarise()
                if errors_only:
                    # Only librdkafka's count says when a flush may end.
                    ledger.wake()
            except Exception:
                LOG.exception('Kafka producer poller: unexpected error')

    def queued(self) -> None:
        """Messages were queued: a green report thread waiting wakes."""
        if self.idle:
            self._work.set()

    def all_brokers_down(self) -> None:
        """librdkafka reports every broker down: probe until one answers."""
        if self._ledger.down_since is not None:
            return
        self._ledger.down_since = time.monotonic()
        if self._prober is None or not self._prober.is_alive():
            self._prober = threading.Thread(target=self._probe,
                                            name='kafka-producer-probe',
                                            daemon=True)
            self._prober.start()

    def _probe(self) -> None:
        ledger = self._ledger
        while ledger.down_since is not None and not self._stopping.is_set():
            try:
                self._runtime.call(self._handle.list_topics,
                                   timeout=_PROBE_TIMEOUT)
            except confluent_kafka.KafkaException:
                self._stopping.wait(_PROBE_TIMEOUT / 4)
                continue
            if ledger.down_since is not None:
                LOG.info('Kafka is reachable again')
            ledger.down_since = None
            ledger.refusal = None

    def stop(self, timeout: float) -> bool:
        """Stop after the current poll; False if still busy at ``timeout``.

        A slow delivery callback may hold the thread: it is waited for only
        ``timeout``, plus the end of its last poll.
        """
        self._stopping.set()
        self._work.set()
        return self._runtime.join(self.thread, timeout + 2 * POLL_INTERVAL)
