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

"""What exactly-once costs: the processor with and without transactions.

For each batch size (1, 100, 1,000 by default) and each mode, one run:

* throughput: a backlog of messages copied to an output topic, from the
  first batch to the last commit, in msgs/s;
* latency: messages then sent one every 20 ms; the time from sending one
  to a ``read_committed`` reader getting its copy (median and p99). A
  batch closes when full or after ``--batch-timeout`` (0.1 s).

    python tools/bench_transactions.py -b host:port [--sizes 1,100,1000]
"""

import argparse
import statistics
import struct
import threading
import time
import uuid

import confluent_kafka
from confluent_kafka import admin as kafka_admin

from monasca_common import kafka


def create(servers, partitions=3):
    name = 'bench-txn-' + uuid.uuid4().hex[:8]
    client = kafka_admin.AdminClient({'bootstrap.servers': servers})
    client.create_topics([kafka_admin.NewTopic(name, partitions, 1)])[
        name].result(30)
    return name


def fill(servers, topic, count, payload=100):
    producer = confluent_kafka.Producer({'bootstrap.servers': servers,
                                         'linger.ms': 20})
    body = b'x' * payload
    for _ in range(count):
        while True:
            try:
                producer.produce(topic, body)
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(60)


def copy_to(output):
    return lambda batch: [(output, m.value()) for m in batch]


def throughput(servers, size, exactly_once, count, timeout):
    source, output = create(servers), create(servers)
    fill(servers, source, count)
    processor = kafka.Processor(servers, 'bench-' + source, source,
                                copy_to(output), 'bench', batch_size=size,
                                batch_timeout=timeout,
                                exactly_once=exactly_once)
    processor.start()
    started = None
    thread = threading.Thread(target=processor.run, daemon=True)
    thread.start()
    while processor.counts['published'] < count:
        if started is None and processor.counts['consumed']:
            started = time.perf_counter()
        time.sleep(0.001)
    elapsed = time.perf_counter() - (started or time.perf_counter())
    processor.stop()
    thread.join(30)
    processor.close()
    return count / elapsed if elapsed else float('nan')


def latency(servers, size, exactly_once, count, timeout):
    source, output = create(servers), create(servers)
    processor = kafka.Processor(servers, 'bench-' + source, source,
                                copy_to(output), 'bench', batch_size=size,
                                batch_timeout=timeout,
                                exactly_once=exactly_once)
    processor.start()
    thread = threading.Thread(target=processor.run, daemon=True)
    thread.start()
    reader = confluent_kafka.Consumer({
        'bootstrap.servers': servers, 'group.id': uuid.uuid4().hex,
        'isolation.level': 'read_committed',
        'auto.offset.reset': 'earliest', 'fetch.wait.max.ms': 10})
    reader.subscribe([output])
    producer = confluent_kafka.Producer({'bootstrap.servers': servers,
                                         'linger.ms': 0})
    seen = []

    def read():
        while len(seen) < count:
            for m in reader.consume(100, 0.1):
                if m.error() is None:
                    sent, = struct.unpack('d', m.value())
                    seen.append(time.time() - sent)
    reading = threading.Thread(target=read, daemon=True)
    reading.start()
    time.sleep(3)  # the reader and the processor join their groups
    for _ in range(count):
        producer.produce(source, struct.pack('d', time.time()))
        producer.poll(0)
        time.sleep(0.02)
    producer.flush(10)
    reading.join(60)
    processor.stop()
    thread.join(30)
    processor.close()
    reader.close()
    seen.sort()
    return (statistics.median(seen) * 1000,
            seen[int(len(seen) * 0.99) - 1] * 1000)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--bootstrap-servers', '-b', required=True)
    parser.add_argument('--sizes', default='1,100,1000')
    parser.add_argument('--messages', '-n', type=int, default=50000,
                        help='backlog per run (batch size 1: a 50th)')
    parser.add_argument('--latency-messages', type=int, default=200)
    parser.add_argument('--batch-timeout', type=float, default=0.1)
    args = parser.parse_args()
    print('%-6s %-14s %12s %14s %12s' % ('batch', 'mode', 'msgs/s',
                                         'latency p50', 'p99'))
    for size in [int(s) for s in args.sizes.split(',')]:
        count = args.messages if size > 1 else args.messages // 50
        for exactly_once in (False, True):
            mode = 'transactions' if exactly_once else 'at-least-once'
            rate = throughput(args.bootstrap_servers, size, exactly_once,
                              count, args.batch_timeout)
            p50, p99 = latency(args.bootstrap_servers, size, exactly_once,
                               args.latency_messages, args.batch_timeout)
            print('%-6d %-14s %12.0f %11.1f ms %9.1f ms'
                  % (size, mode, rate, p50, p99), flush=True)


if __name__ == '__main__':
    main()
