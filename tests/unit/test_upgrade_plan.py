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

"""The migration's plan and its ZooKeeper address, without any server."""

import json
import socket
import time

import pytest

from monasca_common import kafka
from monasca_common.kafka import upgrade

T = 'metrics'


def rows(direction, source, target, logs, force=False):
    return {r.partition: r for r in upgrade.plan(
        direction, {(T, p): o for p, o in source.items()},
        {(T, p): o for p, o in target.items()},
        {(T, p): log for p, log in logs.items()}, force)}


def test_forward_writes_what_zookeeper_holds():
    found = rows(upgrade.FORWARD, {0: 600, 1: 0}, {},
                 {0: (0, 1000), 1: (0, 10)})
    assert [(r.action, r.offset, r.zookeeper, r.kafka) for r in
            found.values()] == [('write', 600, 600, None),
                                ('write', 0, 0, None)]


def test_an_offset_at_the_log_end_is_written_past_it_refused():
    found = rows(upgrade.FORWARD, {0: 10, 1: 11}, {},
                 {0: (0, 10), 1: (0, 10)})
    assert found[0].action == upgrade.WRITE
    assert found[1].action == upgrade.REFUSE
    assert 'past the log end 10' in found[1].reason


def test_below_the_log_start_becomes_the_start():
    (row,) = rows(upgrade.FORWARD, {0: 3}, {}, {0: (50, 80)}).values()
    assert (row.action, row.offset) == (upgrade.WRITE, 50)
    assert '3 is below the log start' in row.reason


def test_forward_refuses_any_other_offset_kafka_holds_unless_forced():
    logs = {0: (0, 100), 1: (0, 100), 2: (0, 100)}
    found = rows(upgrade.FORWARD, {0: 40, 1: 40, 2: 40},
                 {0: 40, 1: 30, 2: 60}, logs)
    assert found[0].action == upgrade.KEEP
    assert found[1].action == found[2].action == upgrade.REFUSE
    forced = rows(upgrade.FORWARD, {0: 40, 1: 40, 2: 40},
                  {0: 40, 1: 30, 2: 60}, logs, force=True)
    assert [(r.action, r.reason) for r in forced.values()] == [
        ('keep', 'Kafka holds it already'),
        ('write', 'replaces 30 (forced)'), ('write', 'replaces 60 (forced)')]


def test_reverse_moves_zookeeper_forward_and_refuses_backwards():
    found = rows(upgrade.REVERSE, {0: 70, 1: 70}, {0: 60, 1: 90},
                 {0: (0, 100), 1: (0, 100)})
    assert (found[0].action, found[0].reason) == ('write', 'replaces 60')
    assert (found[0].zookeeper, found[0].kafka) == (60, 70)
    assert found[1].action == upgrade.REFUSE
    assert 'read 20 messages again' in found[1].reason


def test_partitions_without_a_source_offset_are_left():
    found = rows(upgrade.FORWARD, {0: 5}, {1: 9}, {0: (0, 9), 1: (0, 9)})
    assert found[1].action == upgrade.LEAVE
    assert found[1].kafka == 9


def test_a_partition_kafka_does_not_have_is_refused():
    (row,) = rows(upgrade.FORWARD, {3: 5}, {}, {}).values()
    assert row.action == upgrade.REFUSE
    assert (row.start, row.end) == (None, None)


def test_the_migration_names_every_reason_and_serializes():
    migration = upgrade.Migration(
        'g', upgrade.FORWARD, 'zk:2181',
        upgrade.plan(upgrade.FORWARD, {(T, 0): 20, (T, 1): 1}, {},
                     {(T, 0): (0, 10), (T, 1): (0, 10)}),
        refusals=['group g has 1 live member(s)'])
    assert migration.refused
    assert migration.reasons() == [
        'group g has 1 live member(s)',
        'metrics[0]: offset 20 is past the log end 10: the log was '
        'truncated or the topic made anew']
    assert migration.writes == {(T, 1): 1}
    assert json.loads(json.dumps(migration.as_dict()))['refused'] is True


def test_a_wrong_direction_is_named():
    with pytest.raises(kafka.ConfigurationError, match='direction'):
        upgrade.plan('sideways', {}, {}, {})


@pytest.mark.parametrize('address,expected', [
    ('zk:2181', ('zk:2181', '')),
    ('zk1:2181,zk2:2181/kafka', ('zk1:2181,zk2:2181', '/kafka')),
    ('127.0.0.1/monasca/kafka', ('127.0.0.1', '/monasca/kafka')),
    ('[::1]:2181/k', ('[::1]:2181', '/k')),
])
def test_zookeeper_addresses(address, expected):
    assert upgrade.parse_zookeeper(address) == expected


@pytest.mark.parametrize('address,named', [
    ('zk:2181/kafka/', 'malformed chroot'),
    ('zk:2181/', 'malformed chroot'),
    ('zk:2181//kafka', 'malformed chroot'),
    ('zk:2181/ka fka', 'malformed chroot'),
    ('zk:2181/kafka/../x', 'malformed chroot'),
    ('zk:99999', 'not HOST[:PORT]'),
    ('zk:2181,,zk2:2181', 'not HOST[:PORT]'),
    ('', 'HOST:PORT'),
    (None, 'HOST:PORT'),
])
def test_malformed_zookeeper_addresses_are_named(address, named):
    with pytest.raises(kafka.ConfigurationError, match=named.replace(
            '[', r'\[').replace(']', r'\]')):
        upgrade.parse_zookeeper(address)


def test_zookeeper_that_refuses_fails_within_the_bound():
    with socket.socket() as placeholder:
        placeholder.bind(('127.0.0.1', 0))
        address = '127.0.0.1:%d' % placeholder.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(kafka.ZooKeeperUnavailableError,
                           match='did not answer within 2 s'):
            upgrade.ZooKeeperOffsets(address, timeout=2)
        assert time.monotonic() - started < 10


def test_a_group_id_with_a_slash_is_refused_before_any_connection():
    with pytest.raises(kafka.ConfigurationError, match='no "/"'):
        upgrade.migrate(None, 'a/b', 'zk:2181')
