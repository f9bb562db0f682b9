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

"""Each call of the drop-in contract, written the way the service writes it.
"""

import json
import threading
import time
import warnings

from oslo_config import cfg
import pytest

from monasca_common.kafka import client_factory
from monasca_common.kafka_lib import common as kafka_common
from tests import waiting

pytestmark = [pytest.mark.integration, pytest.mark.compat, pytest.mark.core]


def test_api_publishes_slices_through_the_factory(bootstrap_servers, topic):
    # monasca-api: [kafka] uri is a ListOpt; queue_buffering_max_messages
    # passes through as a librdkafka property.
    uri = bootstrap_servers.split(',')
    producer = client_factory.get_kafka_producer(
        uri, False, **{'queue.buffering.max.messages': 1000})
    envelopes = [json.dumps({'metric': {'name': 'cpu', 'value': i}})
                 for i in range(2500)]
    try:
        for i in range(0, len(envelopes), 1000):
            producer.publish(topic, envelopes[i:i + 1000])
        producer.publish(topic, [])
        assert producer.flush(60) == 0
    finally:
        producer.close()
    read = waiting.read_topic(bootstrap_servers, topic, expected=2500)
    assert sorted(json.loads(m.value())['metric']['value'] for m in read) \
        == list(range(2500))


def test_api_turns_kafka_trouble_into_503(unreachable_servers):
    producer = client_factory.get_kafka_producer(
        [unreachable_servers], **{'message.timeout.ms': 1500})
    try:
        # monasca-api's except clause, verbatim in spirit.
        with pytest.raises((kafka_common.KafkaUnavailableError,
                            kafka_common.LeaderNotAvailableError,
                            kafka_common.FailedPayloadsError)):
            producer.publish('metrics', ['{}'], sync=True, timeout=10)
    finally:
        producer.close(0.5)


def test_log_api_producer_is_synchronous(bootstrap_servers, topic):
    from monasca_common.kafka import producer as kafka_producer
    producer = kafka_producer.KafkaProducer(url=bootstrap_servers)
    try:
        result = producer.publish(topic, ['{"log": 1}', '{"log": 2}'])
        assert result.done() and result.delivered == 2
    finally:
        producer.close()


def test_log_api_producer_raises_old_names_when_kafka_is_gone(
        unreachable_servers):
    from monasca_common.kafka import producer as kafka_producer
    producer = kafka_producer.KafkaProducer(
        url=unreachable_servers, **{'message.timeout.ms': 1500})
    try:
        with pytest.raises(kafka_common.FailedPayloadsError):
            producer.publish('logs', '{"log": 1}')
    finally:
        producer.close(0.5)


def test_notification_consumer_six_positional_arguments(bootstrap_servers,
                                                        topic, group_id):
    client_factory.get_kafka_producer(bootstrap_servers).publish(
        topic, '{"alarm-transitioned": {}}', sync=True)
    client_factory._warned.clear()
    with pytest.warns(DeprecationWarning, match='zookeeper') as record:
        consumer = client_factory.get_kafka_consumer(
            bootstrap_servers.split(','), group_id, topic,
            'zk1:2181,zk2:2181', '/notification/alarms', False)
    assert len([w for w in record
                if issubclass(w.category, DeprecationWarning)]) == 1
    try:
        message = waiting.take(consumer, 1)[0]
        assert message.value() == b'{"alarm-transitioned": {}}'
        assert (message.topic(), message.partition(), message.offset(),
                message.key()) == (topic, 0, 0, None)
        consumer.commit()
    finally:
        consumer.close()
    # The same call again warns no more.
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        client_factory.get_kafka_consumer(
            bootstrap_servers, group_id, topic, 'zk:2181', '/x',
            False).close()


def test_use_legacy_client_true_still_works(bootstrap_servers, topic,
                                            group_id):
    client_factory._warned.clear()
    with pytest.warns(DeprecationWarning, match='legacy'):
        producer = client_factory.get_kafka_producer(bootstrap_servers,
                                                     use_legacy_client=True)
    producer.publish(topic, 'still delivered', sync=True)
    producer.close()
    consumer = client_factory.get_kafka_consumer(
        bootstrap_servers, group_id, topic, use_legacy_client=True)
    try:
        assert waiting.take(consumer, 1)[0].value() == b'still delivered'
    finally:
        consumer.close()


def test_persister_commit_callback_on_idle_topic(bootstrap_servers, topic,
                                                 group_id):
    fired = threading.Event()
    consumer = client_factory.get_kafka_consumer(
        kafka_url=bootstrap_servers.split(','),
        kafka_consumer_group=group_id, kafka_topic=topic,
        zookeeper_url=None, zookeeper_path=None, use_legacy_client=False,
        repartition_callback=lambda kafka_consumer, partitions: None,
        commit_callback=fired.set, max_commit_interval=1)
    reader = threading.Thread(target=lambda: list(consumer))
    reader.start()
    try:
        assert fired.wait(15), 'commit_callback never fired on an idle topic'
    finally:
        consumer.stop()
        reader.join(10)
        consumer.close()


