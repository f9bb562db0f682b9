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

"""Topics, offsets and consumer-group lag: what health checks and lag
monitors ask Kafka.

::

    with admin.KafkaAdmin('127.0.0.1:9092') as kafka:
        kafka.missing_topics(['metrics', 'events'])   # [] when healthy
        kafka.watermarks('metrics')                   # {0: Watermarks(...)}
        for row in kafka.group_lag('persister', 'metrics'):
            print(row.partition, row.committed, row.end, row.lag)

Reading a group's committed offsets never joins the group: a lag check
runs beside the group's live members without moving their partitions.

Every call is bounded by ``timeout`` and raises
:class:`~monasca_common.kafka.KafkaUnavailableError` as soon as librdkafka
reports every broker down, instead of waiting out the bound.
"""

from __future__ import annotations

import collections.abc
import logging
import threading
import time
import typing

import confluent_kafka
from confluent_kafka import admin as kafka_admin

from monasca_common.confluent_kafka import _client
from monasca_common.confluent_kafka import config as kafka_config
from monasca_common.confluent_kafka import errors
from monasca_common.confluent_kafka import runtime

if typing.TYPE_CHECKING:
    from monasca_common.kafka import upgrade

LOG = logging.getLogger(__name__)

#: A partition's metadata, as Kafka describes it.
PartitionInfo = typing.NamedTuple('PartitionInfo', [
    ('partition', int), ('leader', int), ('replicas', list), ('isr', list),
    ('error', typing.Optional[confluent_kafka.KafkaError])])


class Watermarks(typing.NamedTuple):
    """A partition's first available offset and the next to be written."""
    low: int
    high: int


class PartitionLag(typing.NamedTuple):
    """Where a group stands in one partition.

    ``committed`` is None when the group never committed there; ``lag``
    then counts from ``start``, where such a group begins reading
    (``auto.offset.reset=earliest``, this library's default).
    """
    topic: str
    partition: int
    committed: int | None
    start: int
    end: int
    lag: int


class GroupMember(typing.NamedTuple):
    """A live member of a consumer group, as Kafka describes it."""
    member_id: str
    client_id: str
    host: str


#: {(topic, partition): spec}, and the answers: an offset or an error.
OffsetRequests = collections.abc.Mapping[tuple[str, int], int]
OffsetAnswers = dict[tuple[str, int],
                     typing.Union[int, confluent_kafka.KafkaError]]

# Offset specs of Kafka's ListOffsets request, as the old protocol named
# them: -1 the latest (next to be written), -2 the earliest available.
LATEST = -1
EARLIEST = -2

_RETRY_PAUSE = 0.1
# How often a wait looks at librdkafka's error reports.
_SLICE = 0.1
_UNKNOWN = confluent_kafka.KafkaError(
    confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART)
_DOWN = (confluent_kafka.KafkaError._ALL_BROKERS_DOWN,
         confluent_kafka.KafkaError._TRANSPORT,
         confluent_kafka.KafkaError._RESOLVE)


