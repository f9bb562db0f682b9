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

"""A reader that takes one message and then sleeps: its peak memory.

Prints ``<rss before, MiB> <peak rss, MiB>``. ``raw`` is a plain
confluent-kafka consumer in the same shape, the baseline.

    python memory_child.py SERVERS GROUP TOPIC ours|raw SECONDS
"""

import resource
import sys
import time

import confluent_kafka

from monasca_common import kafka


def rss_mib():
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024.0


def main(servers, group, topic, kind, seconds):
    before = rss_mib()
    if kind == 'ours':
        consumer = kafka.KafkaConsumer(servers, group, topic)
        next(iter(consumer))
    else:
        consumer = confluent_kafka.Consumer({
            'bootstrap.servers': servers, 'group.id': group,
            'auto.offset.reset': 'earliest', 'enable.auto.commit': False})
        consumer.subscribe([topic])
        while consumer.poll(1.0) is None:
            pass
    time.sleep(float(seconds))  # the service busy with that one message
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print('%.0f %.0f' % (before, peak))
    sys.stdout.flush()
    consumer.close()


if __name__ == '__main__':
    main(*sys.argv[1:])
