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

"""``[kafka_client]`` and ``[kafka_metrics]``: what an operator sets for
every Kafka client.

Security and tuning for every client a service builds through this library
(the new classes, the factory, the legacy adapters), from the service's
own configuration file, with no change to its code:

.. code-block:: ini

  [kafka_client]
  security_protocol = SASL_SSL
  sasl_mechanism = SCRAM-SHA-512
  sasl_username = monasca
  sasl_password = secret
  ssl_ca_location = /etc/monasca/kafka-ca.pem

``[kafka_metrics]`` sends every client's metrics to a statsd listener
(see :mod:`~monasca_common.confluent_kafka.reporting`):

.. code-block:: ini

  [kafka_metrics]
  statsd_address = 127.0.0.1:8125

No Monasca service defines these groups, and no option is required. An
option left unset leaves the library's default, or librdkafka's, alone;
a property a client is given as a keyword argument wins over the option.
The options are registered on ``cfg.CONF`` when the first client is built
(and listed by ``list_opts`` for oslo-config-generator).
"""

from __future__ import annotations

import typing

from oslo_config import cfg

client_group = cfg.OptGroup(
    name='kafka_client', title='Kafka client',
    help='librdkafka settings applied to every Kafka client of the service.')

# Each option is the librdkafka property of its name, dots for
# underscores, for every client, but for these.
_RENAMED = {
    'ssl_endpoint_identification': 'ssl.endpoint.identification.algorithm',
}
_ONLY_FOR = {
    'compression_type': 'producer', 'linger_ms': 'producer',
    'batch_size': 'producer', 'message_timeout_ms': 'producer',
    'session_timeout_ms': 'consumer', 'max_poll_interval_ms': 'consumer',
    'auto_offset_reset': 'consumer', 'group_protocol': 'consumer',
}

# Options of the library's own, not librdkafka properties.
_NOT_PROPERTIES = frozenset(('librdkafka_properties', 'exactly_once'))

client_opts = [
    cfg.StrOpt('security_protocol',
               choices=[('PLAINTEXT', 'no encryption, no authentication'),
                        ('SSL', 'TLS; a client certificate if the broker '
                                'asks for one'),
                        ('SASL_PLAINTEXT', 'SASL authentication, no '
                                           'encryption'),
                        ('SASL_SSL', 'SASL authentication over TLS')],
               help='How clients talk to the brokers (security.protocol). '
                    'Unset: PLAINTEXT.'),
    cfg.StrOpt('sasl_mechanism',
               choices=[('PLAIN', 'user name and password, as given'),
                        ('SCRAM-SHA-256', 'salted challenge, SHA-256'),
                        ('SCRAM-SHA-512', 'salted challenge, SHA-512')],
               help='SASL mechanism, with SASL_PLAINTEXT or SASL_SSL '
                    '(sasl.mechanism).'),
    cfg.StrOpt('sasl_username', help='SASL user name (sasl.username).'),
    cfg.StrOpt('sasl_password', secret=True,
               help='SASL password (sasl.password); never logged.'),
    cfg.StrOpt('ssl_ca_location',
               help='PEM file of the CA that signed the brokers\' '
                    'certificates (ssl.ca.location).'),
    cfg.StrOpt('ssl_certificate_location',
               help='PEM file of the client certificate, for brokers that '
                    'require one (ssl.certificate.location).'),
    cfg.StrOpt('ssl_key_location',
               help='PEM file of the client certificate\'s private key '
                    '(ssl.key.location).'),
    cfg.StrOpt('ssl_key_password', secret=True,
               help='Password of the private key (ssl.key.password); never '
                    'logged.'),
    cfg.StrOpt('ssl_endpoint_identification',
               choices=[('https', 'the certificate must name the broker'),
                        ('none', 'any certificate the CA signed')],
               help='Check the broker\'s host name against its certificate '
                    '(ssl.endpoint.identification.algorithm). Unset: '
                    'https.'),
    cfg.StrOpt('compression_type',
               choices=[('none', 'no compression'),
                        ('gzip', 'smallest, slowest'),
                        ('snappy', 'fast'), ('lz4', 'fast'),
                        ('zstd', 'small and fast')],
               help='Producers: compression of message batches '
                    '(compression.type). Unset: none.'),
    cfg.IntOpt('linger_ms', min=0,
               help='Producers: how long to wait to fill a batch '
                    '(linger.ms). Unset: 5.'),
    cfg.IntOpt('batch_size', min=1,
               help='Producers: largest batch, in bytes (batch.size).'),
    cfg.IntOpt('message_timeout_ms', min=0,
               help='Producers: how long a message may wait for Kafka '
                    'before it is reported failed (message.timeout.ms). '
                    'Unset: 120000.'),
    cfg.IntOpt('session_timeout_ms', min=1,
               help='Consumers: how long the group waits for a silent '
                    'member before giving its partitions away '
                    '(session.timeout.ms).'),
    cfg.IntOpt('max_poll_interval_ms', min=1,
               help='Consumers: longest wait for the service to release '
                    'partitions a rebalance takes away '
                    '(max.poll.interval.ms).'),
    cfg.StrOpt('auto_offset_reset',
               choices=[('earliest', 'from the oldest message Kafka has'),
                        ('latest', 'only messages written from now on')],
               help='Consumers: where a group without a committed offset '
                    'starts (auto.offset.reset). Unset: earliest.'),
    cfg.StrOpt('group_protocol',
               choices=[('classic', 'the members agree on the assignment '
                                    '(cooperative-sticky); every Kafka '
                                    'speaks it'),
                        ('consumer', 'KIP-848: the broker assigns, with no '
                                     'group-wide pause; Kafka 4.0 or later'),
                        ('auto', 'consumer where every broker offers it, '
                                 'classic otherwise')],
               help='Consumers: the consumer group protocol '
                    '(group.protocol). "auto" asks the brokers which they '
                    'offer (group.coordinator.rebalance.protocols) when the '
                    'consumer is built, and never guesses: classic unless '
                    'every broker answers that it offers consumer. Unset: '
                    'classic.'),
    cfg.IntOpt('statistics_interval_ms', min=0,
               help='How often librdkafka reports its statistics '
                    '(statistics.interval.ms): bytes queued, round trips '
                    'per broker, end and committed offsets per partition, '
                    'in the clients\' metrics(). 0 turns them off. Unset: '
                    'off for producers, 5000 for consumers (whose '
                    'stuck-fetch watch reads them).'),
    cfg.BoolOpt('exactly_once', default=False,
                help='A process that reads with one consumer, publishes '
                     'the outcome and commits (the notification engine) '
                     'does so in Kafka transactions: outputs and input '
                     'offsets land together or not at all, for '
                     'read_committed readers. Other processes are not '
                     'changed. See doc/source/exactly-once.rst.'),
    cfg.DictOpt('librdkafka_properties', default={},
                help='Any other librdkafka property, for every client: '
                     'name:value pairs, comma-separated.'),
]


