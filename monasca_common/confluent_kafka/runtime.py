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

"""How the library waits on librdkafka: in plain threads, or green ones.

gunicorn's eventlet and gevent workers monkey-patch ``threading`` before
the application is imported. A thread the library starts is then a green
thread on the worker's one OS thread, its locks and events are green, and
a librdkafka call that waits (``poll(0.1)``, ``list_topics``, a
synchronous commit) stops every green thread of the worker until it
returns: no request is answered meanwhile.

Every client asks :func:`current` when it is built, and every wait on
librdkafka goes through the :class:`Runtime` it got:

- plain threads: a call waits inside librdkafka, as it always did;
- green: a poll is made without waiting, and the green thread sleeps
  cooperatively between polls, so delivery reports, rebalances and every
  other callback still run on the hub's thread, where green locks and
  events work; a call that has no such form (metadata, a synchronous
  commit, leaving the group) runs on a real OS thread that runs no Python
  callback, while the caller sleeps cooperatively.

confluent-kafka keeps the state of a call that serves callbacks per OS
thread and handle: two green threads inside calls of one handle at once
would overwrite each other's (``CallState_get: Assertion 'cs != NULL'``).
The clients already let one thread at a time call a consumer (handle.py)
and one thread serve a producer's reports (poller.py); that rule is what
keeps green threads apart too.
"""

from __future__ import annotations

import concurrent.futures
import sys
import time
import typing

from monasca_common.confluent_kafka import errors

THREADS = 'threads'
EVENTLET = 'eventlet'
GEVENT = 'gevent'

# A green poll's first pause, doubled up to the longest: a quarter of the
# caller's timeout, within these bounds. A message or a report waits at
# most that long after it came; each wake-up costs about 140 us of CPU
# (the hub's turn), so an idle consumer's polls cost 1-3% of a core.
_FIRST_PAUSE = 0.0005
_LONGEST_PAUSE = 0.005
_LONGEST_IDLE_PAUSE = 0.025

T = typing.TypeVar('T')

_FINISHED_FUTURE = ('CANCELLED_AND_NOTIFIED', 'FINISHED')
# A lock's longest wait (threading.TIMEOUT_MAX is about 292 years).
_LONGEST_WAIT = 365 * 24 * 3600.0


def detect() -> str:
    """Which runtime this process has: THREADS, EVENTLET or GEVENT."""
    patcher = sys.modules.get('eventlet.patcher')
    if patcher is not None and patcher.is_monkey_patched('thread'):
        return EVENTLET
    monkey = sys.modules.get('gevent.monkey')
    if monkey is not None and monkey.is_module_patched('threading'):
        return GEVENT
    return THREADS


