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

"""monasca-api's shape under gunicorn's worker classes, on the real broker.

gunicorn runs ``green_api_app`` (monasca-api's publisher) with 2 workers
of each class: ``sync`` is the baseline, ``eventlet`` and ``gevent`` are
the classes monasca-api deploys with. 32 clients post metric envelopes
while another asks ``/ping``, which does not touch Kafka. Counted: every
request answered, every envelope answered 204 in Kafka exactly once,
``/ping``'s p99, throughput against ``sync``. Then Kafka stops: each post
answers at once (queued, then 503 once no broker was reachable for
``unavailable_after``, 10 s), ``/ping`` keeps answering within 1 s, and
when Kafka is back every envelope answered 204 reaches it, once, and none
answered 503 does.

Also here: ``green_child`` on the real broker, and a green consumer's
commit and close while the broker answers nothing.

``pytest -m integration -s -k green_workers`` prints the figures.
"""

import collections
import http.client
import json
import os
import pathlib
import subprocess
import sys
import threading
import time
import uuid

import confluent_kafka
import pytest

from tests import green_runs
from tests import waiting
from tools import kafka_broker

pytestmark = pytest.mark.integration

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKERS = 2
CLIENTS = 32
REQUESTS = 100         # per client, in the load phase
ENVELOPES = 20         # per request
PING_P99_LIMIT = 0.25
UNAVAILABLE_AFTER = 10.0   # the producer's default
OUTAGE_SECONDS = UNAVAILABLE_AFTER + 8
_FIGURES: dict = {}


