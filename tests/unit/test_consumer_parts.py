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

"""Who calls librdkafka's consumer when, and when the commit callback is
due: the consumer's parts that need no broker."""

import concurrent.futures
import threading
import time

import pytest

from monasca_common.confluent_kafka import committing
from monasca_common.confluent_kafka import handle as consumer_handle


def where(consumer):
    return threading.current_thread()


def test_a_job_runs_on_the_asking_thread_while_the_reader_polls():
    handle = consumer_handle.Handle(object())
    handle.member = threading.Thread(target=lambda: None)
    handle.reader_at = time.monotonic()
    assert handle.submit(where).result(0) is threading.current_thread()
    assert not handle.jobs_waiting


def test_a_job_waits_for_the_member_while_the_reader_is_away():
    handle = consumer_handle.Handle(object())
    handle.reader_at = time.monotonic() - consumer_handle.READER_AWAY - 1
    ran_on = []
    member = threading.Thread(target=lambda: ran_on.append(
        handle.run_jobs()))
    handle.member = member
    future = handle.submit(where)
    assert handle.jobs_waiting and handle.wake.is_set()
    assert not future.done()
    member.start()
    member.join(10)
    assert future.result(0) is member


def test_a_job_waits_while_another_thread_holds_the_lock():
    handle = consumer_handle.Handle(object())
    handle.reader_at = time.monotonic()
    with handle.holding():
        asked = []
        other = threading.Thread(target=lambda: asked.append(
            handle.submit(where)))
        other.start()
        other.join(10)
        assert handle.jobs_waiting  # queued, not blocked on the lock
        # The holder's own jobs (a revoke callback's commit) run at once.
        assert handle.submit(where).result(0) is threading.current_thread()
    handle.run_jobs()
    assert asked[0].result(0) is threading.current_thread()


def test_a_job_nobody_waits_for_any_more_is_not_run():
    handle = consumer_handle.Handle(object())
    ran = []
    with pytest.raises(concurrent.futures.TimeoutError):
        handle.call(lambda consumer: ran.append(1), 0.01)
    handle.run_jobs()
    assert ran == []


def test_a_failing_job_hands_its_exception_to_the_caller():
    handle = consumer_handle.Handle(object())
    handle.reader_at = time.monotonic()
    with pytest.raises(ZeroDivisionError):
        handle.call(lambda consumer: 1 / 0, 1)


def test_the_commit_callback_is_due_once_per_interval():
    calls = []
    interval = committing.CommitInterval(lambda: calls.append(1), 30)
    assert 29 < interval.wait_time(60) <= 30
    assert interval.wait_time(1) == 1
    interval.check()
    assert calls == []
    interval._last -= 31  # 31 s later
    assert interval.wait_time(60) == 0
    interval.check()
    interval.check()
    assert calls == [1]
    interval._last -= 31
    interval.restart()  # a commit restarts the interval
    interval.check()
    assert calls == [1]


def test_without_a_commit_callback_the_wait_is_the_caller_s():
    interval = committing.CommitInterval(None, 0)
    assert interval.wait_time(5) == 5
    interval.check()


def test_the_reading_loop_learns_the_callback_is_due_without_the_clock():
    calls = []
    interval = committing.CommitInterval(lambda: calls.append(1), 30)
    interval.watch(time.monotonic())
    assert not interval.due  # not yet
    interval.watch(time.monotonic() + 31)
    interval.watch(time.monotonic() + 32)
    assert interval.due == [True]
    interval.check()  # the member's clock ran ahead of the real one
    assert calls == [] and not interval.due
    interval._last -= 31
    interval.watch(time.monotonic())
    interval.check()
    assert calls == [1] and not interval.due
    without = committing.CommitInterval(None, 0)
    without.watch(1e9)
    assert not without.due


def test_an_answer_reaches_every_waiter_once_it_is_given():
    answer = consumer_handle.Answer()
    with pytest.raises(concurrent.futures.TimeoutError):
        answer.result(0)
    got = []
    waiters = [threading.Thread(target=lambda: got.append(answer.result(10)))
               for _ in range(3)]
    for waiter in waiters:
        waiter.start()
    seen = []
    answer.add_done_callback(lambda done: seen.append(done.result(0)))
    assert answer.set_running_or_notify_cancel()
    assert not answer.cancel()  # running: too late
    answer.set_result(7)
    for waiter in waiters:
        waiter.join(10)
    assert got == [7, 7, 7] and seen == [7] and answer.done()
    answer.add_done_callback(lambda done: seen.append(done.result(0)))
    assert seen == [7, 7]
    # Another waiter between taking the lock and giving it back.
    with answer._done:
        assert answer.result(0) == 7
    with pytest.raises(concurrent.futures.InvalidStateError):
        answer.set_result(8)


def test_a_cancelled_answer_is_never_run_and_says_so():
    answer = consumer_handle.Answer()
    assert answer.cancel() and answer.cancel()
    assert not answer.set_running_or_notify_cancel()
    with pytest.raises(concurrent.futures.CancelledError):
        answer.result(0)
    failed = consumer_handle.Answer()
    failed.set_running_or_notify_cancel()
    failed.set_exception(ZeroDivisionError())
    with pytest.raises(ZeroDivisionError):
        failed.result(0)


def test_the_member_s_wake_signal_stays_set_until_cleared():
    signal = consumer_handle.Signal()
    assert not signal.wait(0.001) and not signal.is_set()
    signal.set()
    signal.set()  # twice is once
    assert signal.wait(0) and signal.wait(0) and signal.is_set()
    signal.clear()
    assert not signal.wait(0.001)
    woke = []
    waiter = threading.Thread(target=lambda: woke.append(signal.wait(10)))
    waiter.start()
    signal.set()
    waiter.join(10)
    assert woke == [True]
    signal.clear()
    signal.clear()
    assert not signal.is_set()
