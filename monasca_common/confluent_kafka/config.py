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

"""librdkafka configuration: defaults, validation and redaction.

The clients take librdkafka properties as keyword arguments
(``**{'queue.buffering.max.messages': 1000}``) and pass them through. What
this module adds: bootstrap servers given as a string or a list, the
library's defaults, errors that name the offending property at
construction, and secret values kept out of every log line, repr and error.
"""

from __future__ import annotations

import collections.abc
import logging
import math
import re
import threading
import typing

from monasca_common.confluent_kafka import errors
from monasca_common.confluent_kafka import opts
from monasca_common.confluent_kafka import versions

LOG = logging.getLogger(__name__)

# Properties whose values are secrets: never logged, never in a repr or an
# error message.
_SECRET_KEY = re.compile(r'password|secret|passphrase|token|credential|'
                         r'sasl\.oauthbearer\.config|ssl\.key\.pem|'
                         r'ssl_key|ssl\.keystore', re.IGNORECASE)

PRODUCER_DEFAULTS: dict[str, typing.Any] = {
    # acks=all, in-order, no duplicates on the broker when librdkafka
    # retries a request whose response was lost.
    'enable.idempotence': True,
    # A little lingering builds real batches without hurting latency.
    'linger.ms': 5,
    'batch.num.messages': 10000,
    # librdkafka's default (300 s) keeps an API accepting data for five
    # minutes after Kafka has gone; two minutes rides out a broker restart
    # or a leader election and matches the Java client's delivery timeout.
    'message.timeout.ms': 120000,
    'compression.type': 'none',
    # librdkafka holds messages for a topic the broker says does not exist
    # for 30 s, in case it is being created; a call to a misspelt topic
    # then waits out a sync publish's whole timeout. Creation propagates
    # within a second or two.
    'topic.metadata.propagation.max.ms': 5000,
}

CONSUMER_DEFAULTS: dict[str, typing.Any] = {
    # Offsets are committed only for what was handed to the caller.
    'enable.auto.commit': False,
    'enable.auto.offset.store': False,
    # A new group reads from the start, as the ZooKeeper-based client did.
    'auto.offset.reset': 'earliest',
    # Incremental rebalancing: members keep their other partitions while
    # one moves.
    'partition.assignment.strategy': 'cooperative-sticky',
    'enable.partition.eof': False,
    # librdkafka's default (1000 ms) stops fetching a partition for a second
    # whenever its prefetch queue crossed queued.min.messages or
    # queued.max.messages.kbytes: a consumer catching up a backlog reads a
    # queueful, then waits. Measured on one broker: 136k -> 725k+ msgs/s.
    'fetch.queue.backoff.ms': 50,
}


