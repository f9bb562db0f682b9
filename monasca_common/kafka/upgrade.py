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

"""The upgrade's offsets: out of ZooKeeper into Kafka, and back.

The old client (vendored kafka-python 0.9.5 and its kazoo-partitioned
consumer) committed with OffsetCommit v0, which a ZooKeeper-mode broker
keeps in ZooKeeper at ``/consumers/<group>/offsets/<topic>/<partition>``
(below the brokers' chroot), not in ``__consumer_offsets``. This library's
consumer asks the group coordinator, which knows nothing of them: without
a migration an upgraded service starts at ``auto.offset.reset`` and reads
the topic's whole retention again (or, with ``latest``, skips what arrived
while it was down).

:func:`migrate` moves a group's offsets once, before the upgraded service
starts::

    with KafkaAdmin('kafka:9092') as admin:
        admin.migrate_zookeeper_offsets('1_metrics', 'zk:2181/kafka',
                                        dry_run=True)

It plans first (:func:`plan`, pure), and writes only when nothing is
refused: a group moves whole or not at all. Each offset is checked
against its partition's log: below the log start (retention moved on) it
becomes the start; past the log end it is refused. It refuses while the
group has live members in Kafka, and where the target already holds an
other offset (``force`` overrides that one check). ``reverse=True``
writes the Kafka offsets back into ZooKeeper, so the old client continues
where this one stopped (a rollback). Offsets are committed to Kafka the way
the lag API reads them: by a consumer that never joins the group.

Needs kazoo, the ZooKeeper client the old module used:
``pip install monasca-common[zookeeper]``.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import re
import typing

from monasca_common.confluent_kafka import errors

if typing.TYPE_CHECKING:
    from monasca_common.kafka import admin as kafka_admin

#: Directions: which store is read and which is written.
FORWARD = 'zookeeper-to-kafka'
REVERSE = 'kafka-to-zookeeper'

#: Actions of a partition's row.
WRITE = 'write'      # the target gets ``offset``
KEEP = 'keep'        # the target holds ``offset`` already
LEAVE = 'leave'      # the source has no offset: nothing to move
REFUSE = 'refuse'    # nothing is written for the group; ``reason`` says why

Key = tuple[str, int]

_HOST = re.compile(r'^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(:(\d{1,5}))?$')
_CHROOT_SEGMENT = re.compile(r'^[^\s/\x00-\x1f\x7f]+$')


class OffsetRow(typing.NamedTuple):
    """One partition of a migration: both stores, the log, the action.

    ``zookeeper`` and ``kafka`` are the group's offsets in each store
    before the migration (None: none); ``start`` and ``end`` the log's
    first available and next offsets (None: Kafka has no such partition);
    ``offset`` what the target gets (``WRITE``) or holds (``KEEP``).
    """
    topic: str
    partition: int
    zookeeper: int | None
    kafka: int | None
    start: int | None
    end: int | None
    action: str
    offset: int | None
    reason: str


@dataclasses.dataclass
class Migration:
    """What a migration found and did.

    ``refusals`` are the group-wide reasons (live members); refused rows
    carry their own. ``applied`` is True once the target was written.
    """
    group: str
    direction: str
    zookeeper: str
    rows: list[OffsetRow]
    refusals: list[str] = dataclasses.field(default_factory=list)
    dry_run: bool = False
    applied: bool = False

    @property
    def refused(self) -> bool:
        return bool(self.refusals) or any(r.action == REFUSE
                                          for r in self.rows)

    def reasons(self) -> list[str]:
        """Every reason not to write: group-wide, then per partition."""
        return self.refusals + ['%s[%d]: %s' % (r.topic, r.partition,
                                                r.reason)
                                for r in self.rows if r.action == REFUSE]

    @property
    def writes(self) -> dict[Key, int]:
        return {(r.topic, r.partition): typing.cast(int, r.offset)
                for r in self.rows if r.action == WRITE}

    def as_dict(self) -> dict:
        return {'group': self.group, 'direction': self.direction,
                'zookeeper': self.zookeeper, 'dry_run': self.dry_run,
                'applied': self.applied, 'refused': self.refused,
                'refusals': self.reasons(),
                'partitions': [row._asdict() for row in self.rows]}


def plan(direction: str, source: collections.abc.Mapping[Key, int],
         target: collections.abc.Mapping[Key, int],
         logs: collections.abc.Mapping[Key, tuple[int, int] | None],
         force: bool = False) -> list[OffsetRow]:
    """One row per partition: what moving ``source`` onto ``target`` does.

    :param source: the offsets to move (ZooKeeper's, or Kafka's in
        reverse).
    :param target: the offsets the target store holds now.
    :param logs: ``(start, end)`` of every partition Kafka has among the
        ones concerned; None or absent where Kafka has no such partition.
    :param force: write over a target offset that differs.

    The rules: an offset past the log end is refused (the log was
    truncated, or the topic made anew: reading from there would skip or
    fail); one below the log start becomes the start (retention deleted
    the rest; the old client would have jumped there too). Forward, any
    other offset Kafka already holds is refused: the group has used this
    client (or the old confluent one) already, and Kafka's offsets are the
    newer. In reverse, ZooKeeper still holds where the old client stopped
    before the upgrade, which the rollback moves forward; only an offset
    *ahead* of Kafka's is refused (the old client would read the
    difference again).
    """
    if direction not in (FORWARD, REVERSE):
        raise errors.ConfigurationError('direction must be %r or %r, got %r'
                                        % (FORWARD, REVERSE, direction))
    source_name, target_name = (('ZooKeeper', 'Kafka') if direction ==
                                FORWARD else ('Kafka', 'ZooKeeper'))
    rows = []
    for key in sorted(set(source) | set(logs)):
        topic, partition = key
        moved, held, log = source.get(key), target.get(key), logs.get(key)
        start, end = log if log is not None else (None, None)
        zookeeper, kafka = ((moved, held) if direction == FORWARD
                            else (held, moved))

        def row(action, offset=None, reason=''):
            rows.append(OffsetRow(topic, partition, zookeeper, kafka, start,
                                  end, action, offset, reason))

        if moved is None:
            row(LEAVE, reason='no offset in %s: nothing to move'
                % source_name)
            continue
        if start is None or end is None:
            row(REFUSE, reason='Kafka has no such partition; name the '
                'topics to move to leave it out')
            continue
        if moved > end:
            row(REFUSE, reason='offset %d is past the log end %d: the log '
                'was truncated or the topic made anew' % (moved, end))
            continue
        offset, notes = moved, []
        if moved < start:
            offset = start
            notes.append('%d is below the log start (retention moved on): '
                         'from the start' % moved)
        if held == offset:
            row(KEEP, offset, '%s holds it already' % target_name)
            continue
        if held is not None:
            conflict = direction == FORWARD or held > offset
            if conflict and not force:
                row(REFUSE, reason=(
                    'Kafka holds %d already for the group: it has used a '
                    'Kafka-committing client since' % held
                    if direction == FORWARD else
                    'ZooKeeper holds %d, ahead of Kafka: the old client '
                    'would read %d messages again' % (held, held - offset)))
                continue
            notes.append('replaces %d%s' % (held,
                                            ' (forced)' if conflict else ''))
        row(WRITE, offset, '; '.join(notes))
    return rows


def parse_zookeeper(address: str) -> tuple[str, str]:
    """``HOST:PORT[,HOST:PORT...][/chroot]`` -> (hosts, chroot).

    :raises ConfigurationError: naming what is wrong.
    """
    if not isinstance(address, str) or not address.strip():
        raise errors.ConfigurationError(
            'zookeeper must be HOST:PORT[,HOST:PORT...][/chroot], got %r'
            % (address,))
    hosts, slash, path = address.strip().partition('/')
    for host in hosts.split(','):
        found = _HOST.match(host.strip())
        if not found or (found.group(3) and not
                         0 < int(found.group(3)) < 65536):
            raise errors.ConfigurationError(
                'zookeeper: %r is not HOST[:PORT] in %r' % (host, address))
    chroot = ''
    if slash:
        chroot = '/' + path
        if not _is_path(chroot):
            raise errors.ConfigurationError(
                'zookeeper: malformed chroot %r in %r (a path such as '
                '/kafka: no empty, "." or ".." part, no trailing /)'
                % (chroot, address))
    return ','.join(h.strip() for h in hosts.split(',')), chroot


def _is_path(path) -> bool:
    """An absolute ZooKeeper path, not the root."""
    return (isinstance(path, str) and path.startswith('/') and
            all(_CHROOT_SEGMENT.match(s) and s not in ('.', '..')
                for s in path[1:].split('/')))


class ZooKeeperOffsets:
    """The old client's offsets in ZooKeeper, read and written with kazoo.

    :param address: ``HOST:PORT[/chroot]``: the chroot of the brokers'
        ``zookeeper.connect``, where they kept the offsets.
    :param timeout: bound of the connection and of each request, in s.
    """

    def __init__(self, address: str, timeout: float = 10.0):
        self.hosts, self.chroot = parse_zookeeper(address)
        self.address = address
        try:
            from kazoo import client as kazoo_client
            from kazoo import exceptions as kazoo_exceptions
        except ImportError:
            raise errors.ConfigurationError(
                'reading ZooKeeper needs kazoo: pip install '
                'monasca-common[zookeeper]') from None
        self._failures = (kazoo_exceptions.KazooException,)
        self._client = kazoo_client.KazooClient(
            # No chroot here: the old services' partitioner paths may lie
            # outside the brokers' chroot, on the same ensemble.
            hosts=self.hosts, timeout=max(timeout, 1.0),
            connection_retry={'max_tries': 0},
            command_retry={'max_tries': 2, 'deadline': timeout})
        try:
            self._client.start(timeout=timeout)
        except Exception as exc:  # kazoo's own timeout type per handler
            self._client.close()
            raise errors.ZooKeeperUnavailableError(
                'ZooKeeper at %s did not answer within %.0f s (%s)'
                % (self.hosts, timeout, type(exc).__name__)) from None

    def close(self) -> None:
        self._client.stop()
        self._client.close()

    def __enter__(self) -> 'ZooKeeperOffsets':
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def group_path(self, group: str) -> str:
        return '%s/consumers/%s/offsets' % (self.chroot, group)

    def partitioner_members(self, path: str) -> list[str]:
        """The old instances holding kazoo's ``SetPartitioner`` at ``path``.

        Each live instance keeps an ephemeral node below ``path/party``,
        its data the instance's identifier (the old consumer used its
        start time).
        """
        if not _is_path(path):
            raise errors.ConfigurationError(
                'a partitioner path is absolute, such as '
                '/persister_partitions/metrics; got %r' % (path,))
        party = path + '/party'
        if self._ask(self._client.exists, party) is None:
            return []
        members = []
        for child in self._ask(self._client.get_children, party):
            data, _ = self._ask(self._client.get, '%s/%s' % (party, child))
            members.append((data or b'?').decode('utf-8', 'replace'))
        return members

    def _ask(self, call, *args):
        try:
            return call(*args)
        except self._failures as exc:
            raise errors.ZooKeeperUnavailableError(
                'ZooKeeper at %s: %s' % (self.hosts, type(exc).__name__)
            ) from None

    def has_group(self, group: str) -> bool:
        return self._ask(self._client.exists,
                         self.group_path(group)) is not None

    def read(self, group: str, topics: collections.abc.Iterable[str] | None
             = None) -> dict[Key, int]:
        """The group's offsets, of ``topics`` or of every topic it has."""
        base = self.group_path(group)
        if not self.has_group(group):
            return {}
        present = self._ask(self._client.get_children, base)
        offsets = {}
        for topic in (present if topics is None else
                      [t for t in topics if t in present]):
            for child in self._ask(self._client.get_children,
                                   '%s/%s' % (base, topic)):
                path = '%s/%s/%s' % (base, topic, child)
                data, _ = self._ask(self._client.get, path)
                text = (data or b'').decode('ascii', 'replace').strip()
                if not child.isdigit() or not text.isdigit():
                    raise errors.ConfigurationError(
                        'ZooKeeper node %s holds %r: not a partition\'s '
                        'offset' % (path, text[:40]))
                offsets[(topic, int(child))] = int(text)
        return offsets

    def write(self, group: str, offsets: collections.abc.Mapping[Key, int]
              ) -> None:
        """Set every offset in one ZooKeeper transaction: all or none."""
        base = self.group_path(group)
        for topic in {topic for topic, _ in offsets}:
            self._ask(self._client.ensure_path, '%s/%s' % (base, topic))
        transaction = self._client.transaction()
        for (topic, partition), offset in sorted(offsets.items()):
            path = '%s/%s/%d' % (base, topic, partition)
            data = str(offset).encode('ascii')
            if self._ask(self._client.exists, path) is None:
                transaction.create(path, data)
            else:
                transaction.set_data(path, data)
        results = self._ask(transaction.commit)
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            raise errors.ZooKeeperUnavailableError(
                'ZooKeeper at %s refused the offsets of group %s: %s'
                % (self.hosts, group, type(failed[0]).__name__))


