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

"""What the installed confluent-kafka offers, and the fallbacks."""

import pathlib
import re

import confluent_kafka
import pytest

from monasca_common.confluent_kafka import errors
from monasca_common.confluent_kafka import queueing
from monasca_common.confluent_kafka import versions
from monasca_common import kafka

ROOT = pathlib.Path(__file__).resolve().parents[2]
RELEASES = ['2025.1', '2025.2', '2026.1', 'master']


def _pins(path):
    """{name: version tuple} of the ``==`` and ``===`` pins in ``path``."""
    pins = {}
    for line in path.read_text().splitlines():
        found = re.match(r'([A-Za-z0-9_.-]+)===?([0-9.]+)\s*$', line)
        if found:
            pins[found.group(1).lower()] = tuple(
                int(part) for part in found.group(2).split('.'))
    return pins


def test_the_installed_version_is_read():
    installed = confluent_kafka.version()
    assert versions.INSTALLED == (installed[0] if isinstance(installed, tuple)
                                  else installed)
    assert versions.VERSION >= _pins(ROOT / 'lower-constraints.txt')[
        'confluent-kafka']
    assert versions.PRODUCE_BATCH == hasattr(confluent_kafka.Producer,
                                             'produce_batch')


def test_a_feature_names_the_version_it_needs(monkeypatch):
    monkeypatch.setattr(versions, 'VERSION', (2, 11, 0))
    monkeypatch.setattr(versions, 'INSTALLED', '2.11.0')
    assert not versions.offers('group.protocol=consumer')
    with pytest.raises(errors.ConfigurationError) as raised:
        versions.require('group.protocol=consumer')
    assert str(raised.value) == ('group.protocol=consumer needs '
                                 'confluent-kafka 2.12.0 or later; 2.11.0 '
                                 'is installed')
    monkeypatch.setattr(versions, 'VERSION', (2, 12, 0))
    versions.require('group.protocol=consumer')


@pytest.mark.parametrize('produce_batch', [True, False])
def test_a_list_is_queued_in_order_with_or_without_produce_batch(
        mock_cluster, monkeypatch, produce_batch):
    """Without produce_batch (before 2.13) one produce a message, in order.

    The queue holds 500 messages: the call waits for room as it goes.
    """
    if produce_batch and not versions.PRODUCE_BATCH:
        pytest.skip('confluent-kafka %s has no produce_batch'
                    % versions.INSTALLED)
    monkeypatch.setattr(versions, 'PRODUCE_BATCH', produce_batch)
    one_at_a_time = []
    put_each = queueing.SendQueue._put_each

    def counting(self, topic, payloads, *args):
        one_at_a_time.append(len(payloads))
        return put_each(self, topic, payloads, *args)
    monkeypatch.setattr(queueing.SendQueue, '_put_each', counting)
    delivered = []
    payloads = ['m%d' % i for i in range(3000)]
    with kafka.KafkaProducer(mock_cluster, **{
            'queue.buffering.max.messages': 500}) as producer:
        result = producer.publish(
            'fallback-%s' % produce_batch, payloads, key='one-partition',
            sync=True, timeout=60,
            callback=lambda err, msg: delivered.append(msg.value()))
    assert not result.failed
    assert delivered == [p.encode() for p in payloads]
    if produce_batch:
        assert sum(one_at_a_time) < len(payloads)
    else:
        assert one_at_a_time == [len(payloads)]


def test_the_lower_bounds_are_the_oldest_release_pins():
    """requirements.txt's bounds are the oldest release's pins.

    lower-constraints.txt pins them (tox -e lower-constraints tests them),
    and they are the oldest maintained OpenStack release's.
    """
    bounds = {}
    for line in (ROOT / 'requirements.txt').read_text().splitlines():
        found = re.match(r'([A-Za-z0-9_.-]+)>=([0-9.]+)', line)
        if found:
            bounds[found.group(1).lower()] = tuple(
                int(part) for part in found.group(2).split('.'))
    lowest = _pins(ROOT / 'lower-constraints.txt')
    assert bounds and all(lowest[name] == version
                          for name, version in bounds.items()), (bounds,
                                                                 lowest)
    oldest = _pins(ROOT / 'tools' / 'constraints' / (RELEASES[0] + '.txt'))
    assert oldest and all(lowest[name] == version
                          for name, version in oldest.items()), (oldest,
                                                                 lowest)
    for release in RELEASES:
        pins = _pins(ROOT / 'tools' / 'constraints' / (release + '.txt'))
        assert pins['confluent-kafka'] >= bounds['confluent-kafka']
        assert pins['oslo.config'] >= bounds['oslo.config']
