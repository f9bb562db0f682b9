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

    python -m tests.integration.secure_service_child COMMAND CONFIG_FILE ...

Parses CONFIG_FILE with oslo.config as a service does, builds its clients
with the drop-in factory, logs everything at DEBUG to stderr and prints a
JSON report on stdout. Commands:

``roundtrip CONFIG TOPIC GROUP COUNT``
    publish COUNT messages, read them back, commit; report the values.
``refused CONFIG TOPIC GROUP``
    publish (sync), publish again, consume: report each error, its
    classes and how long it took to come.
``stream CONFIG TOPIC GROUP COUNT``
    publish COUNT messages as a steady stream, retrying what failed, then
    read them at a steady pace committing each batch, until every one was
    read; report the values read (redeliveries included) and the
    publishing figures. The broker may be killed during either phase.
"""

import collections
import json
import logging
import sys
import time

from oslo_config import cfg

from monasca_common import kafka
from monasca_common.kafka import client_factory
from tests import publishing


def configure(config_file):
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    # The service's own [kafka] option, as monasca-api declares it.
    cfg.CONF.register_opts([cfg.ListOpt('uri')], 'kafka')
    cfg.CONF(args=[], project='service', default_config_files=[config_file])
    return cfg.CONF.kafka.uri


def read(consumer, count, pace=0.0, timeout=60.0):
    """Values read until ``count`` distinct ones were, committing each batch.

    :raises RuntimeError: they were not all read within ``timeout``.
    """
    values = []
    deadline = time.monotonic() + timeout
    while len(set(values)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError('read %d of %d within %.0f s'
                               % (len(set(values)), count, timeout))
        batch = consumer.consume_batch(min(100, count), 1.0)
        values.extend(m.value().decode() for m in batch)
        if batch:
            time.sleep(pace)  # the work a service does with a batch
            consumer.commit()
    deadline = time.monotonic() + timeout
    while True:  # the last commit must land, outage or not
        try:
            consumer.commit(raise_errors=True)
            return values
        except kafka.CommitFailedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def roundtrip(uri, topic, group, count):
    producer = client_factory.get_kafka_producer(uri)
    producer.publish(topic, ['m-%d' % i for i in range(int(count))],
                     sync=True, timeout=30)
    producer.close()
    consumer = client_factory.get_kafka_consumer(uri, group, topic)
    try:
        return read(consumer, int(count))
    finally:
        consumer.close()


def outcome(call, timeout):
    """What ``call`` raised, retried until it raises or ``timeout``."""
    started = time.monotonic()
    while True:
        try:
            call()
        except kafka.KafkaClientError as exc:
            return {'classes': [c.__name__ for c in type(exc).__mro__],
                    'message': str(exc),
                    'not_queued': getattr(exc, 'not_queued', None),
                    'seconds': time.monotonic() - started}
        if time.monotonic() - started > timeout:
            return {'classes': [], 'seconds': time.monotonic() - started}


def refused(uri, topic, group):
    report = {}
    producer = client_factory.get_kafka_producer(uri)
    try:
        report['publish'] = outcome(lambda: producer.publish(
            topic, 'x', sync=True, timeout=60), 0)
        report['again'] = outcome(lambda: producer.publish(
            topic, ['y', 'z']), 0)
    finally:
        producer.close(1)
    consumer = client_factory.get_kafka_consumer(uri, group, topic)
    try:
        report['consume'] = outcome(lambda: consumer.consume_batch(10, 1.0),
                                    30)
    finally:
        consumer.close(1)
    return report


def stream(uri, topic, group, count):
    stats = collections.Counter()
    producer = client_factory.get_kafka_producer(uri)
    publishing.publish_all(producer, topic,
                           ['id-%06d' % i for i in range(int(count))],
                           stats, bulk=100, pause=0.01)
    producer.close()
    consumer = client_factory.get_kafka_consumer(uri, group, topic)
    try:
        values = read(consumer, int(count), pace=0.01, timeout=240)
    finally:
        consumer.close()
    return {'values': values, 'stats': stats}


def main(command, config_file, *args):
    uri = configure(config_file)
    report = {'roundtrip': roundtrip, 'refused': refused,
              'stream': stream}[command](uri, *args)
    print(json.dumps(report))


if __name__ == '__main__':
    main(*sys.argv[1:])