def migrate(admin: 'kafka_admin.KafkaAdmin', group: str, zookeeper: str,
            topics: collections.abc.Iterable[str] | None = None,
            dry_run: bool = False, force: bool = False,
            reverse: bool = False, timeout: float | None = None,
            partitioner_paths: collections.abc.Iterable[str] = ()
            ) -> Migration:
    """Move ``group``'s offsets from ZooKeeper to Kafka (or back).

    See :meth:`KafkaAdmin.migrate_zookeeper_offsets
    <monasca_common.kafka.admin.KafkaAdmin.migrate_zookeeper_offsets>`.
    """
    group = _check_group(group)
    if isinstance(topics, str):
        topics = [topics]
    topics = None if topics is None else list(dict.fromkeys(topics))
    if isinstance(partitioner_paths, str):
        partitioner_paths = [partitioner_paths]
    timeout = admin.timeout if timeout is None else timeout
    direction = REVERSE if reverse else FORWARD
    with ZooKeeperOffsets(zookeeper, timeout) as old_store:
        known = admin.topics(timeout)
        unknown = [t for t in topics or () if t not in known]
        if unknown:
            raise errors.UnknownTopicError('Kafka has no topic %s' % ', '.join(
                repr(t) for t in unknown))
        in_kafka: dict[Key, int] = {
            key: offset for key, offset in admin.committed_offsets(
                group, timeout=timeout).items() if offset is not None}
        if direction == FORWARD:
            if not old_store.has_group(group):
                raise errors.UnknownGroupError(
                    'ZooKeeper at %s has no offsets of group %r (no %s); '
                    'is the chroot the one of the brokers\' '
                    'zookeeper.connect?' % (old_store.hosts, group,
                                            old_store.group_path(group)))
            source = old_store.read(group, topics)
            concerned = _partitions(known, set(t for t, _ in source)
                                    if topics is None else topics)
            target = {key: in_kafka[key] for key in concerned
                      if key in in_kafka}
        else:
            source = {key: offset for key, offset in in_kafka.items()
                      if topics is None or key[0] in topics}
            if not source:
                raise errors.UnknownGroupError(
                    'Kafka holds no offsets of group %r%s' % (
                        group, '' if topics is None else
                        ' in %s' % ', '.join(topics)))
            concerned = _partitions(known, set(t for t, _ in source))
            target = old_store.read(group, set(t for t, _ in source))
        logs = admin.log_bounds(concerned, timeout)
        migration = Migration(group, direction, zookeeper, plan(
            direction, source, target, logs, force), dry_run=dry_run)
        migration.refusals.extend(_live_members(admin, group, timeout))
        for path in partitioner_paths:
            instances = old_store.partitioner_members(path)
            if instances:
                migration.refusals.append(
                    '%d old client instance(s) still hold the partitioner '
                    'at %s (started %s): stop them first' % (
                        len(instances), path, ', '.join(sorted(instances))))
        if dry_run:
            return migration
        if migration.refused:
            raise errors.MigrationRefusedError(
                'offsets of group %s not moved: %s'
                % (group, '; '.join(migration.reasons())), migration)
        if not migration.writes:
            return migration
        if direction == FORWARD:
            try:
                admin.commit_offsets(group, migration.writes, timeout)
            except errors.CommitFailedError as exc:
                # A member joined between the check and the commit.
                migration.refusals.append('Kafka refused the commit: %s'
                                          % exc)
                raise errors.MigrationRefusedError(
                    'offsets of group %s not moved: %s' % (group, exc),
                    migration) from None
        else:
            old_store.write(group, migration.writes)
        migration.applied = True
        return migration


def _check_group(group) -> str:
    if not isinstance(group, str) or not group.strip() or '/' in group:
        raise errors.ConfigurationError(
            'group must be a consumer group id (no "/"), got %r' % (group,))
    return group


def _partitions(known: dict, topics: collections.abc.Iterable[str]
                ) -> list[Key]:
    return [(topic, partition) for topic in sorted(topics)
            for partition in sorted(known.get(topic, ()))]


def _live_members(admin, group: str, timeout: float) -> list[str]:
    members = admin.group_members(group, timeout)
    if not members:
        return []
    return ['group %s has %d live member(s) in Kafka (%s): stop every '
            'instance of the service first' % (
                group, len(members), ', '.join(
                    '%s on %s' % (m.client_id, m.host) for m in members))]
