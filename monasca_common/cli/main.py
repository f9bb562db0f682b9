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

"""``monasca-kafka``: Kafka from the shell, through this library.

Produce, consume, check, show lag, benchmark, show the clients' metrics
live, and move the old client's offsets out of ZooKeeper
(``migrate-offsets``).

With no ``--bootstrap-servers``, ``bench`` runs on librdkafka's embedded
mock cluster, so it needs nothing but this package. ``--config-file`` reads
a service's configuration file, whose ``[kafka_client]`` section (security,
tuning) applies to every client the command builds; ``-X property=value``
adds librdkafka properties on top.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys

from monasca_common.cli import bench
from monasca_common import kafka


_COLUMNS = ('scenario', 'size', 'messages', 'seconds', 'msgs/s',
            'CPU us/msg', 'note')


def _cells(r: bench.Result) -> tuple[str, ...]:
    cpu = r.cpu_per_message
    return (r.scenario, '%d B' % r.size, str(r.messages),
            '%.2f' % r.seconds, '{:,.0f}'.format(r.rate),
            '-' if cpu is None else '%.2f' % cpu, r.note)


def ratio_lines(found: list[bench.Ratio]) -> list[str]:
    """The ratios as printed: CPU per message first, the one to quote."""
    lines = []
    for ratio in found:
        cpu = ratio.cpu
        lines.append('%-52s CPU/msg %s   msgs/s %.2fx (%.2f-%.2f)' % (
            '%s, %d B' % (ratio.label, ratio.size),
            '  -  ' if cpu is None else '%.2fx (%.2f-%.2f)' % (
                cpu.median, cpu.low, cpu.high),
            ratio.rate.median, ratio.rate.low, ratio.rate.high))
        if ratio.quoted.unclear:
            lines.append('    ^ its rounds spread wider than its distance '
                         'from 1: not a difference; add --rounds or '
                         '--seconds')
    return lines


def _progress_and_report():
    """Progress callback and table printer: rich when installed."""
    try:
        from rich import console
        from rich import progress
        from rich import table
    except ImportError:
        return _plain_progress, _plain_table
    out = console.Console(width=None if sys.stdout.isatty() else 150)
    bar = progress.Progress(progress.TextColumn('{task.description:40}'),
                            progress.BarColumn(),
                            progress.MofNCompleteColumn(),
                            progress.TimeElapsedColumn(),
                            console=out, transient=True)
    tasks = {}

    def on_progress(name, done, total):
        if not bar.live.is_started:
            bar.start()
        if name not in tasks:
            tasks[name] = bar.add_task(name, total=total)
        bar.update(tasks[name], completed=done, total=total)

    def report(rows, found):
        if bar.live.is_started:
            bar.stop()
        grid = table.Table(title='monasca-kafka bench')
        for column in _COLUMNS:
            grid.add_column(column, justify='left' if column in (
                'scenario', 'note') else 'right')
        for r in rows:
            grid.add_row(*_cells(r))
        out.print(grid)
        for line in ratio_lines(found):
            out.print(line, highlight=False)
    return on_progress, report


def _plain_progress(name, done, total):
    pass


def _plain_table(rows, found):
    line = '%-42s %7s %9s %8s %12s %10s  %s'
    print(line % _COLUMNS)
    for r in rows:
        print(line % _cells(r))
    for text in ratio_lines(found):
        print(text)


def _plot(rows, path):
    try:
        from matplotlib import pyplot
    except ImportError:
        print('--plot needs matplotlib: pip install matplotlib',
              file=sys.stderr)
        return False
    rows = [r for r in rows if not r.scenario.startswith('end-to-end')]
    labels = ['%s (%d B)' % (r.scenario, r.size) for r in rows]
    sampled = [r for r in rows if r.queue_depth]
    figure, axes = pyplot.subplots(
        1, 3 if sampled else 2, squeeze=False,
        figsize=(24 if sampled else 16, 0.4 * len(rows) + 2))
    rates, cpu = axes[0][0], axes[0][1]
    rates.barh(labels, [r.rate for r in rows])
    rates.set_xlabel('messages per second (median round)')
    rates.invert_yaxis()
    cpu.barh(labels, [r.cpu_per_message or 0 for r in rows], color='tab:red')
    cpu.set_xlabel('CPU microseconds per message (user+sys)')
    cpu.set_yticks(range(len(rows)), [''] * len(rows))
    cpu.invert_yaxis()
    if sampled:
        depth = axes[0][2]
        for r in sampled:
            depth.plot([t for t, _ in r.queue_depth],
                       [n for _, n in r.queue_depth],
                       label='%s (%d B)' % (r.scenario, r.size))
        depth.set_xlabel('seconds since the first publish')
        depth.set_ylabel('messages queued, not yet acknowledged')
        depth.set_title('producer queue depth')
        depth.legend(fontsize='small')
    figure.tight_layout()
    figure.savefig(path)
    return True


def _write_json(path, servers, args, results, found):
    document = {
        'broker': servers, 'seconds': args.seconds, 'rounds': args.rounds,
        'cpus': os.cpu_count(),
        'results': [dict(dataclasses.asdict(r), rate=r.rate,
                         cpu_per_message_us=r.cpu_per_message)
                    for r in results],
        'ratios': [ratio.as_dict() for ratio in found],
    }
    with open(path, 'w') as out:
        json.dump(document, out, indent=1)


@contextlib.contextmanager
def _cluster(servers: str | None, in_process: bool = True):
    """``servers``, or librdkafka's embedded mock cluster if None."""
    if servers:
        yield servers, None
        return
    mock = bench.MockCluster(in_process)
    try:
        yield mock.bootstrap_servers, mock
    finally:
        mock.close()


