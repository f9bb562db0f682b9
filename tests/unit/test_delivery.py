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

"""The delivery ledger, fed reports by hand: no broker, no librdkafka."""

import logging
import threading
import time

import confluent_kafka
import pytest

from monasca_common.confluent_kafka import delivery
from monasca_common.confluent_kafka import errors
from monasca_common.confluent_kafka import published
from monasca_common.kafka import legacy_kafka_message

KafkaError = confluent_kafka.KafkaError
TIMED_OUT = KafkaError(KafkaError._MSG_TIMED_OUT)
NO_LEADER = KafkaError(KafkaError.LEADER_NOT_AVAILABLE)


def Message(value, topic='t'):
    return legacy_kafka_message.LegacyKafkaMessage([0, (0, (None, value))],
                                                   topic)


def publish(ledger, topic='t', callback=None):
    """A new call: its result and its reporter."""
    result = ledger.open(topic)
    return result, ledger.reporter(result, callback)


def test_reports_before_the_seal_complete_the_call_at_the_seal():
    ledger = delivery.DeliveryLedger()
    result, report = publish(ledger)
    for i in range(3):
        report(None, Message(b'%d' % i))
    assert not result.done()
    assert list(ledger.unfinished) == [result]
    ledger.seal(result, 3, 0)
    assert result.done() and result.delivered == 3
    assert not ledger.unfinished
    assert ledger.stats() == {'queued': 3, 'delivered': 3, 'failed': 0,
                              'pending': 0}


def test_the_last_report_after_the_seal_completes_the_call():
    ledger = delivery.DeliveryLedger()
    result, report = publish(ledger)
    report(None, Message(b'a'))
    ledger.seal(result, 2, 0)
    assert not result.done()
    assert ledger.outstanding() == 1
    report(TIMED_OUT, Message(b'b'))
    assert result.done()
    assert [f.value for f in result.failed] == [b'b']
    with pytest.raises(errors.DeliveryFailedError,
                       match='1 of 2 messages to topic .t. were not'):
        result.raise_for_failures()


def test_a_partly_queued_bulk_counts_only_what_went_in():
    ledger = delivery.DeliveryLedger()
    result, report = publish(ledger)
    ledger.seal(result, 3, 2)
    for value in (b'1', b'2', b'3'):
        report(None, Message(value))
    assert result.done()
    with pytest.raises(errors.DeliveryFailedError) as info:
        result.raise_for_failures()
    assert info.value.not_queued == 2
    assert ledger.outstanding() == 0


def test_leader_errors_raise_the_old_name():
    ledger = delivery.DeliveryLedger()
    result, report = publish(ledger)
    ledger.seal(result, 1, 0)
    report(NO_LEADER, Message(b'x'))
    with pytest.raises(errors.LeaderNotAvailableError):
        result.raise_for_failures()


def test_callbacks_run_and_their_errors_are_contained(caplog):
    seen = []
    ledger = delivery.DeliveryLedger(
        delivery_callback=lambda err, msg: seen.append(('producer', err)))

    def call_callback(err, msg):
        seen.append(('call', err))
        raise SystemExit('a callback must not end the poller')
    result, report = publish(ledger, callback=call_callback)
    ledger.seal(result, 1, 0)
    with caplog.at_level(logging.ERROR):
        report(None, Message(b'x'))
    assert seen == [('call', None), ('producer', None)]
    assert result.done()
    assert 'raised' in caplog.text


def test_failures_count_in_the_scope_of_the_publishing_call():
    ledger = delivery.DeliveryLedger()
    outputs, elsewhere = published.Outputs(), published.Outputs()
    result = ledger.open('t', outputs)
    report = ledger.reporter(result, None, None, outputs)
    ledger.open('t', elsewhere)
    ledger.seal(result, 3, 0)
    assert list(outputs.unfinished) == [result]
    report(TIMED_OUT, Message(b'a'))
    report(confluent_kafka.KafkaError(
        confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE), Message(b'b' * 9))
    report(None, Message(b'c'))
    assert result.done() and not outputs.unfinished
    assert outputs.transient == 1  # publishing again may mend it
    poison = outputs.take_permanent()
    assert [(f.value, f.error.code()) for f in poison] == [
        (b'b' * 9, confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE)]
    assert outputs.take_permanent() == []  # reported once
    assert elsewhere.transient == 0 and not elsewhere.take_permanent()
    assert ledger.stats()['failed'] == 2


