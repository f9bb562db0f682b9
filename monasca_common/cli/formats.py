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

"""``monasca-kafka bench --format``: what Avro buys over JSON, per metric.

Metric envelopes shaped like an agent's (:func:`sample_metrics`) go
through each format and compression:

* produce: encode, then ``publish`` in lists of 1,000 (as monasca-api
  does), until Kafka has them all;
* consume: iterate, decode each (:class:`~monasca_common.confluent_kafka.
  codecs.EnvelopeDecoder`, which reads any format, with orjson for the
  orjson rows), commit per 1,000.

Bytes per metric: the encoded envelope; what the producer sent
(librdkafka's ``tx_bytes``: the record batches, compressed, plus request
framing), which is what the log segment holds (within 0.1 B a metric on
Kafka 4.3.1's segment files); what the consumer fetched (``rx_bytes``).
"""

from __future__ import annotations

import dataclasses
import json
import random
import threading
import typing
import uuid

from monasca_common.cli import bench
from monasca_common.confluent_kafka import codecs
from monasca_common import kafka

FORMATS = ('json', 'orjson', 'avro')
COMPRESSIONS = ('none', 'lz4', 'zstd')

# Metric names and the dimensions they come with, as a monasca-agent
# reports them.
_SHAPES = [
    ('cpu.idle_perc', ()), ('cpu.user_perc', ()), ('cpu.system_perc', ()),
    ('cpu.wait_perc', ()), ('load.avg_1_min', ()), ('load.avg_5_min', ()),
    ('mem.free_mb', ()), ('mem.usable_perc', ()), ('mem.swap_free_mb', ()),
    ('disk.space_used_perc', ('device', 'mount_point')),
    ('disk.inode_used_perc', ('device', 'mount_point')),
    ('io.read_kbytes_sec', ('device',)), ('io.write_kbytes_sec', ('device',)),
    ('net.in_bytes_sec', ('device',)), ('net.out_bytes_sec', ('device',)),
    ('net.in_errors_sec', ('device',)),
    ('process.pid_count', ('process_name',)),
    ('process.cpu_perc', ('process_name',)),
    ('http_status', ('url',)), ('http_response_time', ('url',)),
    ('vm.cpu.utilization_perc', ('resource_id', 'zone')),
    ('vm.mem.free_mb', ('resource_id', 'zone')),
    ('kafka.consumer_lag', ('consumer_group', 'topic')),
    ('monasca.thread_count', ('component',)),
]
_DEVICES = ['sda1', 'sdb1', 'vda', 'eth0', 'eth1', 'bond0']
_PROCESSES = ['nova-compute', 'libvirtd', 'ovs-vswitchd', 'monasca-agent']


@dataclasses.dataclass
class Row:
    format: str
    compression: str
    encoded_bytes: float
    sent_bytes: float
    fetched_bytes: float
    produce_rate: float
    produce_cpu_us: float
    consume_rate: float
    consume_cpu_us: float


def sample_metrics(count: int, seed: int = 1) -> list[dict]:
    """``count`` metric envelopes as 200 hosts' agents send them."""
    rng = random.Random(seed)
    hosts = ['compute-%03d.dc1.example.net' % i for i in range(200)]
    tenants = ['%032x' % rng.getrandbits(128) for _ in range(5)]
    start = 1764932400000
    metrics = []
    for i in range(count):
        name, extra = rng.choice(_SHAPES)
        dimensions = {'hostname': rng.choice(hosts), 'service': 'monitoring',
                      'component': 'monasca-agent'}
        for key in extra:
            dimensions[key] = {
                'device': lambda: rng.choice(_DEVICES),
                'mount_point': lambda: rng.choice(['/', '/var', '/srv']),
                'process_name': lambda: rng.choice(_PROCESSES),
                'url': lambda: 'http://%s:8070/healthcheck'
                % rng.choice(hosts),
                'resource_id': lambda: '%032x' % rng.getrandbits(128),
                'zone': lambda: rng.choice(['nova', 'az-2']),
                'consumer_group': lambda: rng.choice(['1_metrics',
                                                      'thresh-metric']),
                'topic': lambda: 'metrics',
                'component': lambda: 'monasca-persister',
            }[key]()
        value_meta = None
        if name == 'http_status' and rng.random() < 0.2:
            value_meta = {'error': 'HTTP Error 503: Service Unavailable',
                          'detail': 'connection refused after 10.0 s'}
        metrics.append({
            'metric': {'name': name, 'dimensions': dimensions,
                       'timestamp': start + i * 7,
                       'value': round(rng.uniform(0, 100), 2),
                       'value_meta': value_meta},
            'meta': {'tenantId': rng.choice(tenants), 'region': 'RegionOne'},
            'creation_time': (start + i * 7) // 1000,
        })
    return metrics


