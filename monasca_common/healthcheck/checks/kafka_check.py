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

"""Is Kafka up, and are the configured topics there?

Reads ``[kafka_healthcheck] kafka_url`` (one comma-separated string, or a
list when a service declared it so) and ``kafka_topics``. The options are
registered when the first check is built, not when this module is
imported.

.. code-block:: ini

  [kafka_healthcheck]
  kafka_url = localhost:9092
  kafka_topics = log
"""

from oslo_config import cfg
from oslo_log import log

from monasca_common.confluent_kafka import config as kafka_config
from monasca_common.confluent_kafka import errors
from monasca_common.healthcheck import opts
from monasca_common.healthcheck import result
from monasca_common.kafka import admin

LOG = log.getLogger(__name__)
CONF = cfg.CONF


class KafkaHealthCheck:
    """Kafka's health as the services see it.

    Healthy when a broker answers within ``[kafka_healthcheck] timeout``
    and every configured topic exists. Never raises for Kafka's sake.
    """

    def __init__(self, conf: cfg.ConfigOpts | None = None):
        self._conf = CONF if conf is None else conf
        opts.register_opts(self._conf)

    def healthcheck(self) -> result.HealthCheckResult:
        group = self._conf.kafka_healthcheck
        url = group.kafka_url
        try:
            kafka_config.bootstrap_servers(url)
        except errors.ConfigurationError as exc:
            return self._unhealthy('Kafka URL invalid: %s' % exc)
        try:
            kafka = admin.KafkaAdmin(url, group.timeout)
        except errors.ConfigurationError as exc:
            # The URL is fine: a [kafka_client] option or property is not.
            return self._unhealthy('Kafka: %s' % exc)
        try:
            missing = kafka.missing_topics(group.kafka_topics)
        except errors.KafkaClientError as exc:
            LOG.error('Kafka health check: %s', exc)
            return result.HealthCheckResult(
                healthy=False,
                message='Could not connect to kafka at %s'
                % kafka.bootstrap_servers)
        finally:
            kafka.close()
        if missing:
            return self._unhealthy('Kafka: Topic %s not found' % missing[0])
        return result.HealthCheckResult(healthy=True, message='OK')

    @staticmethod
    def _unhealthy(message: str) -> result.HealthCheckResult:
        LOG.error('Kafka health check: %s', message)
        return result.HealthCheckResult(healthy=False, message=message)
