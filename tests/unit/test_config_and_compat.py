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

"""Fast tests: configuration, bad input, compatibility names; no broker
beyond librdkafka's in-process mock cluster."""

import collections
import logging
import re
import subprocess
import sys

from oslo_config import cfg
import pytest

from monasca_common.confluent_kafka import config
from monasca_common import kafka
from monasca_common.kafka import legacy_kafka_message
from monasca_common.kafka_lib import common as kafka_common


@pytest.mark.parametrize('given, expected', [
    ('a:1', 'a:1'),
    ('a:1, b:2', 'a:1,b:2'),
    (['a:1', 'b:2'], 'a:1,b:2'),
    (['a:1,b:2', 'c:3'], 'a:1,b:2,c:3'),
    (('a:1',), 'a:1'),
])
def test_bootstrap_servers_as_string_or_list(given, expected):
    assert config.bootstrap_servers(given) == expected


@pytest.mark.parametrize('given, problem', [
    ('', 'no Kafka bootstrap servers'),
    ([], 'no Kafka bootstrap servers'),
    ('localhost', 'not of the form host:port'),
    ('a:99999', 'not of the form host:port'),
    (9092, 'got int'),
    ([9092], 'got int'),
])
def test_bad_bootstrap_servers_are_named(given, problem):
    with pytest.raises(kafka.ConfigurationError, match=problem):
        config.bootstrap_servers(given)


def test_unknown_property_fails_at_construction():
    with pytest.raises(kafka.ConfigurationError, match='no.such.property'):
        kafka.KafkaProducer('127.0.0.1:9', **{'no.such.property': 1})
    with pytest.raises(kafka.ConfigurationError, match='linger'):
        kafka.KafkaProducer('127.0.0.1:9', **{'linger.ms': 'soon'})


def run_python(code):
    """Run ``code`` in a fresh interpreter; it must exit 0."""
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out


@pytest.mark.parametrize('kwargs, problem', [
    ({'delivery_reports': 'some'}, "delivery_reports must be 'all' or "
                                   "'errors', got 'some'"),
    ({'delivery.report.only.error': True}, "delivery_reports='errors'"),
])
def test_delivery_report_modes_are_checked(kwargs, problem):
    with pytest.raises(kafka.ConfigurationError, match=re.escape(problem)):
        kafka.KafkaProducer('127.0.0.1:9', **kwargs)


def test_empty_group_id_is_an_error_not_an_abort():
    # librdkafka aborts the interpreter on an empty group.id; a child
    # process proves this one survives it.
    code = ('from monasca_common import kafka\n'
            'for g in ("", "  ", None):\n'
            '    try:\n'
            '        kafka.KafkaConsumer("127.0.0.1:9", g, "t")\n'
            '    except kafka.ConfigurationError as e:\n'
            '        print("refused", e)\n')
    out = run_python(code)
    assert out.stdout.count('refused group_id must be a non-empty') == 3


def test_group_id_given_as_a_property_is_checked_too():
    code = ('from monasca_common import kafka\n'
            'for g in ("", "   "):\n'
            '    try:\n'
            '        kafka.KafkaConsumer("127.0.0.1:9", "g", "t",\n'
            '                            **{"group.id": g})\n'
            '    except kafka.ConfigurationError as e:\n'
            '        print("refused", e)\n')
    out = run_python(code)
    assert out.stdout.count('refused group_id must be a non-empty') == 2


@pytest.mark.parametrize('kwargs', [
    {'poll_timeout': -1}, {'poll_timeout': 0},
    {'poll_timeout': float('nan')}, {'commit_timeout': -1},
    {'commit_errors': 'ignore'}, {'enable.auto.commit': True},
    {'on_commit': print},
    {'group.protocol': 'consumer', 'session.timeout.ms': 6000},
    {'group.protocol': 'consumer',
     'partition.assignment.strategy': 'range'}])
def test_consumer_arguments_are_checked(kwargs):
    with pytest.raises(kafka.ConfigurationError):
        kafka.KafkaConsumer('127.0.0.1:9', 'g', 't', **kwargs)


