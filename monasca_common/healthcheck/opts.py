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

"""oslo.config options of the Kafka health check.

They live in a group of their own (``[kafka_healthcheck]``), so they never
clash with the ``[kafka]`` options the services define themselves.
``monasca_common.kafka.opts.list_opts`` lists them for oslo-config-generator
(namespace ``monasca_common.kafka``).

``kafka_url`` and ``kafka_topics`` are declared exactly as the old health
check declared them: a service that still registers those itself (as
monasca-log-api does) registers equal options, which oslo.config accepts.
"""

from oslo_config import cfg

healthcheck_group = cfg.OptGroup(name='kafka_healthcheck',
                                 title='kafka_healthcheck')
# Changing a word of these breaks services that declare them too: oslo.config
# refuses a second, different option of the same name.
healthcheck_opts = [
    cfg.StrOpt('kafka_url',
               required=True,
               help='Url to kafka server'),
    cfg.ListOpt('kafka_topics',
                required=True,
                default=['logs'],
                help='Verify existence of configured topics'),
]
healthcheck_timeout_opt = cfg.FloatOpt(
    'timeout', default=5.0, min=0.1,
    help='Seconds the Kafka health check may take; a cluster that refuses '
         'connections is reported unhealthy at once.')


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(healthcheck_group)
    conf.register_opts(healthcheck_opts + [healthcheck_timeout_opt],
                       healthcheck_group)


def list_opts():
    return [(healthcheck_group, healthcheck_opts + [healthcheck_timeout_opt])]
