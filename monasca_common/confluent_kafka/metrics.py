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

"""A client's counters and librdkafka's statistics, as one snapshot.

Pure: no librdkafka call. The clients keep their own counters (delivered,
failed, consumed, commits, rebalances) whatever the configuration;
librdkafka's statistics (``statistics.interval.ms``, a JSON document every
interval) add what only librdkafka knows: bytes queued, messages awaiting
a broker's answer, retried requests, round trips and throttling per
broker, and each partition's end and committed offsets. A
:class:`Snapshot` holds both under documented names (see
``doc/source/metrics.rst``); :meth:`Snapshot.samples` names them as
Monasca metrics, ``kafka.client.<role>.<name>``.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import json
import time
import typing

Key = tuple[str, int]
Sample = tuple[str, float, dict[str, str]]

PREFIX = 'kafka.client'


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What a client is doing, at one moment.

    :ivar role: ``'producer'`` or ``'consumer'``.
    :ivar client_id: librdkafka's ``client.id``.
    :ivar values: client-wide figures by name, e.g. ``queue.messages``.
    :ivar partitions: per (topic, partition) figures, e.g. ``lag.messages``.
    :ivar brokers: per broker (``host:port/id``) figures, e.g.
        ``rtt.p99_ms``.
    :ivar statistics_age: seconds since librdkafka's last statistics
        report; None when there was none (statistics off, or not yet).
    """

    role: str
    client_id: str
    values: dict[str, float]
    partitions: dict[Key, dict[str, float]] = dataclasses.field(
        default_factory=dict)
    brokers: dict[str, dict[str, float]] = dataclasses.field(
        default_factory=dict)
    statistics_age: float | None = None

    def __getitem__(self, name: str) -> float:
        return self.values[name]

    def get(self, name: str, default: float | None = None) -> float | None:
        return self.values.get(name, default)

    def as_dict(self) -> dict:
        """The snapshot as JSON-ready data; partitions as ``topic[n]``."""
        return {'role': self.role, 'client_id': self.client_id,
                'values': dict(self.values),
                'partitions': {'%s[%d]' % key: dict(figures) for key, figures
                               in sorted(self.partitions.items())},
                'brokers': {name: dict(figures)
                            for name, figures in self.brokers.items()},
                'statistics_age': self.statistics_age}

    def samples(self, prefix: str = PREFIX) -> typing.Iterator[Sample]:
        """``(metric name, value, dimensions)`` for each figure."""
        base = '%s.%s.' % (prefix, self.role)
        for name, value in sorted(self.values.items()):
            yield base + name, value, {}
        for (topic, partition), values in sorted(self.partitions.items()):
            dimensions = {'topic': topic, 'partition': str(partition)}
            for name, value in sorted(values.items()):
                yield base + name, value, dimensions
        for broker, values in sorted(self.brokers.items()):
            for name, value in sorted(values.items()):
                yield base + 'broker.' + name, value, {'broker': broker}


class Statistics:
    """The last statistics report librdkafka gave a client.

    ``update`` runs on the thread that polls the client (``stats_cb``);
    readers on any thread get the parsed document as a whole, never half
    of one.
    """

    def __init__(self) -> None:
        self.document: dict | None = None
        self.received: float | None = None

    def update(self, text: str) -> dict | None:
        """Parse one report; None (and the last one kept) if unreadable."""
        try:
            document = json.loads(text)
        except ValueError:
            return None
        if not isinstance(document, dict):
            return None
        self.document, self.received = document, time.monotonic()
        return document

    def age(self, now: float | None = None) -> float | None:
        if self.received is None:
            return None
        return (time.monotonic() if now is None else now) - self.received


def partitions(document: dict | None) -> dict[Key, dict]:
    """The statistics of each real partition, by (topic, partition).

    librdkafka's internal "unassigned" partition (-1) is left out.
    """
    found: dict[Key, dict] = {}
    if not document:
        return found
    for topic, about in (document.get('topics') or {}).items():
        for number, state in ((about or {}).get('partitions') or {}).items():
            try:
                partition = int(number)
            except ValueError:
                continue
            if partition >= 0 and isinstance(state, dict):
                found[(topic, partition)] = state
    return found


def _brokers(document: dict) -> typing.Iterator[tuple[str, dict]]:
    """Real brokers (not bootstrap or coordinator stand-ins)."""
    for name, about in (document.get('brokers') or {}).items():
        if isinstance(about, dict) and about.get('nodeid', -1) >= 0 and \
                about.get('source') != 'logical':
            yield name, about


