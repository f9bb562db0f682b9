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

"""Take, publish the outcome, commit: as monasca-notification runs.

Every input is counted end to end: its outcome lost, duplicated, or the
input left uncommitted.
"""

import collections
import concurrent.futures
import os
import pathlib
import random
import signal
import subprocess
import sys
import threading
import time

import confluent_kafka
import pytest

from monasca_common import kafka
from tests import waiting

pytestmark = [pytest.mark.integration, pytest.mark.compat]

ENGINE = pathlib.Path(__file__).with_name('engine_child.py')


def start_engine(servers, group, in_topic, out_topic, log, sleep=0,
                 kill_at=0, config=None, kill_mode='after'):
    env = dict(os.environ)
    if config is not None:
        env['ENGINE_CONFIG'] = str(config)
    return subprocess.Popen(
        [sys.executable, str(ENGINE), servers, group, in_topic, out_topic,
         str(log), str(sleep), str(kill_at), kill_mode],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def publish_inputs(servers, topic, payloads):
    with kafka.KafkaProducer(servers) as producer:
        producer.publish(topic, payloads, sync=True, timeout=60)


def lines(log, kind):
    if not log.exists():
        return 0
    return sum(1 for line in log.read_text().splitlines()
               if line.startswith(kind))


def end_offsets(servers, topic, partitions):
    reader = confluent_kafka.Consumer({'bootstrap.servers': servers,
                                       'group.id': 'ends'})
    try:
        return {p: reader.get_watermark_offsets(
            confluent_kafka.TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)}
    finally:
        reader.close()


def outcomes(servers, topic):
    return collections.Counter(m.value() for m in waiting.read_topic(
        servers, topic, idle=2.0))


def all_committed(servers, group, topic, partitions):
    committed = waiting.committed_offsets(servers, group, topic,
                                          range(partitions))
    return all(committed[p] == end or (end == 0 and committed[p] < 0)
               for p, end in end_offsets(servers, topic, partitions).items())


def test_sigkill_right_after_commit_loses_no_outcome(bootstrap_servers,
                                                     make_topic, group_id,
                                                     tmp_path):
    """Five kills: three right after a commit returned, two at random.

    The outcome of every committed input is in Kafka; an input comes
    again only if the kill fell between its outcome and its commit.
    """
    inputs, partitions, kills = 120, 2, 5
    in_topic = make_topic(partitions=partitions)
    out_topic = make_topic()
    publish_inputs(bootstrap_servers, in_topic,
                   [b'%d' % i for i in range(inputs)])
    rng = random.Random(11)
    log = tmp_path / 'engine.log'
    for kill in range(kills):
        before = lines(log, 'C')
        if kill % 2 == 0:
            child = start_engine(bootstrap_servers, group_id, in_topic,
                                 out_topic, log, kill_at=rng.randint(5, 15))
            assert child.wait(120) == -signal.SIGKILL
        else:
            child = start_engine(bootstrap_servers, group_id, in_topic,
                                 out_topic, log)
            waiting.until(lambda: lines(log, 'C') >= before + 5, 120,
                          'the engine handling messages')
            time.sleep(rng.uniform(0, 0.2))
            child.kill()
            child.wait(30)
    last = start_engine(bootstrap_servers, group_id, in_topic, out_topic,
                        log)
    try:
        waiting.until(lambda: all_committed(bootstrap_servers, group_id,
                                            in_topic, partitions),
                      180, 'every input committed')
        assert last.poll() is None, 'the engine died'
    finally:
        last.kill()
        last.wait(30)
    produced = outcomes(bootstrap_servers, out_topic)
    inputs_seen = {tuple(v.split()[1:]) for v in produced}
    duplicated = sum(n - 1 for n in produced.values())
    print('\n%d inputs, %d kills: %d outcomes, %d lost, %d duplicated'
          % (inputs, kills, sum(produced.values()),
             inputs - len(inputs_seen), duplicated))
    assert len(inputs_seen) == inputs, 'outcomes lost'
    # Only an external kill between publish and commit repeats an input:
    # at most one per partition per kill.
    assert duplicated <= partitions * kills


@pytest.mark.core
def test_failed_outcome_means_no_commit_and_the_input_again(
        bootstrap_servers, make_topic, group_id):
    in_topic, out_topic = make_topic(), make_topic()
    publish_inputs(bootstrap_servers, in_topic, [b'first', b'second'])
    consumer = kafka.KafkaConsumer(bootstrap_servers, group_id, in_topic)
    # Its Kafka is away for longer than message.timeout.ms: a failure
    # that publishing again may mend.
    expiring = kafka.KafkaProducer('127.0.0.1:9', **{
        'message.timeout.ms': 300})
    producer = kafka.KafkaProducer(bootstrap_servers)
    try:
        it = iter(consumer)
        first = next(it)
        expiring.publish(out_topic, b'outcome')
        with pytest.raises(kafka.CommitFailedError, match='failed'):
            consumer.commit(raise_errors=True)
        # Nothing committed, and the input comes again.
        assert waiting.committed_offsets(bootstrap_servers, group_id,
                                         in_topic, [0])[0] < 0
        again = next(it)
        assert (again.offset(), again.value()) == (first.offset(),
                                                   b'first')
        producer.publish(out_topic, b'outcome')
        assert [(tp.partition, tp.offset) for tp in consumer.commit()] == \
            [(0, 1)]
    finally:
        expiring.close()
        producer.close()
        consumer.close()


def test_an_outcome_that_can_never_be_delivered_is_reported_once(
        bootstrap_servers, make_topic, group_id, caplog):
    # The notification engine's shape: take an alarm, publish its outcome,
    # commit, 1,000 times. One outcome is larger than the topic takes.
    in_topic = make_topic()
    out_topic = make_topic(config={'max.message.bytes': '1000'})
    alarms = 1000
    publish_inputs(bootstrap_servers, in_topic,
                   ['alarm-%04d' % i for i in range(alarms)])
    consumer = kafka.KafkaConsumer(bootstrap_servers, group_id, in_topic)
    producer = kafka.KafkaProducer(bootstrap_servers)
    taken = collections.Counter()
    try:
        for message in consumer:
            taken[message.value()] += 1
            outcome = b'done ' + message.value()
            if message.offset() == 500:
                outcome += b'x' * 2000
            producer.publish(out_topic, outcome)
            consumer.commit()
            if message.offset() == alarms - 1:
                break
        poison = consumer.metrics()['undeliverable.outputs']
    finally:
        producer.close()
        consumer.close()
    reported = [r for r in caplog.records if r.levelname == 'ERROR' and
                'can never be delivered' in r.getMessage()]
    assert len(reported) == 1 and out_topic in reported[0].getMessage()
    assert poison == 1
    # Every alarm taken once: nothing read again because of it.
    assert len(taken) == alarms and max(taken.values()) == 1
    out = outcomes(bootstrap_servers, out_topic)
    assert len(out) == alarms - 1 and max(out.values()) == 1
    assert waiting.committed_offsets(bootstrap_servers, group_id, in_topic,
                                     [0]) == {0: alarms}


def test_an_unrelated_producer_failing_does_not_hold_up_commits(
        bootstrap_servers, make_topic, group_id):
    # A producer of another part of the process (its own thread, its own
    # topic) publishes a message too large every 0.25 s.
    in_topic = make_topic()
    other_topic = make_topic(config={'max.message.bytes': '1000'})
    total = 600
    publish_inputs(bootstrap_servers, in_topic,
                   ['m%03d' % i for i in range(total)])
    stop = threading.Event()
    other = kafka.KafkaProducer(bootstrap_servers)

    def elsewhere():
        while not stop.is_set():
            other.publish(other_topic, b'x' * 5000)
            stop.wait(0.25)
    noise = threading.Thread(target=elsewhere)
    noise.start()
    consumer = kafka.KafkaConsumer(bootstrap_servers, group_id, in_topic)
    taken = collections.Counter()
    try:
        waiting.until(lambda: other.stats()['failed'] > 0, 30,
                      'the other producer failing')
        for message in consumer:
            taken[message.value()] += 1
            if (message.offset() + 1) % 50 == 0:
                time.sleep(0.3)  # the other producer fails meanwhile
                assert consumer.commit(raise_errors=True)
            if message.offset() == total - 1:
                break
    finally:
        stop.set()
        noise.join(10)
        other.close()
        consumer.close()
    assert len(taken) == total and max(taken.values()) == 1
    assert waiting.committed_offsets(bootstrap_servers, group_id, in_topic,
                                     [0]) == {0: total}


@pytest.mark.core
def test_commit_waits_for_the_outcome(bootstrap_servers, make_topic,
                                      group_id):
    in_topic, out_topic = make_topic(), make_topic()
    publish_inputs(bootstrap_servers, in_topic, [b'in'])
    # A long linger keeps the outcome queued unless commit waits for it.
    producer = kafka.KafkaProducer(bootstrap_servers, **{'linger.ms': 2000})
    consumer = kafka.KafkaConsumer(bootstrap_servers, group_id, in_topic)
    try:
        next(iter(consumer))
        result = producer.publish(out_topic, b'out')
        assert not result.done()
        assert consumer.commit()
        assert result.done() and result.delivered == 1
    finally:
        consumer.close()
        producer.close()


class FailingOnce:
    """Answers the next commit as Kafka does in a rebalance."""

    def __init__(self, member, code):
        self.member = member
        self.code = code

    def __call__(self, offsets, asynchronous=False):
        del self.member.commit
        failed = concurrent.futures.Future()
        failed.set_exception(confluent_kafka.KafkaException(
            confluent_kafka.KafkaError(self.code)))
        return failed


@pytest.mark.parametrize('code', [
    confluent_kafka.KafkaError.ILLEGAL_GENERATION,
    confluent_kafka.KafkaError.REBALANCE_IN_PROGRESS])
def test_offsets_of_a_commit_answered_in_a_rebalance_stay_pending(
        bootstrap_servers, topic, group_id, code):
    publish_inputs(bootstrap_servers, topic, [b'a', b'b', b'c'])
    consumer = kafka.KafkaConsumer(bootstrap_servers, group_id, topic)
    try:
        it = iter(consumer)
        next(it), next(it)
        member = consumer._member
        member.commit = FailingOnce(member, code)
        assert consumer.commit() == []
        assert 'commit' not in vars(member)
        assert waiting.committed_offsets(bootstrap_servers, group_id, topic,
                                         [0])[0] < 0
        assert consumer.assignment(), 'the partition is still owned'
        # The next commit covers them, with nothing new handed since.
        assert [(tp.partition, tp.offset) for tp in consumer.commit()] == \
            [(0, 2)]
    finally:
        consumer.close()
    assert waiting.committed_offsets(bootstrap_servers, group_id, topic,
                                     [0]) == {0: 2}


@pytest.mark.core
def test_commit_from_another_thread_while_iterating(bootstrap_servers,
                                                    topic, group_id):
    consumer = kafka.KafkaConsumer(bootstrap_servers, group_id, topic,
                                   commit_errors='raise')
    taken = []
    reader = threading.Thread(target=lambda: [
        taken.append(m) for m in consumer])
    reader.start()
    producer = kafka.KafkaProducer(bootstrap_servers)
    try:
        for round_ in range(1, 4):
            producer.publish(topic, [b'm'] * 5, sync=True)
            waiting.until(lambda: len(taken) >= 5 * round_, 30,
                          'messages taken')
            started = time.monotonic()
            committed = consumer.commit()
            # Each commit well inside commit_timeout, every time.
            assert time.monotonic() - started < 5
            assert [(tp.partition, tp.offset) for tp in committed] == \
                [(0, 5 * round_)]
    finally:
        producer.close()
        consumer.stop()
        reader.join(10)
        consumer.close()
    assert not reader.is_alive()


@pytest.mark.parametrize('protocol', ['classic', 'consumer'])
def test_six_engines_a_sleeper_and_six_joiners(bootstrap_servers,
                                               make_topic, group_id,
                                               tmp_path, protocol):
    """monasca-notification, twice: 5 engines and a retry engine each.

    The retry engines sleep 30 s per message, holding it. The second
    instance joins mid-stream. Every input's outcome is in Kafka exactly
    once, every input is committed, no engine dies, and the joiners get
    partitions within one sleep: usually in seconds, but with the classic
    group protocol, when the retry partition the sleeper is in the middle
    of moves to the joining instance, the whole group waits for it to
    finish that message (group.protocol=consumer does not). The protocol
    comes from the engines' configuration file, ``[kafka_client]
    group_protocol``, as an operator sets it.
    """
    with kafka.KafkaAdmin(bootstrap_servers) as admin:
        if protocol not in admin.group_protocols():
            pytest.skip('the brokers do not offer group.protocol=%s'
                        % protocol)
    config = tmp_path / 'engine.conf'
    config.write_text('[kafka_client]\ngroup_protocol = %s\n' % protocol)
    alarms, retries, sleep = 2000, 2, 30
    alarm_topic = make_topic(partitions=12)
    retry_topic = make_topic(partitions=2)
    out_topic = make_topic(partitions=4)
    producer = kafka.KafkaProducer(bootstrap_servers)
    raw = confluent_kafka.Producer({'bootstrap.servers': bootstrap_servers})
    for partition in range(retries):
        raw.produce(retry_topic, b'r%d' % partition, partition=partition)
    assert raw.flush(30) == 0
    engines = []

    def instance(name):
        started = []
        for n in range(5):
            log = tmp_path / ('%s-engine%d.log' % (name, n))
            engines.append(start_engine(bootstrap_servers, group_id,
                                        alarm_topic, out_topic, log,
                                        config=config))
            started.append(log)
        engines.append(start_engine(
            bootstrap_servers, group_id, retry_topic, out_topic,
            tmp_path / ('%s-retry.log' % name), sleep=sleep, config=config))
        return started

    first = instance('first')
    feeding = threading.Thread(target=lambda: [
        (producer.publish(alarm_topic, [b'a%d' % i]), time.sleep(0.01))
        for i in range(alarms)])
    feeding.start()
    try:
        waiting.until(lambda: sum(lines(log, 'C') for log in first) >= 300,
                      120, 'the first instance handling alarms')
        joined = time.monotonic()
        second = instance('second')
        waiting.until(lambda: all(lines(log, 'H') for log in second), 60,
                      'every joining engine taking alarms')
        rebalance = time.monotonic() - joined
        feeding.join(120)
        producer.flush(60)
        try:
            waiting.until(
                lambda: all_committed(bootstrap_servers, group_id,
                                      alarm_topic, 12) and
                all_committed(bootstrap_servers, group_id, retry_topic, 2),
                sleep * 4, 'every input committed')
        except waiting.Timeout:
            for name, count in ((alarm_topic, 12), (retry_topic, 2)):
                print(name, waiting.committed_offsets(
                    bootstrap_servers, group_id, name, range(count)),
                    end_offsets(bootstrap_servers, name, count))
            for log in sorted(tmp_path.iterdir()):
                print(log.name, log.read_text().splitlines()[-3:])
            raise
        died = [e.args[-3] for e in engines if e.poll() is not None]
        assert not died, 'engines died'
    finally:
        for engine in engines:
            engine.kill()
        for engine in engines:
            engine.wait(30)
        producer.close()
    produced = outcomes(bootstrap_servers, out_topic)
    duplicated = sum(n - 1 for n in produced.values())
    print('\n%s protocol: joiners took alarms %.1f s after joining (retry '
          'engines sleep %d s); %d outcomes for %d inputs, %d duplicated'
          % (protocol, rebalance, sleep, sum(produced.values()),
             alarms + retries, duplicated))
    # One message of the sleeper at most, plus the rejoin.
    assert rebalance < sleep + 20
    assert len(produced) == alarms + retries
    assert duplicated == 0


@pytest.mark.core
def test_a_script_that_publishes_and_ends_delivers_everything(
        bootstrap_servers, topic, tmp_path):
    ends = {
        'end': '',
        'sys.exit': 'sys.exit(0)',
        'sigterm': 'os.kill(os.getpid(), signal.SIGTERM)',
    }
    for name, end in ends.items():
        script = tmp_path / ('%s.py' % name)
        script.write_text(
            'import os, signal, sys\n'
            'from monasca_common import kafka\n'
            # A service that handles SIGTERM by exiting, as oslo.service's.
            'signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n'
            'producer = kafka.KafkaProducer(%r)\n'
            'producer.publish(%r, [b"%s-%%d" %% i for i in range(1000)])\n'
            '%s\n' % (bootstrap_servers, topic, name, end))
        done = subprocess.run([sys.executable, str(script)], timeout=60)
        assert done.returncode == 0, name
    produced = collections.Counter(
        m.value().split(b'-')[0] for m in waiting.read_topic(
            bootstrap_servers, topic, expected=3000))
    assert produced == {b'end': 1000, b'sys.exit': 1000, b'sigterm': 1000}


def test_exit_without_kafka_is_bounded_and_says_what_was_lost(
        unreachable_servers, tmp_path):
    script = tmp_path / 'lost.py'
    script.write_text(
        'import logging\n'
        'logging.basicConfig()\n'
        'from monasca_common import kafka\n'
        'from monasca_common.confluent_kafka import published\n'
        'published.EXIT_TIMEOUT = 2\n'
        'kafka.KafkaProducer(%r).publish("t", [b"x"] * 10)\n'
        % (unreachable_servers,))
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], timeout=60,
                          capture_output=True, text=True)
    assert time.monotonic() - started < 20
    assert done.returncode == 0
    assert '10 messages were not delivered' in done.stderr
