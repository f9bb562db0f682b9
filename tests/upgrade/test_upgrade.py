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

"""Upgrade day, on the old world: Kafka 3.9.1 in ZooKeeper mode and the old
client (monasca-common 3.8.0) in a venv of its own.

The old client commits into ZooKeeper; ``migrate-offsets`` moves those
offsets into Kafka so that this library's consumer, started as the
upgraded service starts it, reads exactly what the old one left, and
``--reverse`` hands back.
"""

import collections
import json
import pathlib
import socket
import subprocess
import sys
import time
import uuid

import confluent_kafka
from confluent_kafka import admin as confluent_admin
from kazoo import client as kazoo_client
import pytest

from monasca_common import kafka
from monasca_common.kafka import client_factory
from monasca_common.kafka import upgrade
from tests import conftest
from tests import waiting

pytestmark = [pytest.mark.integration, pytest.mark.upgrade]

OLD_SERVICE = pathlib.Path(__file__).with_name('old_service.py')
CLI = [sys.executable, '-m', 'monasca_common.cli.main']


# -- the old world -----------------------------------------------------------

def run_old(python, *args, timeout=180):
    """Run the old client's service script; its JSON report."""
    done = subprocess.run([python, str(OLD_SERVICE)] + [str(a) for a in args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def migrate_cli(world, *args, timeout=120):
    done = subprocess.run(
        CLI + ['migrate-offsets', '-b', world.bootstrap_servers,
               '--zookeeper', world.zookeeper_connect] + list(args),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        timeout=timeout)
    return done


def old_topic(world, partitions=4):
    name = 'old-' + uuid.uuid4().hex[:10]
    client = confluent_admin.AdminClient(
        {'bootstrap.servers': world.bootstrap_servers})
    return conftest.create_topic(client, name, partitions,
                                 config=conftest.OLD_CLIENT_TOPIC)


def new_topic(world, partitions=2):
    client = confluent_admin.AdminClient(
        {'bootstrap.servers': world.bootstrap_servers})
    return conftest.create_topic(client, partitions=partitions)


def zookeeper(world, chroot=True):
    """A kazoo client, as the old world used ZooKeeper.

    Below the brokers' chroot (their offsets), or at the root, where the
    old services kept their partitioners.
    """
    client = kazoo_client.KazooClient(
        world.zookeeper_connect if chroot else world.zookeeper.address)
    client.start(10)
    return client


def zookeeper_offsets(world, group, topic):
    client = zookeeper(world)
    try:
        base = '/consumers/%s/offsets/%s' % (group, topic)
        return {int(p): int(client.get('%s/%s' % (base, p))[0])
                for p in client.get_children(base)}
    finally:
        client.stop()
        client.close()


def set_zookeeper_offsets(world, group, topic, offsets):
    """Offsets as the old client's OffsetCommit v0 left them."""
    client = zookeeper(world)
    try:
        for partition, offset in offsets.items():
            path = '/consumers/%s/offsets/%s/%d' % (group, topic, partition)
            client.ensure_path(path)
            client.set(path, str(offset).encode())
    finally:
        client.stop()
        client.close()


def kafka_offsets(admin, group, topic):
    return {p: o for (_, p), o in
            admin.committed_offsets(group, topic).items()}


def produce(world, topic, count, partitions):
    """``count`` messages spread evenly: message i to partition i % n."""
    producer = confluent_kafka.Producer(
        {'bootstrap.servers': world.bootstrap_servers})
    for i in range(count):
        producer.produce(topic, b'message-%04d' % i, partition=i % partitions)
    assert producer.flush(30) == 0


def read_all(consumer, expected, idle=5.0, commit_after=None):
    """Every message until ``idle`` s pass without one after ``expected``.

    Commits once, after the ``commit_after``-th message, as a service
    commits a batch; what follows stays uncommitted.
    """
    read = []
    deadline = time.monotonic() + 120
    with waiting.stop_after(consumer, 120):
        last = time.monotonic()
        while time.monotonic() < deadline:
            message = consumer.consume_batch(1, 0.5)
            if message:
                m = message[0]
                read.append((m.partition(), m.offset(), m.value().decode()))
                last = time.monotonic()
                if len(read) == commit_after:
                    consumer.commit()
            elif len(read) >= expected and time.monotonic() - last > idle:
                break
    return read


# -- the day itself ----------------------------------------------------------

@pytest.mark.filterwarnings('ignore:zookeeper_url and zookeeper_path')
def test_old_client_commits_at_600_and_the_new_one_reads_the_rest(
        old_world, legacy_python, capsys):
    """Old client: take 600 of 1,000 on 4 partitions, commit, stop.

    Without migration this library's consumer starts at the log start and
    reads all 1,000 (600 again). After ``migrate-offsets`` it reads exactly
    the 400 the old one left, each once, and its commit lands. After it
    committed 200 of them, ``--reverse`` hands back and the old client
    reads exactly the 200 after that commit.
    """
    world, group = old_world, 'persister-' + uuid.uuid4().hex[:8]
    topic = old_topic(world)
    assert run_old(legacy_python, 'produce', world.bootstrap_servers, topic,
                   1000) == {'produced': 1000}

    first = run_old(legacy_python, 'consume', world.bootstrap_servers,
                    world.zookeeper.address, group, topic, 600)
    old_taken = {tuple(m) for m in first['taken']}
    assert len(old_taken) == 600
    committed_in_zk = zookeeper_offsets(world, group, topic)
    per_partition = collections.Counter(p for p, _, _ in old_taken)
    assert {p: committed_in_zk.get(p, 0) for p in range(4)} == {
        p: per_partition[p] for p in range(4)}

    admin = kafka.KafkaAdmin(world.bootstrap_servers)
    assert set(kafka_offsets(admin, group, topic).values()) == {None}

    # The defect: an upgrade without migration starts at the log start.
    unmigrated = client_factory.get_kafka_consumer(
        world.bootstrap_servers, group, topic)
    try:
        again = read_all(unmigrated, 1000)
    finally:
        unmigrated.close()
    repeated = len({tuple(m) for m in again} & old_taken)
    with capsys.disabled():
        print('\nwithout migration the new consumer read %d messages, %d of '
              'them already taken by the old client' % (len(again),
                                                        repeated))
    assert len(again) == 1000 and repeated == 600
    assert set(kafka_offsets(admin, group, topic).values()) == {None}

    dry = migrate_cli(world, group, '--dry-run', '--json')
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan['dry_run'] and not plan['applied'] and not plan['refused']
    assert {r['partition']: (r['action'], r['offset'])
            for r in plan['partitions']} == {
        p: ('write', committed_in_zk[p]) for p in range(4)}
    assert set(kafka_offsets(admin, group, topic).values()) == {None}

    moved = migrate_cli(world, group)
    assert moved.returncode == 0, moved.stderr
    assert 'wrote 4 offset(s) of group %s from ZooKeeper to Kafka' % group \
        in moved.stdout
    assert kafka_offsets(admin, group, topic) == committed_in_zk

    # The upgraded service, built as the services build it.
    upgraded = client_factory.get_kafka_consumer(
        world.bootstrap_servers, group, topic, 'zk:2181', '/partitions')
    try:
        rest = read_all(upgraded, 400, commit_after=200)
    finally:
        upgraded.close()
    assert len(rest) == 400 and len(set(rest)) == 400
    all_messages = {'message-%04d' % i for i in range(1000)}
    assert {v for _, _, v in rest} == all_messages - {
        v for _, _, v in old_taken}
    new_committed = kafka_offsets(admin, group, topic)
    handed_before_commit = rest[:200]
    for partition in range(4):
        mine = [o for p, o, _ in handed_before_commit if p == partition]
        assert new_committed[partition] == (
            max(mine) + 1 if mine else committed_in_zk[partition])

    back = migrate_cli(world, group, '--reverse')
    assert back.returncode == 0, back.stderr
    assert zookeeper_offsets(world, group, topic) == new_committed

    resumed = run_old(legacy_python, 'consume', world.bootstrap_servers,
                      world.zookeeper.address, group, topic, 200)
    assert resumed['extra'] == []
    assert {tuple(m) for m in resumed['taken']} == set(rest[200:])
    admin.close()


# -- refusals ----------------------------------------------------------------

@pytest.fixture
def world(old_world):
    return old_world


@pytest.fixture
def admin(world):
    with kafka.KafkaAdmin(world.bootstrap_servers) as client:
        yield client


@pytest.fixture
def group():
    return 'notification-' + uuid.uuid4().hex[:8]


def test_active_members_are_refused_by_name(world, admin, group):
    topic = new_topic(world)
    produce(world, topic, 10, 2)
    set_zookeeper_offsets(world, group, topic, {0: 3, 1: 2})
    member = kafka.KafkaConsumer(world.bootstrap_servers, group, topic,
                                 client_id='notification-engine-7')
    try:
        assert len(waiting.take(member, 1)) == 1
        with pytest.raises(kafka.MigrationRefusedError) as refused:
            admin.migrate_zookeeper_offsets(group, world.zookeeper_connect)
        assert 'notification-engine-7' in str(refused.value)
        assert 'live member' in str(refused.value)
        assert refused.value.migration.refused
        done = migrate_cli(world, group)
        assert done.returncode == 1
        assert 'notification-engine-7' in done.stderr
        # Behind the check, Kafka itself refuses a commit from outside a
        # live group: a member joining during a migration is caught too.
        with pytest.raises(kafka.CommitFailedError):
            admin.commit_offsets(group, {(topic, 0): 3})
    finally:
        member.close()
    assert set(kafka_offsets(admin, group, topic).values()) == {None}
    # Once the service is stopped, the same call moves them.
    moved = admin.migrate_zookeeper_offsets(group, world.zookeeper_connect)
    assert moved.applied
    assert kafka_offsets(admin, group, topic) == {0: 3, 1: 2}


def test_an_old_instance_still_running_is_refused(world, admin, group,
                                                  legacy_python):
    """Old instances coordinate through ZooKeeper, invisible to Kafka.

    With the service's partitioner path, one still running refuses the
    migration; once it is gone, the migration goes through.
    """
    topic = old_topic(world, partitions=2)
    set_zookeeper_offsets(world, group, topic, {0: 0, 1: 0})
    path = '/monasca-partitions/%s/%s' % (group, topic)
    old = subprocess.Popen(
        [legacy_python, str(OLD_SERVICE), 'consume', world.bootstrap_servers,
         world.zookeeper.address, group, topic, str(10 ** 9)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = zookeeper(world, chroot=False)
    try:
        party = '/monasca-partitions/%s/%s/party' % (group, topic)
        waiting.until(lambda: client.exists(party) and
                      client.get_children(party), 60, 'the old instance in '
                      'its partitioner party')
        done = migrate_cli(world, group, '--partitioner-path', path)
        assert done.returncode == 1
        assert '1 old client instance(s) still hold the partitioner at %s' \
            % path in done.stderr
        old.kill()
        old.wait(30)
        # Its ephemeral node goes with its ZooKeeper session.
        waiting.until(lambda: not client.get_children(party), 60,
                      'the killed instance out of the party')
    finally:
        old.kill()
        old.wait(30)
        client.stop()
        client.close()
    done = migrate_cli(world, group, '--partitioner-path', path)
    assert done.returncode == 0, done.stderr
    assert kafka_offsets(admin, group, topic) == {0: 0, 1: 0}


def test_offsets_kafka_holds_are_refused_unless_forced(world, admin, group):
    topic = new_topic(world)
    produce(world, topic, 10, 2)
    set_zookeeper_offsets(world, group, topic, {0: 4, 1: 5})
    admin.commit_offsets(group, {(topic, 0): 4, (topic, 1): 1})

    with pytest.raises(kafka.MigrationRefusedError) as refused:
        admin.migrate_zookeeper_offsets(group, world.zookeeper_connect)
    rows = {r.partition: r for r in refused.value.migration.rows}
    assert rows[0].action == upgrade.KEEP
    assert rows[1].action == upgrade.REFUSE
    assert 'Kafka holds 1 already' in rows[1].reason
    assert kafka_offsets(admin, group, topic) == {0: 4, 1: 1}

    done = migrate_cli(world, group, '--json')
    assert done.returncode == 1
    assert json.loads(done.stdout)['refused']

    forced = admin.migrate_zookeeper_offsets(group, world.zookeeper_connect,
                                             force=True)
    assert forced.applied and forced.writes == {(topic, 1): 5}
    assert kafka_offsets(admin, group, topic) == {0: 4, 1: 5}
    # Run again: nothing left to do, and that is not a refusal.
    again = migrate_cli(world, group)
    assert again.returncode == 0, again.stderr
    assert 'wrote 0 offset(s)' in again.stdout


def test_offset_past_the_log_end_refuses_the_whole_group(world, admin, group):
    topic = new_topic(world)
    produce(world, topic, 10, 2)
    set_zookeeper_offsets(world, group, topic, {0: 2, 1: 50})
    done = migrate_cli(world, group)
    assert done.returncode == 1
    assert 'past the log end 5' in done.stderr
    assert set(kafka_offsets(admin, group, topic).values()) == {None}


def test_offset_below_the_log_start_becomes_the_start(world, admin, group):
    topic = new_topic(world, partitions=1)
    produce(world, topic, 10, 1)
    client = confluent_admin.AdminClient(
        {'bootstrap.servers': world.bootstrap_servers})
    deleted = client.delete_records(
        [confluent_kafka.TopicPartition(topic, 0, 6)])
    for future in deleted.values():
        future.result(30)
    set_zookeeper_offsets(world, group, topic, {0: 2})
    moved = admin.migrate_zookeeper_offsets(group, world.zookeeper_connect)
    (row,) = moved.rows
    assert (row.zookeeper, row.start, row.action, row.offset) == (
        2, 6, upgrade.WRITE, 6)
    assert 'below the log start' in row.reason
    assert kafka_offsets(admin, group, topic) == {0: 6}


def test_reverse_refuses_to_move_the_old_client_backwards(world, admin,
                                                          group):
    topic = new_topic(world)
    produce(world, topic, 10, 2)
    set_zookeeper_offsets(world, group, topic, {0: 5, 1: 1})
    admin.commit_offsets(group, {(topic, 0): 3, (topic, 1): 4})
    with pytest.raises(kafka.MigrationRefusedError) as refused:
        admin.migrate_zookeeper_offsets(group, world.zookeeper_connect,
                                        reverse=True)
    assert 'read 2 messages again' in str(refused.value)
    assert zookeeper_offsets(world, group, topic) == {0: 5, 1: 1}
    back = admin.migrate_zookeeper_offsets(group, world.zookeeper_connect,
                                           reverse=True, force=True)
    assert back.applied
    assert zookeeper_offsets(world, group, topic) == {0: 3, 1: 4}


def test_unknown_group_and_zookeeper_down_exit_2_with_the_cause(world,
                                                                group):
    done = migrate_cli(world, group)
    assert done.returncode == 2
    assert 'no offsets of group %r' % group in done.stderr

    with socket.socket() as placeholder:
        placeholder.bind(('127.0.0.1', 0))
        nowhere = '127.0.0.1:%d/kafka' % placeholder.getsockname()[1]
        started = time.monotonic()
        done = subprocess.run(
            CLI + ['migrate-offsets', '-b', world.bootstrap_servers,
                   '--zookeeper', nowhere, '--timeout', '3', group],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            timeout=60)
        took = time.monotonic() - started
    assert done.returncode == 2
    assert 'ZooKeeper at 127.0.0.1' in done.stderr
    assert 'did not answer within 3 s' in done.stderr
    assert took < 30

    done = migrate_cli(world, group, '--zookeeper', 'localhost:2181/kafka/')
    assert done.returncode == 2
    assert 'malformed chroot' in done.stderr


# -- what the old world's topics mean for the new producer --------------------

def test_a_topic_kept_in_the_old_message_format_is_named_when_refused(
        world):
    """The idempotent producer cannot write message format v0/v1.

    The publish fails at once with the reason and what to do; other
    topics of the same producer are not affected, and a producer with
    ``enable.idempotence=false`` writes the old topic.
    """
    old, current = old_topic(world, partitions=1), new_topic(world)
    with kafka.KafkaProducer(world.bootstrap_servers) as producer:
        with pytest.raises(kafka.DeliveryFailedError) as failed:
            producer.publish(old, ['a', 'b'], sync=True, timeout=30)
        assert 'message.format.version' in str(failed.value)
        assert 'enable.idempotence=false' in str(failed.value)
        assert len(failed.value.failed) == 2
        assert producer.publish(current, ['a'], sync=True,
                                timeout=30).failed == []
    with kafka.KafkaProducer(world.bootstrap_servers,
                             **{'enable.idempotence': False}) as plain:
        assert plain.publish(old, ['a', 'b'], sync=True,
                             timeout=30).failed == []