@pytest.mark.parametrize('timeout', [-1, float('nan'), 'soon'])
def test_consume_batch_timeout_is_checked(timeout):
    consumer = kafka.KafkaConsumer('127.0.0.1:9', 'g', 't')
    try:
        with pytest.raises(kafka.ConfigurationError, match='timeout'):
            consumer.consume_batch(10, timeout)
    finally:
        consumer.close(1)


def test_stop_before_iterating_ends_the_iteration_at_once():
    consumer = kafka.KafkaConsumer('127.0.0.1:9', 'g', 't')
    try:
        consumer.stop()
        assert list(consumer) == []
    finally:
        consumer.close(1)


@pytest.mark.parametrize('topic', ['', 'has space', 'a' * 250, 'ü', None,
                                   '.', '..'])
def test_illegal_topic_names(topic):
    with pytest.raises(kafka.ConfigurationError, match='topic'):
        kafka.KafkaConsumer('127.0.0.1:9', 'g', topic)
    producer = kafka.KafkaProducer('127.0.0.1:9')
    try:
        with pytest.raises(kafka.InvalidMessageError, match='topic name'):
            producer.publish(topic, 'x')
    finally:
        producer.close(0)


def test_secrets_never_in_errors_reprs_or_logs(caplog):
    secret = 'S3cr3t-Passw0rd'
    caplog.set_level(logging.DEBUG)
    with pytest.raises(kafka.ConfigurationError) as raised:
        kafka.KafkaProducer('127.0.0.1:9', **{
            'security.protocol': 'SASL_PLAINTEXT',
            'sasl.mechanism': 'PLAIN', 'sasl.username': 'u',
            'sasl.password': secret, 'compression.type': secret})
    assert secret not in str(raised.value)
    assert '*****' in str(raised.value)
    producer = kafka.KafkaProducer('127.0.0.1:9', **{
        'security.protocol': 'SASL_PLAINTEXT', 'sasl.mechanism': 'PLAIN',
        'sasl.username': 'u', 'sasl.password': secret,
        'message.timeout.ms': 1000})
    try:
        assert secret not in repr(producer)
        producer.publish('t', 'x').wait(10)
    finally:
        producer.close(0.5)
    assert secret not in caplog.text
    assert config.redacted({'sasl.password': secret,
                            'ssl.key.password': secret,
                            'linger.ms': 5}) == {
        'sasl.password': '*****', 'ssl.key.password': '*****',
        'linger.ms': 5}


def test_publish_on_mock_cluster(mock_cluster):
    seen = []
    with kafka.KafkaProducer(mock_cluster) as producer:
        result = producer.publish('mock-topic', ['a', b'b'], key=1234,
                                  callback=lambda e, m: seen.append(
                                      (e, m.key(), m.value())),
                                  sync=True)
    assert result.delivered == 2
    assert seen == [(None, b'1234', b'a'), (None, b'1234', b'b')]


def test_key_types():
    producer = kafka.KafkaProducer('127.0.0.1:9')
    try:
        with pytest.raises(TypeError, match='key is float'):
            producer.publish('t', 'x', key=1.5)
    finally:
        producer.close(0)


def test_old_exception_names_are_the_new_classes():
    assert kafka_common.FailedPayloadsError is kafka.PublishError
    for cls in (kafka.QueueFullError, kafka.DeliveryFailedError,
                kafka.PublishUnavailableError, kafka.LeaderNotAvailableError,
                kafka.InvalidMessageError):
        assert issubclass(cls, kafka_common.FailedPayloadsError)
        assert issubclass(cls, kafka_common.KafkaError)
    assert issubclass(kafka_common.LeaderNotAvailableError,
                      kafka.DeliveryFailedError)
    # A publish that finds no broker is caught by either old name.
    assert issubclass(kafka.PublishUnavailableError,
                      kafka_common.KafkaUnavailableError)
    for cls in (kafka_common.KafkaUnavailableError,
                kafka_common.KafkaTimeoutError,
                kafka_common.UnknownTopicOrPartitionError):
        assert issubclass(cls, kafka_common.KafkaError)


