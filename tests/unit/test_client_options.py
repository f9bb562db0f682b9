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

"""``[kafka_client]``: an operator's settings reach every client."""

import logging
import os
import subprocess
import sys

from oslo_config import cfg
import pytest

from monasca_common.confluent_kafka import errors
from monasca_common.confluent_kafka import opts
from monasca_common import kafka
from monasca_common.kafka import admin
from monasca_common.kafka import client_factory

NOWHERE = '127.0.0.1:9'
SECRET = 'hunter2-not-for-logs'


@pytest.fixture
def kafka_client_conf():
    """Set [kafka_client] options on cfg.CONF, as a config file would."""
    opts.register_opts(cfg.CONF)
    names = []

    def set_options(**values):
        for name, value in values.items():
            cfg.CONF.set_override(name, value, 'kafka_client')
            names.append(name)
    yield set_options
    for name in names:
        cfg.CONF.clear_override(name, 'kafka_client')


def test_options_reach_each_client_by_role(kafka_client_conf):
    kafka_client_conf(compression_type='lz4', linger_ms=50,
                      session_timeout_ms=7000, auto_offset_reset='latest',
                      ssl_endpoint_identification='none',
                      librdkafka_properties={'client.rack': 'rack-1'})
    producer = client_factory.get_kafka_producer(NOWHERE)
    consumer = client_factory.get_kafka_consumer(NOWHERE, 'g', 't')
    checker = admin.KafkaAdmin(NOWHERE)
    try:
        produced = producer._config
        assert (produced['compression.type'], produced['linger.ms']) == (
            'lz4', 50)
        assert 'session.timeout.ms' not in produced
        consumed = consumer._config
        assert consumed['session.timeout.ms'] == 7000
        # The heartbeat follows the session the operator set.
        assert consumed['heartbeat.interval.ms'] == 2333
        assert consumed['auto.offset.reset'] == 'latest'
        assert 'linger.ms' not in consumed
        for config in (produced, consumed, checker._config):
            assert config['client.rack'] == 'rack-1'
            assert config['ssl.endpoint.identification.algorithm'] == 'none'
        assert 'compression.type' not in checker._config
    finally:
        producer.close(0)
        consumer.close(1)
        checker.close()


def test_explicit_properties_win_over_options(kafka_client_conf):
    kafka_client_conf(linger_ms=50, compression_type='gzip')
    producer = kafka.KafkaProducer(NOWHERE, **{'linger.ms': 1,
                                               'compression.type': None})
    try:
        assert producer._config['linger.ms'] == 1
        # None unsets: librdkafka's own default applies.
        assert 'compression.type' not in producer._config
    finally:
        producer.close(0)


def test_unset_options_change_nothing():
    producer = kafka.KafkaProducer(NOWHERE)
    try:
        assert producer._config['linger.ms'] == 5
        assert 'security.protocol' not in producer._config
    finally:
        producer.close(0)


def test_options_can_not_turn_on_what_the_consumer_owns(kafka_client_conf):
    kafka_client_conf(librdkafka_properties={'enable.auto.commit': 'true'})
    with pytest.raises(kafka.ConfigurationError, match='enable.auto.commit'):
        kafka.KafkaConsumer(NOWHERE, 'g', 't')


def test_secret_options_stay_out_of_errors_and_logs(kafka_client_conf,
                                                    caplog):
    kafka_client_conf(security_protocol='SASL_SSL',
                      sasl_mechanism='SCRAM-SHA-512', sasl_username='u',
                      sasl_password=SECRET, ssl_key_password=SECRET,
                      librdkafka_properties={'no.such.property': SECRET})
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(kafka.ConfigurationError) as info:
            kafka.KafkaProducer(NOWHERE)
    assert 'no.such.property' in str(info.value)
    assert SECRET not in str(info.value)
    assert SECRET not in caplog.text


def test_sample_config_lists_every_option():
    generator = os.path.join(os.path.dirname(sys.executable),
                             'oslo-config-generator')
    out = subprocess.run([generator, '--namespace', 'monasca_common.kafka'],
                         capture_output=True, text=True, timeout=60,
                         check=True).stdout
    assert '[kafka_client]' in out and '[kafka_healthcheck]' in out
    for option in opts.client_opts:
        assert '#%s =' % option.name in out, option.name
    assert '#sasl_password = <None>' in out
    assert '# SASL_SSL - SASL authentication over TLS' in out


@pytest.mark.parametrize('asked,offered,chosen', [
    ('auto', {'classic', 'consumer', 'streams'}, 'consumer'),
    ('auto', {'classic'}, 'classic'),
    ('auto', None, 'classic'),      # not asked: never a guess
    ('consumer', {'classic', 'consumer'}, 'consumer'),
    ('consumer', None, 'consumer'),
])
def test_the_group_protocol_is_chosen_from_what_brokers_offer(
        asked, offered, chosen, newest_client):
    from monasca_common.confluent_kafka import config
    assert config.choose_group_protocol(asked, lambda: offered) == chosen


@pytest.fixture
def newest_client(monkeypatch):
    """A confluent-kafka that has the consumer group protocol."""
    from monasca_common.confluent_kafka import versions
    monkeypatch.setattr(versions, 'VERSION', (2, 16, 0))


@pytest.fixture
def client_2_8(monkeypatch):
    """confluent-kafka 2.8.0, as OpenStack 2025.1 pins it."""
    from monasca_common.confluent_kafka import versions
    monkeypatch.setattr(versions, 'VERSION', (2, 8, 0))
    monkeypatch.setattr(versions, 'INSTALLED', '2.8.0')


def test_an_older_client_refuses_the_consumer_group_protocol(client_2_8):
    from monasca_common.confluent_kafka import config
    asked = []
    with pytest.raises(errors.ConfigurationError,
                       match=r'group.protocol=consumer needs confluent-kafka '
                             r'2\.12\.0 or later; 2\.8\.0 is installed'):
        config.choose_group_protocol('consumer', lambda: asked.append(1))
    # auto is classic there, without asking the brokers.
    assert config.choose_group_protocol(
        'auto', lambda: asked.append(1) or {'consumer'}) == 'classic'
    assert not asked
    with pytest.raises(errors.ConfigurationError, match='2.12.0'):
        kafka.KafkaConsumer('127.0.0.1:9092', 'g', 't',
                            **{'group.protocol': 'consumer'})


def test_a_group_protocol_the_brokers_do_not_offer_is_refused(
        newest_client):
    from monasca_common.confluent_kafka import config
    with pytest.raises(kafka.ConfigurationError,
                       match='offer only classic .* would read nothing'):
        config.choose_group_protocol('consumer', lambda: {'classic'})


def test_group_protocol_option_reaches_consumers_only(kafka_client_conf):
    kafka_client_conf(group_protocol='auto')
    producer = kafka.KafkaProducer(NOWHERE)
    # Nothing answers at NOWHERE: auto falls back to classic, which every
    # broker speaks, and says why.
    consumer = kafka.KafkaConsumer(NOWHERE, 'g', 't')
    try:
        assert 'group.protocol' not in producer._config
        assert consumer._config['group.protocol'] == 'classic'
        assert consumer._config['partition.assignment.strategy'] == \
            'cooperative-sticky'
    finally:
        producer.close(0)
        consumer.close(1)
