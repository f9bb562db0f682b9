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

"""What a service published, and whether Kafka has it all.

A service that reads a message, publishes what came of it and commits the
input must not commit before the output is in Kafka: a crash in between
would lose the output for good. Before every commit the consumer waits for
the outputs that belong to it (:func:`await_delivery`) and looks whether
one failed since its last commit.

Which outputs belong to a commit: what the threads that read the consumer
published (monasca-notification reads, publishes and commits in one
thread), plus what producers made with ``commit_barrier='process'``
published from anywhere. A producer with ``commit_barrier='none'`` (a
reporter) and producers used only by other threads (another topic,
another cluster) never hold a commit up. Each scope keeps an
:class:`Outputs`.

A failed output is *transient* (Kafka away, a time-out: publishing again
may work) or *permanent* (too large, unknown topic, not authorized, an
invalid record: it fails again every time). A transient one makes the
consumer read again from its last commit, so the output is published
again; a permanent one is reported once, naming the message, and the
commit goes on: reading the input again would fail the same way, for
ever.

At interpreter exit (and at the end of a ``multiprocessing`` child), open
producers deliver what they queued within :data:`EXIT_TIMEOUT` seconds and
report what they could not: a script that publishes and simply ends loses
nothing silently.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing.util
import os
import threading
import time
import weakref

from monasca_common.confluent_kafka import errors

LOG = logging.getLogger(__name__)

#: Seconds the open producers of an exiting process get, in all, to
#: deliver what they queued.
EXIT_TIMEOUT = 10.0

BARRIERS = ('thread', 'process', 'none')

_producers: weakref.WeakSet = weakref.WeakSet()


def register(producer) -> None:
    """Count ``producer`` among this process's open producers."""
    _producers.add(producer)


def unregister(producer) -> None:
    _producers.discard(producer)


class Outputs:
    """What one scope published that commits wait for.

    :ivar unfinished: publish results not yet fully reported.
    :ivar producers: producers that report failures only, used in this
        scope: their calls can not be waited for one by one.
    :ivar transient: failures that publishing again may mend, so far.
    """

    def __init__(self) -> None:
        self.unfinished: dict = {}
        self.producers: weakref.WeakSet = weakref.WeakSet()
        self.transient = 0
        self._permanent: list[errors.FailedMessage] = []
        self._lock = threading.Lock()

    def failed(self, failure: errors.FailedMessage) -> None:
        """A message of this scope was reported failed."""
        with self._lock:
            if errors.is_permanent(failure.error):
                self._permanent.append(failure)
            else:
                self.transient += 1

    @property
    def quiet(self) -> bool:
        """Nothing to wait for or to report: nothing published, or failed."""
        return not (self.unfinished or self.transient or self._permanent or
                    self.producers)

    def take_permanent(self) -> list[errors.FailedMessage]:
        """The permanent failures not taken yet; each is taken once."""
        with self._lock:
            taken, self._permanent = self._permanent, []
        return taken


#: Outputs of producers with ``commit_barrier='process'``.
PROCESS = Outputs()
_threads = threading.local()
_report_thread = threading.local()


def thread_outputs() -> Outputs:
    """The calling thread's outputs."""
    try:
        return _threads.outputs
    except AttributeError:
        _threads.outputs = Outputs()
        return _threads.outputs


def scope(barrier: str) -> Outputs | None:
    """Where a publish with ``commit_barrier=barrier`` is counted now."""
    if barrier == 'thread':
        return thread_outputs()
    return PROCESS if barrier == 'process' else None


def serving_reports() -> None:
    """The calling thread serves delivery reports: it never waits for any."""
    _report_thread.serving = True


def await_delivery(scopes: list[Outputs], deadline: float) -> int:
    """Wait until what ``scopes`` queued is delivered or failed.

    :param deadline: a ``time.monotonic()`` value.
    :returns: the number of messages still unreported at the deadline
        (0: Kafka answered for everything).
    """
    pid = os.getpid()
    waits = not getattr(_report_thread, 'serving', False)
    pending = 0
    for outputs in scopes:
        for result in list(outputs.unfinished):
            if not (waits and result.wait(
                    max(0.0, deadline - time.monotonic()))):
                pending += max(0, result.queued - result.reported)
        for producer in list(outputs.producers):
            if producer._pid == pid:
                pending += producer._await_published(deadline)
    return pending


def _deliver_at_exit() -> None:
    pid = os.getpid()
    deadline = time.monotonic() + EXIT_TIMEOUT
    for producer in list(_producers):
        if producer._pid != pid or producer._closed:
            continue
        try:
            producer.close(max(0.0, deadline - time.monotonic()))
        except Exception:  # exiting: say it, never raise
            LOG.exception('Kafka producer: delivery at exit failed')


atexit.register(_deliver_at_exit)
# multiprocessing children end with os._exit(), past atexit; they run the
# finalizers registered here first.
multiprocessing.util.Finalize(None, _deliver_at_exit, exitpriority=100)
