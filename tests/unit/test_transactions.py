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

"""The processor's bookkeeping and argument checks, without a broker."""

import confluent_kafka
import pytest

from monasca_common.confluent_kafka import errors
from monasca_common.confluent_kafka import transactions


class FakeMessage:
    def __init__(self, topic, partition, offset):
        self._at = (topic, partition, offset)

    def topic(self):
        return self._at[0]

    def partition(self):
        return self._at[1]

    def offset(self):
        return self._at[2]


BATCH = [FakeMessage('a', 0, 5), FakeMessage('a', 1, 7),
         FakeMessage('a', 0, 6), FakeMessage('b', 0, 2),
         FakeMessage('a', 0, 9)]


def as_tuples(partitions):
    return sorted((tp.topic, tp.partition, tp.offset) for tp in partitions)


def test_a_batch_commits_after_its_last_message_per_partition():
    assert as_tuples(transactions.next_offsets(BATCH)) == [
        ('a', 0, 10), ('a', 1, 8), ('b', 0, 3)]


def test_a_batch_comes_again_from_its_first_message_per_partition():
    assert as_tuples(transactions.first_offsets(BATCH)) == [
        ('a', 0, 5), ('a', 1, 7), ('b', 0, 2)]


def test_outputs_become_what_librdkafka_takes():
    assert transactions.checked_output(('out', 'é')) == (
        'out', 'é'.encode(), None)
    assert transactions.checked_output(['out', b'v', 'k']) == (
        'out', b'v', b'k')
    assert transactions.checked_output(('out', b'v', None)) == (
        'out', b'v', None)


@pytest.mark.parametrize('output, named', [
    ('out', r'process\(\) must give'),
    (('out',), r'process\(\) must give'),
    (('bad topic', b'v'), 'illegal Kafka topic name'),
    (('out', 42), 'value for topic out must be str or bytes, got int'),
    (('out', b'v', 4.0), 'key for topic out must be str or bytes'),
    (('out', '\ud800'), 'value for topic out is not valid UTF-8'),
])
def test_bad_outputs_are_named(output, named):
    with pytest.raises(errors.InvalidMessageError, match=named):
        transactions.checked_output(output)


def test_transactional_id_is_the_group_then_the_instance():
    assert transactions.transactional_id('notification', 'host-1.3') == \
        'notification.host-1.3'
    for bad in ('', '  ', None, 3):
        with pytest.raises(errors.ConfigurationError, match='instance_id'):
            transactions.transactional_id('g', bad)
    with pytest.raises(errors.ConfigurationError, match='group_id'):
        transactions.transactional_id('', 'x')


@pytest.mark.parametrize('change, named', [
    ({'process': None}, 'process must be callable'),
    ({'batch_size': 0}, 'batch_size must be a positive int'),
    ({'batch_size': True}, 'batch_size must be a positive int'),
    ({'batch_timeout': -1}, 'batch_timeout'),
    ({'transaction_timeout': 0}, 'transaction_timeout'),
    ({'topic': 'a b'}, 'illegal Kafka topic name'),
    ({'producer_config': {'no.such.property': 1}}, 'no.such.property'),
])
def test_bad_arguments_are_refused_by_name(change, named):
    arguments = dict(bootstrap_servers='127.0.0.1:1', group_id='g',
                     topic='in', process=lambda batch: [], instance_id='i')
    arguments.update(change)
    with pytest.raises(errors.ConfigurationError, match=named):
        transactions.Processor(**arguments)


def test_transaction_timeout_bounds_message_timeout():
    processor = transactions.Processor('127.0.0.1:1', 'g', 'in',
                                       lambda batch: [], 'i',
                                       transaction_timeout=20)
    try:
        config = processor._producer_config
        assert config['transactional.id'] == 'g.i'
        assert config['transaction.timeout.ms'] == 20000
        assert config['message.timeout.ms'] == 20000
        assert processor._consumer_config['isolation.level'] == \
            'read_committed'
        assert 'g.i' in repr(processor)
    finally:
        processor.close(1)
    with pytest.raises(errors.ClientClosedError):
        processor.run()