def _bench_formats(args) -> int:
    from monasca_common.cli import formats
    if not args.bootstrap_servers:
        print('--format needs a broker (-b): the mock cluster keeps only '
              'about 5 MiB per partition')
        return 2
    names = args.format.split(',')
    unknown = set(names) - set(formats.FORMATS)
    if unknown:
        print('unknown format %s; known: %s' % (
            ', '.join(sorted(unknown)), ', '.join(formats.FORMATS)))
        return 2
    print('%d metric envelopes, one partition, Kafka at %s'
          % (args.messages, args.bootstrap_servers))
    print(formats.HEADER)
    formats.run(args.bootstrap_servers, args.messages, names,
                args.compression.split(','),
                on_row=lambda row: print(formats.line(row), flush=True))
    return 0


def cmd_bench(args) -> int:
    if args.format:
        return _bench_formats(args)
    on_progress, report = _progress_and_report()
    # On the embedded mock, a first run is short: 100 B, 1 s a scenario;
    # --full (or a broker) sweeps 100 B and 1 KB, 2 s each.
    quick = not (args.bootstrap_servers or args.full)
    if args.sizes is None:
        args.sizes = [100] if quick else [100, 1024]
    if args.seconds is None:
        args.seconds = 1.0 if quick else 2.0
    with _cluster(args.bootstrap_servers,
                  not args.mock_process) as (servers, cluster):
        mock = cluster is not None
        runner = bench.Bench(servers, args.messages, mock, on_progress,
                             rounds=args.rounds, seconds=args.seconds,
                             sample_queue=bool(args.plot),
                             renew=cluster.renew if mock else None,
                             payload=args.payload)
        if args.scale:
            from monasca_common.cli import scale
            results = scale.run(runner, args.sizes[0],
                                max(args.messages, 1000000))
            if mock:
                print('the consumer group figures need a broker (-b)')
        else:
            results = runner.run(sizes=args.sizes,
                                 latency=not args.no_latency)
    print('broker: %s; %s payloads' % (
        ('librdkafka mock cluster' + (' in its own process'
                                      if args.mock_process else ''))
        if mock else servers, args.payload))
    rows = bench.summary(results)
    found = bench.ratios(results)
    report(rows, found)
    if args.json:
        _write_json(args.json, 'mock' if mock else servers, args, results,
                    found)
        print('figures written to %s' % args.json)
    if args.plot and _plot(rows, args.plot):
        print('plot written to %s' % args.plot)
    return 0


def cmd_stats(args) -> int:
    from monasca_common.cli import stats
    with _cluster(args.bootstrap_servers) as (servers, cluster):
        demo = stats.Demo(servers, cluster is not None, args.rate,
                          args.read_rate)
        demo.start()
        try:
            stats.show(demo, args.duration, args.refresh, args.json)
        finally:
            demo.stop()
    return 0


