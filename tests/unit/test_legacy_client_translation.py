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

"""The old client's names and shapes, translated without a broker."""

import importlib

import confluent_kafka
import pytest

from monasca_common import kafka
from monasca_common.kafka import admin
from monasca_common.kafka_lib import client
from monasca_common.kafka_lib import common

UNKNOWN = confluent_kafka.KafkaError(
    confluent_kafka.KafkaError._UNKNOWN_PARTITION)


def test_topic_lookups_by_bytes_and_str():
    topics = client.TopicMap({'metrics': {0: None, 1: None}})
    names = client.TopicList(topics)
    for name in ('metrics', b'metrics'):
        assert name in topics and name in names
        assert list(topics[name]) == [0, 1]
        assert topics.get(name) == {0: None, 1: None}
    assert b'logs' not in topics and 'logs' not in names
    assert topics.get(b'logs') is None
    with pytest.raises(KeyError):
        topics[b'logs']
    assert 42 not in topics


@pytest.mark.parametrize('hosts, expected', [
    ('kafka:9092', 'kafka:9092'),
    ('a,b:9093', 'a:9092,b:9093'),
    (['a:1', 'b'], 'a:1,b:9092'),
    (b'a:1', 'a:1'),
])
def test_hosts_as_the_old_client_took_them(hosts, expected):
    assert client.legacy_hosts(hosts) == expected


def test_bad_hosts_are_named():
    with pytest.raises(kafka.ConfigurationError, match='host:port'):
        client.legacy_hosts('a:notaport')
    with pytest.raises(kafka.ConfigurationError):
        client.legacy_hosts(None)


def test_offset_responses_keep_request_order_and_topic_type():
    requests = [common.OffsetRequest(b'm', 1, -1, 1),
                common.OffsetRequest('m', 0, -2, 1),
                common.OffsetRequest('m', 1, -2, 0),
                common.OffsetRequest('m', 5, -1, 1)]
    answers = {-1: {('m', 1): 40, ('m', 5): UNKNOWN},
               -2: {('m', 0): 3, ('m', 1): 7}}
    responses = client.offset_responses(requests, answers,
                                        fail_on_error=False)
    assert responses == [
        common.OffsetResponse(b'm', 1, 0, [40]),
        common.OffsetResponse('m', 0, 0, [3]),
        common.OffsetResponse('m', 1, 0, []),
        common.OffsetResponse('m', 5, common.UNKNOWN_TOPIC_OR_PARTITION, []),
    ]
    with pytest.raises(common.UnknownTopicOrPartitionError, match=r'm\[5\]'):
        client.offset_responses(requests, answers, fail_on_error=True)
    assert client.offset_responses(requests[:1], answers, True,
                                   callback=lambda r: r.offsets) == [[40]]


def test_other_errors_raise_the_base_name():
    failed = confluent_kafka.KafkaError(
        confluent_kafka.KafkaError.NOT_LEADER_FOR_PARTITION)
    with pytest.raises(common.KafkaError, match='m'):
        client.offset_responses([common.OffsetRequest('m', 0, -1, 1)],
                                {-1: {('m', 0): failed}}, True)


@pytest.mark.parametrize('module, name, pointer', [
    ('client', 'SimpleClient', 'KafkaAdmin'),
    ('producer', 'KeyedProducer', 'publish(topic, messages, key=...)'),
    ('consumer', 'MultiProcessConsumer', 'KafkaConsumer'),
    ('common', 'ProduceRequest', 'monasca_common.kafka'),
])
def test_gone_names_say_what_replaces_them(module, name, pointer):
    with pytest.raises(ImportError, match=name) as info:
        exec('from monasca_common.kafka_lib.%s import %s' % (module, name))
    assert pointer in str(info.value)
    loaded = importlib.import_module('monasca_common.kafka_lib.' + module)
    assert not hasattr(loaded, '_private_name')


@pytest.mark.parametrize('module', ['conn', 'protocol', 'util', 'codec',
                                    'consumer.simple', 'producer.keyed'])
def test_gone_modules_say_what_replaces_them(module):
    with pytest.raises(ImportError, match='KafkaAdmin'):
        importlib.import_module('monasca_common.kafka_lib.' + module)


def test_gone_methods_say_what_replaces_them():
    kafka_client = object.__new__(client.KafkaClient)
    with pytest.raises(AttributeError, match='send_produce_request.*'
                                             'KafkaProducer'):
        kafka_client.send_produce_request
    assert not hasattr(kafka_client, '_conns')


def test_simple_producer_refuses_unknown_arguments():
    from monasca_common.kafka_lib.producer import SimpleProducer
    with pytest.raises(TypeError, match='bogus'):
        SimpleProducer(None, bogus=1)
    with pytest.raises(common.KafkaConfigurationError, match='codec'):
        SimpleProducer(None, codec=9)


@pytest.mark.parametrize('spec', [-3, 1.5, None, True])
def test_bad_offset_specs_are_named(spec):
    with admin.KafkaAdmin('127.0.0.1:9') as kafka_admin:
        with pytest.raises(kafka.ConfigurationError, match='offset spec'):
            kafka_admin.list_offsets({('m', 0): spec})


@pytest.mark.parametrize('timeout', [-1, float('nan'), 0, 'soon'])
def test_bad_timeouts_are_named(timeout):
    with pytest.raises(kafka.ConfigurationError, match='timeout'):
        admin.KafkaAdmin('127.0.0.1:9', timeout=timeout)
    with pytest.raises(kafka.ConfigurationError, match='timeout'):
        client.KafkaClient('127.0.0.1:9', timeout=timeout)


def test_closed_admin_says_so():
    kafka_admin = admin.KafkaAdmin('127.0.0.1:9')
    kafka_admin.close()
    with pytest.raises(kafka.ClientClosedError):
        kafka_admin.topics()
