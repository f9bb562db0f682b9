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

"""What waiting for published messages before a commit costs.

Two service shapes, each with ``deliver_before_commit`` on and off, side by
side in one run against a real broker:

- persister: iterate, commit every 1000 messages, publish nothing;
- notification: take one, publish one outcome, commit; per message.

    python tools/bench_commit_barrier.py -b 127.0.0.1:9092
"""

import argparse
import os
import sys
import time
import uuid

from confluent_kafka import admin

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from monasca_common import kafka  # noqa: E402


def topic(servers, partitions=1):
    name = 'bench-' + uuid.uuid4().hex[:10]
    client = admin.AdminClient({'bootstrap.servers': servers})
    client.create_topics([admin.NewTopic(name, partitions, 1)])[name].result(
        30)
    time.sleep(1)
    return name


def fill(servers, name, count):
    with kafka.KafkaProducer(servers) as producer:
        producer.publish(name, [b'x' * 100] * count, sync=True, timeout=120)


def persister(servers, name, count, barrier):
    consumer = kafka.KafkaConsumer(servers, 'g-' + uuid.uuid4().hex, name,
                                   deliver_before_commit=barrier)
    taken = 0
    it = iter(consumer)
    next(it)
    started = time.perf_counter()
    for _ in it:
        taken += 1
        if taken % 1000 == 0:
            consumer.commit()
        if taken == count - 1:
            break
    elapsed = time.perf_counter() - started
    consumer.close()
    return taken / elapsed


def notification(servers, name, out, count, barrier):
    consumer = kafka.KafkaConsumer(servers, 'g-' + uuid.uuid4().hex, name,
                                   deliver_before_commit=barrier)
    producer = kafka.KafkaProducer(servers)
    it = iter(consumer)
    next(it)
    started = time.perf_counter()
    for taken, message in enumerate(it, 1):
        producer.publish(out, [message.value()])
        consumer.commit()
        if taken == count - 1:
            break
    elapsed = time.perf_counter() - started
    consumer.close()
    producer.close()
    return (count - 1) / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('-b', '--bootstrap-servers', required=True)
    parser.add_argument('--persister-messages', type=int, default=200000)
    parser.add_argument('--notification-messages', type=int, default=2000)
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    servers = args.bootstrap_servers
    source = topic(servers)
    fill(servers, source, args.persister_messages)
    alarms, out = topic(servers), topic(servers)
    fill(servers, alarms, args.notification_messages)
    for round_ in range(args.rounds):
        for barrier in (False, True):
            p = persister(servers, source, args.persister_messages, barrier)
            n = notification(servers, alarms, out,
                             args.notification_messages, barrier)
            print('round %d  deliver_before_commit=%-5s  persister %8.0f '
                  'msgs/s  notification %6.0f msgs/s'
                  % (round_ + 1, barrier, p, n), flush=True)


if __name__ == '__main__':
    main()
