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

"""A Monasca service on the old client (monasca-common 3.8.0).

Run by the old client's own python (``tools/legacy_client.py``), never
imported by the tests. It drives the old classes as the services did:

``produce SERVERS TOPIC COUNT``
    the old API: ``KafkaProducer(url).publish(topic, message, key)``, one
    synchronous call per message, the key spreading them over partitions.
``consume SERVERS ZOOKEEPER GROUP TOPIC TAKE``
    the old persister and notification engine: iterate the kazoo
    partitioned ``KafkaConsumer``, take TAKE messages, ``commit()``, then
    look ``IDLE`` seconds for more (read, never committed) and stop.

The old client wants its topic and group as bytes (its
``kafka_bytestring`` refuses str on Python 3). Prints one JSON object:
``taken`` and ``extra`` as [partition, offset, value] lists.
"""

import json
import logging
import sys
import time

from monasca_common.kafka import consumer as old_consumer
from monasca_common.kafka import producer as old_producer

IDLE = 3.0


def produce(servers, topic, count):
    producer = old_producer.KafkaProducer(servers)
    for i in range(count):
        producer.publish(topic.encode(), 'message-%04d' % i, key=i)
    return {'produced': count}


def consume(servers, zookeeper, group, topic, take):
    consumer = old_consumer.KafkaConsumer(
        servers, zookeeper, '/monasca-partitions/%s/%s' % (group, topic),
        group.encode(), topic.encode())
    started = time.monotonic()
    taken = []
    waited = None
    for partition, message in consumer:
        if waited is None:
            waited = time.monotonic() - started
        taken.append([partition, message.offset,
                      message.message.value.decode()])
        if len(taken) >= take:
            break
    consumer.commit()
    # What comes after the commit is read but never committed: a test
    # asserts that nothing does.
    extra = [[partition, message.offset, message.message.value.decode()]
             for partition, message in consumer._consumer.get_messages(
                 count=1000, block=True, timeout=IDLE)]
    consumer._consumer.stop()
    consumer._kazoo_client.stop()
    return {'taken': taken, 'extra': extra, 'waited': waited}


def main(argv):
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    command, args = argv[0], argv[1:]
    if command == 'produce':
        report = produce(args[0], args[1], int(args[2]))
    elif command == 'consume':
        report = consume(args[0], args[1], args[2], args[3], int(args[4]))
    else:
        raise SystemExit('unknown command %r' % command)
    print(json.dumps(report))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
