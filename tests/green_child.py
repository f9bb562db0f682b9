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

"""Every client of the library in a process eventlet or gevent patched.

Patched first, as gunicorn's green workers do, then the library imported.
A ticker green thread sleeps 1 ms at a time and keeps the longest gap it
saw: a library call blocking the hub shows there. Meanwhile, on SERVERS
(``mock`` for a mock cluster of this process's own):

- 20 green threads publish through ``kafka.KafkaProducer``, waiting for
  each call, with a per-call callback that yields to the others (a switch
  inside a librdkafka callback);
- the factory producer publishes without waiting, then flushes;
- ``KafkaAdmin`` reads the topic's watermarks and the group's lag;
- the health check answers, healthy, and for a port nobody listens on;
- a ``KafkaConsumer`` reads every message while other green threads
  commit from outside, and closes;
- two members of a group take and commit message by message, the second
  joining mid-stream (on Kafka, not the mock cluster);
- a producer with no broker refuses a publish once ``unavailable_after``
  passed.

Prints one JSON line of what it counted and measured.

    python -m tests.green_child eventlet|gevent SERVERS UNREACHABLE
"""

import sys

KIND = sys.argv[1]
if KIND == 'eventlet':
    import eventlet
    eventlet.monkey_patch()
    spawn, sleep = eventlet.spawn, eventlet.sleep
elif KIND == 'gevent':
    from gevent import monkey
    monkey.patch_all()
    import gevent
    spawn, sleep = gevent.spawn, gevent.sleep
else:
    raise SystemExit('eventlet or gevent, not %r' % KIND)

import collections  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import confluent_kafka  # noqa: E402
import confluent_kafka.admin  # noqa: E402
from oslo_config import cfg  # noqa: E402

from monasca_common.confluent_kafka import runtime  # noqa: E402
from monasca_common.healthcheck.checks import kafka_check  # noqa: E402
from monasca_common import kafka  # noqa: E402
from monasca_common.kafka import client_factory  # noqa: E402
from monasca_common.kafka_lib import common as kafka_common  # noqa: E402

PUBLISHERS = 20
CALLS = 10
PER_CALL = 10


class Ticker:
    """The longest the hub went without running a green thread."""

    def __init__(self):
        self.longest = 0.0
        self.where = ''
        self.stage = 'start'
        self.ticks = 0
        self.stages = {}
        self._began = time.monotonic()
        self._running = True
        self._thread = spawn(self._run)

    def _run(self):
        last = time.monotonic()
        while self._running:
            sleep(0.001)
            now = time.monotonic()
            if now - last > self.longest:
                self.longest, self.where = now - last, self.stage
            last = now
            self.ticks += 1

    def enter(self, stage):
        """Begin ``stage``; the one before gets its duration."""
        now = time.monotonic()
        self.stages[self.stage] = round(now - self._began, 3)
        self.stage, self._began = stage, now

    def stop(self):
        self.enter('end')
        self._running = False


def mock_servers():
    holder = confluent_kafka.Producer({'test.mock.num.brokers': 1,
                                       'log_level': 0})
    brokers = holder.list_topics(timeout=10).brokers.values()
    return holder, ','.join('%s:%d' % (b.host, b.port) for b in brokers)


def create_topic(servers, topic):
    creator = confluent_kafka.admin.AdminClient({'bootstrap.servers': servers})
    created = creator.create_topics(
        [confluent_kafka.admin.NewTopic(topic, 2, 1)])
    done, _ = runtime.current().wait_futures(created.values(), 30)
    if not done:
        raise SystemExit('topic %s not created in 30 s' % topic)
    for future in done:
        future.result()


def two_members(report, servers, topic, total):
    """Two members of a group, the second joining mid-stream.

    As the notification engine does: take a message, commit it, next.
    The first member's revoke (a commit inside librdkafka's poll) and
    both members' close (leaving the group) run among the green threads.
    """
    group = 'green-two-' + uuid.uuid4().hex[:10]
    members = [kafka.KafkaConsumer(servers, group, topic) for _ in range(2)]
    taken = collections.Counter()
    per_member = [0, 0]

    def member(n):
        consumer = members[n]
        for message in consumer:
            taken[message.value().decode()] += 1
            per_member[n] += 1
            consumer.commit()
            # Slow until the group rebalanced for the second member (its
            # heartbeats tell the first within 3 s): both take a share.
            sleep(0.005 if not per_member[1] and
                  time.monotonic() < slow_until else 0)
            if len(taken) >= total:
                for each in members:
                    each.stop()
    slow_until = time.monotonic() + 30
    first = spawn(member, 0)
    deadline = time.monotonic() + 120
    while len(taken) < 200 and time.monotonic() < deadline:
        sleep(0.01)
    second = spawn(member, 1)
    while len(taken) < total and time.monotonic() < deadline:
        sleep(0.05)
    for each in members:
        each.stop()
    for thread in (first, second):
        thread.wait() if KIND == 'eventlet' else thread.join()
    for each in members:
        each.close()
    report['two_members_taken'] = len(taken)
    report['two_members_repeated'] = sum(n - 1 for n in taken.values())
    report['two_members_split'] = per_member
    with kafka.KafkaAdmin(servers) as admin_client:
        report['two_members_lag'] = sum(
            row.lag for row in admin_client.group_lag(group, topic))


