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

"""What this process has published, and whether Kafka has it all.

A service that reads a message, publishes what came of it and commits the
input must not commit before the output is in Kafka: a crash in between
would lose the output for good. The consumer asks :func:`await_delivery`
before every commit; it waits for what every open producer of the process
had queued until then. :func:`failures` counts messages reported failed,
so a consumer can tell that an output published since its last commit
never arrived.

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

LOG = logging.getLogger(__name__)

#: Seconds the open producers of an exiting process get, in all, to
#: deliver what they queued.
EXIT_TIMEOUT = 10.0

_producers: weakref.WeakSet = weakref.WeakSet()
_lock = threading.Lock()
_failures = 0


def register(producer) -> None:
    """Count ``producer`` among this process's open producers."""
    _producers.add(producer)


def unregister(producer) -> None:
    _producers.discard(producer)


def note_failure() -> None:
    """A message published in this process was reported failed."""
    global _failures
    with _lock:
        _failures += 1


def failures() -> int:
    """Messages reported failed in this process so far."""
    return _failures


def await_delivery(deadline: float) -> int:
    """Wait until what was queued before this call is delivered or failed.

    :param deadline: a ``time.monotonic()`` value.
    :returns: the number of messages still unreported at the deadline
        (0: Kafka answered for everything).
    """
    pid = os.getpid()
    pending = 0
    for producer in list(_producers):
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
