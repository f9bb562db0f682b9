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

"""Who may call a librdkafka consumer, and when.

confluent-kafka runs calls on one consumer one at a time, behind a gate
that is not fair: a thread that polls back to back starves a call from
any other (see ``../shared/docs/confluent-kafka-notes.md``, "Threading").
So whoever calls the consumer holds :class:`Handle`'s lock, and while the
member thread polls, any other call is a *job* that thread runs between
two polls (or inside a revoke callback while it waits).

While the reading thread polls for itself, nobody polls back to back: a
job then runs at once, on the thread that asks, when the lock is free.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import threading
import time
import typing

# The reading thread may be away this long, busy with what it took,
# before the member polls in its place: so long a rebalance may wait.
READER_AWAY = 0.5

Job = typing.Callable[[typing.Any, concurrent.futures.Future], None]


class Handle:
    """The lock around a librdkafka consumer, and the member's jobs.

    :param consumer: the librdkafka consumer.
    """

    def __init__(self, consumer) -> None:
        self.consumer = consumer
        self.lock = threading.Lock()
        #: The thread holding the lock, if any.
        self.holder: threading.Thread | None = None
        #: The member thread: it runs the jobs.
        self.member: threading.Thread | None = None
        #: Set when a job comes (or the member must look again).
        self.wake = threading.Event()
        #: When a job last came, or messages (see member.py).
        self.active = 0.0
        #: When the reading thread last polled for itself.
        self.reader_at = float('-inf')
        self._jobs: collections.deque = collections.deque()

    def reader_polls(self) -> bool:
        """Whether the reading thread polls for itself these days."""
        return time.monotonic() - self.reader_at < READER_AWAY

    @contextlib.contextmanager
    def holding(self, blocking: bool = True,
                timeout: float = -1) -> typing.Iterator[bool]:
        """Hold the lock; yields False if it did not come within timeout."""
        if not self.lock.acquire(blocking, timeout):
            yield False
            return
        self.holder = threading.current_thread()
        try:
            yield True
        finally:
            self.holder = None
            self.lock.release()

    @property
    def jobs_waiting(self) -> bool:
        return bool(self._jobs)

    def submit(self, job: typing.Callable) -> concurrent.futures.Future:
        """Run ``job(consumer)`` holding the lock; its result."""
        return self.submit_answering(
            lambda consumer, future: future.set_result(job(consumer)))

    def submit_answering(self, job: Job,
                         may_block: bool = False) -> concurrent.futures.Future:
        """Run ``job(consumer, future)``, which answers the future.

        ``may_block``: the job may wait on Kafka for long (a synchronous
        commit waits up to ``socket.timeout.ms`` for an answer), so it
        runs on the member thread, and the caller waits only as long as
        it chooses; unless the caller holds the lock already (a revoke
        callback inside its own poll).
        """
        future: concurrent.futures.Future = concurrent.futures.Future()
        current = threading.current_thread()
        if current is self.member or current is self.holder:
            self._run(job, future)
        elif not may_block and self.reader_polls() and \
                self.lock.acquire(blocking=False):
            # Nobody polls back to back: no hop to the member thread.
            try:
                self.holder = current
                self._run(job, future)
            finally:
                self.holder = None
                self.lock.release()
        else:
            self.active = time.monotonic()
            self._jobs.append((job, future))
            self.wake.set()
        return future

    def call(self, job: typing.Callable, timeout: float):
        """``submit`` and wait up to ``timeout`` for the result.

        A job not started by then is cancelled: nobody waits for it.
        """
        future = self.submit(job)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def run_jobs(self, most: int | None = None) -> None:
        """On the member thread, holding the lock: the jobs waiting."""
        jobs = self._jobs
        count = len(jobs) if most is None else min(most, len(jobs))
        for _ in range(count):
            self._run(*jobs.popleft())

    def _run(self, job: Job, future: concurrent.futures.Future) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            job(self.consumer, future)
        except BaseException as exc:  # handed to the caller
            if not future.done():
                future.set_exception(exc)
