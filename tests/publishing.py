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

"""Publishing as a service should: nothing given up on silently."""

import time

from monasca_common import kafka


def publish_all(producer, topic, payloads, stats, bulk=500, pause=0.002,
                flush_timeout=300):
    """Publish ``payloads`` in bulks, retrying whatever was not delivered.

    A refused bulk (nothing queued) is offered again; on a full queue,
    the part not queued is. Once everything is queued and flushed, what
    Kafka reported failed is published again, once, by value. ``stats``
    (a Counter) gets ``refused``, ``queue_full`` and ``reported_failed``.
    """
    results = []
    for i in range(0, len(payloads), bulk):
        pending = payloads[i:i + bulk]
        while pending:
            try:
                results.append(producer.publish(topic, pending))
                pending = []
            except kafka.KafkaUnavailableError:
                stats['refused'] += len(pending)
                time.sleep(0.2)
            except kafka.QueueFullError as exc:
                stats['queue_full'] += exc.not_queued
                pending = [f.value for f in exc.failed]
        time.sleep(pause)  # a steady stream, not one burst
    producer.flush(flush_timeout)
    retry = [f.value for r in results for f in r.failed]
    stats['reported_failed'] = len(retry)
    if retry:
        producer.publish(topic, retry, sync=True, timeout=120)