def cmd_produce(args) -> int:
    lines = args.message or [line.rstrip('\n') for line in sys.stdin]
    with kafka.KafkaProducer(args.bootstrap_servers) as producer:
        result = producer.publish(args.topic, lines, key=args.key,
                                  sync=True, timeout=args.timeout)
    print('%d delivered to %s' % (result.delivered, args.topic))
    return 0


def cmd_consume(args) -> int:
    consumer = kafka.KafkaConsumer(args.bootstrap_servers, args.group,
                                   args.topic)
    try:
        count = 0
        while args.count is None or count < args.count:
            batch = consumer.consume_batch(
                min(500, (args.count or 500) - count), args.timeout)
            if not batch:
                break
            for message in batch:
                value = message.value()
                print(value.decode('utf-8', 'replace') if value else '')
            count += len(batch)
            if args.commit:
                consumer.commit()
    finally:
        consumer.close()
    return 0


def cmd_healthcheck(args) -> int:
    from oslo_config import cfg

    from monasca_common.healthcheck.checks import kafka_check
    from monasca_common.healthcheck import opts
    conf = cfg.ConfigOpts()
    opts.register_opts(conf)
    conf.set_override('kafka_url', args.bootstrap_servers,
                      'kafka_healthcheck')
    conf.set_override('kafka_topics', args.topic or [], 'kafka_healthcheck')
    conf.set_override('timeout', args.timeout, 'kafka_healthcheck')
    healthy, message = kafka_check.KafkaHealthCheck(conf).healthcheck()
    print(message)
    return 0 if healthy else 1


def cmd_lag(args) -> int:
    from monasca_common.kafka import admin
    with admin.KafkaAdmin(args.bootstrap_servers, args.timeout) as kafka:
        rows = kafka.group_lag(args.group, args.topic)
    if args.json:
        print(json.dumps([dict(row._asdict(), group=args.group)
                          for row in rows], indent=2))
    else:
        line = '%-24s %-24s %9s %14s %14s %10s'
        print(line % ('GROUP', 'TOPIC', 'PARTITION', 'CURRENT-OFFSET',
                      'LOG-END-OFFSET', 'LAG'))
        for row in rows:
            print(line % (args.group, row.topic, row.partition,
                          '-' if row.committed is None else row.committed,
                          row.end, row.lag))
        if rows:
            print('total lag: %d' % sum(row.lag for row in rows))
    if not rows:
        print('group %s has committed no offsets%s' % (
            args.group, '' if args.topic is None else ' in %s' % args.topic),
            file=sys.stderr)
        return 1
    return 0


def cmd_migrate_offsets(args) -> int:
    # Exit 0: moved (or, dry, would be); 1: refused; 2 (from main):
    # unreachable or bad input.
    from monasca_common.confluent_kafka import errors
    from monasca_common.kafka import admin
    with admin.KafkaAdmin(args.bootstrap_servers, args.timeout) as kafka:
        try:
            migration = kafka.migrate_zookeeper_offsets(
                args.group, args.zookeeper, args.topic or None,
                dry_run=args.dry_run, force=args.force, reverse=args.reverse,
                partitioner_paths=args.partitioner_path)
        except errors.MigrationRefusedError as exc:
            migration = exc.migration
    if args.json:
        print(json.dumps(migration.as_dict(), indent=2))
    else:
        _print_migration(migration)
    return 1 if migration.refused else 0


def _print_migration(migration) -> None:
    line = '%-24s %9s %10s %10s %10s %10s  %-14s %s'
    print(line % ('TOPIC', 'PARTITION', 'ZOOKEEPER', 'KAFKA', 'LOG-START',
                  'LOG-END', 'ACTION', 'NOTE'))
    for row in migration.rows:
        print(line % tuple(
            ['-' if v is None else v for v in row[:6]] +
            ['%s %d' % (row.action, row.offset) if row.offset is not None
             else row.action, row.reason]))
    source, target = (('ZooKeeper', 'Kafka') if migration.direction ==
                      'zookeeper-to-kafka' else ('Kafka', 'ZooKeeper'))
    count = len(migration.writes)
    if migration.refused:
        print('refused, nothing written:', file=sys.stderr)
        for reason in migration.reasons():
            print('  ' + reason, file=sys.stderr)
    elif migration.dry_run:
        print('dry run: would write %d offset(s) of group %s from %s to %s'
              % (count, migration.group, source, target))
    else:
        print('wrote %d offset(s) of group %s from %s to %s'
              % (count, migration.group, source, target))