def broker_figures(document: dict | None) -> dict[str, dict[str, float]]:
    """Round trip (ms, p50 and p99) and throttling (ms) per broker.

    librdkafka measures them over its last statistics window; a broker
    with no request in that window has no figure.
    """
    figures: dict[str, dict[str, float]] = {}
    if not document:
        return figures
    for name, about in _brokers(document):
        values: dict[str, float] = {}
        rtt = about.get('rtt') or {}
        if rtt.get('cnt'):
            # librdkafka gives round trips in microseconds.
            values['rtt.p50_ms'] = rtt.get('p50', 0) / 1000.0
            values['rtt.p99_ms'] = rtt.get('p99', 0) / 1000.0
        throttle = about.get('throttle') or {}
        if throttle.get('cnt'):
            values['throttle.avg_ms'] = float(throttle.get('avg', 0))
            values['throttle.max_ms'] = float(throttle.get('max', 0))
        if values:
            figures[name] = values
    return figures


def producer_snapshot(client_id: str, counts: dict[str, int],
                      statistics: Statistics) -> Snapshot:
    """A producer's snapshot.

    :param counts: the producer's own counters: ``published``,
        ``delivered``, ``failed`` and ``pending`` (queued or in flight,
        not yet reported).
    """
    values: dict[str, float] = {
        'queue.messages': counts['pending'],
        'published.messages': counts['queued'],
        'delivered.messages': counts['delivered'],
        'failed.messages': counts['failed'],
    }
    document = statistics.document
    if document:
        values['queue.bytes'] = document.get('msg_size', 0)
        brokers = list(_brokers(document))
        values['inflight.messages'] = sum(
            about.get('waitresp_msg_cnt', 0) for _, about in brokers)
        values['retried.requests'] = sum(
            about.get('txretries', 0) for _, about in brokers)
    return Snapshot('producer', client_id, values, {},
                    broker_figures(document), statistics.age())


def lag(end: int | None, committed: int | None,
        low: int | None = None) -> int | None:
    """Messages from where the group resumes to the end of a partition.

    The group resumes at its committed offset, or, with nothing committed
    or a commit retention has deleted since, at the oldest message Kafka
    holds (``low``): the same reckoning as ``KafkaAdmin.group_lag``.
    """
    if end is None or end < 0:
        return None
    if low is not None and low < 0:
        low = None
    if committed is None or committed < 0:
        if low is None:
            return None
        position = low
    else:
        position = committed if low is None else max(committed, low)
    return max(0, end - position)


def offsets_from_statistics(document: dict | None,
                            assigned: collections.abc.Container[Key]
                            ) -> dict[Key, tuple[int, int, int]]:
    """(low, end, committed) of each assigned partition, per statistics."""
    found = {}
    for key, state in partitions(document).items():
        if key in assigned:
            found[key] = (state.get('lo_offset', -1),
                          state.get('hi_offset', -1),
                          state.get('committed_offset', -1))
    return found


def consumer_snapshot(client_id: str, counts: dict[str, float],
                      offsets: dict[Key, tuple[int, int, int]],
                      statistics: Statistics) -> Snapshot:
    """A consumer's snapshot.

    :param counts: the consumer's own figures: ``consumed``, ``buffered``,
        ``commits.done``, ``commits.failed``, ``undeliverable``,
        ``rebalances``, ``assigned`` and, once it committed,
        ``last_commit_age``.
    :param offsets: (low, end, committed) per assigned partition, from the
        statistics or from Kafka; -1 where unknown. The total lag is given
        only when every assigned partition's lag is known.
    """
    values: dict[str, float] = {
        'consumed.messages': counts['consumed'],
        'buffered.messages': counts['buffered'],
        'commits.done': counts['commits.done'],
        'commits.failed': counts['commits.failed'],
        'undeliverable.outputs': counts.get('undeliverable', 0),
        'rebalances': counts['rebalances'],
        'assigned.partitions': counts['assigned'],
    }
    if counts.get('last_commit_age') is not None:
        values['last_commit.age_seconds'] = counts['last_commit_age']
    per_partition: dict[Key, dict[str, float]] = {}
    total = 0
    known = 0
    for key, (low, end, committed) in offsets.items():
        behind = lag(end, committed, low)
        figures: dict[str, float] = {}
        if end is not None and end >= 0:
            figures['end.offset'] = end
        if committed is not None and committed >= 0:
            figures['committed.offset'] = committed
        if behind is not None:
            figures['lag.messages'] = behind
            total += behind
            known += 1
        per_partition[key] = figures
    # A total over part of the assignment would read as a small lag while
    # Kafka can not be asked: no total then, rather than a wrong one.
    if known == counts['assigned']:
        values['lag.messages'] = total
    return Snapshot('consumer', client_id, values, per_partition,
                    broker_figures(statistics.document), statistics.age())