class Gunicorn:
    """gunicorn serving green_api_app with ``WORKERS`` of one class."""

    def __init__(self, worker_class, servers, topic, log_path):
        self.port = kafka_broker.free_port()
        env = dict(os.environ, GREEN_APP_SERVERS=servers,
                   GREEN_APP_TOPIC=topic, PYTHONPATH=str(ROOT))
        self.log_path = log_path
        self._log = open(log_path, 'wb')
        self.process = subprocess.Popen(
            [sys.executable, '-m', 'gunicorn', '-k', worker_class,
             '-w', str(WORKERS), '-b', '127.0.0.1:%d' % self.port,
             '--timeout', '120', '--graceful-timeout', '5',
             'tests.integration.green_api_app:application'],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        waiting.until(self._answers, 60, 'gunicorn -k %s answering /ping'
                      % worker_class, interval=0.2)

    def _answers(self):
        if self.process.poll() is not None:
            raise AssertionError('gunicorn exited:\n' + self.log())
        try:
            return request(self.port, 'GET', '/ping', timeout=2)[0] == 200
        except OSError:
            return False

    def log(self):
        return pathlib.Path(self.log_path).read_text(errors='replace')

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def request(port, method, path, body=None, timeout=30.0):
    """(status, seconds) of one request on a connection of its own."""
    started = time.monotonic()
    connection = http.client.HTTPConnection('127.0.0.1', port,
                                            timeout=timeout)
    try:
        headers = {'Connection': 'close'}
        if body is not None:
            headers['Content-Type'] = 'application/json'
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    finally:
        connection.close()


def envelopes(tag, client, number):
    return [{'id': '%s-%d-%d-%d' % (tag, client, number, i),
             'metric': {'name': 'cpu.idle_perc', 'value': 97.5,
                        'timestamp': 1796669000000,
                        'dimensions': {'hostname': 'node-%d' % client}},
             'meta': {'tenantId': 'admin', 'region': 'RegionOne'},
             'creation_time': 1796669000} for i in range(ENVELOPES)]


class Load:
    """CLIENTS posting, one pinging, until each client's ``keep_going``."""

    def __init__(self, port, tag):
        self.port, self.tag = port, tag
        self.posts = []        # (sent at, status, seconds, ids)
        self.pings = []        # seconds
        self.errors = []
        self._lock = threading.Lock()
        self._pinging = True

    def run(self, keep_going, pause=0.0):
        pinger = threading.Thread(target=self._ping, daemon=True)
        pinger.start()
        clients = [threading.Thread(target=self._client,
                                    args=(n, keep_going, pause))
                   for n in range(CLIENTS)]
        started = time.monotonic()
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        elapsed = time.monotonic() - started
        self._pinging = False
        pinger.join()
        return elapsed

    def _client(self, n, keep_going, pause):
        number = 0
        while keep_going(number):
            batch = envelopes(self.tag, n, number)
            sent = time.monotonic()
            try:
                status, seconds = request(self.port, 'POST', '/v2.0/metrics',
                                          json.dumps(batch))
            except OSError as exc:
                with self._lock:
                    self.errors.append(repr(exc))
            else:
                with self._lock:
                    self.posts.append((sent, status, seconds,
                                       [e['id'] for e in batch]))
            number += 1
            if pause:
                time.sleep(pause)

    def _ping(self):
        # From a process of its own: the clients' threads here would
        # otherwise share its interpreter and add their own waits.
        pinger = subprocess.Popen(
            [sys.executable, '-c', _PINGER, str(self.port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        while self._pinging:
            time.sleep(0.05)
        out, _ = pinger.communicate('', timeout=60)
        answer = json.loads(out)
        self.pings.extend(answer['pings'])
        self.errors.extend(answer['errors'])

    def ids(self, status):
        return [i for _, s, _, ids in self.posts if s == status for i in ids]


# Asks /ping every 10 ms until its standard input closes; prints the
# latencies.
_PINGER = '''
import http.client, json, sys, threading, time
port, pings, errors, done = int(sys.argv[1]), [], [], threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()),
                 daemon=True).start()
while not done.is_set():
    started = time.monotonic()
    try:
        c = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
        c.request('GET', '/ping', headers={'Connection': 'close'})
        c.getresponse().read()
        c.close()
        pings.append(time.monotonic() - started)
    except OSError as exc:
        errors.append('ping: %r' % exc)
    time.sleep(0.01)
print(json.dumps({'pings': pings, 'errors': errors}))
'''


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def read_ids(servers, topic, expected, timeout=90):
    """Every envelope id in ``topic``, read until ``expected`` came."""
    consumer = confluent_kafka.Consumer({
        'bootstrap.servers': servers, 'group.id': uuid.uuid4().hex,
        'auto.offset.reset': 'earliest', 'enable.auto.commit': False})
    consumer.subscribe([topic])
    found = collections.Counter()
    deadline = time.monotonic() + timeout
    try:
        while sum(found.values()) < expected and \
                time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is None:
                    found[json.loads(message.value())['id']] += 1
        # Anything past the expected count is a duplicate: wait a moment
        # for it too.
        for message in consumer.consume(1000, 2.0):
            if message.error() is None:
                found[json.loads(message.value())['id']] += 1
    finally:
        consumer.close()
    return found


def check_once(found, sent):
    lost = [i for i in sent if found[i] == 0]
    duplicated = [i for i, n in found.items() if n > 1]
    assert not lost, '%d lost, e.g. %s' % (len(lost), lost[:3])
    assert not duplicated, '%d duplicated, e.g. %s' % (len(duplicated),
                                                       duplicated[:3])


def load_phase(worker_class, servers, topic, tmp_path):
    server = Gunicorn(worker_class, servers, topic,
                      tmp_path / ('gunicorn-%s.log' % worker_class))
    try:
        load = Load(server.port, worker_class)
        elapsed = load.run(lambda number: number < REQUESTS)
    except BaseException:
        server.stop()
        raise
    assert not load.errors, load.errors[:5]
    statuses = collections.Counter(s for _, s, _, _ in load.posts)
    assert statuses == {204: CLIENTS * REQUESTS}, statuses
    sent = load.ids(204)
    found = read_ids(servers, topic, len(sent))
    check_once(found, sent)
    figures = {
        'requests/s': len(load.posts) / elapsed,
        'msgs/s': len(sent) / elapsed,
        'post p99 ms': 1000 * percentile([p[2] for p in load.posts], 0.99),
        'ping p50 ms': 1000 * percentile(load.pings, 0.5),
        'ping p99 ms': 1000 * percentile(load.pings, 0.99),
        'pings': len(load.pings),
        'lost': 0, 'duplicated': 0}
    _FIGURES[worker_class] = figures
    print('\ngunicorn -k %s, %d workers, %d clients: %s' % (
        worker_class, WORKERS, CLIENTS, ', '.join(
            '%s %.1f' % kv if isinstance(kv[1], float) else '%s %d' % kv
            for kv in figures.items())))
    return server, load


@pytest.fixture(scope='module')
def sync_figures(kafka, tmp_path_factory):
    admin = confluent_kafka.admin.AdminClient(
        {'bootstrap.servers': kafka.bootstrap_servers})
    from tests import conftest
    topic = conftest.create_topic(admin, partitions=2)
    server, _ = load_phase('sync', kafka.bootstrap_servers, topic,
                           tmp_path_factory.mktemp('sync'))
    server.stop()
    return _FIGURES['sync']


@pytest.mark.core
@pytest.mark.parametrize('worker_class', ['eventlet', 'gevent'])
def test_green_workers_publish_and_ride_out_an_outage(
        worker_class, sync_figures, controllable_kafka, make_topic,
        tmp_path):
    green_runs.skip_unless_gunicorn_serves(worker_class)
    servers = controllable_kafka.bootstrap_servers
    topic = make_topic(partitions=2)
    server, load = load_phase(worker_class, servers, topic, tmp_path)
    try:
        figures = _FIGURES[worker_class]
        assert figures['ping p99 ms'] < 1000 * PING_P99_LIMIT, figures
        assert request(server.port, 'GET', '/healthcheck')[0] == 200
        assert figures['requests/s'] >= 0.5 * sync_figures['requests/s'], (
            figures, sync_figures)

        # Kafka stops: posts answer at once, 503 once unavailable_after
        # passed; /ping keeps answering.
        for node in controllable_kafka.nodes:
            node.stop()
        stopped = time.monotonic()
        outage = Load(server.port, worker_class + '-outage')
        checked = []
        checker = threading.Thread(target=lambda: checked.append(
            request(server.port, 'GET', '/healthcheck')))
        checker.start()
        outage.run(lambda number: time.monotonic() - stopped <
                   OUTAGE_SECONDS, pause=0.2)
        checker.join()
        for node in controllable_kafka.nodes:
            node.start()
        controllable_kafka.wait_ready()

        assert not outage.errors, outage.errors[:5]
        statuses = collections.Counter(s for _, s, _, _ in outage.posts)
        assert set(statuses) <= {204, 503}, statuses
        assert max(p[2] for p in outage.posts) < 1.0, 'a post waited'
        # The health check's own timeout is 2 s.
        assert checked[0][0] == 503 and checked[0][1] < 3.0, checked
        assert max(outage.pings) < 1.0, 'a ping waited %.2f s' % max(
            outage.pings)
        refused = [sent - stopped for sent, s, _, _ in outage.posts
                   if s == 503]
        assert refused and min(refused) <= UNAVAILABLE_AFTER + 4, (
            'no 503 within %.0f s of the outage' % (UNAVAILABLE_AFTER + 4))
        late = [s for sent, s, _, _ in outage.posts
                if sent - stopped > UNAVAILABLE_AFTER + 4]
        assert late and set(late) == {503}, collections.Counter(late)

        # Kafka back: every envelope answered 204 is there once, none
        # answered 503 is.
        accepted = load.ids(204) + outage.ids(204)
        found = read_ids(servers, topic, len(accepted), timeout=150)
        check_once(found, accepted)
        turned_away = [i for i in outage.ids(503) if found[i]]
        assert not turned_away, '%d answered 503 are in Kafka' % len(
            turned_away)
        print('gunicorn -k %s, Kafka stopped: %s; first 503 after %.1f s; '
              'ping max %.0f ms; post max %.0f ms; after Kafka came back, '
              '%d accepted envelopes in Kafka once' % (
                  worker_class, dict(statuses), min(refused),
                  1000 * max(outage.pings),
                  1000 * max(p[2] for p in outage.posts), len(accepted)))
    finally:
        server.stop()
    log = server.log()
    assert 'Assertion' not in log, log[-3000:]
    assert not tracebacks_through_the_app(log), log[-3000:]


def tracebacks_through_the_app(log):
    """The tracebacks of ``log`` that pass through the library or the app.

    gunicorn's own are left out: gunicorn 25.2's arbiter, under eventlet
    0.40 on Python 3.13, ends with one from its control server's
    ``Thread.join(timeout)``, which that eventlet makes raise.
    """
    blocks = log.split('Traceback (most recent call last):')[1:]
    return [block for block in blocks
            if 'monasca_common' in block.split('\n[', 1)[0] or
            'green_api_app' in block.split('\n[', 1)[0]]


@pytest.mark.compat
@pytest.mark.parametrize('kind', ['eventlet', 'gevent'])
def test_every_client_in_a_patched_process_on_kafka(
        kind, bootstrap_servers, unreachable_servers):
    """green_child on the real broker: see tests/green_child.py."""
    green_runs.check(green_runs.run(kind, bootstrap_servers,
                                    unreachable_servers))


@pytest.mark.core
@pytest.mark.parametrize('kind', ['eventlet', 'gevent'])
def test_a_commit_to_a_silent_kafka_keeps_its_bound_and_the_hub(
        kind, controllable_kafka, make_topic):
    """SIGSTOPped broker: commit() and close() bounded, the hub runs."""
    green_runs.skip_unless_installed(kind)
    topic = make_topic()
    servers = controllable_kafka.bootstrap_servers
    producer = confluent_kafka.Producer({'bootstrap.servers': servers})
    for i in range(100):
        producer.produce(topic, b'%d' % i)
    assert producer.flush(30) == 0
    child = subprocess.Popen(
        [sys.executable, '-m', 'tests.green_silent_kafka_child', kind,
         servers, topic], cwd=ROOT, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == 'READY', (
            child.stderr.read()[-3000:] if child.poll() is not None else '')
        for node in controllable_kafka.nodes:
            node.pause()
        child.stdin.write('go\n')
        child.stdin.flush()
        out, err = child.communicate(timeout=60)
    finally:
        for node in controllable_kafka.nodes:
            node.unpause()
        if child.poll() is None:
            child.kill()
    lines = out.strip().splitlines()
    assert lines, 'the child reported nothing: %s' % err[-3000:]
    report = json.loads(lines[-1])
    print(report)
    assert report['taken'] == 100
    # commit_timeout is 2 s; the offsets stay pending (nothing committed).
    assert report.get('committed') == 0 or 'commit_error' in report, report
    assert report['commit_s'] < 4, report
    assert report['close_s'] < 4, report
    assert report['longest_stall_s'] < 0.25, report
    assert 'Assertion' not in err
