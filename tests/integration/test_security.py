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

from monasca_common.confluent_kafka import errors as kafka_errors
from tests import conftest
from tests import waiting
from tools import kafka_broker
from tools import kafka_tls

pytestmark = pytest.mark.integration

ROOT = pathlib.Path(__file__).parents[2]
CHILD = 'tests.integration.secure_service_child'
# Everything librdkafka can say, in the child's DEBUG log.
VERBOSE = {'librdkafka_properties': 'debug:all'}


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


def run_service(command, config, *args, timeout=180):
    """Run the service child; its JSON report, its output checked clean."""
    done = subprocess.run(
        [sys.executable, '-m', CHILD, command, str(config)] +
        [str(a) for a in args], cwd=ROOT, capture_output=True, text=True,
        timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout), done.stdout + done.stderr


def assert_no_secret(output, cluster, *more):
    key_pem = cluster.tls.client_key.read_text().splitlines()
    for secret in (kafka_tls.SCRAM_PASSWORD, kafka_tls.CLIENT_KEY_PASSWORD,
                   *key_pem[1:-1], *more):
        assert secret not in output


@pytest.mark.parametrize('mode', ['ssl', 'sasl_scram', 'mtls'])
def test_service_publishes_and_reads_from_its_config_file(
        secure_kafka, mode, tmp_path, group_id):
    plain = kafka_admin.AdminClient(
        {'bootstrap.servers': secure_kafka.bootstrap_servers})
    topic = conftest.create_topic(plain, partitions=2)
    uri, options = service_config(secure_kafka, mode)
    config = write_config(tmp_path / 'service.conf', uri, options)
    values, output = run_service('roundtrip', config, topic, group_id, 200)
    assert sorted(values) == sorted('m-%d' % i for i in range(200))
    # Committed over the secured listener: the group's offsets say so.
    # Unkeyed messages may all land in one partition's batch, leaving
    # the other with nothing to commit (a negative offset).
    committed = waiting.committed_offsets(secure_kafka.bootstrap_servers,
                                          group_id, topic, range(2))
    assert sum(max(offset, 0) for offset in committed.values()) == 200
    # Stored once each, over the plaintext listener too.
    assert len(waiting.read_topic(secure_kafka.bootstrap_servers, topic,
                                  idle=1)) == 200
    assert_no_secret(output, secure_kafka)


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
                                                tmp_path):
    uri, options = service_config(secure_kafka, mode)
    for name, value in change.items():
        if value is None:
            options.pop(name)
        elif value == 'untrusted':
            options[name] = secure_kafka.tls.untrusted_ca
        else:
            options[name] = value
    config = write_config(tmp_path / 'service.conf', uri,
                          dict(options, **VERBOSE))
    report, output = run_service('refused', config, topic, group_id)
    # A sync publish fails within seconds, not at message.timeout.ms.
    publish = report['publish']
    assert 'AuthenticationError' in publish['classes'], publish
    assert cause in publish['message']
    assert publish['seconds'] < 15
    # Refused at once afterwards, nothing queued; old except clauses
    # catch it as before.
    again = report['again']
    assert 'KafkaUnavailableError' in again['classes'], again
    assert again['not_queued'] == 2 and again['seconds'] < 1
    consume = report['consume']
    assert 'ConsumerError' in consume['classes'], consume
    assert 'refused' in consume['message'] and consume['seconds'] < 15
    # librdkafka's own debug output went through the service's log.
    assert 'sasl.password' in output or mode != 'sasl_scram'
    assert_no_secret(output, secure_kafka, 'wrong-password')


def test_wrong_key_password_is_named_at_creation(secure_kafka):
    from monasca_common import kafka
    uri, options = service_config(secure_kafka, 'mtls')
    options['ssl_key_password'] = 'not-the-key-password'
    with pytest.raises(kafka.ConfigurationError,
                       match='ssl.key.password') as info:
        kafka.KafkaProducer(uri, **properties(options))
    assert 'not-the-key-password' not in str(info.value)


