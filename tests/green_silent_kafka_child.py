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

"""A consumer in a patched process while Kafka answers nothing.

Patched first, then it reads 100 messages of TOPIC, prints ``READY`` and
waits for a line on standard input: the test SIGSTOPs the broker before
sending it. Then ``commit()`` (``commit_timeout`` 2 s) and ``close(2)``
must each return within their bound while a ticker green thread keeps
running (librdkafka's own synchronous commit has no bound). Prints one
JSON line: how long each took, what the commit returned or raised, the
longest the hub went without running.

    python -m tests.green_silent_kafka_child eventlet|gevent SERVERS TOPIC
"""

import sys

KIND = sys.argv[1]
if KIND == 'eventlet':
    import eventlet
    eventlet.monkey_patch()
    spawn, sleep = eventlet.spawn, eventlet.sleep
else:
    from gevent import monkey
    monkey.patch_all()
    import gevent
    spawn, sleep = gevent.spawn, gevent.sleep

import json  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

from monasca_common import kafka  # noqa: E402


def main(servers, topic):
    consumer = kafka.KafkaConsumer(servers, 'silent-' + uuid.uuid4().hex,
                                   topic, commit_timeout=2)
    taken = 0
    for _ in consumer:
        taken += 1
        if taken == 100:
            break
    print('READY', flush=True)
    sys.stdin.readline()  # patched: a green wait
    longest = [0.0]
    running = [True]

    def tick():
        last = time.monotonic()
        while running[0]:
            sleep(0.001)
            now = time.monotonic()
            longest[0] = max(longest[0], now - last)
            last = now
    ticker = spawn(tick)
    report = {'taken': taken}
    started = time.monotonic()
    try:
        report['committed'] = len(consumer.commit())
    except Exception as exc:
        report['commit_error'] = type(exc).__name__
    report['commit_s'] = round(time.monotonic() - started, 3)
    started = time.monotonic()
    consumer.close(2)
    report['close_s'] = round(time.monotonic() - started, 3)
    running[0] = False
    ticker.wait() if KIND == 'eventlet' else ticker.join()
    report['longest_stall_s'] = round(longest[0], 4)
    print(json.dumps(report), flush=True)


if __name__ == '__main__':
    main(sys.argv[2], sys.argv[3])