# -- exactly_once: who joins whose transactions -----------------------------

def test_one_exactly_once_consumer_per_process(caplog):
    from monasca_common import kafka
    first = kafka.KafkaConsumer('127.0.0.1:1', 'g1', 'in', exactly_once=True)
    try:
        with pytest.raises(errors.ConfigurationError,
                           match='already has an exactly-once consumer.*g1'):
            kafka.KafkaConsumer('127.0.0.1:1', 'g2', 'in', exactly_once=True)
        # Without the option, more consumers are fine.
        kafka.KafkaConsumer('127.0.0.1:1', 'g3', 'in').close(1)
    finally:
        first.close(1)
    # Closed: the process may have another.
    kafka.KafkaConsumer('127.0.0.1:1', 'g4', 'in', exactly_once=True).close(1)


def test_the_first_producer_after_the_consumer_joins(caplog):
    from monasca_common import kafka
    caplog.set_level('INFO')
    before = kafka.KafkaProducer('127.0.0.1:1', exactly_once=True)
    consumer = kafka.KafkaConsumer('127.0.0.1:1', 'grp', 'in',
                                   exactly_once=True)
    joined = kafka.KafkaProducer('127.0.0.1:1', exactly_once=True)
    second = kafka.KafkaProducer('127.0.0.1:1', exactly_once=True)
    plain = kafka.KafkaProducer('127.0.0.1:1')
    try:
        assert 'transactional.id' not in before._config
        assert joined._config['transactional.id'].startswith('grp.')
        assert joined._config['transaction.timeout.ms'] == 60000
        assert joined._config['message.timeout.ms'] == 60000
        assert 'transactional.id' not in second._config
        assert 'transactional.id' not in plain._config
        assert 'no exactly-once consumer was built before it' in caplog.text
        assert 'another producer already joins' in caplog.text
    finally:
        consumer.close(1)
        for producer in (before, joined, second, plain):
            producer.close(1)


def test_publishing_after_the_consumer_closed_is_refused():
    from monasca_common import kafka
    consumer = kafka.KafkaConsumer('127.0.0.1:1', 'grp', 'in',
                                   exactly_once=True)
    producer = kafka.KafkaProducer('127.0.0.1:1', exactly_once=True)
    try:
        consumer.close(1)
        with pytest.raises(errors.ConsumerError,
                           match='is closed; nothing would commit'):
            producer.publish('out', ['m'])
    finally:
        producer.close(1)


def test_the_option_turns_it_on(tmp_path):
    from oslo_config import cfg

    from monasca_common.confluent_kafka import opts
    conf = cfg.ConfigOpts()
    opts.register_opts(conf)
    path = tmp_path / 'service.conf'
    path.write_text('[kafka_client]\nexactly_once = true\n')
    conf(args=[], default_config_files=[str(path)])
    assert opts.exactly_once(None, conf) is True
    assert opts.exactly_once(False, conf) is False
    # Not a librdkafka property.
    assert 'exactly.once' not in opts.client_properties('producer', conf)


class _AbortAfterAConflict:
    """An abort refused while a timed-out call goes on, then taken."""

    def __init__(self, conflicts):
        self.conflicts, self.aborts = conflicts, 0

    def abort_transaction(self, timeout):
        self.aborts += 1
        if self.aborts <= self.conflicts:
            raise confluent_kafka.KafkaException(confluent_kafka.KafkaError(
                confluent_kafka.KafkaError._CONFLICT))


def test_an_abort_waits_out_a_call_still_in_progress(caplog):
    """An abort refused as _CONFLICT is tried again until its deadline.

    Given up at once, it left the transaction open: after a leader kill
    the processor logged that and copied nothing more.
    """
    processor = transactions.Processor('127.0.0.1:1', 'g', 'in',
                                       lambda batch: [], instance_id='i')
    real = processor._producer
    try:
        processor._producer = _AbortAfterAConflict(conflicts=3)
        processor._in_transaction = True
        processor._abort()
        assert processor._producer.aborts == 4
        assert not processor._in_transaction
        assert 'aborting the transaction failed' not in caplog.text
    finally:
        processor._producer = real
        processor.close(1)
