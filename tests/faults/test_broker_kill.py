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

"""The broker is SIGKILLed and restarted while a producer streams."""

import collections
import os
import threading
import time

import pytest

from monasca_common import kafka
from tests import waiting

pytestmark = [pytest.mark.integration, pytest.mark.faults]

MESSAGES = int(os.environ.get('FAULT_MESSAGES', 100000))
KILLS = 3


def stream(producer, topic, payloads, stats, done):
    """Publish everything the way a service should: retry what failed."""
    bulk = 500
    results = []
    for i in range(0, len(payloads), bulk):
        pending = payloads[i:i + bulk]
        while pending:
            try:
                results.append(producer.publish(topic, pending))
                pending = []
            except kafka.KafkaUnavailableError:
                stats['refused'] += len(pending)
                time.sleep(0.2)  # nothing queued: try the same bulk again
            except kafka.QueueFullError as exc:
                stats['queue_full'] += exc.not_queued
                pending = [f.value for f in exc.failed]
        time.sleep(0.002)  # a steady stream, not one burst
    producer.flush(300)
    # What Kafka reported failed is published again, once, by value.
    retry = [f.value for r in results for f in r.failed]
    stats['reported_failed'] = len(retry)
    if retry:
        producer.publish(topic, retry, sync=True, timeout=120)
    done.set()


def test_three_broker_kills_while_streaming(controllable_kafka, topic):
    servers = controllable_kafka.bootstrap_servers
    payloads = [b'id-%07d' % i for i in range(MESSAGES)]
    stats = collections.Counter()
    done = threading.Event()
    started = time.monotonic()
    with kafka.KafkaProducer(servers) as producer:
        writer = threading.Thread(target=stream, args=(
            producer, topic, payloads, stats, done))
        writer.start()
        for kill in range(KILLS):
            waiting.until(lambda: producer.stats()['delivered'] >=
                          (kill + 1) * MESSAGES // (KILLS + 1),
                          120, 'progress before kill %d' % (kill + 1))
            for node in controllable_kafka.nodes:
                node.kill()
            time.sleep(1)  # an outage, however short, not a blip
            for node in controllable_kafka.nodes:
                node.start()
            controllable_kafka.wait_ready()
        writer.join(600)
        assert done.is_set(), 'the stream did not finish'
    stored = waiting.read_topic(servers, topic, expected=MESSAGES,
                                timeout=180)
    counts = collections.Counter(m.value() for m in stored)
    lost = len(set(payloads) - set(counts))
    duplicated = sum(c - 1 for c in counts.values() if c > 1)
    print('broker kills: messages=%d kills=%d lost=%d duplicated=%d '
          'reported_failed=%d refused=%d seconds=%.0f'
          % (MESSAGES, KILLS, lost, duplicated, stats['reported_failed'],
             stats['refused'], time.monotonic() - started))
    assert lost == 0
    assert duplicated == 0