@pytest.mark.parametrize('arity', ['two', 'none'])
def test_repartition_callback_both_arities(bootstrap_servers, make_topic,
                                           group_id, arity):
    topic = make_topic(partitions=2)
    calls = []
    if arity == 'two':
        def callback(kafka_consumer, partitions):
            calls.append(sorted(tp.partition for tp in partitions))
    else:
        def callback():
            calls.append(None)
    producer = client_factory.get_kafka_producer(bootstrap_servers)
    producer.publish(topic, ['a', 'b', 'c', 'd'], sync=True)
    producer.close()
    first = client_factory.get_kafka_consumer(
        bootstrap_servers, group_id, topic, repartition_callback=callback)
    waiting.take(first, 1)
    second = client_factory.get_kafka_consumer(bootstrap_servers, group_id,
                                               topic)
    stop = threading.Event()
    joiner = threading.Thread(
        target=lambda: [None for _ in iter(
            lambda: stop.is_set() or second.consume_batch(10, 0.5), True)])
    joiner.start()
    try:
        # The first member must give a partition away to the second.
        waiting.until(lambda: calls or first.consume_batch(10, 0.2) and
                      False, 60, 'repartition callback on revoke')
    finally:
        stop.set()
        joiner.join(10)
        first.close()
        second.close()
    if arity == 'two':
        assert calls[0] and set(calls[0]) <= {0, 1}


def test_old_confluent_import_paths(bootstrap_servers, topic, group_id):
    from monasca_common.confluent_kafka import consumer
    from monasca_common.confluent_kafka import producer
    p = producer.KafkaProducer(bootstrap_servers)
    p.publish(topic, ['x', 'y'], None, 2)
    assert p.flush(30) == 0
    p.close()
    c = consumer.KafkaConsumer(bootstrap_servers, group_id, topic,
                               client_id='persister',
                               repartition_callback=None,
                               commit_callback=None, max_commit_interval=30)
    try:
        assert [m.value() for m in waiting.take(c, 2)] == [b'x', b'y']
    finally:
        c.close()


def test_legacy_consumer_signature(bootstrap_servers, topic, group_id):
    from monasca_common.kafka import consumer as legacy
    client_factory.get_kafka_producer(bootstrap_servers).publish(
        topic, 'legacy', sync=True)
    with pytest.warns(DeprecationWarning, match='zookeeper'):
        c = legacy.KafkaConsumer(bootstrap_servers, 'zk:2181', '/persister',
                                 group_id, topic,
                                 repartition_callback=lambda: None,
                                 commit_callback=None, commit_timeout=30)
    try:
        assert waiting.take(c, 1)[0].value() == b'legacy'
        c.commit()
    finally:
        c.close()


class Conf:
    def __init__(self):
        from monasca_common.healthcheck import opts
        self.conf = cfg.ConfigOpts()
        opts.register_opts(self.conf)

    def config(self, group, **values):
        for name, value in values.items():
            self.conf.set_override(name, value, group)


@pytest.fixture
def healthcheck_conf():
    from monasca_common.healthcheck.checks import kafka_check
    conf = Conf()
    kafka_check.CONF = conf.conf
    yield conf, kafka_check
    kafka_check.CONF = cfg.CONF


def test_healthcheck_ok_and_topic_missing(healthcheck_conf,
                                          bootstrap_servers, topic):
    fixture, kafka_check = healthcheck_conf
    fixture.config(group='kafka_healthcheck', kafka_url=bootstrap_servers,
                   kafka_topics=[topic])
    assert kafka_check.KafkaHealthCheck(fixture.conf).healthcheck() == (
        True, 'OK')
    fixture.config(group='kafka_healthcheck',
                   kafka_topics=[topic, 'no-such-topic'])
    healthy, message = kafka_check.KafkaHealthCheck(
        fixture.conf).healthcheck()
    assert not healthy
    assert message == 'Kafka: Topic no-such-topic not found'


def test_healthcheck_answers_in_bounded_time_when_kafka_is_down(
        healthcheck_conf, unreachable_servers):
    fixture, kafka_check = healthcheck_conf
    fixture.config(group='kafka_healthcheck',
                   kafka_url=unreachable_servers, timeout=2)
    started = time.monotonic()
    result = kafka_check.KafkaHealthCheck(fixture.conf).healthcheck()
    assert time.monotonic() - started < 6
    assert result.healthy is False
    assert result.message == ('Could not connect to kafka at %s'
                              % unreachable_servers)
