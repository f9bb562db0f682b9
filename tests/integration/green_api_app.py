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

"""A WSGI app that publishes as monasca-api does, for gunicorn's workers.

Its ``KafkaPublisher`` is monasca-api's: the factory producer, built when
the app is loaded in each worker (after gunicorn's green workers patched
``threading``), one ``publish(topic, messages)`` per request with the
list of JSON envelopes the request carried, and HTTP 503 on
``KafkaUnavailableError`` or ``LeaderNotAvailableError``.

- ``POST /v2.0/metrics``: a JSON list of envelopes; 204, or 503;
- ``GET /ping``: 200, without touching Kafka;
- ``GET /healthcheck``: the Kafka health check, 200 or 503.

Configured by ``GREEN_APP_SERVERS`` and ``GREEN_APP_TOPIC``.
"""

import json
import os

from oslo_config import cfg

from monasca_common.healthcheck.checks import kafka_check
from monasca_common.kafka import client_factory
from monasca_common.kafka_lib import common as kafka_common


class KafkaPublisher:
    """monasca-api's publisher (monasca_api/common/messaging)."""

    def __init__(self, servers, topic):
        self.topic = topic
        self._producer = client_factory.get_kafka_producer(
            servers.split(','), False)

    def send_message(self, messages):
        try:
            self._producer.publish(self.topic, messages)
            return True
        except (kafka_common.KafkaUnavailableError,
                kafka_common.LeaderNotAvailableError):
            return False


_publisher = KafkaPublisher(os.environ['GREEN_APP_SERVERS'],
                            os.environ['GREEN_APP_TOPIC'])
_conf = cfg.ConfigOpts()
_conf([])
_health = kafka_check.KafkaHealthCheck(_conf)
_conf.set_override('kafka_url', os.environ['GREEN_APP_SERVERS'],
                   'kafka_healthcheck')
_conf.set_override('kafka_topics', [os.environ['GREEN_APP_TOPIC']],
                   'kafka_healthcheck')
_conf.set_override('timeout', 2, 'kafka_healthcheck')


def application(environ, start_response):
    path = environ.get('PATH_INFO', '')
    if path == '/ping':
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [b'pong']
    if path == '/healthcheck':
        healthy = _health.healthcheck().healthy
        start_response('200 OK' if healthy else '503 Service Unavailable',
                       [('Content-Type', 'text/plain')])
        return [b'ok' if healthy else b'kafka']
    if path == '/v2.0/metrics' and environ['REQUEST_METHOD'] == 'POST':
        length = int(environ.get('CONTENT_LENGTH') or 0)
        envelopes = json.loads(environ['wsgi.input'].read(length))
        if _publisher.send_message([json.dumps(e) for e in envelopes]):
            start_response('204 No Content', [])
        else:
            start_response('503 Service Unavailable',
                           [('Retry-After', '60')])
        return [b'']
    start_response('404 Not Found', [])
    return [b'']