def main(servers, unreachable):
    holder = None
    if servers == 'mock':
        holder, servers = mock_servers()
    topic = 'green-' + uuid.uuid4().hex[:10]
    group = 'green-group-' + uuid.uuid4().hex[:10]
    report = {'runtime': runtime.current().kind}
    # The topic exists before the ticker starts: its creation is setup.
    # (The mock cluster creates a topic when it is first used.)
    if holder is None:
        create_topic(servers, topic)
    ticker = Ticker()

    ticker.enter('producer')
    producer = kafka.KafkaProducer(servers)
    delivered = []

    def on_delivery(err, message):
        sleep(0)  # another green thread runs inside the report
        if err is None:
            delivered.append(message.value())

    def publish(n):
        for call in range(CALLS):
            producer.publish(topic, ['%d-%d-%d' % (n, call, i)
                                     for i in range(PER_CALL)],
                             sync=True, timeout=30, callback=on_delivery)
    threads = [spawn(publish, n) for n in range(PUBLISHERS)]
    for thread in threads:
        thread.wait() if KIND == 'eventlet' else thread.join()
    report['producer_delivered'] = len(set(delivered))
    producer.close()

    ticker.enter('factory producer')
    legacy = client_factory.get_kafka_producer([servers])
    legacy.publish(topic, ['factory-%d' % i for i in range(100)])
    report['factory_left'] = legacy.flush(30)
    legacy.close()
    total = PUBLISHERS * CALLS * PER_CALL + 100

    ticker.enter('admin')
    with kafka.KafkaAdmin(servers) as admin_client:
        marks = admin_client.watermarks(topic)
        report['watermarks'] = sum(high - low for low, high in marks.values())

    ticker.enter('health check')
    conf = cfg.ConfigOpts()
    conf([])
    check = kafka_check.KafkaHealthCheck(conf)
    conf.set_override('kafka_url', servers, 'kafka_healthcheck')
    conf.set_override('kafka_topics', [topic], 'kafka_healthcheck')
    report['healthy'] = check.healthcheck().healthy
    conf.set_override('kafka_url', unreachable, 'kafka_healthcheck')
    conf.set_override('timeout', 2, 'kafka_healthcheck')
    started = time.monotonic()
    report['unreachable_healthy'] = check.healthcheck().healthy
    report['unreachable_check_s'] = round(time.monotonic() - started, 3)

    ticker.enter('consumer')
    consumer = kafka.KafkaConsumer(servers, group, topic)
    seen = set()
    commits = []

    def commit_from_outside():
        while len(seen) < total:
            sleep(0.05)
            commits.append(len(consumer.commit()))
    committer = spawn(commit_from_outside)
    deadline = time.monotonic() + 120
    for message in consumer:
        seen.add(message.value().decode())
        if len(seen) % 200 == 0:
            consumer.commit()
        if len(seen) >= total or time.monotonic() > deadline:
            break
    consumer.commit()
    committer.wait() if KIND == 'eventlet' else committer.join()
    consumer.close()
    report['consumed'] = len(seen)
    with kafka.KafkaAdmin(servers) as admin_client:
        report['lag'] = sum(row.lag for row in
                            admin_client.group_lag(group, topic))

    if holder is None:
        # The mock cluster takes 3 s a join: on Kafka only.
        ticker.enter('two members')
        two_members(report, servers, topic, total)

    ticker.enter('publish without Kafka')
    down = kafka.KafkaProducer(unreachable, unavailable_after=1)
    started = time.monotonic()
    refused = None
    while refused is None and time.monotonic() - started < 30:
        try:
            down.publish(topic, 'x')
        except kafka_common.KafkaUnavailableError as exc:
            refused = type(exc).__name__
        sleep(0.05)
    report['refused_with'] = refused
    report['refused_after_s'] = round(time.monotonic() - started, 3)
    down.close(1)

    ticker.stop()
    report['longest_stall_s'] = round(ticker.longest, 4)
    report['longest_stall_in'] = ticker.where
    report['ticks'] = ticker.ticks
    report['stages_s'] = ticker.stages
    report['total'] = total
    print(json.dumps(report), flush=True)
    if holder is not None:
        holder.flush(0)


if __name__ == '__main__':
    main(sys.argv[2], sys.argv[3])