def test_cli_works_from_the_config_file_and_keeps_its_secrets(
        secure_kafka, tmp_path, group_id):
    from tests.integration.test_cli import cli
    plain = kafka_admin.AdminClient(
        {'bootstrap.servers': secure_kafka.bootstrap_servers})
    topic = conftest.create_topic(plain, partitions=1)
    uri, options = service_config(secure_kafka, 'sasl_scram')
    good = str(write_config(tmp_path / 'good.conf', uri, options))
    bad = str(write_config(tmp_path / 'bad.conf', uri, dict(
        options, sasl_password='wrong-password')))
    outputs = []

    def run(*args, returncode=0):
        out = cli(*args, timeout=120)
        outputs.append(out.stdout + out.stderr)
        assert out.returncode == returncode, out.stderr[-2000:]
        return out.stdout

    assert run('--config-file', good, 'produce', '-b', uri, '-t', topic,
               'a', 'b', 'c').startswith('3 delivered')
    assert run('-v', '--config-file', good, 'consume', '-b', uri, '-t',
               topic, '-g', group_id, '--count', '3', '--commit',
               '--timeout', '30').split() == ['a', 'b', 'c']
    lag = json.loads(run('--config-file', good, 'lag', '-b', uri, group_id,
                         topic, '--json'))
    assert [(row['committed'], row['lag']) for row in lag] == [(3, 0)]
    assert run('--config-file', good, 'healthcheck', '-b', uri, '-t',
               topic).strip() == 'OK'
    bench = run('--config-file', good, 'bench', '-b', uri, '-n', '2000',
                '--sizes', '100', '--rounds', '1', '--no-latency')
    assert 'raw confluent-kafka produce loop' in bench
    assert ' of 2000 arrived' not in bench  # every read got them all
    # Refused: said why, with the exit status of an error.
    for command in (['produce', '-b', uri, '-t', topic, 'x'],
                    ['lag', '-b', uri, group_id]):
        started = time.monotonic()
        run('-v', '--config-file', bad, *command, returncode=2)
        assert 'SASL authentication error' in outputs[-1]
        assert time.monotonic() - started < 30
    run('--config-file', bad, 'healthcheck', '-b', uri, returncode=1)
    assert 'SASL authentication error' in outputs[-1]  # logged: the cause
    assert_no_secret(''.join(outputs), secure_kafka, 'wrong-password')


def test_secured_stream_loses_nothing_when_the_broker_is_killed(
        secure_kafka, tmp_path, group_id):
    # Last in this module: it kills the module's broker (twice).
    servers = secure_kafka.bootstrap_servers
    topic = conftest.create_topic(
        kafka_admin.AdminClient({'bootstrap.servers': servers}), partitions=2)
    uri, options = service_config(secure_kafka, 'sasl_scram')
    config = write_config(tmp_path / 'service.conf', uri, options)
    count = 20000
    log = tmp_path / 'service.log'
    with open(log, 'w') as stderr:
        service = subprocess.Popen(
            [sys.executable, '-m', CHILD, 'stream', str(config), topic,
             group_id, str(count)], cwd=ROOT, stdout=subprocess.PIPE,
            stderr=stderr, text=True)
    try:
        # Killed while publishing ...
        waiting.until(lambda: stored(servers, topic) >= count // 4, 120,
                      'a quarter published', interval=0.02)
        kill_and_restart(secure_kafka)
        # ... and while reading and committing.
        waiting.until(lambda: committed(servers, group_id, topic) >=
                      count // 4, 180, 'a quarter committed',
                      interval=0.02)
        kill_and_restart(secure_kafka)
        out, _ = service.communicate(timeout=300)
    finally:
        service.kill()
    assert service.returncode == 0, log.read_text()[-5000:]
    report = json.loads(out)
    expected = {'id-%06d' % i for i in range(count)}
    stored_values = [m.value().decode() for m in waiting.read_topic(
        servers, topic, expected=count, timeout=120)]
    read = report['values']
    print('secured stream, 2 broker kills: messages=%d stored=%d '
          'distinct=%d read=%d redelivered=%d refused=%d reported_failed=%d'
          % (count, len(stored_values), len(set(stored_values)), len(read),
             len(read) - len(set(read)), report['stats'].get('refused', 0),
             report['stats'].get('reported_failed', 0)))
    assert set(stored_values) == expected
    assert len(stored_values) == count  # the idempotent producer
    assert set(read) == expected
    assert committed(servers, group_id, topic) == count


def stored(servers, topic):
    """Messages in ``topic``, from its high watermarks (0 if unknown)."""
    from monasca_common.kafka import admin
    try:
        with admin.KafkaAdmin(servers, 5) as kafka:
            return sum(marks.high for marks in
                       kafka.watermarks(topic).values())
    except kafka_errors.KafkaClientError:
        return 0


def committed(servers, group_id, topic):
    """Offsets the group committed in ``topic`` (0 if unknown)."""
    from monasca_common.kafka import admin
    try:
        with admin.KafkaAdmin(servers, 5) as kafka:
            return sum(row.committed or 0
                       for row in kafka.group_lag(group_id, topic))
    except kafka_errors.KafkaClientError:
        return 0


def kill_and_restart(cluster):
    node = cluster.nodes[0]
    node.kill()
    time.sleep(1)  # an outage, however short, not a blip
    node.start()
    cluster.wait_ready()