metrics_group = cfg.OptGroup(
    name='kafka_metrics', title='Kafka client metrics',
    help='Send the Kafka clients\' metrics to a statsd listener, such as '
         'the monasca-agent\'s.')

metrics_opts = [
    cfg.StrOpt('statsd_address',
               help='host:port of the statsd listener the clients\' '
                    'metrics go to, e.g. 127.0.0.1:8125 for the local '
                    'monasca-agent (monasca-statsd). Unset: not sent.'),
    cfg.FloatOpt('interval', default=30.0, min=1.0,
                 help='Seconds between two reports of every client.'),
    cfg.StrOpt('service',
               help='Value of the "service" dimension of every metric. '
                    'Unset: the name of the program.'),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(client_group)
    conf.register_opts(client_opts, client_group)
    conf.register_group(metrics_group)
    conf.register_opts(metrics_opts, metrics_group)


def list_opts():
    return [(client_group, client_opts), (metrics_group, metrics_opts)]


def property_name(option: str) -> str:
    """The librdkafka property an option of ``[kafka_client]`` sets."""
    return _RENAMED.get(option, option.replace('_', '.'))


def client_properties(role: str, conf: cfg.ConfigOpts | None = None
                      ) -> dict[str, typing.Any]:
    """The librdkafka properties ``[kafka_client]`` sets for ``role``.

    :param role: ``'producer'``, ``'consumer'`` or ``'admin'``.
    :param conf: the configuration (default: ``cfg.CONF``).
    """
    conf = cfg.CONF if conf is None else conf
    if 'kafka_client' not in conf:
        register_opts(conf)
    group = conf.kafka_client
    properties: dict[str, typing.Any] = dict(group.librdkafka_properties)
    for option in client_opts:
        name = option.name
        if name in _NOT_PROPERTIES or _ONLY_FOR.get(name, role) != role:
            continue
        value = getattr(group, name)
        if value is not None:
            properties[property_name(name)] = value
    return properties


def exactly_once(asked: bool | None,
                 conf: cfg.ConfigOpts | None = None) -> bool:
    """``asked`` if given, else ``[kafka_client] exactly_once``."""
    if asked is not None:
        return bool(asked)
    conf = cfg.CONF if conf is None else conf
    if 'kafka_client' not in conf:
        register_opts(conf)
    return conf.kafka_client.exactly_once


def metrics_settings(conf: cfg.ConfigOpts | None = None):
    """The ``[kafka_metrics]`` group of ``conf`` (default: ``cfg.CONF``)."""
    conf = cfg.CONF if conf is None else conf
    if 'kafka_metrics' not in conf:
        register_opts(conf)
    return conf.kafka_metrics
