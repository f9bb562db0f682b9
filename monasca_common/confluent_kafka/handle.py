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

Every poll and every call that may wait goes through :meth:`Handle.poll`
and :meth:`Handle.blocking_call`, which ask the runtime (runtime.py) how to
wait: under green threads a synchronous commit runs on a real OS thread,
except inside a poll (a revoke callback), where the gate of confluent-kafka
2.16 holds the consumer for the polling thread and the call runs there.
"""

from __future__ import annotations

import _thread
import collections
import concurrent.futures
import contextlib
import logging
import threading
import time
import typing

from monasca_common.confluent_kafka import runtime as client_runtime

LOG = logging.getLogger('monasca_common.confluent_kafka.member')

# The reading thread may be away this long, busy with what it took,
# before the member polls in its place: so long a rebalance may wait.
READER_AWAY = 0.5

_PENDING, _RUNNING, _CANCELLED, _FINISHED = range(4)


class Answer:
    """A job's answer: what ``concurrent.futures.Future`` gives, on bare locks.

    Every commit waits for one (see :meth:`Handle.submit_answering`); a
    Future's Condition made that hop cost more CPU than the rest of it.
    Any number of threads may wait in :meth:`result`.
    """

    __slots__ = ('_done', '_guard', '_state', '_value', '_error',
                 '_callbacks')

    def __init__(self) -> None:
        self._done = _thread.allocate_lock()
        self._done.acquire()
        self._guard = _thread.allocate_lock()
        self._state = _PENDING
        self._value: typing.Any = None
        self._error: BaseException | None = None
        self._callbacks: list | None = None

    def set_running_or_notify_cancel(self) -> bool:
        """False if it was cancelled: the job must not run then."""
        with self._guard:
            if self._state == _CANCELLED:
                return False
            self._state = _RUNNING
            return True

    def cancel(self) -> bool:
        """Cancel it unless the job started; whether it is cancelled."""
        return self._end(_CANCELLED, _PENDING)

    def done(self) -> bool:
        return self._state >= _CANCELLED

    def set_result(self, value) -> None:
        self._value = value
        self._end(_FINISHED)

    def set_exception(self, error: BaseException) -> None:
        self._error = error
        self._end(_FINISHED)

    def add_done_callback(self, callback: typing.Callable) -> None:
        """``callback(answer)`` once it is done (now, if it is)."""
        with self._guard:
            if self._state < _CANCELLED:
                self._callbacks = (self._callbacks or []) + [callback]
                return
        callback(self)

    def result(self, timeout: float | None = None):
        """The job's return, or its exception, within ``timeout`` seconds.

        :raises concurrent.futures.TimeoutError: not done by then.
        :raises concurrent.futures.CancelledError: cancelled.
        """
        if self._state < _CANCELLED:
            if self._done.acquire(True, -1 if timeout is None else timeout):
                self._done.release()  # for the next waiter
            elif self._state < _CANCELLED:
                # Not when another waiter held the lock for a moment.
                raise concurrent.futures.TimeoutError()
        if self._state == _CANCELLED:
            raise concurrent.futures.CancelledError()
        if self._error is not None:
            raise self._error
        return self._value

    def _end(self, state: int, only_from: int | None = None) -> bool:
        with self._guard:
            if only_from is not None and self._state != only_from:
                return self._state == _CANCELLED
            if self._state >= _CANCELLED:
                raise concurrent.futures.InvalidStateError(
                    'answered already')
            self._state = state
            callbacks, self._callbacks = self._callbacks, None
        self._done.release()
        for callback in callbacks or ():
            try:
                callback(self)
            except Exception:
                LOG.exception('Kafka consumer: a job answer callback raised')
        return True


class Signal:
    """``threading.Event`` for one waiting thread, on a bare lock."""

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()
        self._set = False

    def set(self) -> None:
        self._set = True
        try:
            self._lock.release()
        except RuntimeError:  # set already
            pass

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        if self._set:
            return True
        if self._lock.acquire(True, timeout):
            try:
                self._lock.release()  # it stays set until clear()
            except RuntimeError:  # a set() meanwhile released it
                pass
            return True
        return self._set

    def clear(self) -> None:
        self._set = False
        self._lock.acquire(False)


Job = typing.Callable[[typing.Any, Answer], None]


class Handle:
    """The lock around a librdkafka consumer, and the member's jobs.

    :param consumer: the librdkafka consumer.
    :param runtime: how to wait on it (the process's now, by default).
    """

    def __init__(self, consumer,
                 runtime: client_runtime.Runtime | None = None) -> None:
        self.consumer = consumer
        self.runtime = runtime or client_runtime.current()
        #: The lock holder is inside a poll: callbacks run now.
        self.polling = False
        self.lock = threading.Lock()
        #: The thread holding the lock, if any.
        self.holder: threading.Thread | None = None
        #: The member thread: it runs the jobs.
        self.member: threading.Thread | None = None
        #: Set when a job comes (or the member must look again).
        self.wake = Signal()
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

    def poll(self, call: typing.Callable[[float], typing.Any],
             timeout: float):
        """``call(timeout)``, a poll or consume, holding the lock."""
        self.polling = True
        try:
            return self.runtime.poll(call, timeout)
        finally:
            self.polling = False

    def blocking_call(self, call: typing.Callable, *args, **kwargs):
        """A call that waits on Kafka (a synchronous commit), holding the lock.

        Inside a poll it runs on the polling thread: no other may enter
        the consumer until the poll returns.
        """
        if self.polling:
            return call(*args, **kwargs)
        return self.runtime.call(call, *args, **kwargs)

    @property
    def jobs_waiting(self) -> bool:
        return bool(self._jobs)

    def submit(self, job: typing.Callable) -> Answer:
        """Run ``job(consumer)`` holding the lock; its result."""
        return self.submit_answering(
            lambda consumer, future: future.set_result(job(consumer)))

    def submit_answering(self, job: Job,
                         may_block: bool = False) -> Answer:
        """Run ``job(consumer, future)``, which answers the future.

        ``may_block``: the job may wait on Kafka for long (a synchronous
        commit waits up to ``socket.timeout.ms`` for an answer), so it
        runs on the member thread, and the caller waits only as long as
        it chooses; unless the caller holds the lock already (a revoke
        callback inside its own poll).
        """
        future = Answer()
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

    def _run(self, job: Job, future: Answer) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            job(self.consumer, future)
        except BaseException as exc:  # handed to the caller
            if not future.done():
                future.set_exception(exc)
