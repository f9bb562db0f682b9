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

"""A service on a secured cluster: only its configuration file changes.

    python secure_service_child.py CONFIG_FILE TOPIC GROUP COUNT

Parses the file with oslo.config as a service does, publishes COUNT
messages through the factory's producer, reads them back through the
factory's consumer, commits, and prints the values read as JSON. Logs go
to stderr at DEBUG.
"""

import json
import logging
import sys
import time

from oslo_config import cfg

from monasca_common.kafka import client_factory


def main(config_file, topic, group, count):
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    # The service's own [kafka] option, as monasca-api declares it.
    cfg.CONF.register_opts([cfg.ListOpt('uri')], 'kafka')
    cfg.CONF(args=[], project='service', default_config_files=[config_file])
    producer = client_factory.get_kafka_producer(cfg.CONF.kafka.uri)
    producer.publish(topic, ['m-%d' % i for i in range(count)], sync=True,
                     timeout=30)
    producer.close()
    consumer = client_factory.get_kafka_consumer(cfg.CONF.kafka.uri, group,
                                                 topic)
    values = []
    deadline = time.monotonic() + 60
    while len(values) < count and time.monotonic() < deadline:
        values.extend(m.value().decode() for m in
                      consumer.consume_batch(count - len(values), 1.0))
    consumer.commit(raise_errors=True)
    consumer.close()
    print(json.dumps(values))


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
