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

"""What green threads cost the clients: plain threads, eventlet, gevent.

Each runtime runs in a process of its own (patched first, as gunicorn's
workers are), one after the other, on the same broker, for ``--rounds``
rounds (the median is printed):

- ``publish(list of 1000)``, then flush: msgs/s and CPU per message;
- ``publish(one message, sync=True)`` one after the other: latency;
- an idle producer: CPU per second (the green poll's wake-ups);
- ``KafkaConsumer`` iteration, commit per 1000: msgs/s and CPU/message;
- an idle consumer waiting in ``consume_batch``: CPU per second.

    python tools/bench_green.py -b 127.0.0.1:9092 [-n 200000] [--rounds 3]
"""

import argparse
import json
import statistics
import subprocess
import sys

KINDS = ('threads', 'eventlet', 'gevent')


def child(kind, servers, count):
    if kind == 'eventlet':
        import eventlet
        eventlet.monkey_patch()
    elif kind == 'gevent':
        from gevent import monkey
        monkey.patch_all()
    import time
    import uuid

    import confluent_kafka.admin

    from monasca_common.confluent_kafka import runtime
    from monasca_common import kafka

    topic = 'green-bench-' + uuid.uuid4().hex[:10]
    creator = confluent_kafka.admin.AdminClient({'bootstrap.servers': servers})
    created = creator.create_topics([confluent_kafka.admin.NewTopic(topic, 1,
                                                                    1)])
    runtime.current().wait_futures(created.values(), 30)
    payload = 'x' * 100
    out = {'runtime': runtime.current().kind}

    producer = kafka.KafkaProducer(servers)
    batch = [payload] * 1000
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count // 1000):
        producer.publish(topic, batch)
    producer.flush(60)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    out['publish msgs/s'] = count / wall
    out['publish CPU us/msg'] = 1e6 * cpu / count

    latencies = []
    for _ in range(300):
        started = time.perf_counter()
        producer.publish(topic, payload, sync=True)
        latencies.append(time.perf_counter() - started)
    latencies.sort()
    out['sync publish p50 ms'] = 1000 * latencies[len(latencies) // 2]
    out['sync publish p99 ms'] = 1000 * latencies[int(len(latencies) * .99)]

    time.sleep(0.5)
    wall, cpu = time.perf_counter(), time.process_time()
    time.sleep(3)
    out['idle producer CPU ms/s'] = 1000 * (time.process_time() - cpu) / (
        time.perf_counter() - wall)
    producer.close()

    consumer = kafka.KafkaConsumer(servers, 'bench-' + uuid.uuid4().hex,
                                   topic)
    total = count + 300
    read = 0
    wall = cpu = None
    for _ in consumer:
        if wall is None:
            wall, cpu = time.perf_counter(), time.process_time()
        read += 1
        if read % 1000 == 0:
            consumer.commit()
        if read >= total:
            break
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    consumer.commit()
    out['consume msgs/s'] = (read - 1) / wall
    out['consume CPU us/msg'] = 1e6 * cpu / (read - 1)
    # Idle: the service waits for messages that do not come.
    wall, cpu = time.perf_counter(), time.process_time()
    consumer.consume_batch(1000, 3)
    out['idle consumer CPU ms/s'] = 1000 * (time.process_time() - cpu) / (
        time.perf_counter() - wall)
    print(json.dumps(out), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('-b', '--bootstrap-servers', required=True)
    parser.add_argument('-n', '--messages', type=int, default=200000)
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args(argv)
    results = {kind: [] for kind in KINDS}
    for _ in range(args.rounds):
        for kind in KINDS:
            done = subprocess.run(
                [sys.executable, __file__, '--child', kind,
                 args.bootstrap_servers, str(args.messages)],
                capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                raise SystemExit('%s failed:\n%s'
                                 % (kind, done.stderr[-2000:]))
            results[kind].append(json.loads(done.stdout.splitlines()[-1]))
    names = [k for k in results['threads'][0] if k != 'runtime']
    print('median of %d rounds, %d messages of 100 B' % (args.rounds,
                                                         args.messages))
    print('%-26s' % '' + ''.join('%14s' % kind for kind in KINDS))
    for name in names:
        print('%-26s' % name + ''.join(
            '%14s' % ('{:,.2f}'.format(statistics.median(
                r[name] for r in results[kind]))) for kind in KINDS))


if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1] == '--child':
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
