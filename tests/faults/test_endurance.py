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

"""A steady stream for a while: memory stays flat, nothing is lost.

ENDURANCE_SECONDS (default 30) and ENDURANCE_RATE (msgs/s, default 2000)
set the run; CI runs the default, a soak runs for hours.
"""

import collections
import os
import statistics
import threading
import time

import psutil
import pytest

from monasca_common import kafka

pytestmark = [pytest.mark.integration, pytest.mark.faults]

SECONDS = float(os.environ.get('ENDURANCE_SECONDS', 30))
RATE = int(os.environ.get('ENDURANCE_RATE', 2000))


def test_steady_stream_keeps_memory_flat_and_loses_nothing(
        bootstrap_servers, make_topic, group_id):
    topic = make_topic(partitions=3)
    process = psutil.Process()
    received = collections.Counter()
    consumer = kafka.KafkaConsumer(bootstrap_servers, group_id, topic,
                                   poll_timeout=0.2)

    def read():
        for n, message in enumerate(consumer, 1):
            received[message.value()] += 1
            if n % 1000 == 0:
                consumer.commit()

    reader = threading.Thread(target=read)
    reader.start()
    rss = []
    sent = 0
    tick = 0.05
    per_tick = max(1, int(RATE * tick))
    try:
        with kafka.KafkaProducer(bootstrap_servers) as producer:
            start = time.monotonic()
            next_sample = start
            while time.monotonic() - start < SECONDS:
                producer.publish(topic, [b'e-%09d' % (sent + i)
                                         for i in range(per_tick)])
                sent += per_tick
                now = time.monotonic()
                if now >= next_sample:
                    rss.append(process.memory_info().rss)
                    next_sample = now + 1.0
                time.sleep(max(0.0, start + sent / RATE - time.monotonic()))
            assert producer.flush(60) == 0
            failed = producer.stats()['failed']
        deadline = time.monotonic() + 120
        while len(received) < sent and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        consumer.stop()
        reader.join(30)
        consumer.close()
    third = max(1, len(rss) // 3)
    early = statistics.median(rss[third:2 * third] or rss)
    late = statistics.median(rss[-third:])
    growth_mib = (late - early) / 2 ** 20
    lost = sent - len(received)
    duplicated = sum(c - 1 for c in received.values() if c > 1)
    print('endurance: seconds=%.0f rate=%d messages=%d lost=%d '
          'duplicated=%d failed=%d rss_mib=%.1f->%.1f'
          % (SECONDS, RATE, sent, lost, duplicated, failed,
             early / 2 ** 20, late / 2 ** 20))
    assert failed == 0
    assert lost == 0
    # Flat: no growth with the number of messages sent.
    assert growth_mib < 16, 'RSS grew %.1f MiB' % growth_mib
