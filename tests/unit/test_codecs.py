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

"""Envelopes through every codec, and payloads no codec reads."""

import pytest

from monasca_common.confluent_kafka import codecs
from monasca_common.confluent_kafka import errors

META = {'tenantId': '8d4b4e7b1a2f4f6e9c0d1e2f3a4b5c6d', 'region': 'useast'}

ENVELOPES = {
    'metric': {
        'metric': {'name': 'cpu.idle_perc',
                   'dimensions': {'hostname': 'compute-17',
                                  'service': 'monitoring',
                                  'component': 'monasca-agent'},
                   'timestamp': 1764932400123, 'value': 97.25,
                   'value_meta': None},
        'meta': META, 'creation_time': 1764932401},
    'log': {
        'log': {'message': '2026-12-05 10:00:00 ERROR nova.compute '
                           'Instance failed to spawn: é ✓',
                'dimensions': {'hostname': 'compute-17',
                               'service': 'nova', 'path': '/var/log/n.log'}},
        'meta': META, 'creation_time': 1764932401},
    'event': {
        'event': {'event_type': 'compute.instance.create.end',
                  'timestamp': '2026-12-05T10:00:00.123456',
                  'message_id': 'a1b2', 'dimensions': {'service': 'compute'},
                  'project_id': 'p1',
                  'payload': {'instance_id': 'i-1', 'flavor': {'vcpus': 2},
                              'tags': ['a', 'b'], 'ok': True, 'n': None}},
        'meta': META, 'creation_time': 1764932401},
    'alarm_state_transition': {'alarm-transitioned': {
        'tenantId': META['tenantId'], 'alarmId': 'al-1',
        'alarmDefinitionId': 'ad-1', 'alarmName': 'high cpu',
        'alarmDescription': '', 'actionsEnabled': True,
        'stateChangeReason': 'Thresholds were exceeded',
        'severity': 'HIGH', 'link': None, 'lifecycleState': None,
        'oldState': 'OK', 'newState': 'ALARM',
        'timestamp': 1764932400123,
        'metrics': [{'name': 'cpu.user_perc',
                     'dimensions': {'hostname': 'compute-17'}}],
        'subAlarms': [{
            'subAlarmExpression': {
                'function': 'AVG',
                'metricDefinition': {'name': 'cpu.user_perc',
                                     'dimensions': {'hostname': 'c-17'}},
                'operator': 'GT', 'threshold': 90.0, 'period': 60,
                'periods': 3},
            'subAlarmState': 'ALARM', 'currentValues': [91.5, 95.0]}]}},
}
WITH_VALUE_META = dict(ENVELOPES['metric'], metric=dict(
    ENVELOPES['metric']['metric'], value_meta={'http_status': '500',
                                               'msg': 'timed out'}))


def codecs_for(kind):
    return [codecs.JsonCodec('json'), codecs.JsonCodec('orjson'),
            codecs.AvroCodec(kind)]


@pytest.mark.parametrize('kind', sorted(ENVELOPES))
def test_every_envelope_round_trips_in_every_format(kind):
    decoder = codecs.EnvelopeDecoder()
    for codec in codecs_for(kind):
        payload = codec.encode(ENVELOPES[kind])
        assert isinstance(payload, bytes)
        assert codec.decode(payload) == ENVELOPES[kind], codec.name
        # A reader that knows nothing of the writer's choice.
        assert decoder.decode(payload) == ENVELOPES[kind], codec.name


def test_value_meta_round_trips():
    codec = codecs.AvroCodec('metric')
    assert codec.decode(codec.encode(WITH_VALUE_META)) == WITH_VALUE_META


def test_avro_is_single_object_encoded():
    codec = codecs.AvroCodec('metric')
    payload = codec.encode(ENVELOPES['metric'])
    assert payload[:2] == b'\xc3\x01'
    assert payload[2:10] == codec.fingerprint
    # Each kind has a schema of its own.
    fingerprints = {codecs.AvroCodec(k).fingerprint for k in ENVELOPES}
    assert len(fingerprints) == len(ENVELOPES)
    # And it is smaller than the JSON.
    assert len(payload) < len(codecs.JsonCodec().encode(ENVELOPES['metric']))


