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

"""Every oslo.config option of the Kafka module, for oslo-config-generator.

``[kafka_client]`` (:mod:`monasca_common.confluent_kafka.opts`) applies to
every client; ``[kafka_healthcheck]`` (:mod:`monasca_common.healthcheck.opts`)
to the health check. ``oslo-config-generator --namespace
monasca_common.kafka`` lists both.
"""

from monasca_common.confluent_kafka import opts as _client
from monasca_common.healthcheck import opts as _healthcheck

# The health check's names, where they were first published.
healthcheck_group = _healthcheck.healthcheck_group
healthcheck_opts = _healthcheck.healthcheck_opts
register_opts = _healthcheck.register_opts


def list_opts():
    return _client.list_opts() + _healthcheck.list_opts()
