#!/usr/bin/env python3
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

"""A real Apache Kafka for tests: fetched from Maven Central, run in KRaft
or, for the old world, in ZooKeeper mode.

``fetch`` copies the broker jars named in ``tools/kafka/pom.xml`` (for
``--version``, default 4.3.1) into a cache outside the repository
(``$KAFKA_JARS_DIR`` or ``~/.cache/monasca-common/kafka-<version>``) and
reuses it afterwards. ``KafkaCluster`` formats KRaft storage and starts one
or more combined broker+controller JVMs on 127.0.0.1, each on free ports,
waits until the cluster answers a metadata request, and stops them without
leaving a JVM behind (SIGTERM, then SIGKILL after a deadline; children also
die with the process that started them).

``KafkaCluster(version='3.9.1', zookeeper=True)`` starts a ZooKeeper (from
the same jars: Kafka 3.x depends on it) and ZooKeeper-mode brokers whose
metadata live below ``chroot``, as the deployments of the old client ran
them. Kafka 4 has no ZooKeeper mode.

Command line::

    python tools/kafka_broker.py fetch [--version 3.9.1]
    python tools/kafka_broker.py start [--brokers 3]   # until Ctrl-C
    python tools/kafka_broker.py start --version 3.9.1 --zookeeper
"""

import argparse
import base64
import ctypes
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = pathlib.Path(__file__).resolve().parent
POM = HERE / 'kafka' / 'pom.xml'
LOG4J_CONFIG = HERE / 'kafka' / 'log4j2.properties'
KAFKA_VERSION = re.search(r'<kafka.version>([^<]+)<', POM.read_text()).group(1)
COMPLETE_MARKER = '.complete'
READY_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
ZOOKEEPER_SESSION_MS = 6000


class BrokerError(RuntimeError):
    """The test broker could not be fetched, started or stopped."""


def cache_dir() -> pathlib.Path:
    cache = os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache')
    return pathlib.Path(cache) / 'monasca-common'


def default_jar_dir(version: str = KAFKA_VERSION) -> pathlib.Path:
    configured = os.environ.get('KAFKA_JARS_DIR')
    if configured and version == KAFKA_VERSION:
        return pathlib.Path(configured)
    return cache_dir() / ('kafka-' + version)


def fetch_jars(jar_dir: pathlib.Path | None = None,
               version: str = KAFKA_VERSION) -> pathlib.Path:
    """Return a directory holding the broker's jars, fetching them once."""
    if not re.fullmatch(r'\d+\.\d+\.\d+', version):
        raise BrokerError('a Kafka version is major.minor.patch, got %r'
                          % (version,))
    jar_dir = jar_dir or default_jar_dir(version)
    if (jar_dir / COMPLETE_MARKER).exists():
        return jar_dir
    if shutil.which('mvn') is None:
        raise BrokerError('mvn is not installed: it is needed once to fetch '
                          'the Kafka broker jars from Maven Central')
    partial = jar_dir.with_name(jar_dir.name + '.partial')
    shutil.rmtree(partial, ignore_errors=True)
    cmd = ['mvn', '-B', '-q', '-f', str(POM),
           'dependency:copy-dependencies', '-DincludeScope=runtime',
           '-Dkafka.version=' + version,
           '-DoutputDirectory=' + str(partial)]
    result = subprocess.run(cmd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise BrokerError('fetching Kafka %s jars failed:\n%s'
                          % (version, result.stdout[-4000:]))
    (partial / COMPLETE_MARKER).write_text(version + '\n')
    shutil.rmtree(jar_dir, ignore_errors=True)
    partial.rename(jar_dir)
    return jar_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _die_with_parent():
    # Runs in the child between fork and exec: ask the kernel to SIGKILL
    # the JVM if the process that started it dies, so no broker outlives
    # an interrupted test run.
    libc = ctypes.CDLL('libc.so.6', use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def _start_jvm(command: list, log_path: pathlib.Path) -> subprocess.Popen:
    log = open(log_path, 'ab')
    try:
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # The kernel ties the parent-death signal to the *thread* that
            # forked: a broker restarted from a helper thread would die with
            # that thread.
            preexec_fn=(_die_with_parent if threading.current_thread()
                        is threading.main_thread() else None))
    finally:
        log.close()


class _Jvm:
    """A JVM this process started: its state, its stop, its log."""

    process: subprocess.Popen | None = None
    log_path: pathlib.Path

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the broker gets no chance to shut down cleanly."""
        if self.running():
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Controlled shutdown, then SIGKILL once the deadline has passed."""
        if not self.running():
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def pause(self, timeout: float = 10.0) -> None:
        """SIGSTOP: the broker stays connected but answers nothing.

        Returns once every thread of the JVM has stopped: the signal is
        delivered to them one by one, and a request sent meanwhile could
        still be answered.
        """
        if not self.running():
            return
        self.process.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stopped():
            time.sleep(0.01)

    def _stopped(self) -> bool:
        tasks = pathlib.Path('/proc/%d/task' % self.process.pid)
        try:
            states = [(task / 'stat').read_text().rsplit(')', 1)[1].split()[0]
                      for task in tasks.iterdir()]
        except (FileNotFoundError, ProcessLookupError):
            return False  # a thread ended meanwhile: look again
        return all(state in ('T', 't') for state in states)

    def unpause(self) -> None:
        if self.running():
            self.process.send_signal(signal.SIGCONT)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors='replace')
        except FileNotFoundError:
            return '(no log at %s)' % self.log_path
        return '\n'.join(text.splitlines()[-lines:])


