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

"""monasca-kafka, as a person runs it."""

import json
import subprocess
import sys

import confluent_kafka
import pytest

from monasca_common.cli import bench
from monasca_common.cli import scale

CLI = [sys.executable, '-m', 'monasca_common.cli.main']


def cli(*args, stdin=None, timeout=300):
    return subprocess.run(CLI + list(args), input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def test_bench_on_the_embedded_mock_cluster(tmp_path):
    # In a process of its own: the client's CPU is all this one spends.
    out = cli('bench', '--seconds', '0.3', '--rounds', '2', '--sizes', '100',
              '--no-latency', '--mock-process',
              '--json', str(tmp_path / 'bench.json'))
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'librdkafka mock cluster in its own process; str payloads' \
        in out.stdout
    for scenario in ('raw confluent-kafka produce loop',
                     'publish(list of 1000)', 'publish(one message)',
                     'KafkaConsumer iteration'):
        assert scenario in out.stdout
    assert 'publish(list) / raw loop, 100 B' in out.stdout
    figures = json.loads((tmp_path / 'bench.json').read_text())
    rounds = [r for r in figures['results']
              if r['scenario'] == 'KafkaConsumer iteration']
    assert [r['round'] for r in rounds] == [0, 1]
    for r in figures['results']:
        if not r['scenario'].startswith('kcat'):
            # Every scenario ran its time and says what it cost.
            assert r['seconds'] >= 0.3 * 0.9 and r['messages'] > 0, r
            assert r['cpu_per_message_us'] > 0, r
    ratio = {(r['ratio'], r['size']): r for r in figures['ratios']}[
        ('consumer / raw consume', 100)]
    assert ratio['cpu']['low'] <= ratio['cpu']['median'] <= \
        ratio['cpu']['high']


def test_a_mock_cluster_in_its_own_process_serves_and_ends():
    cluster = bench.MockCluster(in_process=False)
    try:
        first = cluster.bootstrap_servers
        child = cluster._child
        producer = confluent_kafka.Producer({'bootstrap.servers': first})
        producer.produce('t', 'one')
        assert producer.flush(30) == 0
        assert cluster.renew() != first  # afresh: a new cluster
        assert child.returncode == 0
    finally:
        cluster.close()
    assert cluster._child is None


@pytest.mark.integration
def test_produce_consume_and_healthcheck(bootstrap_servers, topic):
    out = cli('produce', '-b', bootstrap_servers, '-t', topic,
              stdin='first\nsecond\n')
    assert out.returncode == 0, out.stderr
    assert '2 delivered' in out.stdout
    out = cli('consume', '-b', bootstrap_servers, '-t', topic,
              '--count', '2', '--timeout', '30')
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['first', 'second']
    assert cli('healthcheck', '-b', bootstrap_servers,
               '-t', topic).returncode == 0
    missing = cli('healthcheck', '-b', bootstrap_servers, '-t', 'nope')
    assert missing.returncode == 1
    assert 'Kafka: Topic nope not found' in missing.stdout


def test_bad_input_is_a_clear_error():
    out = cli('produce', '-b', 'no-port-here', '-t', 't', 'x')
    assert out.returncode == 2
    assert 'not of the form host:port' in out.stderr


def test_config_file_and_properties_reach_the_clients(tmp_path):
    # A client is built before anything is sent, so a bad setting from
    # either place is refused at once, named, and no secret is printed.
    conf = tmp_path / 'service.conf'
    conf.write_text('[kafka_client]\n'
                    'sasl_password = not-for-output\n'
                    'librdkafka_properties = bogus.from.file:1\n')
    out = cli('--config-file', str(conf), 'produce', '-b', '127.0.0.1:9',
              '-t', 't', 'x', timeout=60)
    assert out.returncode == 2
    assert 'bogus.from.file' in out.stderr
    assert 'not-for-output' not in out.stdout + out.stderr
    out = cli('-X', 'bogus.from.cli=1', 'produce', '-b', '127.0.0.1:9',
              '-t', 't', 'x', timeout=60)
    assert out.returncode == 2
    assert 'bogus.from.cli' in out.stderr
    out = cli('-X', 'no-equals-sign', 'lag', '-b', '127.0.0.1:9', 'g')
    assert out.returncode == 2 and 'property=value' in out.stderr


def test_bad_config_file_is_a_clear_error(tmp_path):
    conf = tmp_path / 'service.conf'
    conf.write_text('[kafka_client]\nlinger_ms = -5\n')
    out = cli('--config-file', str(conf), 'lag', '-b', '127.0.0.1:9', 'g')
    assert out.returncode == 2
    assert 'linger_ms' in out.stderr
    out = cli('--config-file', str(tmp_path / 'missing.conf'), 'lag', '-b',
              '127.0.0.1:9', 'g')
    assert out.returncode == 2
    assert 'missing.conf' in out.stderr


@pytest.mark.integration
def test_produce_and_consume_with_a_config_file(bootstrap_servers, topic,
                                                tmp_path):
    conf = tmp_path / 'service.conf'
    conf.write_text('[kafka_client]\ncompression_type = gzip\n'
                    'auto_offset_reset = earliest\n')
    out = cli('--config-file', str(conf), 'produce', '-b', bootstrap_servers,
              '-t', topic, 'zipped')
    assert out.returncode == 0, out.stderr
    out = cli('--config-file', str(conf), '-X', 'fetch.min.bytes=1',
              'consume', '-b', bootstrap_servers, '-t', topic, '--count',
              '1', '--timeout', '30')
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['zipped']


def json_lines(text):
    return [json.loads(line) for line in text.splitlines()
            if line.startswith('{')]


def test_stats_shows_the_clients_moving_on_the_mock_cluster():
    # The consumer reads slower than the producer publishes: lag shows.
    out = cli('stats', '--duration', '4', '--refresh', '0.5', '--json',
              '--rate', '2000', '--read-rate', '500', timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = json_lines(out.stdout)
    producer = [s['values'] for s in lines if s['role'] == 'producer']
    consumer = [s['values'] for s in lines if s['role'] == 'consumer']
    assert len(producer) >= 6 and len(consumer) == len(producer)
    delivered = [v['delivered.messages'] for v in producer]
    assert delivered == sorted(delivered) and delivered[-1] > 2000
    assert consumer[-1]['consumed.messages'] > 0
    assert max(v.get('lag.messages', 0) for v in consumer) > 500
    assert any(s['partitions'] for s in lines if s['role'] == 'consumer')


def test_stats_plain_view_without_a_terminal():
    out = cli('stats', '--duration', '1', '--refresh', '0.5', timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'producer (stats-demo-producer)' in out.stdout
    assert 'consumer (stats-demo-consumer)' in out.stdout
    assert 'delivered.messages' in out.stdout


def test_bench_samples_the_producer_queue_depth(mock_cluster):
    runner = bench.Bench(mock_cluster, 20000, True, sample_queue=True)
    result = runner.publish_list(100)
    depths = [queued for _, queued in result.queue_depth]
    times = [at for at, _ in result.queue_depth]
    assert times == sorted(times)
    assert max(depths) > 0 and depths[-1] == 0
    assert not bench.Bench(mock_cluster, 1000, True).publish_list(
        100).queue_depth


@pytest.mark.integration
def test_stats_on_a_real_broker(bootstrap_servers):
    out = cli('stats', '-b', bootstrap_servers, '--duration', '3',
              '--refresh', '1', '--json', timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    last = {s['role']: s for s in json_lines(out.stdout)}
    assert last['producer']['values']['delivered.messages'] > 0
    assert last['consumer']['values']['assigned.partitions'] == 4


def test_bench_scale_without_a_broker_runs_the_producer_threads():
    out = cli('bench', '--scale', '--seconds', '0.3', timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    for threads in ('1 publishing thread', '2 publishing threads',
                    '4 publishing threads'):
        assert 'one producer, %s' % threads in out.stdout
    assert 'the consumer group figures need a broker' in out.stdout


@pytest.mark.integration
def test_scale_consumer_group_reads_every_message_once(bootstrap_servers):
    runner = bench.Bench(bootstrap_servers, 0, False)
    result = scale.consumer_group(runner, 2, 100, 20000)
    # Two processes, each its share; the rate counts whole thousands.
    assert 'each read' in result.note, result.note
    shares = [int(n) for n in result.note.split()[-1].split('/')]
    assert len(shares) == 2 and sum(shares) == 20000 and min(shares) > 0
    assert 19000 <= result.messages <= 20000 and result.seconds > 0
    assert result.cpu > 0


def test_healthcheck_names_a_bad_property_not_the_url():
    out = cli('-X', 'bogus.from.cli=1', 'healthcheck', '-b', '127.0.0.1:9',
              timeout=60)
    assert out.returncode == 1
    assert 'invalid Kafka client configuration' in out.stdout
    assert 'bogus.from.cli' in out.stdout
    assert 'URL' not in out.stdout
    out = cli('healthcheck', '-b', 'no-port-here', timeout=60)
    assert out.returncode == 1
    assert 'Kafka URL invalid' in out.stdout


@pytest.mark.integration
def test_bench_compares_envelope_formats(bootstrap_servers):
    out = cli('bench', '-b', bootstrap_servers, '--format', 'json,avro',
              '--compression', 'none,lz4', '-n', '2000', timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {tuple(line.split()[:2]): [float(x) for x in line.split()[2:]]
            for line in out.stdout.splitlines()
            if line.split()[:1] in (['json'], ['avro'])}
    assert set(rows) == {('json', 'none'), ('json', 'lz4'),
                         ('avro', 'none'), ('avro', 'lz4')}
    # encoded, log, fetched bytes per metric; then the rates and CPU.
    assert rows['avro', 'none'][0] < rows['json', 'none'][0]
    assert rows['json', 'lz4'][1] < rows['json', 'none'][1] / 3
    assert all(value > 0 for row in rows.values() for value in row)


def test_bench_formats_needs_a_broker_and_known_formats():
    out = cli('bench', '--format', 'json')
    assert out.returncode == 2 and 'needs a broker' in out.stdout
    out = cli('bench', '-b', '127.0.0.1:1', '--format', 'json,protobuf')
    assert out.returncode == 2 and 'unknown format protobuf' in out.stdout
