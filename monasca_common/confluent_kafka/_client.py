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

"""What the producer and the consumer share around their librdkafka handle.

Building the handle (errors name the property, never a secret), its log
lines and error reports, the closed and fork guards, and the context
manager. Each client says what a fork means for it in :meth:`_forked`.
"""

from __future__ import annotations

import logging
import os
import typing
import weakref

import confluent_kafka

from monasca_common.confluent_kafka import config as kafka_config
from monasca_common.confluent_kafka import errors
from monasca_common.confluent_kafka import logs
from monasca_common.confluent_kafka import metrics
from monasca_common.confluent_kafka import reporting
from monasca_common.confluent_kafka import runtime

LIBRDKAFKA_LOG = logs.LIBRDKAFKA_LOG

# librdkafka names a property by its canonical name in errors; say which
# alias the caller used.
_ALIASES = {
    'queue.buffering.max.ms': 'linger.ms',
    'compression.codec': 'compression.type',
    'message.send.max.retries': 'retries',
    'request.required.acks': 'acks',
    'metadata.broker.list': 'bootstrap.servers',
}

# librdkafka handles inherited through fork(): destroying one waits for
# threads that do not exist in the child and hangs it, so the child keeps
# them referenced, unused, until it exits.
_INHERITED_HANDLES: list = []


def abandon_inherited(handle) -> None:
    """Keep a parent process's client alive, untouched, in a child."""
    _INHERITED_HANDLES.append(handle)


def create(client_class: type, config: dict):
    """Build the librdkafka client; errors name the property, not secrets."""
    config.setdefault('logger', LIBRDKAFKA_LOG)
    try:
        return client_class(config)
    except confluent_kafka.KafkaException as exc:
        text = exc.args[0].str()
        if 'ssl.key.location failed' in text and config.get(
                'ssl.key.password'):
            text += ' (is ssl.key.password the key\'s password?)'
        for canonical, alias in _ALIASES.items():
            if '"%s"' % canonical in text and alias in config:
                text += ' (given as "%s")' % alias
        raise errors.ConfigurationError(
            'invalid Kafka client configuration: %s'
            % kafka_config.scrub(text, config)) from None
    except (TypeError, ValueError) as exc:
        raise errors.ConfigurationError(
            'invalid Kafka client configuration: %s'
            % kafka_config.scrub(str(exc), config)) from None


def is_refusal(err: confluent_kafka.KafkaError) -> bool:
    """Kafka refused the client's credentials or its TLS handshake.

    librdkafka retries such a connection forever; the clients say so to
    the caller instead of waiting out their timeouts.
    """
    code = err.code()
    if code in (confluent_kafka.KafkaError._AUTHENTICATION,
                confluent_kafka.KafkaError._SSL):
        return True
    # A client certificate the broker refuses reaches librdkafka as the
    # broker's TLS alert on a failed receive.
    text = err.str()
    return (code == confluent_kafka.KafkaError._TRANSPORT and
            'alert' in text and 'certificate' in text)


def log_client_error(log: logging.Logger, role: str,
                     err: confluent_kafka.KafkaError, servers: str) -> None:
    """Log an error librdkafka reports outside any message."""
    code = err.code()
    if err.fatal():
        log.error('Kafka %s fatal error: %s', role, err.str())
    elif code == confluent_kafka.KafkaError._ALL_BROKERS_DOWN:
        log.warning('Kafka %s: no broker reachable at %s', role, servers)
    else:
        # Connection-level trouble librdkafka retries by itself; its own
        # log line already says so.
        log.debug('Kafka %s: %s', role, err.str())


def _forward_error(owner_ref, err) -> None:
    owner = owner_ref()
    if owner is not None:
        owner._on_client_error(err)


def _forward_statistics(owner_ref, text) -> None:
    owner = owner_ref()
    if owner is not None:
        owner._on_statistics(text)


class Client:
    """Base of the producer and the consumer.

    :ivar _config: the librdkafka configuration, ``error_cb`` routed to
        :meth:`_on_client_error` and ``stats_cb`` to :meth:`_on_statistics`
        (held weakly: librdkafka's reference must not keep a dropped client
        alive). The caller's own callbacks still get every call.
    """

    _role = 'client'
    _log = logging.getLogger(__name__)

    def _init_client(self, config: dict) -> None:
        self._user_error_cb: typing.Callable | None = config.pop('error_cb',
                                                                 None)
        self._user_stats_cb: typing.Callable | None = config.pop('stats_cb',
                                                                 None)
        owner = weakref.ref(self)
        config['error_cb'] = lambda err: _forward_error(owner, err)
        config['stats_cb'] = lambda text: _forward_statistics(owner, text)
        self._statistics = metrics.Statistics()
        self._reporter: reporting.StatsdReporter | None = None
        self._config = config
        self._closed = False
        self._pid = os.getpid()
        #: How this client waits on librdkafka (plain or green threads).
        self._runtime = runtime.current()

    @property
    def _servers(self) -> str:
        return self._config['bootstrap.servers']

    def _on_client_error(self, err: confluent_kafka.KafkaError) -> None:
        log_client_error(self._log, self._role, err, self._servers)
        self._call_user(self._user_error_cb, err)

    def _on_statistics(self, text: str) -> None:
        document = self._statistics.update(text)
        if document is not None:
            self._statistics_received(document)
        self._call_user(self._user_stats_cb, text)

    def _call_user(self, callback: typing.Callable | None, arg) -> None:
        if callback is None:
            return
        try:
            callback(arg)
        except BaseException:
            # Raised into librdkafka's poll, it would surface in an
            # unrelated call of the service.
            self._log.exception('Kafka callback %r raised', callback)

    def _statistics_received(self, document: dict) -> None:
        """A statistics report came (on the polling thread)."""

    def _start_reporting(self,
                         reporter: reporting.StatsdReporter | None) -> None:
        """Have ``reporter`` (or ``[kafka_metrics]``'s) send metrics."""
        self._reporter = reporting.resolve(reporter)
        if self._reporter is not None:
            self._reporter.add(self)

    def _stop_reporting(self) -> None:
        if self._reporter is not None:
            self._reporter.remove(self)

    @property
    def client_id(self) -> str:
        return str(self._config.get('client.id', 'rdkafka'))

    def _check_usable(self) -> None:
        if self._closed:
            raise errors.ClientClosedError('the Kafka %s is closed'
                                           % self._role)
        if self._pid != os.getpid():
            self._forked()

    def _forked(self) -> None:
        """The client is used in a child of the process that built it."""
        raise NotImplementedError

    def close(self, timeout: float = 10.0):
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _repr_fields(self) -> str:
        return ''

    def __repr__(self) -> str:
        return '<%s servers=%s%s closed=%s>' % (
            type(self).__name__, self._servers, self._repr_fields(),
            self._closed)