def apply_client_settings(config_files: list[str],
                          properties: list[str]) -> None:
    """Apply ``[kafka_client]`` and ``-X`` properties to every client.

    ``[kafka_client]`` comes from ``config_files``, then ``properties``
    (``name=value``) go on top, for every client built from now on.

    :raises ConfigurationError: a file is missing or holds a bad value, or
        a property is not ``name=value``.
    """
    from oslo_config import cfg

    from monasca_common.confluent_kafka import errors
    from monasca_common.confluent_kafka import opts
    opts.register_opts(cfg.CONF)
    try:
        if config_files:
            cfg.CONF(args=[], project='monasca-kafka',
                     default_config_files=config_files)
        extra = dict(cfg.CONF.kafka_client.librdkafka_properties)
        # Read every option now: a bad value fails here, named.
        for option in opts.client_opts:
            getattr(cfg.CONF.kafka_client, option.name)
    except cfg.Error as exc:
        raise errors.ConfigurationError(str(exc)) from None
    for item in properties:
        name, sep, value = item.partition('=')
        if not sep or not name.strip():
            raise errors.ConfigurationError(
                '-X takes property=value, got %r' % (item,))
        extra[name.strip()] = value
    cfg.CONF.set_override('librdkafka_properties', extra, 'kafka_client')


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog='monasca-kafka',
                                  description=__doc__.split('\n')[0])
    top.add_argument('-v', '--verbose', action='store_true')
    top.add_argument('--config-file', action='append', default=[],
                     help='a configuration file whose [kafka_client] '
                          'section applies to every client (repeatable)')
    top.add_argument('-X', dest='properties', action='append', default=[],
                     metavar='PROPERTY=VALUE',
                     help='a librdkafka property for every client '
                          '(repeatable)')
    sub = top.add_subparsers(dest='command', required=True)

    b = sub.add_parser('bench', help='measure throughput and latency')
    b.add_argument('--bootstrap-servers', '-b',
                   help='a real broker (default: embedded mock cluster)')
    b.add_argument('--messages', '-n', type=int, default=100000,
                   help='messages the consumer scenarios read per pass, '
                        'on a broker (the mock cluster holds what it can)')
    b.add_argument('--seconds', type=float,
                   help='each throughput scenario sends or reads this '
                        'long at least (default 2; 1 on the mock cluster '
                        'without --full)')
    b.add_argument('--sizes', type=lambda s: [int(x) for x in s.split(',')],
                   help='message sizes, e.g. 100,1024 (default; 100 on the '
                        'mock cluster without --full)')
    b.add_argument('--full', action='store_true',
                   help='on the mock cluster too: both sizes, 2 s a '
                        'scenario (about 4 minutes)')
    b.add_argument('--rounds', type=int, default=3,
                   help='runs of the scenarios behind the ratios; each '
                        'ratio gives its median and spread over them')
    b.add_argument('--scale', action='store_true',
                   help='instead: one producer shared by 1, 2 and 4 '
                        'threads, and a consumer group of 1, 2 and 4 '
                        'processes on 8 partitions (needs -b)')
    b.add_argument('--mock-process', action='store_true',
                   help='run the mock cluster in a process of its own, so '
                        'that only the client works in this one')
    b.add_argument('--payload', choices=('str', 'bytes'), default='str',
                   help='what the producer scenarios publish (default: '
                        'str, as the services do)')
    b.add_argument('--format',
                   help='instead: metric envelopes in these formats '
                        '(json,orjson,avro), each compressed as '
                        '--compression says: bytes, msgs/s and CPU per '
                        'metric, encoding and decoding included (needs -b)')
    b.add_argument('--compression', default='none,lz4,zstd',
                   help='with --format: compression.type values '
                        '(default: none,lz4,zstd)')
    b.add_argument('--json', metavar='FILE',
                   help='write every round and ratio here')
    b.add_argument('--no-latency', action='store_true')
    b.add_argument('--plot', help='write a PNG here (matplotlib): msgs/s '
                                  'and CPU per message side by side, and '
                                  'the queue depth over time of the '
                                  'producer scenarios')
    b.set_defaults(func=cmd_bench)

    s = sub.add_parser('stats', help="the clients' metrics, live, on a "
                                     'demo stream')
    s.add_argument('--bootstrap-servers', '-b',
                   help='a real broker (default: embedded mock cluster)')
    s.add_argument('--rate', type=int, default=2000,
                   help='messages per second the producer publishes')
    s.add_argument('--read-rate', type=int, default=0,
                   help='messages per second the consumer reads at most, '
                        'to see lag (default: as fast as they come)')
    s.add_argument('--duration', type=float, default=0,
                   help='seconds to run (default: until Ctrl-C)')
    s.add_argument('--refresh', type=float, default=1.0,
                   help='seconds between two views')
    s.add_argument('--json', action='store_true',
                   help='one JSON line per client and view')
    s.set_defaults(func=cmd_stats)

    p = sub.add_parser('produce', help='publish messages (args or stdin)')
    p.add_argument('--bootstrap-servers', '-b', required=True)
    p.add_argument('--topic', '-t', required=True)
    p.add_argument('--key')
    p.add_argument('--timeout', type=float, default=30)
    p.add_argument('message', nargs='*')
    p.set_defaults(func=cmd_produce)

    c = sub.add_parser('consume', help='print messages of a topic')
    c.add_argument('--bootstrap-servers', '-b', required=True)
    c.add_argument('--topic', '-t', required=True)
    c.add_argument('--group', '-g', default='monasca-kafka-cli')
    c.add_argument('--count', type=int)
    c.add_argument('--timeout', type=float, default=10,
                   help='stop after this long without a message')
    c.add_argument('--commit', action='store_true')
    c.set_defaults(func=cmd_consume)

    h = sub.add_parser('healthcheck', help='exit 0 if Kafka is healthy')
    h.add_argument('--bootstrap-servers', '-b', required=True)
    h.add_argument('--topic', '-t', action='append')
    h.add_argument('--timeout', type=float, default=5)
    h.set_defaults(func=cmd_healthcheck)

    lag = sub.add_parser('lag', help="a group's committed offsets and lag "
                                     'per partition')
    lag.add_argument('--bootstrap-servers', '-b', required=True)
    lag.add_argument('group')
    lag.add_argument('topic', nargs='?',
                     help='every partition of this topic (default: the '
                          'partitions the group committed in)')
    lag.add_argument('--json', action='store_true')
    lag.add_argument('--timeout', type=float, default=10)
    lag.set_defaults(func=cmd_lag)

    m = sub.add_parser(
        'migrate-offsets',
        help="move a group's offsets from ZooKeeper (the old client's) "
             'to Kafka, or back; exit 0 done, 1 refused, 2 unreachable or '
             'bad input')
    m.add_argument('--bootstrap-servers', '-b', required=True)
    m.add_argument('--zookeeper', '-z', required=True,
                   metavar='HOST:PORT[/CHROOT]',
                   help="the brokers' zookeeper.connect, chroot included")
    m.add_argument('group')
    m.add_argument('topic', nargs='*',
                   help='topics to move (default: every topic the group '
                        'has in the source)')
    m.add_argument('--dry-run', action='store_true',
                   help='print what would be done; write nothing')
    m.add_argument('--force', action='store_true',
                   help='write over offsets the target holds already')
    m.add_argument('--reverse', action='store_true',
                   help="write the group's Kafka offsets back into "
                        'ZooKeeper (rollback to the old client)')
    m.add_argument('--partitioner-path', action='append', default=[],
                   metavar='PATH',
                   help="an old service's zookeeper_path (repeatable): "
                        'refuse while an old instance still holds it')
    m.add_argument('--json', action='store_true')
    m.add_argument('--timeout', type=float, default=10)
    m.set_defaults(func=cmd_migrate_offsets)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else
                        logging.WARNING,
                        format='%(levelname)s %(name)s: %(message)s')
    try:
        if args.config_file or args.properties:
            apply_client_settings(args.config_file, args.properties)
        return args.func(args)
    except kafka.KafkaClientError as exc:
        print('error: %s' % exc, file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
