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

"""The runtime: how clients wait on librdkafka, in plain or green threads.

The green runtimes' waits are checked here in an unpatched process (their
sleeps work there too); ``green_child`` runs every client in processes
eventlet and gevent patched, on librdkafka's mock cluster.
"""

import _thread
import concurrent.futures
import gc
import threading
import time

import pytest

from monasca_common.confluent_kafka import errors
from monasca_common.confluent_kafka import runtime
from tests import green_runs
from tests import waiting

GREEN = [runtime.EVENTLET, runtime.GEVENT]


def test_plain_process_gets_plain_threads():
    assert runtime.detect() == runtime.THREADS
    assert not runtime.current().green
    assert runtime.current() is runtime.current()


def test_plain_threads_wait_inside_the_call():
    timeouts = []
    assert runtime.current().poll(
        lambda timeout: timeouts.append(timeout) or 7, 0.3) == 7
    assert timeouts == [0.3]
    # A blocking call runs on the calling thread.
    assert runtime.current().call(threading.get_ident) == \
        threading.get_ident()


def green(kind):
    pytest.importorskip(kind)
    return runtime.Runtime(kind)


@pytest.mark.parametrize('kind', GREEN)
def test_green_poll_never_waits_inside_librdkafka(kind):
    timeouts = []

    def poll(timeout):
        timeouts.append(timeout)
        return 'message' if len(timeouts) == 4 else None
    assert green(kind).poll(poll, 5.0) == 'message'
    assert timeouts == [0, 0, 0, 0]


@pytest.mark.parametrize('kind', GREEN)
def test_green_poll_returns_empty_at_its_timeout(kind):
    calls = []
    started = time.monotonic()
    assert green(kind).poll(lambda t: calls.append(t) or [], 0.05) == []
    assert time.monotonic() - started >= 0.05
    assert set(calls) == {0} and len(calls) > 1


@pytest.mark.parametrize('kind', GREEN)
def test_green_blocking_call_runs_on_another_os_thread(kind):
    rt = green(kind)
    assert rt.call(threading.get_ident) != threading.get_ident()
    assert rt.call(lambda a, b=0: a + b, 1, b=2) == 3

    def fails():
        raise ValueError('from the OS thread')
    with pytest.raises(ValueError, match='from the OS thread'):
        rt.call(fails)


@pytest.mark.parametrize('kind', GREEN + [runtime.THREADS])
def test_run_within_says_whether_the_call_ended(kind):
    rt = green(kind) if kind != runtime.THREADS else runtime.current()
    release = threading.Event()
    assert rt.run_within(lambda: None, 5)
    assert not rt.run_within(lambda: release.wait(10), 0.05)
    release.set()


@pytest.mark.parametrize('kind', GREEN + [runtime.THREADS])
def test_join_says_whether_the_thread_ended_and_never_raises(kind):
    rt = green(kind) if kind != runtime.THREADS else runtime.current()
    release = threading.Event()
    thread = threading.Thread(target=release.wait, args=(10,))
    thread.start()
    started = time.monotonic()
    assert not rt.join(thread, 0.05)
    assert time.monotonic() - started >= 0.05
    release.set()
    assert rt.join(thread, 5)
    assert rt.join(thread, -1)


class _Handle:
    """Says on which OS thread it was destroyed, after a slow destruction."""

    def __init__(self, destroyed, seconds=0.0):
        self._destroyed, self._seconds = destroyed, seconds

    def __del__(self):
        time.sleep(self._seconds)  # unpatched here: the OS thread waits
        self._destroyed.append(_thread.get_ident())


@pytest.mark.parametrize('kind', GREEN + [runtime.THREADS])
def test_a_dropped_handle_is_destroyed_off_the_hub(kind):
    rt = green(kind) if kind != runtime.THREADS else runtime.current()
    destroyed = []
    holder = [_Handle(destroyed)]
    assert rt.drop(holder, 5)
    assert holder == [] and len(destroyed) == 1
    assert (destroyed[0] != _thread.get_ident()) == rt.green
    # A destruction longer than the bound ends in the background.
    if rt.green:
        assert not rt.drop([_Handle(destroyed, 0.3)], 0.01)
        waiting.until(lambda: len(destroyed) == 2, 5,
                      'the slow destruction to end')


@pytest.mark.parametrize('kind', GREEN + [runtime.THREADS])
def test_a_failed_call_leaves_its_handle_to_no_cycle(kind):
    """The handle goes with the exception, not at a garbage collection.

    A collection runs wherever it comes: a handle destroyed there (a
    second for an admin client with confluent-kafka 2.8) stops the hub.
    """
    rt = green(kind) if kind != runtime.THREADS else runtime.current()
    destroyed = []

    def ask(handle):
        raise ValueError('no broker')
    gc.disable()
    try:
        try:
            rt.call(ask, _Handle(destroyed))
        except ValueError:
            pass
        assert len(destroyed) == 1
        rt.run_within(lambda handle=_Handle(destroyed): ask(handle), 5)
        assert len(destroyed) == 2
    finally:
        gc.enable()


@pytest.mark.parametrize('kind', GREEN + [runtime.THREADS])
def test_wait_futures_sees_futures_completed_elsewhere(kind):
    rt = green(kind) if kind != runtime.THREADS else runtime.current()
    done_future = concurrent.futures.Future()
    late = concurrent.futures.Future()
    threading.Timer(0.02, done_future.set_result, ('answer',)).start()
    done, pending = rt.wait_futures([done_future, late], 0.5)
    assert done == {done_future} and pending == {late}
    assert done_future.result(0) == 'answer'


def test_a_future_still_held_by_its_completing_thread_is_not_done():
    future = concurrent.futures.Future()
    holding, release = threading.Event(), threading.Event()

    def complete():
        with future._condition:
            future._state = 'FINISHED'
            holding.set()
            release.wait(10)
    completer = threading.Thread(target=complete)
    completer.start()
    holding.wait(10)
    assert not runtime._settled(future)
    release.set()
    completer.join()
    assert runtime._settled(future)


@pytest.mark.parametrize('kind', GREEN)
def test_transactions_refuse_green_threads(kind):
    with pytest.raises(errors.ConfigurationError,
                       match='kafka.Processor needs plain threads.*%s' % kind):
        green(kind).require_threads('kafka.Processor')
    runtime.current().require_threads('kafka.Processor')


@pytest.mark.parametrize('kind', GREEN)
def test_every_client_in_a_patched_process(kind, unreachable_servers):
    """Producers, admin, health check and consumers, patched, on a mock."""
    green_runs.check(green_runs.run(kind, 'mock', unreachable_servers))