class ZooKeeperNode(_Jvm):
    """A standalone ZooKeeper, for brokers in ZooKeeper mode.

    It runs from the Kafka jars (Kafka 3.x ships ZooKeeper), with its admin
    HTTP server off so that it takes no fixed port.
    """

    def __init__(self, cluster: 'KafkaCluster'):
        self.cluster = cluster
        self.port = free_port()
        self.dir = cluster.workdir / 'zookeeper'
        self.log_path = self.dir / 'zookeeper.log'
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return '127.0.0.1:%d' % self.port

    def start(self) -> None:
        if self.running():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / 'zoo.cfg'
        config.write_text(
            'dataDir=%s\nclientPort=%d\nclientPortAddress=127.0.0.1\n'
            'admin.enableServer=false\ntickTime=500\nmaxClientCnxns=0\n'
            '4lw.commands.whitelist=dump,ruok\n'
            % (self.dir / 'data', self.port))
        self.process = _start_jvm(
            self.cluster.java_command(
                'org.apache.zookeeper.server.quorum.QuorumPeerMain',
                heap='128m') + [str(config)],
            self.log_path)

    def wait_ready(self, timeout: float) -> None:
        """Until ZooKeeper answers ``ruok`` with ``imok``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise BrokerError('ZooKeeper exited with %s while starting; '
                                  'log tail:\n%s' % (
                                      self.process.returncode,
                                      self.log_tail()))
            if self.ask('ruok') == 'imok':
                return
            time.sleep(0.1)
        raise BrokerError('ZooKeeper not serving on %s within %.0f s'
                          % (self.address, timeout))

    def ask(self, command: str) -> str:
        """A four-letter command's answer; '' when none came."""
        chunks = []
        try:
            with socket.create_connection(('127.0.0.1', self.port),
                                          2) as conn:
                conn.sendall(command.encode())
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
        except OSError:
            return ''
        return b''.join(chunks).decode(errors='replace')

    def ephemeral_paths(self) -> str:
        """ZooKeeper's ``dump``: the live sessions and their nodes."""
        return self.ask('dump')

    def wait_released(self, path: str, timeout: float) -> None:
        """Wait until no session holds ``path``.

        A killed broker's registration lives until its session expires,
        and a broker started before then finds its id taken and exits.
        """
        deadline = time.monotonic() + timeout
        while path in self.ephemeral_paths().split():
            if time.monotonic() >= deadline:
                raise BrokerError('%s still registered after %.0f s'
                                  % (path, timeout))
            time.sleep(0.2)