def test_wait_drained_wakes_on_the_last_report_not_by_polling():
    ledger = delivery.DeliveryLedger()
    result, report = publish(ledger)
    ledger.seal(result, 2, 0)
    finished = []
    waiter = threading.Thread(
        target=lambda: finished.append(ledger.wait_drained(None)))
    waiter.start()
    report(None, Message(b'a'))
    waiter.join(0.2)
    assert waiter.is_alive(), 'one message is still unreported'
    report(None, Message(b'b'))
    waiter.join(10)
    assert finished == [0]


def test_wait_drained_answers_what_is_left_at_the_deadline():
    ledger = delivery.DeliveryLedger()
    result, report = publish(ledger)
    ledger.seal(result, 3, 0)
    report(None, Message(b'a'))
    assert ledger.wait_drained(time.monotonic() + 0.05) == 2


def test_wait_published_covers_the_calls_before_it():
    ledger = delivery.DeliveryLedger()
    first, report_first = publish(ledger)
    ledger.seal(first, 1, 0)
    assert ledger.wait_published(time.monotonic() + 0.05) == 1
    report_first(None, Message(b'a'))
    assert ledger.wait_published(time.monotonic() + 0.05) == 0


def test_errors_only_ledger_asks_librdkafka_what_is_left():
    in_flight = [4]
    ledger = delivery.DeliveryLedger(successes_reported=False,
                                     in_flight=lambda: in_flight[0])
    result, report = publish(ledger)
    ledger.seal(result, 4, 0)
    assert not ledger.unfinished
    assert ledger.outstanding() == 4
    with pytest.raises(errors.ConfigurationError, match='errors'):
        result.wait(0)
    finished = []
    waiter = threading.Thread(target=lambda: finished.append(
        ledger.wait_drained(time.monotonic() + 10)))
    waiter.start()
    in_flight[0] = 0
    ledger.wake()  # what the poller does after each poll
    waiter.join(10)
    assert finished == [0]
    assert ledger.stats()['delivered'] == 4


def test_a_delivery_clears_the_outage_mark():
    ledger = delivery.DeliveryLedger()
    ledger.down_since = time.monotonic()
    result, report = publish(ledger)
    report(None, Message(b'a'))
    assert ledger.down_since is None


def test_failure_log_says_the_first_at_once_then_counts(caplog):
    log = delivery.FailureLog(interval=3600)
    with caplog.at_level(logging.ERROR):
        for _ in range(500):
            log.note('metrics', TIMED_OUT)
        log.summarise()
    assert caplog.text.count('Kafka delivery to topic metrics failed') == 1
    assert 'Kafka delivery failures' not in caplog.text
    with caplog.at_level(logging.ERROR):
        log.summarise(force=True)
    assert 'Kafka delivery failures: 500 messages to topic metrics' \
        in caplog.text
    assert not log


def test_a_refusal_ends_waits_without_completing_the_call():
    ledger = delivery.DeliveryLedger()
    result, report = publish(ledger)
    ledger.seal(result, 1, 0)
    answers = []
    waiter = threading.Thread(target=lambda: answers.append(
        (result.wait(30), ledger.wait_published(time.monotonic() + 30))))
    waiter.start()
    waiting_started = time.monotonic()
    while result._event is None and time.monotonic() - waiting_started < 10:
        time.sleep(0.001)
    ledger.refuse(KafkaError(KafkaError._AUTHENTICATION))
    waiter.join(10)
    assert not waiter.is_alive()
    # Not done, and the barrier does not wait for the whole deadline.
    assert answers[0][0] is False
    assert answers[0][1] == 1
    # A delivery later still completes the call and ends the refusal.
    report(None, Message(b'late'))
    assert result.done()
    assert (ledger.refusal, ledger.down_since) == (None, None)