def codec_for(name: str):
    if name == 'avro':
        return codecs.AvroCodec('metric')
    return codecs.JsonCodec(name)


class _Bytes:
    """librdkafka's running byte counters, from its statistics."""

    def __init__(self):
        self.tx = self.rx = 0
        self.reports = 0
        self.changed = threading.Event()

    def __call__(self, text: str) -> None:
        document = json.loads(text)
        self.tx, self.rx = document['tx_bytes'], document['rx_bytes']
        self.reports += 1
        self.changed.set()

    def settled(self) -> None:
        """Wait for two reports after now: the counters caught up."""
        for _ in range(2):
            self.changed.clear()
            self.changed.wait(5)


def run_one(servers: str, metrics: list[dict], name: str,
            compression: str) -> Row:
    codec = codec_for(name)
    topic = 'bench-format-%s' % uuid.uuid4().hex[:8]
    bench._create_topic(servers, topic, 1)
    sent = _Bytes()
    properties: dict[str, typing.Any] = {
        'compression.type': compression, 'statistics.interval.ms': 100,
        'stats_cb': sent}
    producer = kafka.KafkaProducer(servers, **properties)
    encoded = 0
    started = bench.now()
    for i in range(0, len(metrics), 1000):
        payloads = [codec.encode(m) for m in metrics[i:i + 1000]]
        encoded += sum(map(len, payloads))
        producer.publish(topic, payloads)
    producer.flush(120)
    produced = bench.now()
    sent.settled()
    producer.close()
    fetched = _Bytes()
    decoder = codecs.EnvelopeDecoder(
        kinds=['metric'], json_library='orjson' if name == 'orjson'
        else 'json')
    properties = {'statistics.interval.ms': 100, 'stats_cb': fetched}
    consumer = kafka.KafkaConsumer(servers, 'bench-' + topic, topic,
                                   **properties)
    got = 0
    begun = None
    decode = decoder.decode
    for message in consumer:
        begun = begun or bench.now()
        decode(message.value() or b'')
        got += 1
        if got % 1000 == 0:
            consumer.commit()
        if got == len(metrics):
            break
    consumed = bench.now()
    fetched.settled()
    consumer.close()
    count = len(metrics)
    begun = begun or consumed
    return Row(name, compression, encoded / count, sent.tx / count,
               fetched.rx / count,
               count / (produced[0] - started[0]),
               (produced[1] - started[1]) / count * 1e6,
               count / max(1e-9, consumed[0] - begun[0]),
               (consumed[1] - begun[1]) / count * 1e6)


def run(servers: str, count: int, formats=FORMATS,
        compressions=COMPRESSIONS, on_row=None) -> list[Row]:
    metrics = sample_metrics(count)
    rows = []
    for name in formats:
        for compression in compressions:
            row = run_one(servers, metrics, name, compression)
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


HEADER = ('%-7s %-5s %8s %8s %8s %10s %8s %10s %8s' % (
    'format', 'comp', 'encoded', 'log', 'fetched', 'produce/s', 'CPU us',
    'consume/s', 'CPU us'))


def line(row: Row) -> str:
    return '%-7s %-5s %8.1f %8.1f %8.1f %10.0f %8.2f %10.0f %8.2f' % (
        row.format, row.compression, row.encoded_bytes, row.sent_bytes,
        row.fetched_bytes, row.produce_rate, row.produce_cpu_us,
        row.consume_rate, row.consume_cpu_us)