def test_an_envelope_that_does_not_fit_is_named():
    bad = dict(ENVELOPES['metric'], metric=dict(
        ENVELOPES['metric']['metric'], value='high'))
    with pytest.raises(ValueError, match='metric envelope does not fit'):
        codecs.AvroCodec('metric').encode(bad)


@pytest.mark.parametrize('payload, reason', [
    (b'not json', 'not JSON'),
    (b'\xff\xfe', 'not JSON'),
    (b'[1, 2]', 'not an envelope object: list'),
    (b'\xc3\x01' + b'\x00' * 8 + b'abc', 'unknown schema'),
    (b'\x00\x00\x00\x00\x07abc', r'schema id 7\): no registry'),
    (b'', 'not JSON'),
])
def test_payloads_no_codec_reads_say_why(payload, reason):
    with pytest.raises(codecs.DecodeError, match=reason):
        codecs.EnvelopeDecoder().decode(payload)


def test_truncated_avro_is_a_decode_error():
    codec = codecs.AvroCodec('alarm_state_transition')
    payload = codec.encode(ENVELOPES['alarm_state_transition'])
    for cut in (11, len(payload) // 2, len(payload) - 1):
        with pytest.raises(codecs.DecodeError, match='malformed'):
            codecs.EnvelopeDecoder().decode(payload[:cut])


class FakeMessage:
    def __init__(self, value, offset):
        self._value, self._offset = value, offset

    def value(self):
        return self._value

    def topic(self):
        return 'metrics'

    def partition(self):
        return 3

    def offset(self):
        return self._offset


@pytest.mark.parametrize('on_bad', ['skip', 'raw'])
def test_bad_payloads_are_reported_and_the_loop_goes_on(on_bad, caplog):
    avro = codecs.AvroCodec('metric')
    good = [avro.encode(ENVELOPES['metric']),
            codecs.JsonCodec().encode(ENVELOPES['log'])]
    messages = [FakeMessage(good[0], 10), FakeMessage(b'{oops', 11),
                FakeMessage(None, 12), FakeMessage(good[1], 13)]
    reported = []
    decoder = codecs.EnvelopeDecoder(on_bad=on_bad, callback=reported.append)
    out = list(decoder.messages(messages))
    expected = [(10, ENVELOPES['metric'])]
    if on_bad == 'raw':
        expected += [(11, b'{oops'), (12, b'')]
    expected.append((13, ENVELOPES['log']))
    assert [(m.offset(), e) for m, e in out] == expected
    assert decoder.bad == 2
    assert [(b.topic, b.partition, b.offset) for b in reported] == [
        ('metrics', 3, 11), ('metrics', 3, 12)]
    assert 'metrics[3]@11' in caplog.text


@pytest.mark.parametrize('library', ['json', 'orjson'])
@pytest.mark.parametrize('payload', [
    b'[' * 1000, b'{"a":' * 5000, b'[' * 100000,
    # An event's payload is JSON inside the Avro record.
    'avro event', 'not utf-8'])
def test_a_payload_that_breaks_a_codec_is_a_bad_message(library, payload,
                                                        caplog):
    """Deep nesting raised RecursionError out of messages(): the loop died."""
    if payload == 'avro event':
        event = dict(ENVELOPES['event']['event'], payload=None)
        record = dict(ENVELOPES['event'], event=event)
        codec = codecs.AvroCodec('event')
        # The writer's json.dumps is replaced: a payload no reader holds.
        original = codecs.json.dumps
        codecs.json.dumps = lambda value, **kw: '[' * 100000
        try:
            payload = codec.encode(record)
        finally:
            codecs.json.dumps = original
    elif payload == 'not utf-8':
        payload = b'{"a": "\xff\xfe"}'
    good = codecs.JsonCodec().encode(ENVELOPES['log'])
    reported = []
    decoder = codecs.EnvelopeDecoder(json_library=library,
                                     callback=reported.append)
    out = list(decoder.messages([FakeMessage(payload, 5),
                                 FakeMessage(good, 6)]))
    assert [(m.offset(), e) for m, e in out] == [(6, ENVELOPES['log'])]
    assert decoder.bad == 1
    assert [(b.topic, b.partition, b.offset) for b in reported] == [
        ('metrics', 3, 5)]
    assert 'metrics[3]@5' in caplog.text


def _varint(number):
    """Avro's zig-zag varint of ``number``."""
    number = (number << 1) ^ (number >> 63)
    out = bytearray()
    while True:
        byte, number = number & 0x7f, number >> 7
        out.append(byte | 0x80 if number else byte)
        if not number:
            return bytes(out)


def _near_misses(payload, random):
    """Truncations, bytes changed, huge lengths and counts, bad UTF-8."""
    for cut in range(len(payload)):
        yield payload[:cut]
    for at in range(len(payload)):
        for byte in (b'\x00', b'\x7f', b'\x80', b'\xff'):
            yield payload[:at] + byte + payload[at + 1:]
        for length in (-1, 2 ** 31, 2 ** 62, -2 ** 62):
            yield payload[:at] + _varint(length) + payload[at:]
        yield payload[:at] + b'\xed\xa0\x80\xc3' + payload[at:]
    for _ in range(200):
        yield payload[:random.randrange(len(payload))] + bytes(
            random.randrange(256) for _ in range(random.randrange(64)))


@pytest.mark.parametrize('kind', sorted(ENVELOPES))
def test_no_payload_makes_the_decoder_raise_anything_else(kind):
    """A fuzzer: every near miss of every format decodes or is reported."""
    import random as random_module
    random = random_module.Random(kind)
    decoder = codecs.EnvelopeDecoder(json_library='json')
    fast = codecs.EnvelopeDecoder(json_library='orjson')
    payloads = []
    for codec in codecs_for(kind):
        payloads.extend(_near_misses(codec.encode(ENVELOPES[kind]), random))
    payloads.extend(bytes(random.randrange(256)
                          for _ in range(random.randrange(200)))
                    for _ in range(500))
    for depth in (100, 1000, 100000):
        payloads += [b'[' * depth, b'{"a":' * depth,
                     b'{"metric": ' + b'[' * depth + b'1' + b']' * depth,
                     b'[' * depth + b']' * depth]
    for reader in (decoder, fast):
        failed = 0
        for payload in payloads:
            try:
                assert isinstance(reader.decode(payload), dict)
            except codecs.DecodeError:
                failed += 1
        messages = [FakeMessage(p, n) for n, p in enumerate(payloads)]
        out = list(reader.messages(messages))
        assert len(out) == len(payloads) - failed
        assert reader.bad == failed > 0


def test_bad_arguments_are_named():
    with pytest.raises(errors.ConfigurationError, match='no Avro schema'):
        codecs.AvroCodec('metrics')
    with pytest.raises(errors.ConfigurationError, match='on_bad'):
        codecs.EnvelopeDecoder(on_bad='drop')
    with pytest.raises(errors.ConfigurationError, match='library'):
        codecs.JsonCodec('simplejson')


def test_the_bench_metrics_look_like_an_agents():
    from monasca_common.cli import formats
    metrics = formats.sample_metrics(2000)
    assert metrics == formats.sample_metrics(2000)  # the same each run
    codec = codecs.AvroCodec('metric')
    sizes = [len(codecs.JsonCodec().encode(m)) for m in metrics]
    assert 250 < sum(sizes) / len(sizes) < 400
    assert len({m['metric']['name'] for m in metrics}) > 20
    assert any(m['metric']['value_meta'] for m in metrics)
    for metric in metrics[:200]:
        assert codec.decode(codec.encode(metric)) == metric
