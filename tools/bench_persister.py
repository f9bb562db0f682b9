#!/usr/bin/env python3
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

"""monasca-persister's consumer, before and after: the old client, this
library and a raw confluent-kafka loop, side by side on one broker.

The persister's shape: metric envelopes as monasca-api writes them (about
320 B of JSON), ``json.loads`` each (or not: Kafka alone), batches of
1,000, a commit per batch. Each reader runs in a process of its own and
reads the whole topic with a new group; its clock and CPU (user+sys of the
process, every thread) start at its first message, so the old client's
30 s partitioner wait and the group joins are not counted.

The old client is monasca-common 3.8.0 in its own venv
(``tools/legacy_client.py``), reading through its kazoo-partitioned
``KafkaConsumer`` on a ZooKeeper-mode Kafka. It cannot read a backlog
larger than its fetch size on Python 3.7+ (its decoder's ``raise
StopIteration()`` becomes "generator raised StopIteration", PEP 479):
for the measurement only, ``tools/legacy_persister.py`` makes that line a
``return``, as it behaved on Python 2.7 and 3.6.

::

    python tools/bench_persister.py                 # starts Kafka 3.9.1
    python tools/bench_persister.py -b HOST:PORT --zookeeper HOST:PORT
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time
import uuid

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

BATCH = 1000
IDLE = 10.0
SCENARIOS = ('old client', 'this library', 'raw loop')


def envelope(i: int) -> bytes:
    """A metric envelope as monasca-api publishes it."""
    return json.dumps({
        'metric': {
            'name': 'cpu.idle_perc',
            'dimensions': {'hostname': 'compute-%04d' % (i % 1000),
                           'service': 'monitoring',
                           'component': 'monasca-agent'},
            'timestamp': 1733400000000 + i,
            'value': 97.25 + (i % 100) / 100.0,
            'value_meta': {'unit': 'percent'}},
        'meta': {'tenantId': '7d1b9b30a8f14b5da2b5f2f8d2e3b9c1',
                 'region': 'RegionOne'},
        'creation_time': 1733400000 + i // 1000,
    }, separators=(', ', ': ')).encode()


def fill(servers: str, topic: str, count: int, old_format: bool) -> int:
    import confluent_kafka
    from confluent_kafka import admin
    client = admin.AdminClient({'bootstrap.servers': servers})
    config = {'message.format.version': '0.9.0'} if old_format else {}
    client.create_topics([admin.NewTopic(topic, 4, 1, config=config)])[
        topic].result(60)
    # The old client's topics keep message format v0, which an idempotent
    # producer cannot write.
    producer = confluent_kafka.Producer({
        'bootstrap.servers': servers, 'enable.idempotence': False,
        'linger.ms': 20, 'acks': 1})
    size = 0
    for i in range(count):
        value = envelope(i)
        size += len(value)
        while True:
            try:
                producer.produce(topic, value, partition=i % 4)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise SystemExit('could not fill %s' % topic)
    return size // count


# The three read loops (here and in legacy_persister.py, which runs in the
# old client's venv) are written out each: a shared helper would add a
# call per message to what is measured.
def read_ours(servers, topic, count, parse):
    from monasca_common import kafka
    consumer = kafka.KafkaConsumer(servers, 'bench-' + uuid.uuid4().hex[:8],
                                   topic)
    batch, read, start = [], 0, None
    for message in consumer:
        if start is None:
            start = time.perf_counter(), time.process_time()
        value = message.value()
        batch.append(json.loads(value) if parse else value)
        read += 1
        if len(batch) == BATCH:
            consumer.commit()
            batch = []
        if read >= count:
            break
    end = time.perf_counter(), time.process_time()
    consumer.close()
    return read, start, end


def read_raw(servers, topic, count, parse):
    import confluent_kafka
    from monasca_common.cli import bench
    from monasca_common.confluent_kafka import config as kafka_config
    consumer = confluent_kafka.Consumer(bench._raw_config(
        'consumer', kafka_config.CONSUMER_DEFAULTS, servers, **{
            'group.id': 'bench-raw-' + uuid.uuid4().hex[:8],
            'auto.offset.reset': 'earliest', 'enable.auto.commit': False,
            'enable.auto.offset.store': True}))
    consumer.subscribe([topic])
    batch, read, start = [], 0, None
    deadline = time.monotonic() + 120
    while read < count and time.monotonic() < deadline:
        for message in consumer.consume(500, 0.1):
            if message.error() is not None:
                continue
            if start is None:
                start = time.perf_counter(), time.process_time()
            value = message.value()
            batch.append(json.loads(value) if parse else value)
            read += 1
            if len(batch) == BATCH:
                consumer.commit(asynchronous=False)
                batch = []
    end = time.perf_counter(), time.process_time()
    consumer.close()
    return read, start, end


def run_one(scenario, servers, zookeeper, topic, count, parse) -> dict:
    """Read in a process of its own; its JSON report."""
    if scenario == 'old client':
        from tools import legacy_client
        command = [str(legacy_client.install()),
                   str(HERE / 'legacy_persister.py'), servers, zookeeper,
                   'bench-old-' + uuid.uuid4().hex[:8], topic, str(count),
                   str(int(parse))]
    else:
        command = [sys.executable, __file__, 'read',
                   'ours' if scenario == 'this library' else 'raw',
                   servers, topic, str(count), str(int(parse))]
    done = subprocess.run(command, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit('%s failed:\n%s' % (scenario, done.stderr[-3000:]))
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('-b', '--bootstrap-servers')
    parser.add_argument('--zookeeper', help='HOST:PORT of the ZooKeeper the '
                                            'old client partitions with')
    parser.add_argument('-n', '--messages', type=int, default=200000)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--json', help='write every round here')
    args = parser.parse_args(argv)

    cluster = None
    if args.bootstrap_servers is None:
        from tests import conftest
        from tools import kafka_broker
        cluster = kafka_broker.KafkaCluster(
            version=conftest.OLD_WORLD_VERSION, zookeeper=True,
            broker_properties=conftest.OLD_WORLD_BROKER, heap='1g').start()
        args.bootstrap_servers = cluster.bootstrap_servers
        args.zookeeper = cluster.zookeeper.address
    try:
        topic = 'persister-' + uuid.uuid4().hex[:8]
        size = fill(args.bootstrap_servers, topic, args.messages,
                    old_format=args.zookeeper is not None)
        print('%d envelopes of %d B on 4 partitions of %s'
              % (args.messages, size, topic), flush=True)
        rows = []
        scenarios = SCENARIOS if args.zookeeper else SCENARIOS[1:]
        for round_ in range(args.rounds):
            for parse in (True, False):
                for scenario in scenarios:
                    report = run_one(scenario, args.bootstrap_servers,
                                     args.zookeeper, topic, args.messages,
                                     parse)
                    report.update(scenario=scenario, parse=parse,
                                  round=round_)
                    rows.append(report)
                    print('  round %d %-13s %-10s %8.0f msgs/s %6.2f us/msg'
                          % (round_ + 1, scenario,
                             'json.loads' if parse else 'Kafka alone',
                             report['messages'] / report['seconds'],
                             report['cpu'] / report['messages'] * 1e6),
                          flush=True)
        print('\n%-13s %-12s %-22s %s' % ('reader', 'per message',
                                          'msgs/s (min-max)',
                                          'CPU us/msg (min-max)'))
        for parse in (True, False):
            for scenario in scenarios:
                mine = [r for r in rows if r['scenario'] == scenario and
                        r['parse'] == parse]
                rates = [r['messages'] / r['seconds'] for r in mine]
                cpus = [r['cpu'] / r['messages'] * 1e6 for r in mine]
                print('%-13s %-12s %7.0f (%.0f-%.0f)   %5.2f (%.2f-%.2f)' % (
                    scenario, 'json.loads' if parse else 'Kafka alone',
                    statistics.median(rates), min(rates), max(rates),
                    statistics.median(cpus), min(cpus), max(cpus)))
        if args.json:
            pathlib.Path(args.json).write_text(json.dumps(rows, indent=2))
    finally:
        if cluster is not None:
            cluster.stop()
    return 0


def read_main(which, servers, topic, count, parse) -> int:
    reader = read_ours if which == 'ours' else read_raw
    read, start, end = reader(servers, topic, int(count), parse == '1')
    print(json.dumps({'messages': read, 'seconds': end[0] - start[0],
                      'cpu': end[1] - start[1]}))
    return 0


if __name__ == '__main__':
    if sys.argv[1:2] == ['read']:
        sys.exit(read_main(*sys.argv[2:]))
    os.environ.setdefault('PYTHONHASHSEED', '0')
    sys.exit(main())