class BrokerNode(_Jvm):
    """One broker: combined with a controller in KRaft mode."""

    def __init__(self, cluster: 'KafkaCluster', node_id: int):
        self.cluster = cluster
        self.node_id = node_id
        self.port = free_port()
        self.controller_port = free_port()
        # Secured listeners, when the cluster has them.
        self.secure_ports = ({name: free_port() for name in
                              ('SSL', 'SASL_SSL', 'MTLS')}
                             if cluster.tls is not None else {})
        self.dir = cluster.workdir / ('node-%d' % node_id)
        self.log_path = self.dir / 'server.log'
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return '127.0.0.1:%d' % self.port

    def properties(self) -> dict:
        size = len(self.cluster.nodes)
        replicas = min(3, size)
        advertised = 'PLAINTEXT://%s' % (
            self.cluster.advertised.get(self.node_id, self.address))
        if self.cluster.zookeeper is not None:
            props = {
                'broker.id': self.node_id,
                'zookeeper.connect': self.cluster.zookeeper_connect,
                # A killed broker's registration expires with its session.
                'zookeeper.session.timeout.ms': ZOOKEEPER_SESSION_MS,
                'listeners': 'PLAINTEXT://127.0.0.1:%d' % self.port,
                'advertised.listeners': advertised,
            }
        else:
            props = {
                'process.roles': 'broker,controller',
                'node.id': self.node_id,
                'controller.quorum.voters': self.cluster.voters(),
                'listeners': 'PLAINTEXT://127.0.0.1:%d,'
                             'CONTROLLER://127.0.0.1:%d'
                             % (self.port, self.controller_port),
                'advertised.listeners': advertised,
                'controller.listener.names': 'CONTROLLER',
                'inter.broker.listener.name': 'PLAINTEXT',
                'listener.security.protocol.map':
                    'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
                'share.coordinator.state.topic.replication.factor': replicas,
                'share.coordinator.state.topic.min.isr': 1,
            }
        props.update({
            'log.dirs': str(self.dir / 'data'),
            'num.partitions': 1,
            'default.replication.factor': replicas,
            'min.insync.replicas': 1,
            'offsets.topic.replication.factor': replicas,
            'offsets.topic.num.partitions': 5,
            'transaction.state.log.replication.factor': replicas,
            'transaction.state.log.min.isr': 1,
            'transaction.state.log.num.partitions': 5,
            # Tests create their topics; an unknown topic must stay unknown.
            'auto.create.topics.enable': 'false',
            'group.initial.rebalance.delay.ms': 0,
            'group.min.session.timeout.ms': 1000,
            'num.network.threads': 2,
            'num.io.threads': 4,
            'log.retention.check.interval.ms': 600000,
        })
        if self.secure_ports:
            extra = ''.join(',%s://127.0.0.1:%d' % item
                            for item in self.secure_ports.items())
            props['listeners'] += extra
            props['advertised.listeners'] += extra
            props['listener.security.protocol.map'] += (
                ',SSL:SSL,SASL_SSL:SASL_SSL,MTLS:SSL')
            props.update(self.cluster.tls.broker_properties())
        props.update(self.cluster.broker_properties)
        return props

    def secure_address(self, listener: str) -> str:
        """``127.0.0.1:port`` of the SSL, SASL_SSL or MTLS listener."""
        return '127.0.0.1:%d' % self.secure_ports[listener]

    def write_config(self) -> pathlib.Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / 'server.properties'
        path.write_text(''.join('%s=%s\n' % kv
                                for kv in self.properties().items()))
        return path

    def format(self, cluster_id: str) -> None:
        config = self.write_config()
        result = subprocess.run(
            self.cluster.java_command('kafka.tools.StorageTool') +
            # One argument: an id may begin with '-', which the tool's
            # parser would take for an option.
            ['format', '--cluster-id=' + cluster_id, '-c', str(config),
             '--ignore-formatted'] +
            (['--add-scram', self.cluster.tls.scram_format_argument()]
             if self.cluster.tls is not None else []),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            raise BrokerError('formatting KRaft storage of node %d failed:\n%s'
                              % (self.node_id, result.stdout[-4000:]))

    def start(self) -> None:
        if self.running():
            return
        config = self.write_config()
        if self.cluster.zookeeper is not None:
            self.cluster.zookeeper.wait_released(
                '%s/brokers/ids/%d' % (self.cluster.chroot, self.node_id),
                READY_TIMEOUT)
        self.process = _start_jvm(
            self.cluster.java_command('kafka.Kafka') + [str(config)],
            self.log_path)


class KafkaCluster:
    """One or more KRaft nodes on 127.0.0.1, started by this process.

    :param size: number of combined broker+controller nodes.
    :param workdir: where storage and logs go (a new temporary directory by
        default, removed by :meth:`stop` unless ``keep_workdir``).
    :param broker_properties: extra ``server.properties`` entries.
    :param heap: JVM heap per node.
    :param secure: also listen with TLS (``SSL``), SASL/SCRAM over TLS
        (``SASL_SSL``) and mutual TLS (``MTLS``); see ``kafka_tls``.
    :param version: the Apache Kafka release to run.
    :param zookeeper: run the brokers in ZooKeeper mode, with a ZooKeeper
        of their own (Kafka 3.x only), their metadata and the offsets of
        old clients below ``chroot``.
    """

    def __init__(self, size: int = 1, workdir: str | None = None,
                 broker_properties: dict | None = None, heap: str = '512m',
                 jar_dir: pathlib.Path | None = None,
                 keep_workdir: bool = False, secure: bool = False,
                 version: str = KAFKA_VERSION, zookeeper: bool = False,
                 chroot: str = '/kafka'):
        if zookeeper and (secure or int(version.split('.')[0]) >= 4):
            raise BrokerError('ZooKeeper mode is for Kafka 3.x, without the '
                              'secured listeners; got %s' % version)
        self.version = version
        self.jar_dir = fetch_jars(jar_dir, version)
        self.owns_workdir = workdir is None and not keep_workdir
        self.workdir = pathlib.Path(
            workdir or tempfile.mkdtemp(prefix='monasca-kafka-'))
        self.broker_properties = dict(broker_properties or {})
        self.heap = heap
        self.advertised: dict[int, str] = {}
        self.tls = None
        if secure:
            if __package__:
                from . import kafka_tls
            else:  # run as a script, from its own directory
                import kafka_tls
            self.tls = kafka_tls.TestTLS(self.workdir / 'tls')
        self.zookeeper = ZooKeeperNode(self) if zookeeper else None
        self.chroot = chroot
        self.nodes: list[BrokerNode] = []
        self.nodes.extend(BrokerNode(self, i + 1) for i in range(size))
        self.cluster_id = str(uuid.uuid4())

    @property
    def zookeeper_connect(self) -> str:
        """``host:port/chroot``: where the brokers keep their metadata."""
        return self.zookeeper.address + self.chroot

    def java_command(self, main_class: str, heap: str | None = None) -> list:
        heap = heap or self.heap
        return ['java', '-Xms%s' % heap, '-Xmx%s' % heap,
                '-XX:+UseG1GC', '-Djava.awt.headless=true',
                '-Dlog4j2.configurationFile=%s' % LOG4J_CONFIG,
                '-cp', str(self.jar_dir / '*'), main_class]

    def voters(self) -> str:
        return ','.join('%d@127.0.0.1:%d' % (n.node_id, n.controller_port)
                        for n in self.nodes)

    @property
    def bootstrap_servers(self) -> str:
        return ','.join(n.address for n in self.nodes)

    def node(self, node_id: int) -> BrokerNode:
        return self.nodes[node_id - 1]

    def start(self, timeout: float = READY_TIMEOUT) -> 'KafkaCluster':
        try:
            if self.zookeeper is not None:
                self.zookeeper.start()
                self.zookeeper.wait_ready(timeout)
            else:
                for node in self.nodes:
                    node.format(_kraft_cluster_id(self.cluster_id))
            for node in self.nodes:
                node.start()
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT,
                   nodes: list | None = None) -> None:
        """Wait until every running node is in the cluster's metadata."""
        from confluent_kafka.admin import AdminClient
        from confluent_kafka import KafkaException

        wanted = {n.node_id for n in (nodes or self.nodes) if n.running()}
        live = [n.address for n in self.nodes if n.running()]
        admin = AdminClient({'bootstrap.servers': ','.join(live),
                             'log_level': 0})
        deadline = time.monotonic() + timeout
        seen = set()
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.process is not None and not node.running():
                    if node.node_id in wanted:
                        raise BrokerError(
                            'Kafka node %d exited with %s while starting; '
                            'log tail:\n%s' % (node.node_id,
                                               node.process.returncode,
                                               node.log_tail()))
            try:
                md = admin.list_topics(timeout=2)
                seen = set(md.brokers)
                if wanted <= seen:
                    return
            except KafkaException:
                pass
            time.sleep(0.2)
        raise BrokerError('Kafka nodes %s not ready within %.0f s (seen: %s); '
                          'log tail:\n%s' % (sorted(wanted), timeout,
                                             sorted(seen), self.log_tail()))

    def stop(self) -> None:
        for node in self.nodes:
            node.unpause()
        for node in self.nodes:
            if node.running():
                node.process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for node in self.nodes:
            node.stop(max(0.1, deadline - time.monotonic()))
        if self.zookeeper is not None:
            self.zookeeper.stop(max(0.1, deadline - time.monotonic()))
        if self.owns_workdir:
            # Keep the logs (a failing run prints them); drop the data.
            for node in self.nodes:
                shutil.rmtree(node.dir / 'data', ignore_errors=True)
            if self.zookeeper is not None:
                shutil.rmtree(self.zookeeper.dir / 'data',
                              ignore_errors=True)

    def log_tail(self, lines: int = 60) -> str:
        tails = ['--- node %d (%s) ---\n%s'
                 % (n.node_id, n.log_path, n.log_tail(lines))
                 for n in self.nodes]
        if self.zookeeper is not None:
            tails.append('--- zookeeper (%s) ---\n%s' % (
                self.zookeeper.log_path, self.zookeeper.log_tail(lines)))
        return '\n'.join(tails)

    def __enter__(self) -> 'KafkaCluster':
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _kraft_cluster_id(value: str) -> str:
    # KRaft wants a base64url-encoded 16-byte UUID, 22 characters.
    raw = uuid.UUID(value).bytes
    return base64.urlsafe_b64encode(raw).decode().rstrip('=')


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    fetch = sub.add_parser('fetch', help='fetch the broker jars into the '
                                         'cache')
    fetch.add_argument('--version', action='append',
                       help='a Kafka release (repeatable; default %s)'
                            % KAFKA_VERSION)
    start = sub.add_parser('start', help='run a cluster until interrupted')
    start.add_argument('--brokers', type=int, default=1)
    start.add_argument('--workdir')
    start.add_argument('--version', default=KAFKA_VERSION)
    start.add_argument('--zookeeper', action='store_true',
                       help='ZooKeeper mode (Kafka 3.x), with a ZooKeeper')
    args = parser.parse_args(argv)

    if args.command == 'fetch':
        for version in args.version or [KAFKA_VERSION]:
            print(fetch_jars(version=version))
        return 0
    cluster = KafkaCluster(args.brokers, workdir=args.workdir,
                           keep_workdir=bool(args.workdir),
                           version=args.version, zookeeper=args.zookeeper)
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    try:
        cluster.start()
        print('KAFKA_BOOTSTRAP_SERVERS=%s' % cluster.bootstrap_servers,
              flush=True)
        if cluster.zookeeper is not None:
            print('ZOOKEEPER=%s' % cluster.zookeeper_connect, flush=True)
        print('logs: %s' % cluster.workdir, flush=True)
        while not stop:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())
