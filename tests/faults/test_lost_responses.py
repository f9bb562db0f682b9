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

"""The spec's hard case: Kafka stores a bulk, its response is lost.

A proxy that the broker advertises sits between client and broker and
loses some produce responses. With the library's defaults every message
lands exactly once. The same traffic without idempotence duplicates: that
proves the responses really were lost after the broker stored the data.
"""

import collections
import time

from confluent_kafka import admin as kafka_admin
import pytest

from monasca_common import kafka
from tests import conftest
from tests.faults import proxy as kafka_proxy
from tests import waiting

pytestmark = [pytest.mark.integration, pytest.mark.faults]

MESSAGES = 20000
BULK = 500


def run(cluster, proxy, policy, **config):
    client = kafka_admin.AdminClient({'bootstrap.servers': proxy.address})
    topic = conftest.create_topic(client, partitions=2)
    proxy.policy = policy
    payloads = ['id-%06d' % i for i in range(MESSAGES)]
    results = []
    started = time.monotonic()
    with kafka.KafkaProducer(proxy.address, **config) as producer:
        for i in range(0, MESSAGES, BULK):
            results.append(producer.publish(topic, payloads[i:i + BULK]))
            # Spread the bulks over many produce requests.
            producer.flush(5) if i % 2000 == 0 else None
        assert producer.flush(180) == 0
    policy.enabled = False
    failed = [f.value for r in results for f in r.failed]
    stored = waiting.read_topic(proxy.address, topic, timeout=120)
    counts = collections.Counter(m.value().decode() for m in stored)
    return {
        'messages': MESSAGES,
        'delivered': sum(r.delivered for r in results),
        'failed': len(failed),
        'lost': len(set(payloads) - set(counts)),
        'duplicated': sum(c - 1 for c in counts.values() if c > 1),
        'seconds': round(time.monotonic() - started, 1),
        'responses_lost': policy.dropped + policy.cut_count,
    }


def test_cut_connections_lose_responses_but_nothing_is_duplicated(proxied):
    cluster, proxy = proxied
    # The responses that do come are each held 20 ms: a slow broker.
    policy = kafka_proxy.Policy(cut={2, 3, 5}, delay=0.02)
    figures = run(cluster, proxy, policy)
    print('lost responses, defaults:', figures)
    assert figures['responses_lost'] == 3
    assert figures['failed'] == 0
    assert figures['lost'] == 0
    assert figures['duplicated'] == 0
    assert figures['delivered'] == MESSAGES


def test_dropped_responses_time_out_and_retry_without_duplicates(proxied):
    cluster, proxy = proxied
    # Silence: the client waits for request.timeout.ms, then resends.
    policy = kafka_proxy.Policy(drop={2})
    figures = run(cluster, proxy, policy, **{'request.timeout.ms': 5000})
    print('dropped responses, defaults:', figures)
    assert figures['responses_lost'] == 1
    assert (figures['failed'], figures['lost'], figures['duplicated']) == \
        (0, 0, 0)


def test_without_idempotence_the_same_faults_duplicate(proxied):
    # The control: proves the fault hits after the broker stored the data.
    cluster, proxy = proxied
    policy = kafka_proxy.Policy(cut={2, 3, 5})
    figures = run(cluster, proxy, policy, **{'enable.idempotence': False,
                                             'acks': 'all'})
    print('lost responses, idempotence off:', figures)
    assert figures['responses_lost'] == 3
    assert figures['lost'] == 0
    assert figures['duplicated'] > 0
