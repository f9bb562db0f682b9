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

They live in a group of their own (``[kafka_healthcheck]``), so they never
clash with the ``[kafka]`` options the services define themselves; client
tuning reaches the clients as librdkafka properties from each service.
``list_opts`` feeds oslo-config-generator (entry point
``monasca_common.kafka``).
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


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(healthcheck_group)
    conf.register_opts(healthcheck_opts, healthcheck_group)


def list_opts():
    return [(healthcheck_group, healthcheck_opts)]
