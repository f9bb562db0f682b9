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

"""A topic moving from JSON to Avro, read by one consumer loop."""

import pytest

from monasca_common.confluent_kafka import codecs
from monasca_common import kafka
from tests.unit import test_codecs
from tests import waiting

ENVELOPES = test_codecs.ENVELOPES

pytestmark = pytest.mark.integration


def test_a_mixed_topic_is_read_in_order(bootstrap_servers, topic, group_id):
    json_codec, orjson_codec = codecs.JsonCodec(), codecs.JsonCodec('orjson')
    avro = {kind: codecs.AvroCodec(kind) for kind in ENVELOPES}
    # Old producers write JSON, new ones Avro, to the same topic; one
    # payload is neither, and one is Avro of a schema nobody knows.
    written = [
        ('metric', json_codec.encode(ENVELOPES['metric'])),
        ('metric', avro['metric'].encode(ENVELOPES['metric'])),
        ('log', orjson_codec.encode(ENVELOPES['log'])),
        (None, b'{"metric": truncated'),
        ('alarm_state_transition', avro['alarm_state_transition'].encode(
            ENVELOPES['alarm_state_transition'])),
        (None, b'\xc3\x01' + bytes(8) + b'\x02'),
        ('event', avro['event'].encode(ENVELOPES['event'])),
        ('event', json_codec.encode(ENVELOPES['event'])),
    ]
    with kafka.KafkaProducer(bootstrap_servers) as producer:
        producer.publish(topic, [payload for _, payload in written],
                         sync=True)
    reported = []
    decoder = codecs.EnvelopeDecoder(callback=reported.append)
    consumer = kafka.KafkaConsumer(bootstrap_servers, group_id, topic)
    try:
        messages = waiting.take(consumer, len(written))
        read = list(decoder.messages(messages))
        consumer.commit()
    finally:
        consumer.close()
    assert [envelope for _, envelope in read] == [
        ENVELOPES[kind] for kind, _ in written if kind is not None]
    assert [(bad.topic, bad.offset) for bad in reported] == [
        (topic, 3), (topic, 5)]
    assert 'not JSON' in reported[0].reason
    assert 'unknown schema' in reported[1].reason
