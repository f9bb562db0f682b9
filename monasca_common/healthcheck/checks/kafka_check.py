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

Reads ``[kafka_healthcheck] kafka_url`` (a list, or one comma-separated
string) and ``kafka_topics``. Importing this module registers those
options and does nothing else.

.. code-block:: ini

  [kafka_healthcheck]
  kafka_url = localhost:9092
  kafka_topics = log
"""

import confluent_kafka
from confluent_kafka import admin as kafka_admin
from oslo_config import cfg
from oslo_log import log

from monasca_common.confluent_kafka import config as kafka_config
from monasca_common.confluent_kafka import errors
from monasca_common.healthcheck import result
from monasca_common.kafka import opts

LOG = log.getLogger(__name__)
CONF = cfg.CONF

opts.register_opts(CONF)


class KafkaHealthCheck:
    """Kafka's health as the services see it.

    Healthy when a broker answers within the timeout and every configured
    topic exists.
    """

    def __init__(self, conf: cfg.ConfigOpts = CONF):
        self._conf = conf

    def healthcheck(self) -> result.HealthCheckResult:
        group = self._conf.kafka_healthcheck
        try:
            servers = kafka_config.bootstrap_servers(group.kafka_url)
        except errors.ConfigurationError as exc:
            LOG.error('Kafka health check: %s', exc)
            return result.HealthCheckResult(
                healthy=False, message='Kafka URL invalid: %s' % exc)
        try:
            metadata = self._metadata(servers, group.timeout)
        except confluent_kafka.KafkaException as exc:
            LOG.error('Kafka health check: %s', exc.args[0].str())
            return result.HealthCheckResult(
                healthy=False,
                message='Could not connect to kafka at %s' % servers)
        for topic in group.kafka_topics:
            found = metadata.topics.get(topic)
            if found is None or found.error is not None:
                message = 'Kafka: Topic %s not found' % topic
                LOG.error(message)
                return result.HealthCheckResult(healthy=False,
                                                message=message)
        return result.HealthCheckResult(healthy=True, message='OK')

    @staticmethod
    def _metadata(servers: str, timeout: float):
        client = kafka_admin.AdminClient({
            'bootstrap.servers': servers,
            'socket.connection.setup.timeout.ms': max(1000,
                                                      int(timeout * 1000)),
            'logger': kafka_config.LIBRDKAFKA_LOG,
        })
        return client.list_topics(timeout=timeout)
