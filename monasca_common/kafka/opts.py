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

"""oslo.config options of the Kafka module.

They live in groups of their own (``[kafka_healthcheck]``,
``[kafka_client]``), so they never clash with the ``[kafka]`` options the
services define themselves. ``list_opts`` feeds oslo-config-generator
(entry point ``monasca_common.kafka``).
"""

from oslo_config import cfg

healthcheck_group = cfg.OptGroup(name='kafka_healthcheck',
                                 title='Kafka health check')
healthcheck_opts = [
    cfg.ListOpt('kafka_url', required=True,
                help='Kafka brokers to check, host:port; a list, or one '
                     'comma-separated string.'),
    cfg.ListOpt('kafka_topics', default=['logs'],
                help='Topics that must exist for Kafka to count as healthy.'),
    cfg.FloatOpt('timeout', default=5.0, min=0.1,
                 help='Seconds the check may take before Kafka counts as '
                      'unreachable.'),
]

client_group = cfg.OptGroup(name='kafka_client',
                            title='Kafka client tuning shared by services')
client_opts = [
    cfg.IntOpt('message_timeout_ms', default=120000, min=1000,
               help='How long a queued message may wait for delivery '
                    'before it is reported failed (message.timeout.ms).'),
    cfg.StrOpt('compression_type', default='none',
               choices=['none', 'gzip', 'snappy', 'lz4', 'zstd'],
               help='Producer compression (compression.type).'),
    cfg.FloatOpt('unavailable_after', default=10.0, min=0,
                 help='Seconds without any reachable broker after which '
                      'publish refuses new messages at once '
                      '(KafkaUnavailableError); 0 disables.'),
    cfg.IntOpt('session_timeout_ms', default=10000, min=1000,
               help='Consumer group session timeout (session.timeout.ms).'),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(healthcheck_group)
    conf.register_opts(healthcheck_opts, healthcheck_group)
    conf.register_group(client_group)
    conf.register_opts(client_opts, client_group)


def producer_config(conf: cfg.ConfigOpts) -> dict:
    """Keyword arguments for KafkaProducer from ``[kafka_client]``."""
    group = conf.kafka_client
    return {'message.timeout.ms': group.message_timeout_ms,
            'compression.type': group.compression_type,
            'unavailable_after': group.unavailable_after}


def list_opts():
    return [(healthcheck_group, healthcheck_opts),
            (client_group, client_opts)]