def test_legacy_message_from_named_and_plain_tuples():
    # monasca-notification's tests build them like this.
    alarm_tuple = collections.namedtuple('alarm_tuple', ['offset', 'message'])
    message_tuple = collections.namedtuple('message_tuple', ['key', 'value'])
    named = legacy_kafka_message.LegacyKafkaMessage(
        [3, alarm_tuple(42, message_tuple(b'k', '{"a": 1}'))])
    plain = legacy_kafka_message.LegacyKafkaMessage([3, (42, (b'k', 'v'))])
    assert (named.partition(), named.offset(), named.key(), named.value()) \
        == (3, 42, b'k', '{"a": 1}')
    assert (plain.partition(), plain.offset(), plain.key(), plain.value()) \
        == (3, 42, b'k', 'v')


def test_importing_the_healthcheck_registers_nothing():
    code = ('import threading\n'
            'before = threading.active_count()\n'
            'from monasca_common.healthcheck.checks import kafka_check\n'
            'from oslo_config import cfg\n'
            'assert threading.active_count() == before\n'
            'print(sorted(cfg.CONF))\n'
            'kafka_check.KafkaHealthCheck()\n'
            'print(sorted(o for o in cfg.CONF.kafka_healthcheck))\n')
    before, after = run_python(code).stdout.splitlines()
    assert 'kafka_healthcheck' not in before
    assert 'kafka_topics' in after and 'kafka_url' in after


def test_healthcheck_options_equal_the_ones_services_declare():
    # monasca-log-api declares these itself, word for word; building the
    # check must not raise DuplicateOptError on its configuration.
    from monasca_common.healthcheck.checks import kafka_check
    conf = cfg.ConfigOpts()
    group = cfg.OptGroup(name='kafka_healthcheck', title='kafka_healthcheck')
    conf.register_group(group)
    conf.register_opts([
        cfg.StrOpt('kafka_url', required=True, help='Url to kafka server'),
        cfg.ListOpt('kafka_topics', required=True, default=['logs'],
                    help='Verify existence of configured topics'),
    ], group)
    kafka_check.KafkaHealthCheck(conf)
    kafka_check.KafkaHealthCheck(conf)
    assert conf.kafka_healthcheck.kafka_topics == ['logs']
    assert conf.kafka_healthcheck.timeout == 5.0
    # A different declaration is still refused, so the test above can fail.
    other = cfg.ConfigOpts()
    other.register_opts([cfg.ListOpt('kafka_url')], 'kafka_healthcheck')
    with pytest.raises(cfg.DuplicateOptError):
        kafka_check.KafkaHealthCheck(other)


def test_options_listed_for_the_generator():
    from monasca_common.healthcheck import opts
    groups = {group.name: [o.name for o in options]
              for group, options in opts.list_opts()}
    assert 'kafka_url' in groups['kafka_healthcheck']
    # Never the services' own [kafka] group: no clash possible.
    assert 'kafka' not in groups


@pytest.mark.parametrize('timeout, sync', [
    (-1, False), (float('nan'), False), (0, True), (-1, True),
    ('10', False)])
def test_publish_timeout_is_checked_before_queueing(timeout, sync):
    with kafka.KafkaProducer('127.0.0.1:9') as producer:
        with pytest.raises(kafka.ConfigurationError, match='timeout'):
            producer.publish('t', 'x', timeout=timeout, sync=sync)
        assert len(producer) == 0


def test_huge_and_infinite_timeouts_mean_wait_long(mock_cluster):
    with kafka.KafkaProducer(mock_cluster) as producer:
        for timeout in (float('inf'), 1e12):
            result = producer.publish('t', 'x', timeout=timeout, sync=True)
            assert result.delivered == 1


def test_flush_and_close_refused_inside_a_delivery_callback(mock_cluster):
    refused = []

    def callback(err, msg):
        for call in (producer.flush, producer.close):
            try:
                call(1)
            except RuntimeError as exc:
                refused.append(str(exc))

    producer = kafka.KafkaProducer(mock_cluster)
    try:
        producer.publish('t', 'x', callback=callback, sync=True)
    finally:
        assert producer.close(5) == 0
    assert len(refused) == 2
    assert all('delivery callback' in text for text in refused)
