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

"""``monasca-kafka stats``: the clients' metrics, live, on a demo stream.

A producer publishes at a steady rate while a consumer of one group reads,
a little slower if asked (so lag shows), and commits every second; their
:class:`~monasca_common.confluent_kafka.metrics.Snapshot` is shown each
refresh: a live table with rich on a terminal, else plain text, or one JSON
line per client with ``--json``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import typing

from monasca_common.cli import bench
from monasca_common.confluent_kafka import consumer as kafka_consumer
from monasca_common.confluent_kafka import metrics
from monasca_common.confluent_kafka import producer as kafka_producer

# Statistics every second: the view refreshes about as often.
_STATISTICS_MS = 1000


class Demo:
    """A producer and a consumer on a new topic, in two threads.

    :param rate: messages per second the producer publishes.
    :param read_rate: messages per second the consumer takes at most
        (0: as fast as they come).
    """

    def __init__(self, servers: str, mock: bool, rate: int,
                 read_rate: int = 0, size: int = 200, partitions: int = 4):
        self.topic = bench._topic('stats')
        if not mock:
            bench._create_topic(servers, self.topic, partitions)
        self.rate = max(1, rate)
        self.read_rate = read_rate
        self.payload = b'x' * size
        statistics: dict[str, typing.Any] = {
            'statistics.interval.ms': _STATISTICS_MS}
        self.producer = kafka_producer.KafkaProducer(
            servers, **dict(statistics, **{'client.id':
                                           'stats-demo-producer'}))
        self.consumer = kafka_consumer.KafkaConsumer(
            servers, 'monasca-kafka-stats', self.topic,
            client_id='stats-demo-consumer', **statistics)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._publish, daemon=True),
                         threading.Thread(target=self._read, daemon=True)]

    def start(self) -> None:
        # The topic exists before the consumer subscribes to it.
        self.producer.publish(self.topic, self.payload, sync=True,
                              timeout=30)
        for thread in self._threads:
            thread.start()

    def _publish(self) -> None:
        # Ten calls a second, each a list: the way an API publishes.
        batch = max(1, self.rate // 10)
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.producer.publish(self.topic, [self.payload] * batch)
            next_at += batch / self.rate
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _read(self) -> None:
        last_commit = time.monotonic()
        taken = 0
        started = time.monotonic()
        for _ in self.consumer:
            taken += 1
            now = time.monotonic()
            if now - last_commit >= 1.0:
                self.consumer.commit()
                last_commit = now
            if self.read_rate:
                ahead = taken / self.read_rate - (now - started)
                if ahead > 0:
                    time.sleep(ahead)
            if self._stop.is_set():
                break

    def snapshots(self) -> list[metrics.Snapshot]:
        return [self.producer.metrics(), self.consumer.metrics()]

    def stop(self) -> None:
        self._stop.set()
        self.consumer.stop()
        for thread in self._threads:
            thread.join(10)
        self.producer.close()
        self.consumer.close()


def rows(snapshot: metrics.Snapshot) -> typing.Iterator[tuple[str, str]]:
    """(name, value) lines of a snapshot, client-wide ones first."""
    for name, value in sorted(snapshot.values.items()):
        yield name, _shown(value)
    for (topic, partition), figures in sorted(snapshot.partitions.items()):
        for name, value in sorted(figures.items()):
            yield '%s  %s[%d]' % (name, topic, partition), _shown(value)
    for broker, figures in sorted(snapshot.brokers.items()):
        for name, value in sorted(figures.items()):
            yield '%s  %s' % (name, broker), _shown(value)


def _shown(value: float) -> str:
    if isinstance(value, float):
        return '{:,.2f}'.format(value)
    return '{:,}'.format(value)


def _rich_view(snapshots: list[metrics.Snapshot], elapsed: float):
    from rich import table
    grid = table.Table.grid(padding=(0, 4))
    for snapshot in snapshots:
        part = table.Table(title='%s (%s)' % (snapshot.role,
                                              snapshot.client_id),
                           title_justify='left')
        part.add_column('metric')
        part.add_column('value', justify='right')
        for name, value in rows(snapshot):
            part.add_row(name, value)
        grid.add_row(part)
    outer = table.Table.grid()
    outer.add_row('monasca-kafka stats: %.0f s (Ctrl-C stops)' % elapsed)
    outer.add_row(grid)
    return outer


def _plain_view(snapshots: list[metrics.Snapshot], elapsed: float) -> str:
    lines = ['-- %.0f s' % elapsed]
    for snapshot in snapshots:
        lines.append('%s (%s)' % (snapshot.role, snapshot.client_id))
        lines.extend('  %-48s %14s' % row for row in rows(snapshot))
    return '\n'.join(lines)


def show(demo: Demo, duration: float, refresh: float,
         as_json: bool = False) -> list[metrics.Snapshot]:
    """Show the demo's snapshots every ``refresh`` s for ``duration`` s.

    :param duration: 0 shows until Ctrl-C.
    :returns: the last snapshots.
    """
    started = time.monotonic()
    live = None
    if not as_json and sys.stdout.isatty():
        try:
            from rich import live as rich_live
            live = rich_live.Live(refresh_per_second=4)
        except ImportError:
            live = None
    snapshots = demo.snapshots()
    if live is not None:
        live.start()
    try:
        while True:
            elapsed = time.monotonic() - started
            snapshots = demo.snapshots()
            if as_json:
                for snapshot in snapshots:
                    print(json.dumps(dict(snapshot.as_dict(),
                                          elapsed=round(elapsed, 3))),
                          flush=True)
            elif live is not None:
                live.update(_rich_view(snapshots, elapsed))
            else:
                print(_plain_view(snapshots, elapsed), flush=True)
            if duration and elapsed >= duration:
                return snapshots
            time.sleep(refresh)
    except KeyboardInterrupt:
        return snapshots
    finally:
        if live is not None:
            live.stop()
