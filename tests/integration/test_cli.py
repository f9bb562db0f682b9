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

import subprocess
import sys

import pytest

CLI = [sys.executable, '-m', 'monasca_common.cli.main']


def cli(*args, stdin=None, timeout=300):
    return subprocess.run(CLI + list(args), input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def test_bench_on_the_embedded_mock_cluster():
    out = cli('bench', '-n', '3000', '--sizes', '100', '--no-latency')
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'librdkafka mock cluster' in out.stdout
    for scenario in ('raw confluent-kafka produce loop',
                     'publish(list of 1000)', 'publish(one message)',
                     'KafkaConsumer iteration'):
        assert scenario in out.stdout
    assert 'publish(list) / raw loop, 100 B' in out.stdout


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
