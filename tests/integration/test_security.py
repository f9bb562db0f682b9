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

"""A service reaches a secured Kafka from its configuration file alone.

The broker listens in plaintext (for the test's own setup), TLS, SASL/SCRAM
over TLS and mutual TLS; see ``tools/kafka_tls.py``.
"""

import json
import pathlib
import subprocess
import sys
import time

from confluent_kafka import admin as kafka_admin
import pytest

from tests import conftest
from tests import waiting
from tools import kafka_broker
from tools import kafka_tls

pytestmark = pytest.mark.integration

CHILD = pathlib.Path(__file__).with_name('secure_service_child.py')


@pytest.fixture(scope='module')
def secure_kafka():
    cluster = kafka_broker.KafkaCluster(1, secure=True, heap='384m')
    conftest._started_clusters.append(cluster)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def service_config(cluster, mode):
    """The [kafka] and [kafka_client] sections a service needs per mode."""
    node = cluster.nodes[0]
    tls = cluster.tls
    if mode == 'ssl':
        return node.secure_address('SSL'), {
            'security_protocol': 'SSL', 'ssl_ca_location': tls.ca}
    if mode == 'sasl_scram':
        return node.secure_address('SASL_SSL'), {
            'security_protocol': 'SASL_SSL', 'ssl_ca_location': tls.ca,
            'sasl_mechanism': kafka_tls.SCRAM_MECHANISM,
            'sasl_username': kafka_tls.SCRAM_USER,
            'sasl_password': kafka_tls.SCRAM_PASSWORD}
    return node.secure_address('MTLS'), {
        'security_protocol': 'SSL', 'ssl_ca_location': tls.ca,
        'ssl_certificate_location': tls.client_cert,
        'ssl_key_location': tls.client_key,
        'ssl_key_password': kafka_tls.CLIENT_KEY_PASSWORD}


def write_config(path, uri, options):
    path.write_text('[kafka]\nuri = %s\n\n[kafka_client]\n%s' % (
        uri, ''.join('%s = %s\n' % item for item in options.items())))
    return path


@pytest.mark.parametrize('mode', ['ssl', 'sasl_scram', 'mtls'])
def test_service_publishes_and_reads_from_its_config_file(
        secure_kafka, mode, tmp_path, group_id):
    plain = kafka_admin.AdminClient(
        {'bootstrap.servers': secure_kafka.bootstrap_servers})
    topic = conftest.create_topic(plain, partitions=2)
    uri, options = service_config(secure_kafka, mode)
    config = write_config(tmp_path / 'service.conf', uri, options)
    done = subprocess.run([sys.executable, str(CHILD), str(config), topic,
                           group_id, '200'], capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    values = json.loads(done.stdout)
    assert sorted(values) == sorted('m-%d' % i for i in range(200))
    # Committed over the secured listener: the group's offsets say so.
    committed = waiting.committed_offsets(secure_kafka.bootstrap_servers,
                                          group_id, topic, range(2))
    assert sum(committed.values()) == 200
    # Stored once each, over the plaintext listener too.
    assert len(waiting.read_topic(secure_kafka.bootstrap_servers, topic,
                                  idle=1)) == 200
    for secret in (kafka_tls.SCRAM_PASSWORD, kafka_tls.CLIENT_KEY_PASSWORD):
        assert secret not in done.stdout + done.stderr


def properties(options):
    """librdkafka properties from [kafka_client] option values."""
    from monasca_common.confluent_kafka import opts
    assert set(options) <= {o.name for o in opts.client_opts}
    return {opts.property_name(k): str(v) for k, v in options.items()}


@pytest.mark.parametrize('mode, change, cause', [
    ('sasl_scram', {'sasl_password': 'wrong-password'},
     'SASL authentication error'),
    ('ssl', {'ssl_ca_location': 'untrusted'}, 'certificate verify failed'),
    ('mtls', {'ssl_certificate_location': None, 'ssl_key_location': None,
              'ssl_key_password': None}, 'certificate'),
])
def test_refused_clients_say_why_within_seconds(secure_kafka, mode, change,
                                                cause, topic, group_id,
                                                caplog):
    from monasca_common import kafka
    from monasca_common.kafka import client_factory
    uri, options = service_config(secure_kafka, mode)
    for name, value in change.items():
        if value is None:
            options.pop(name)
        elif value == 'untrusted':
            options[name] = secure_kafka.tls.untrusted_ca
        else:
            options[name] = value
    config = properties(options)
    producer = client_factory.get_kafka_producer(uri, **config)
    try:
        started = time.monotonic()
        with pytest.raises(kafka.AuthenticationError, match=cause):
            producer.publish(topic, 'x', sync=True, timeout=60)
        assert time.monotonic() - started < 15
        # Refused at once afterwards, nothing queued; old except clauses
        # catch it as before.
        started = time.monotonic()
        with pytest.raises(kafka.KafkaUnavailableError) as info:
            producer.publish(topic, ['y', 'z'])
        assert time.monotonic() - started < 1
        assert info.value.not_queued == 2
    finally:
        producer.close(1)
    # The factory's consumer takes no properties: a service sets these in
    # [kafka_client]; the class takes them directly.
    consumer = kafka.KafkaConsumer(uri, group_id, topic, **config)
    try:
        started = time.monotonic()
        with pytest.raises(kafka.ConsumerError, match='refused'):
            deadline = started + 30
            while time.monotonic() < deadline:
                consumer.consume_batch(10, 1.0)
        assert time.monotonic() - started < 15
    finally:
        consumer.close(1)
    assert 'wrong-password' not in caplog.text


def test_wrong_key_password_is_named_at_creation(secure_kafka):
    from monasca_common import kafka
    uri, options = service_config(secure_kafka, 'mtls')
    options['ssl_key_password'] = 'not-the-key-password'
    with pytest.raises(kafka.ConfigurationError,
                       match='ssl.key.password') as info:
        kafka.KafkaProducer(uri, **properties(options))
    assert 'not-the-key-password' not in str(info.value)