def is_secret(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def redacted(config: collections.abc.Mapping) -> dict:
    """A copy of ``config`` that is safe to log."""
    return {k: ('*****' if is_secret(k) else v) for k, v in config.items()}


def scrub(text: str, config: collections.abc.Mapping) -> str:
    """Remove the secret values of ``config`` from ``text``.

    librdkafka quotes the values it names. A secret is replaced where it
    stands quoted, and anywhere only when it is long enough not to be a
    piece of ordinary words: masking "lid" inside "Invalid" would tell it.
    """
    for key, value in config.items():
        if is_secret(key) and value not in (None, ''):
            value = str(value)
            for quote in ('"', "'"):
                text = text.replace(quote + value + quote,
                                    quote + '*****' + quote)
            if len(value) >= 8:
                text = text.replace(value, '*****')
    return text


def bootstrap_servers(servers: str | collections.abc.Iterable[str]) -> str:
    """``host:port[,host:port...]`` from a string or a list of them.

    Lists come from oslo.config ``ListOpt`` values; plain strings from
    older configuration. Each item may itself hold a comma-separated list.
    """
    if isinstance(servers, bytes):
        servers = servers.decode('utf-8')
    if isinstance(servers, str):
        items = [servers]
    elif isinstance(servers, collections.abc.Iterable):
        items = list(servers)
        for item in items:
            if not isinstance(item, str):
                raise errors.ConfigurationError(
                    'bootstrap servers must be strings, got %s'
                    % type(item).__name__)
    else:
        raise errors.ConfigurationError(
            'bootstrap servers must be a "host:port,..." string or a list '
            'of them, got %s' % type(servers).__name__)
    hosts = [h.strip() for item in items for h in item.split(',')]
    hosts = [h for h in hosts if h]
    if not hosts:
        raise errors.ConfigurationError('no Kafka bootstrap servers given')
    for host in hosts:
        port = host.rsplit(':', 1)[-1] if ':' in host else ''
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise errors.ConfigurationError(
                'Kafka bootstrap server %r is not of the form host:port'
                % host)
    return ','.join(hosts)


def with_options(role: str, overrides: collections.abc.Mapping) -> dict:
    """``overrides`` over what ``[kafka_client]`` sets for ``role``.

    Options an operator set apply to every client; a property the code
    passes explicitly wins.
    """
    properties = opts.client_properties(role)
    properties.update(overrides)
    return properties


def merge(defaults: collections.abc.Mapping, servers, overrides) -> dict:
    """The librdkafka configuration: defaults, then the caller's values."""
    config = dict(defaults)
    for key, value in overrides.items():
        if not isinstance(key, str) or not key:
            raise errors.ConfigurationError(
                'configuration keys must be librdkafka property names, got %r'
                % (key,))
        if value is None:
            # Unset: librdkafka's own default applies.
            config.pop(key, None)
        else:
            config[key] = value
    config['bootstrap.servers'] = bootstrap_servers(servers)
    return config


def choose_group_protocol(asked: str,
                          offered: typing.Callable[[], set | None] | None
                          ) -> str:
    """``classic`` or ``consumer`` for ``group.protocol=asked``.

    A member with ``group.protocol=consumer`` on a broker that does not
    offer it (any Kafka before 4.0 by default) reads nothing and reports
    nothing: ``auto`` takes it only where every broker says it offers it,
    and an explicit ``consumer`` that a broker says it does not offer is
    refused. When the brokers cannot be asked, ``auto`` is ``classic``,
    which every broker speaks.

    :raises ConfigurationError: ``consumer`` asked, not offered, or the
        installed confluent-kafka is older than the protocol.
    """
    feature = 'group.protocol=consumer'
    if not versions.offers(feature):
        if asked != 'auto':
            versions.require(feature)
        LOG.info('Kafka consumer: group protocol classic (confluent-kafka '
                 '%s has no production-ready consumer protocol)',
                 versions.INSTALLED)
        return 'classic'
    found = offered() if offered is not None else None
    if asked == 'auto':
        chosen = 'consumer' if found and 'consumer' in found else 'classic'
        LOG.info('Kafka consumer: group protocol %s (the brokers offer %s)',
                 chosen, 'unknown' if found is None else
                 ', '.join(sorted(found)))
        return chosen
    if found is not None and 'consumer' not in found:
        raise errors.ConfigurationError(
            'group.protocol=consumer, but the brokers offer only %s '
            '(group.coordinator.rebalance.protocols): such a member would '
            'read nothing; use classic, or auto' % ', '.join(sorted(found)))
    return asked


_LEGAL_TOPIC = re.compile(r'^[a-zA-Z0-9._-]{1,249}$')


def int_property(config: collections.abc.Mapping, name: str,
                 default: int) -> int:
    """An integer property of ``config``, for the client's own use."""
    try:
        return int(config.get(name, default))
    except (TypeError, ValueError):
        raise errors.ConfigurationError(
            'invalid Kafka client configuration: %s must be an integer, '
            'got %r' % (name, config[name])) from None


def legal_topic(name) -> bool:
    """Kafka's rule for topic names (``.`` and ``..`` are refused too)."""
    return (isinstance(name, str) and bool(_LEGAL_TOPIC.match(name)) and
            name not in ('.', '..'))


def check_topic(name, error: type[Exception] = errors.ConfigurationError
                ) -> str:
    """``name`` if Kafka allows it as a topic name; else raise ``error``."""
    if not legal_topic(name):
        raise error('illegal Kafka topic name %r: 1 to 249 of a-z A-Z 0-9 '
                    '. _ -, and not "." or ".."' % (name,))
    return name


# threading refuses waits beyond TIMEOUT_MAX; a year is forever enough.
_LONGEST_WAIT = min(threading.TIMEOUT_MAX, 365 * 24 * 3600.0)


def check_topics(topic) -> list[str]:
    """``topic``, a name or several, as a list of legal names."""
    topics = [topic] if isinstance(topic, str) else list(topic or ())
    if not topics:
        raise errors.ConfigurationError('no topic to consume given')
    return [check_topic(name) for name in topics]


def check_timeout(name: str, value, zero: bool = False) -> float:
    """A timeout in seconds: a finite number, positive (or 0 if allowed).

    Negative values mean "forever" to librdkafka and NaN compares false
    with everything: both are refused here, with the argument's name. An
    infinite or huge value waits as long as a thread can wait.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise errors.ConfigurationError(
            '%s must be a number of seconds, got %r' % (name, value))
    value = float(value)
    if math.isnan(value) or value < 0 or (value == 0 and not zero):
        raise errors.ConfigurationError(
            '%s must be a number of seconds %s, got %r'
            % (name, '>= 0' if zero else '> 0', value))
    return min(value, _LONGEST_WAIT)


def refuse(config: collections.abc.Mapping, names, reason: str) -> None:
    """Raise if ``config`` sets any of ``names``; ``reason`` says why."""
    for name in names:
        if name in config:
            raise errors.ConfigurationError('%s can not be set: %s'
                                            % (name, reason))


def check_group_id(group_id) -> str:
    # An empty group.id makes librdkafka abort the whole process (an
    # assertion in the consumer constructor), so it never reaches it.
    if not isinstance(group_id, str) or not group_id.strip():
        raise errors.ConfigurationError(
            'group_id must be a non-empty string, got %r' % (group_id,))
    return group_id


#: ``offered(config)``: the group protocols every broker of the cluster
#: ``config`` names offers, or None when they could not be asked.
OfferedProtocols = typing.Callable[[dict], typing.Optional[set]]


def consumer_config(servers, group_id: str, session_timeout_ms: int,
                    fetch_min_bytes: int | None, client_id: str,
                    overrides: dict,
                    offered: OfferedProtocols | None = None) -> dict:
    """The consumer's librdkafka configuration.

    The consumer commits only what it handed out, itself: librdkafka's
    auto commit, auto offset store and its own ``on_commit`` are refused.
    With ``group.protocol=consumer`` (KIP-848, Kafka 4.0+) the broker owns
    the session, the heartbeat and the assignor and refuses clients that
    set them, so they are left out (and refused if given).
    ``group.protocol=auto`` (this library's, not librdkafka's) becomes
    ``consumer`` where ``offered`` says every broker offers it, ``classic``
    otherwise; an explicit ``consumer`` the brokers do not offer is
    refused (see :func:`choose_group_protocol`).
    """
    overrides = with_options('consumer', overrides)
    refuse(overrides, ('on_commit', 'enable.auto.commit',
                       'enable.auto.offset.store'),
           'the consumer commits only what it handed out, itself')
    extra: dict[str, typing.Any] = {'group.id': group_id,
                                    'session.timeout.ms': session_timeout_ms}
    if fetch_min_bytes is not None:
        extra['fetch.min.bytes'] = fetch_min_bytes
    if client_id:
        extra['client.id'] = client_id
    extra.update(overrides)
    # Checked after the caller's properties: group.id given as one would
    # reach librdkafka unchecked.
    check_group_id(extra.get('group.id'))
    defaults = CONSUMER_DEFAULTS
    if extra.get('group.protocol') in ('auto', 'consumer'):
        probe = merge(defaults, servers, extra)
        extra['group.protocol'] = choose_group_protocol(
            extra['group.protocol'],
            None if offered is None else lambda: offered(probe))
    if extra.get('group.protocol') == 'consumer':
        owned = ('session.timeout.ms', 'heartbeat.interval.ms',
                 'partition.assignment.strategy')
        refuse(overrides, owned, 'with group.protocol=consumer the broker '
               'owns it')
        for name in owned:
            extra.pop(name, None)
        defaults = {k: v for k, v in defaults.items()
                    if k != 'partition.assignment.strategy'}
    elif 'heartbeat.interval.ms' not in extra and \
            extra.get('session.timeout.ms'):
        # librdkafka heartbeats every 3 s by default: with a session
        # shorter than ~9 s the member would time itself out and lose its
        # partitions over and over.
        extra['heartbeat.interval.ms'] = max(
            100, min(3000, int_property(extra, 'session.timeout.ms', 0) // 3))
    return merge(defaults, servers, extra)