class Runtime:
    """Waits on librdkafka without stopping the other threads of its kind.

    :param kind: THREADS, EVENTLET or GEVENT.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        #: Whether threads are green: callbacks must stay on the hub.
        self.green = kind != THREADS
        if kind == EVENTLET:
            import eventlet
            from eventlet import patcher
            self._sleep = eventlet.sleep
            original = patcher.original('_thread')
            self._start_thread = original.start_new_thread
            self._allocate_lock = original.allocate_lock
        elif kind == GEVENT:
            import gevent
            from gevent import monkey
            self._sleep = gevent.sleep
            self._start_thread, self._allocate_lock = monkey.get_original(
                '_thread', ['start_new_thread', 'allocate_lock'])
        else:
            import _thread
            self._sleep = time.sleep
            self._start_thread = _thread.start_new_thread
            self._allocate_lock = _thread.allocate_lock

    def __repr__(self) -> str:
        return '<Runtime %s>' % self.kind

    def require_threads(self, what: str) -> None:
        """Refuse ``what`` under green threads, naming the reason."""
        if self.green:
            raise errors.ConfigurationError(
                '%s needs plain threads: its Kafka transactions wait inside '
                'librdkafka, which would stop every green thread of this '
                '%s process; run it in a process that is not '
                'monkey-patched' % (what, self.kind))

    def sleep(self, seconds: float) -> None:
        """Sleep, letting the other threads of this runtime run."""
        self._sleep(seconds)

    def poll(self, call: typing.Callable[[float], T], timeout: float,
             longest_pause: float | None = None) -> T:
        """``call(timeout)``: a librdkafka poll, consume or flush.

        Green, the call is made with no wait until it returns something
        (a message, a count of reports, a non-empty list) or ``timeout``
        passed, sleeping cooperatively in between: 0.5 ms first, doubled
        up to ``longest_pause`` (by default a quarter of ``timeout``,
        between 5 and 25 ms).
        """
        if not self.green:
            return call(timeout)
        result = call(0)
        if result or timeout <= 0:
            # The others' turn: a green thread that is never short of
            # reports or messages would otherwise keep the hub for itself.
            self._sleep(0)
            return result
        if longest_pause is None:
            longest_pause = min(max(timeout / 4, _LONGEST_PAUSE),
                                _LONGEST_IDLE_PAUSE)
        deadline = time.monotonic() + timeout
        pause = _FIRST_PAUSE
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return result
            self._sleep(min(pause, left))
            result = call(0)
            if result:
                return result
            pause = min(pause * 2, longest_pause)

    def call(self, call: typing.Callable[..., T], *args, **kwargs) -> T:
        """``call(*args, **kwargs)``: a librdkafka call that may wait.

        Green, it runs on a real OS thread while the caller sleeps
        cooperatively; it must fire no Python callback (metadata, offsets,
        a synchronous commit do not) and be bounded by its own timeout.
        """
        if not self.green:
            return call(*args, **kwargs)
        box, _ = self._run_on_os_thread(lambda: call(*args, **kwargs))
        self._wait(lambda: bool(box), None)
        return _unbox(box)

    def run_within(self, call: typing.Callable[[], typing.Any],
                   timeout: float) -> bool:
        """Run ``call()`` on an OS thread of its own; whether it ended.

        A call that takes longer (a close with no broker to answer) goes
        on in the background, on a thread that does not hold up the exit.
        Its exceptions are not raised here, nor kept: one kept would hold
        the frames of the call, and the handle in them, in a cycle.
        """
        def quietly() -> None:
            try:
                call()
            except BaseException:  # noqa: B902 (said in the docstring)
                pass
        box, ended = self._run_on_os_thread(quietly)
        timeout = max(0.0, min(timeout, _LONGEST_WAIT))
        if not self.green:
            return ended.acquire(True, timeout)
        return self._wait(lambda: bool(box), timeout)

    def join(self, thread: typing.Any, timeout: float) -> bool:
        """Wait at most ``timeout`` for ``thread`` to end; whether it did.

        Green, the wait is a cooperative sleep: eventlet 0.40 on Python
        3.13 makes ``Thread.join(timeout)`` raise its ``Timeout`` instead
        of returning.
        """
        timeout = max(0.0, min(timeout, _LONGEST_WAIT))
        if not self.green:
            thread.join(timeout)
            return not thread.is_alive()
        return self._wait(lambda: not thread.is_alive(), timeout)

    def drop(self, holder: list, timeout: float) -> bool:
        """Empty ``holder``, the last place a librdkafka handle is kept.

        Destroying a handle joins librdkafka's threads: with
        confluent-kafka 2.8, an admin client that listed offsets takes a
        second. Green, the last reference goes on an OS thread of its own,
        and the caller sleeps cooperatively for at most ``timeout``; a
        destruction that takes longer ends in the background. Whether it
        ended.
        """
        if not self.green:
            holder.clear()
            return True
        return self.run_within(holder.clear, timeout)

    def wait_futures(self, futures: typing.Iterable[concurrent.futures.Future],
                     timeout: float) -> tuple[set, set]:
        """``concurrent.futures.wait``: the futures done, the others.

        librdkafka completes an admin call's future from a thread of its
        own. Green, nothing is registered on the futures (a green event
        set from that thread would wake nobody): their state is read
        until they are done, or ``timeout``.
        """
        if not self.green:
            return concurrent.futures.wait(futures, timeout)
        futures = set(futures)
        self._wait(lambda: all(_settled(f) for f in futures), timeout)
        done = {f for f in futures if _settled(f)}
        return done, futures - done

    def _run_on_os_thread(self, call: typing.Callable
                          ) -> tuple[list, typing.Any]:
        """Start ``call()``: its (ok, value) box, a lock freed at its end."""
        box: list = []
        ended = self._allocate_lock()
        ended.acquire()

        def run() -> None:
            try:
                box.append((True, call()))
            except BaseException as exc:  # handed to the caller
                box.append((False, exc))
            finally:
                ended.release()
        self._start_thread(run, ())
        return box, ended

    def _wait(self, done: typing.Callable[[], bool],
              timeout: float | None) -> bool:
        """Sleep cooperatively until ``done()``; whether it came in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = _FIRST_PAUSE
        while not done():
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                pause = min(pause, left)
            self._sleep(pause)
            pause = min(pause * 2, _LONGEST_PAUSE)
        return True


def _unbox(box: list):
    ok, value = box.pop()
    if ok:
        return value
    try:
        raise value
    finally:
        # No cycle (the exception's traceback holds this frame): the
        # handles its frames hold go when the caller lets go of it, not
        # at a garbage collection, which would run a handle's destruction
        # (a second with confluent-kafka 2.8) wherever it comes.
        del value


def _settled(future: concurrent.futures.Future) -> bool:
    """Done, and no longer held by the thread that completed it.

    Read without the future's lock: a green lock that thread releases
    would wake nobody (``Future.result`` would then wait for ever).
    """
    if not hasattr(future, '_state'):
        return future.done()
    if future._state not in _FINISHED_FUTURE:
        return False
    condition = getattr(future, '_condition', None)
    if condition is None:
        return True
    if not condition.acquire(False):  # never waits: no switch
        return False
    condition.release()
    return True


_runtimes: dict[str, Runtime] = {}


def current() -> Runtime:
    """The runtime of this process now (clients ask when they are built)."""
    kind = detect()
    found = _runtimes.get(kind)
    if found is None:
        found = _runtimes[kind] = Runtime(kind)
    return found
