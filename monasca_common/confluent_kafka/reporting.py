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

"""Sends the clients' metrics to a statsd listener, as Monasca metrics.

A :class:`StatsdReporter` takes every client's
:meth:`~monasca_common.confluent_kafka.producer.KafkaProducer.metrics`
snapshot once per interval, on a thread of its own, and sends each figure
as a gauge through monasca-statsd, the client of the monasca-agent's
statsd listener (its dimensions travel as ``|#{'name': 'value'}``, the
form that listener reads). Names are ``kafka.client.<role>.<name>``;
dimensions ``service``, ``client_id`` and, where they apply, ``topic``,
``partition`` or ``broker``. Counts are totals since the client started:
a lost datagram loses no increment.

Off unless asked for: the clients take a reporter as ``metrics_reporter``,
or build one shared per process from ``[kafka_metrics] statsd_address``
(see :mod:`~monasca_common.confluent_kafka.opts`). monasca-statsd is an
optional dependency (``pip install monasca-common[statsd]``).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import typing
import weakref

from monasca_common.confluent_kafka import errors
from monasca_common.confluent_kafka import logs
from monasca_common.confluent_kafka import opts

LOG = logging.getLogger(__name__)

DEFAULT_ADDRESS = '127.0.0.1:8125'
# Metrics per datagram: the monasca-agent reads datagrams of up to 8 KiB,
# and a metric with its dimensions takes up to about 250 bytes.
_PER_DATAGRAM = 25


def _statsd():
    global _monascastatsd
    if _monascastatsd is None:
        root = logging.getLogger()
        handlers = list(root.handlers)
        try:
            import monascastatsd
        except ImportError:
            raise errors.ConfigurationError(
                'sending Kafka client metrics needs monasca-statsd: pip '
                'install "monasca-common[statsd]"') from None
        # Its import calls logging.basicConfig(): the service, not a
        # library, decides where the root logger writes.
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        # A listener that is down fails every send: one line per 30 s.
        logging.getLogger('monascastatsd.connection').addFilter(
            logs.RepeatFilter())
        _monascastatsd = monascastatsd
    return _monascastatsd


_monascastatsd = None


def _parse_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(':')
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise errors.ConfigurationError(
            'statsd address must be host:port, got %r' % (address,))
    return host.strip('[]'), int(port)


class StatsdReporter:
    """Reports the snapshots of clients every ``interval`` seconds.

    :param address: ``host:port`` of the statsd listener (the
        monasca-agent's listens on 8125).
    :param interval: seconds between two reports.
    :param service: the ``service`` dimension (default: the program's
        name).
    :param dimensions: more dimensions for every metric.
    :raises ConfigurationError: the address is not ``host:port`` or does
        not resolve, or monasca-statsd is not installed.
    """

    def __init__(self, address: str = DEFAULT_ADDRESS, interval: float = 30.0,
                 service: str | None = None,
                 dimensions: dict[str, str] | None = None):
        if not interval or interval <= 0:
            raise errors.ConfigurationError(
                'the metrics interval must be positive, got %r'
                % (interval,))
        self.address = address
        self.interval = float(interval)
        self.dimensions = dict(dimensions or {})
        self.dimensions['service'] = service or os.path.basename(
            sys.argv[0] or 'python')
        self._host, self._port = _parse_address(address)
        self._statsd = _statsd()
        self._clients: weakref.WeakSet = weakref.WeakSet()
        self._lock = threading.Lock()
        # One report at a time: the connection buffers while it sends.
        self._sending = threading.Lock()
        self._pid = -1
        self._connect()

    def _connect(self) -> None:
        try:
            self._connection = self._statsd.Connection(
                host=self._host, port=self._port,
                max_buffer_size=_PER_DATAGRAM)
        except OSError as exc:
            raise errors.ConfigurationError(
                'statsd address %s: %s' % (self.address, exc)) from None
        self._gauge = self._statsd.Client(
            connection=self._connection,
            dimensions=self.dimensions).get_gauge()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def add(self, client: typing.Any) -> None:
        """Report ``client`` (held weakly) from the next interval on."""
        if self._pid != os.getpid():
            # A forked child: the parent's thread and clients stayed in
            # the parent, and a lock it held at the fork stays held here.
            self._lock = threading.Lock()
            self._sending = threading.Lock()
            self._clients = weakref.WeakSet()
            self._connect()
        with self._lock:
            self._clients.add(client)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name='kafka-metrics-reporter',
                    daemon=True)
                self._thread.start()

    def remove(self, client: typing.Any) -> None:
        """Stop reporting ``client`` (it is closing)."""
        with self._lock:
            self._clients.discard(client)

    def report(self) -> int:
        """Send every client's snapshot now; how many metrics were sent."""
        with self._lock:
            clients = list(self._clients)
        sent = 0
        with self._sending, self._connection:
            for client in clients:
                try:
                    snapshot = client.metrics()
                except Exception as exc:
                    LOG.debug('Kafka metrics of %r not taken: %s', client,
                              exc)
                    continue
                base = {'client_id': snapshot.client_id}
                for name, value, dimensions in snapshot.samples():
                    dimensions.update(base)
                    self._gauge.send(name, _number(value), dimensions)
                    sent += 1
        return sent

    def _run(self) -> None:
        stop = self._stop
        while not stop.wait(self.interval):
            try:
                self.report()
            except Exception:
                LOG.exception('Kafka metrics report failed')

    def close(self) -> None:
        """Stop the thread; the clients are not reported any more."""
        self._stop.set()
        with self._lock:
            self._clients = weakref.WeakSet()

    def __repr__(self) -> str:
        return '<StatsdReporter %s every %g s service=%s>' % (
            self.address, self.interval, self.dimensions['service'])


def _number(value: float) -> float:
    if isinstance(value, float):
        return round(value, 3)
    return value


_shared: StatsdReporter | None = None
_shared_settings: tuple | None = None
_shared_lock = threading.Lock()


def from_options() -> StatsdReporter | None:
    """The process's reporter per ``[kafka_metrics]``; None if unset."""
    global _shared, _shared_settings
    settings = opts.metrics_settings()
    if not settings.statsd_address:
        return None
    wanted = (settings.statsd_address, settings.interval, settings.service)
    with _shared_lock:
        if _shared is None or _shared_settings != wanted:
            if _shared is not None:
                _shared.close()
            _shared = StatsdReporter(*wanted)
            _shared_settings = wanted
        return _shared


def resolve(reporter: StatsdReporter | None) -> StatsdReporter | None:
    """The reporter a new client uses: the one given, or the options'."""
    if reporter is not None:
        return reporter
    return from_options()