class KafkaAdmin:
    """Read-only questions to a Kafka cluster, each bounded in time.

    :param bootstrap_servers: ``"host:port,..."`` or a list of them.
    :param timeout: default bound of each call, in seconds.
    :param config: librdkafka properties (security settings and the like).
    :raises ConfigurationError: bad servers, timeout or property.
    """

    def __init__(self, bootstrap_servers: str | collections.abc.Iterable[str],
                 timeout: float = 10.0, **config: typing.Any):
        self.timeout = kafka_config.check_timeout('timeout', timeout)
        self._config = kafka_config.merge(
            {}, bootstrap_servers, kafka_config.with_options('admin', config))
        self._config.setdefault('socket.connection.setup.timeout.ms',
                                max(1000, int(min(self.timeout, 30) * 1000)))
        self._down_reports = 0
        self._all_down = False
        self._config['error_cb'] = self._on_error
        self._client = _client.create(kafka_admin.AdminClient,
                                      self._config)
        #: How the calls wait on librdkafka (plain or green threads).
        self._runtime = runtime.current()
        # One question at a time: the waits read shared error reports.
        self._lock = threading.Lock()

    @property
    def bootstrap_servers(self) -> str:
        return self._config['bootstrap.servers']

    def _on_error(self, err: confluent_kafka.KafkaError) -> None:
        if err.code() == confluent_kafka.KafkaError._ALL_BROKERS_DOWN:
            self._all_down = True
        if err.code() in _DOWN:
            self._down_reports += 1

    def close(self) -> None:
        """Release the client; librdkafka's threads end with it."""
        holder = [self._client]
        self._client = None
        self._runtime.drop(holder, self.timeout)

    def __enter__(self) -> 'KafkaAdmin':
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return '<KafkaAdmin servers=%s>' % self.bootstrap_servers

    # -- waiting ------------------------------------------------------------

    def _deadline(self, timeout: float | None) -> float:
        if timeout is None:
            timeout = self.timeout
        else:
            timeout = kafka_config.check_timeout('timeout', timeout)
        return time.monotonic() + timeout

    def _client_or_raise(self):
        if self._client is None:
            raise errors.ClientClosedError('the Kafka admin client is closed')
        return self._client

    def _unavailable(self, seen: int) -> bool:
        """Every broker is down, and still failing since the call began."""
        self._client.poll(0)
        return self._all_down and self._down_reports > seen

    def _raise_unavailable(self, what: str):
        raise errors.KafkaUnavailableError(
            'no Kafka broker reachable at %s (%s)'
            % (self.bootstrap_servers, what))

    def _wait(self, futures: collections.abc.Iterable, deadline: float,
              seen: int, what: str) -> None:
        pending = set(futures)
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise errors.KafkaTimeoutError(
                    'Kafka at %s did not answer in time (%s)'
                    % (self.bootstrap_servers, what))
            done, pending = self._runtime.wait_futures(
                pending, min(remaining, _SLICE))
            if pending and self._unavailable(seen):
                self._raise_unavailable(what)

    def _call(self, start, what: str, deadline: float):
        """Run ``start(request_timeout)`` until it answers or the deadline.

        ``start`` issues the request and returns its futures (a dict).
        Retriable errors (a coordinator still loading, a leader moving)
        are retried; others raise as they are.
        """
        client = self._client_or_raise()
        seen = self._down_reports
        while True:
            remaining = max(0.001, deadline - time.monotonic())
            futures = start(client, remaining)
            self._wait(futures.values(), deadline, seen, what)
            failure = _retriable_failure(futures.values())
            if failure is None:
                self._all_down = False
                return futures
            if time.monotonic() + _RETRY_PAUSE >= deadline:
                raise errors.KafkaTimeoutError(
                    'Kafka at %s: %s (%s)' % (self.bootstrap_servers,
                                              failure.str(), what))
            self._runtime.sleep(_RETRY_PAUSE)

    # -- topics -------------------------------------------------------------

    def topics(self, timeout: float | None = None
               ) -> dict[str, dict[int, PartitionInfo]]:
        """Every topic of the cluster: name -> {partition id -> info}."""
        with self._lock:
            metadata = self._metadata(self._deadline(timeout))
        return {name: {p.id: PartitionInfo(p.id, p.leader, list(p.replicas),
                                           list(p.isrs), p.error)
                       for p in topic.partitions.values()}
                for name, topic in metadata.topics.items()
                if topic.error is None or topic.error.code() !=
                confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART}

    def _metadata(self, deadline: float):
        # All topics at once: asking for one by name may create it on a
        # broker with auto.create.topics.enable.
        client = self._client_or_raise()
        return self._ask(lambda timeout: client.list_topics(timeout=timeout),
                         'metadata', deadline, lambda: client.poll(0))

    def _ask(self, ask, what: str, deadline: float, serve):
        """``ask(timeout)`` until it answers or ``deadline``.

        Short first tries notice a dead cluster early; doubling them lets a
        slow answer arrive. Timeouts, retriable errors and brokers down are
        tried again; ``serve()`` serves the client's error reports, and
        every broker down since the call began raises
        ``KafkaUnavailableError``. Any other error raises
        ``KafkaClientError``.
        """
        seen = self._down_reports
        attempt = _SLICE
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise errors.KafkaTimeoutError(
                    'Kafka at %s did not answer in time (%s)'
                    % (self.bootstrap_servers, what))
            try:
                answer = self._runtime.call(ask, min(remaining, attempt))
            except confluent_kafka.KafkaException as exc:
                err = exc.args[0]
                if not err.retriable() and err.code() not in _DOWN + (
                        confluent_kafka.KafkaError._TIMED_OUT,):
                    raise errors.KafkaClientError(
                        'Kafka at %s: %s: %s' % (self.bootstrap_servers,
                                                 what, err.str())) from None
                serve()
                if self._all_down and self._down_reports > seen:
                    self._raise_unavailable(what)
                attempt *= 2
                continue
            self._all_down = False
            return answer

    def topic_exists(self, topic: str, timeout: float | None = None) -> bool:
        return not self.missing_topics([topic], timeout)

    def missing_topics(self, topics: collections.abc.Iterable[str],
                       timeout: float | None = None) -> list[str]:
        """The topics of ``topics`` that Kafka does not have, in order."""
        known = self.topics(timeout)
        return [t for t in topics if t not in known]

    def partitions(self, topic: str, timeout: float | None = None
                   ) -> list[int]:
        """The partition ids of ``topic``, sorted.

        :raises UnknownTopicError: Kafka has no such topic.
        """
        found = self.topics(timeout).get(topic)
        if found is None:
            raise errors.UnknownTopicError('Kafka has no topic %r' % (topic,))
        return sorted(found)

    # -- offsets ------------------------------------------------------------

    def list_offsets(self, requests: OffsetRequests,
                     timeout: float | None = None) -> OffsetAnswers:
        """Offsets for ``{(topic, partition): spec}``, in one round.

        ``spec`` is :data:`LATEST` (the next offset to be written, the high
        watermark), :data:`EARLIEST` (the first available) or a timestamp
        in ms (the first offset whose timestamp is at or after it; the
        high watermark when none is). A partition Kafka does not have gets
        its error instead of an offset.
        """
        specs = {}
        for (topic, partition), spec in requests.items():
            if not isinstance(spec, int) or isinstance(spec, bool) or \
                    spec < EARLIEST:
                raise errors.ConfigurationError(
                    'offset spec for %s[%s] must be -1 (latest), -2 '
                    '(earliest) or a timestamp in ms, got %r'
                    % (topic, partition, spec))
            specs[confluent_kafka.TopicPartition(topic, partition)] = (
                kafka_admin.OffsetSpec.latest() if spec == LATEST else
                kafka_admin.OffsetSpec.earliest() if spec == EARLIEST else
                kafka_admin.OffsetSpec.for_timestamp(spec))
        if not specs:
            return {}
        deadline = self._deadline(timeout)
        with self._lock:
            # librdkafka fails the whole request, with one vague error,
            # when none of its partitions exists: those are answered here.
            known = self._metadata(deadline).topics
            answers: OffsetAnswers = {}
            for tp in list(specs):
                topic = known.get(tp.topic)
                if topic is None or tp.partition not in topic.partitions:
                    del specs[tp]
                    answers[(tp.topic, tp.partition)] = _UNKNOWN
            if not specs:
                return answers
            futures = self._call(
                lambda client, left: client.list_offsets(
                    specs, request_timeout=left),
                'list offsets', deadline)
            answers.update((((tp.topic, tp.partition),
                             _offset_or_error(future))
                            for tp, future in futures.items()))
            past_end = {key: LATEST for key, offset in answers.items()
                        if offset == -1 and requests[key] >= 0}
        if past_end:
            answers.update(self.list_offsets(
                past_end, max(0.001, deadline - time.monotonic())))
        return answers

    def watermarks(self, topic: str,
                   partitions: collections.abc.Iterable[int] | None = None,
                   timeout: float | None = None) -> dict[int, Watermarks]:
        """{partition: (first available, next to be written)} of ``topic``.

        :raises UnknownTopicError: no such topic or partition.
        """
        deadline = self._deadline(timeout)
        if partitions is None:
            partitions = self.partitions(topic, deadline - time.monotonic())
        bounds = self.log_bounds([(topic, p) for p in partitions],
                                 max(0.001, deadline - time.monotonic()))
        return {p: marks for (_, p), marks in bounds.items()}

    def log_bounds(self, keys: collections.abc.Iterable[tuple[str, int]],
                   timeout: float | None = None
                   ) -> dict[tuple[str, int], Watermarks]:
        """{(topic, partition): (first available, next to be written)}.

        :raises UnknownTopicError: no such topic or partition.
        """
        deadline = self._deadline(timeout)
        keys = list(keys)
        low = self._offsets({k: EARLIEST for k in keys}, deadline)
        high = self._offsets({k: LATEST for k in keys}, deadline)
        return {k: Watermarks(low[k], high[k]) for k in keys}

    def offsets_for_time(self, topic: str, timestamp_ms: int,
                         partitions: collections.abc.Iterable[int] | None
                         = None, timeout: float | None = None
                         ) -> dict[int, int]:
        """{partition: first offset at or after ``timestamp_ms``}.

        A partition with nothing that recent answers its high watermark.
        """
        if not isinstance(timestamp_ms, int) or timestamp_ms < 0:
            raise errors.ConfigurationError(
                'timestamp_ms must be a non-negative int, got %r'
                % (timestamp_ms,))
        deadline = self._deadline(timeout)
        if partitions is None:
            partitions = self.partitions(topic, deadline - time.monotonic())
        found = self._offsets({(topic, p): timestamp_ms for p in partitions},
                              deadline)
        return {p: offset for (_, p), offset in found.items()}

    def _offsets(self, requests, deadline: float) -> dict:
        answers = self.list_offsets(requests, max(0.001, deadline -
                                                  time.monotonic()))
        for (topic, partition), answer in answers.items():
            if isinstance(answer, confluent_kafka.KafkaError):
                raise _unknown_or_failed(topic, partition, answer)
        return answers

    # -- groups -------------------------------------------------------------

    def committed_offsets(self, group: str, topic: str | None = None,
                          partitions: collections.abc.Iterable[int] | None
                          = None, timeout: float | None = None
                          ) -> dict[tuple[str, int], int | None]:
        """The group's committed offsets: {(topic, partition): offset}.

        Without ``topic``: every partition the group committed in. With it:
        each partition of the topic (or of ``partitions``), None where the
        group committed nothing. Does not join the group. An unknown group
        has committed nothing.
        """
        group = kafka_config.check_group_id(group)
        deadline = self._deadline(timeout)
        if topic is not None:
            if partitions is None:
                partitions = self.partitions(topic,
                                             deadline - time.monotonic())
            wanted = [(topic, p) for p in partitions]
        else:
            # Kafka's own topics (__consumer_offsets...) are left out.
            wanted = [(name, p) for name, found in
                      self.topics(deadline - time.monotonic()).items()
                      if not name.startswith('__') for p in found]
        if not wanted:
            return {}
        offsets = self._committed(group, wanted, deadline)
        if topic is None:
            offsets = {k: v for k, v in offsets.items() if v is not None}
        return offsets

    def _group_client(self, group: str, **extra: typing.Any
                      ) -> confluent_kafka.Consumer:
        # A consumer that never subscribes reads and writes the group's
        # offsets and never joins. Not the admin API's offset calls:
        # librdkafka crashes the process when its coordinator answers
        # NOT_COORDINATOR, as one does while the cluster restarts
        # (librdkafka issue 5040).
        config = dict(self._config)
        config.update({'group.id': group, 'enable.auto.commit': False},
                      **extra)
        return _client.create(confluent_kafka.Consumer, config)

    def _committed(self, group: str, wanted: list[tuple[str, int]],
                   deadline: float) -> dict[tuple[str, int], int | None]:
        what = 'committed offsets of group %s' % group
        reader = self._group_client(group)
        partitions = [confluent_kafka.TopicPartition(*key) for key in wanted]
        try:
            answer = self._ask(
                lambda timeout: reader.committed(partitions, timeout=timeout),
                what, deadline, lambda: reader.poll(0))
        finally:
            # Leaving may wait on the coordinator (confluent-kafka 2.8:
            # half a second): not on a green hub.
            self._runtime.call(reader.close)
        failed = [tp for tp in answer if tp.error is not None]
        if failed:
            raise errors.KafkaClientError('%s: %s[%d]: %s' % (
                what, failed[0].topic, failed[0].partition,
                failed[0].error.str()))
        return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0
                                           else None)
                for tp in answer}

    def group_members(self, group: str, timeout: float | None = None
                      ) -> list[GroupMember]:
        """The group's live members: [] for an empty or unknown group."""
        group = kafka_config.check_group_id(group)
        deadline = self._deadline(timeout)
        with self._lock:
            futures = self._call(
                lambda client, left: client.describe_consumer_groups(
                    [group], request_timeout=left),
                'members of group %s' % group, deadline)
        try:
            described = futures[group].result()
        except confluent_kafka.KafkaException as exc:
            raise errors.KafkaClientError('members of group %s: %s' % (
                group, exc.args[0].str())) from None
        return [GroupMember(m.member_id, m.client_id, m.host)
                for m in described.members]

    def commit_offsets(self, group: str,
                       offsets: collections.abc.Mapping[tuple[str, int], int],
                       timeout: float | None = None) -> None:
        """Commit ``{(topic, partition): offset}`` as ``group``'s offsets.

        Without joining the group: Kafka takes such a commit only while
        the group has no live member, and refuses it otherwise.

        :raises CommitFailedError: Kafka refused the commit; its
            ``partitions`` name each refused partition and the error.
        """
        group = kafka_config.check_group_id(group)
        for (topic, partition), offset in offsets.items():
            if not isinstance(offset, int) or isinstance(offset, bool) or \
                    offset < 0:
                raise errors.ConfigurationError(
                    'offset for %s[%s] must be a non-negative int, got %r'
                    % (topic, partition, offset))
        if not offsets:
            return
        deadline = self._deadline(timeout)
        answers: list = []
        what = 'commit of group %s' % group
        with self._lock:
            seen = self._down_reports
            writer = self._group_client(
                group, on_commit=lambda err, tps: answers.append((err, tps)))
            try:
                # Asynchronous, so that the wait keeps its deadline and
                # notices a cluster that went away.
                writer.commit(offsets=[
                    confluent_kafka.TopicPartition(topic, partition, offset)
                    for (topic, partition), offset in offsets.items()],
                    asynchronous=True)
                while not answers:
                    if time.monotonic() >= deadline:
                        raise errors.KafkaTimeoutError(
                            'Kafka at %s did not answer in time (%s)'
                            % (self.bootstrap_servers, what))
                    self._runtime.poll(writer.poll, _SLICE)
                    if self._all_down and self._down_reports > seen:
                        self._raise_unavailable(what)
            finally:
                self._runtime.call(writer.close)
        err, partitions = answers[0]
        failed = [(tp.topic, tp.partition, tp.offset, tp.error)
                  for tp in partitions or () if tp.error is not None]
        if err is not None or failed:
            raise errors.CommitFailedError(
                '%s refused: %s' % (what, (err or failed[0][3]).str()),
                failed)

    def migrate_zookeeper_offsets(
            self, group: str, zookeeper: str,
            topics: collections.abc.Iterable[str] | None = None,
            dry_run: bool = False, force: bool = False,
            reverse: bool = False, timeout: float | None = None,
            partitioner_paths: collections.abc.Iterable[str] = ()
    ) -> 'upgrade.Migration':
        """Move the old client's offsets of ``group`` out of ZooKeeper.

        Reads ``/consumers/<group>/offsets`` below ``zookeeper``
        (``HOST:PORT[/chroot]``, the brokers' ``zookeeper.connect``), of
        ``topics`` or of every topic the group has there, checks each
        offset against its partition's log, and commits them as the
        group's Kafka offsets without joining it. ``reverse=True`` writes
        the group's Kafka offsets back into ZooKeeper (a rollback).
        ``dry_run`` plans and writes nothing. ``partitioner_paths`` are
        the old services' ``zookeeper_path`` values: an old instance still
        holding one refuses the migration. See
        :mod:`monasca_common.kafka.upgrade` for the rules.

        :returns: the :class:`~monasca_common.kafka.upgrade.Migration`,
            one row per partition.
        :raises MigrationRefusedError: the group has live members (in
            Kafka, or old instances at ``partitioner_paths``), an offset is
            past its log end, or the target holds another offset (``force``
            overrides that one); nothing was written.
        :raises UnknownGroupError: the source holds no offset of the group.
        :raises ZooKeeperUnavailableError: ZooKeeper did not answer.
        :raises ConfigurationError: a malformed address or chroot.
        """
        from monasca_common.kafka import upgrade
        return upgrade.migrate(self, group, zookeeper, topics, dry_run,
                               force, reverse, timeout, partitioner_paths)

    def group_protocols(self, timeout: float | None = None) -> set[str]:
        """The group protocols every broker of the cluster offers.

        Each broker's ``group.coordinator.rebalance.protocols``; a broker
        that does not have the setting (before Kafka 3.7) offers
        ``classic`` only. Any coordinator may serve a group, so a protocol
        counts only when every broker offers it.
        """
        deadline = self._deadline(timeout)
        with self._lock:
            brokers = sorted(self._metadata(deadline).brokers)
            resources = [kafka_admin.ConfigResource(
                kafka_admin.ResourceType.BROKER, str(broker))
                for broker in brokers]
            futures = self._call(
                lambda client, left: client.describe_configs(
                    resources, request_timeout=left),
                'broker configurations', deadline)
        offered: set[str] | None = None
        for resource, future in futures.items():
            try:
                entries = future.result()
            except confluent_kafka.KafkaException as exc:
                raise errors.KafkaClientError(
                    'configuration of broker %s: %s' % (
                        resource.name, exc.args[0].str())) from None
            entry = entries.get('group.coordinator.rebalance.protocols')
            value = getattr(entry, 'value', None) or 'classic'
            protocols = {p.strip() for p in value.split(',') if p.strip()}
            offered = protocols if offered is None else offered & protocols
        return offered or {'classic'}

    def group_lag(self, group: str, topic: str | None = None,
                  timeout: float | None = None) -> list[PartitionLag]:
        """Per partition: committed offset, watermarks and lag, sorted.

        Without ``topic``: the topics the group committed in (an unknown
        group gives an empty list). With it: every partition of the topic.
        """
        deadline = self._deadline(timeout)
        committed = self.committed_offsets(
            group, topic, timeout=max(0.001, deadline - time.monotonic()))
        bounds = self.log_bounds(sorted(committed),
                                 max(0.001, deadline - time.monotonic()))
        rows = []
        for key, (start, end) in bounds.items():
            offset = committed[key]
            # A committed offset below the start was deleted by retention:
            # the group resumes at the start.
            position = start if offset is None else max(offset, start)
            rows.append(PartitionLag(key[0], key[1], offset, start, end,
                                     max(0, end - position)))
        return rows


# What a client needs to reach the cluster, of a consumer's configuration.
_CONNECTION = ('bootstrap.servers', 'security.protocol', 'sasl.', 'ssl.',
               'socket.', 'broker.', 'client.id', 'api.version.',
               'enable.ssl.', 'enable.sasl.', 'https.')


def admin_for(config: collections.abc.Mapping,
              timeout: float = 10.0) -> KafkaAdmin:
    """An admin client reaching Kafka as the client of ``config`` does."""
    connection = {key: value for key, value in config.items()
                  if key.startswith(_CONNECTION)}
    servers = connection.pop('bootstrap.servers')
    return KafkaAdmin(servers, timeout, **connection)


def offered_group_protocols(config: collections.abc.Mapping,
                            timeout: float = 10.0) -> set[str] | None:
    """The group protocols the cluster of a client ``config`` offers.

    None when it cannot be asked (unreachable, not authorized to describe
    the brokers' configuration); the cause is logged.
    """
    try:
        with admin_for(config, timeout) as admin:
            return admin.group_protocols()
    except errors.KafkaClientError as exc:
        LOG.warning('Kafka: could not ask the brokers which group '
                    'protocols they offer: %s', exc)
        return None


def _retriable_failure(futures) -> confluent_kafka.KafkaError | None:
    for future in futures:
        exc = future.exception()
        if isinstance(exc, confluent_kafka.KafkaException) and \
                exc.args[0].retriable():
            return exc.args[0]
    return None


def _offset_or_error(future) -> int | confluent_kafka.KafkaError:
    exc = future.exception()
    if exc is None:
        return future.result().offset
    if isinstance(exc, confluent_kafka.KafkaException):
        return exc.args[0]
    raise exc


def _unknown_or_failed(topic: str, partition: int,
                       err: confluent_kafka.KafkaError) -> Exception:
    if err.code() in (confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART,
                      confluent_kafka.KafkaError._UNKNOWN_PARTITION,
                      confluent_kafka.KafkaError._UNKNOWN_TOPIC):
        return errors.UnknownTopicError(
            'Kafka has no partition %s[%d]: %s' % (topic, partition,
                                                   err.str()))
    return errors.KafkaClientError('offsets of %s[%d]: %s'
                                   % (topic, partition, err.str()))
