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

"""Monasca's envelopes as bytes: JSON, as today, or Avro, on one topic.

Writers pick a codec; readers need none, :class:`EnvelopeDecoder` tells
the formats apart by their first bytes, so a topic can move from JSON to
Avro while old and new producers both write to it:

* ``C3 01`` then 8 bytes: Avro's *single-object encoding*, the schema
  named by its CRC-64-AVRO fingerprint (little-endian); the schemas
  (:mod:`~monasca_common.confluent_kafka.envelope_schemas`) ship with the
  package, so no registry is needed;
* ``00`` then 4 bytes: the Confluent wire format (a schema registry's id).
  Not read here: no schema registry runs beside the library, and such a
  payload is reported as one this reader cannot decode;
* anything else: JSON (UTF-8), the format of every Monasca service today.

A payload that is none of these, or Avro of an unknown schema, or one a
codec fails on in any way (JSON nested too deep for the standard
library's decoder, a length claiming gigabytes, invalid UTF-8), never
stops the reading loop: :meth:`EnvelopeDecoder.messages` reports it (log,
callback, counter) with its topic, partition and offset, then skips it or
hands over its raw bytes, as configured.

Avro needs ``fastavro`` (``pip install monasca-common[avro]``); JSON uses
``orjson`` when installed (``json_codec('orjson')``), the standard library
otherwise.
"""

from __future__ import annotations

import io
import json
import logging
import typing

from monasca_common.confluent_kafka import envelope_schemas
from monasca_common.confluent_kafka import errors

LOG = logging.getLogger(__name__)

SINGLE_OBJECT_MARKER = b'\xc3\x01'
_HEADER = len(SINGLE_OBJECT_MARKER) + 8
# The schema registry's wire format: this byte, then a 4-byte schema id.
_REGISTRY_MAGIC = b'\x00'
# The threshold engine's key; Avro names allow no '-'.
_ALARM_KEY = 'alarm-transitioned'
_ALARM_FIELD = 'alarm_transitioned'

Envelope = typing.Dict[str, typing.Any]


class DecodeError(errors.KafkaClientError, ValueError):
    """A payload no known format and schema decodes."""


class JsonCodec:
    """Envelopes as JSON: today's format.

    :param library: ``'json'`` (the standard library) or ``'orjson'``.
    """

    def __init__(self, library: str = 'json'):
        self.name = library
        self._dumps: typing.Callable[[typing.Any], bytes]
        self._loads: typing.Callable[[bytes], typing.Any]
        if library == 'json':
            self._dumps = _stdlib_dumps
            self._loads = json.loads
        elif library == 'orjson':
            try:
                import orjson
            except ImportError:
                raise errors.ConfigurationError(
                    'orjson is not installed') from None
            self._dumps = orjson.dumps
            self._loads = orjson.loads
        else:
            raise errors.ConfigurationError(
                "a JSON codec's library is 'json' or 'orjson', got %r"
                % (library,))

    def encode(self, envelope: Envelope) -> bytes:
        return self._dumps(envelope)

    def decode(self, payload: bytes) -> Envelope:
        try:
            return self._loads(payload)
        except ValueError as exc:
            raise DecodeError('not JSON: %s' % exc) from None
        except (RecursionError, MemoryError) as exc:
            # Deep nesting: the standard library's decoder recurses.
            raise DecodeError('not JSON this reader can hold: %s: %s'
                              % (type(exc).__name__, exc)) from None


def _stdlib_dumps(envelope: Envelope) -> bytes:
    return json.dumps(envelope, separators=(',', ':')).encode('utf-8')


class AvroCodec:
    """One envelope kind in Avro's single-object encoding.

    :param kind: ``'metric'``, ``'log'``, ``'event'`` or
        ``'alarm_state_transition'``.
    """

    def __init__(self, kind: str):
        fastavro = _fastavro()
        if kind not in envelope_schemas.SCHEMAS:
            raise errors.ConfigurationError(
                'no Avro schema for envelopes of kind %r; known: %s'
                % (kind, ', '.join(sorted(envelope_schemas.SCHEMAS))))
        from fastavro import schema as avro_schema
        self.name = 'avro'
        self.kind = kind
        self._schema = fastavro.parse_schema(envelope_schemas.SCHEMAS[kind])
        canonical = avro_schema.to_parsing_canonical_form(self._schema)
        self.fingerprint = bytes.fromhex(
            avro_schema.fingerprint(canonical, 'CRC-64-AVRO'))
        self.header = SINGLE_OBJECT_MARKER + self.fingerprint
        self._write = fastavro.schemaless_writer
        self._read = fastavro.schemaless_reader

    def encode(self, envelope: Envelope) -> bytes:
        """The envelope, Avro-encoded behind its schema's header.

        :raises ValueError: it does not fit the schema (the message
            names the field).
        """
        out = io.BytesIO()
        out.write(self.header)
        try:
            self._write(out, self._schema, self._to_record(envelope))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError('a %s envelope does not fit its Avro schema: '
                             '%s' % (self.kind, exc)) from None
        return out.getvalue()

    def decode(self, payload: bytes) -> Envelope:
        if payload[:_HEADER] != self.header:
            raise DecodeError('not a %s envelope in single-object Avro'
                              % self.kind)
        try:
            record = self._read(io.BytesIO(payload[_HEADER:]), self._schema,
                                None)
        except Exception as exc:  # any garbage: reported, never raised
            raise DecodeError('malformed %s envelope in Avro: %s'
                              % (self.kind, exc or type(exc).__name__)
                              ) from None
        return self._from_record(record)

    def _to_record(self, envelope: Envelope) -> Envelope:
        if self.kind == 'event':
            event = dict(envelope['event'])
            event['payload'] = json.dumps(event.get('payload'),
                                          separators=(',', ':'))
            return dict(envelope, event=event)
        if self.kind == 'alarm_state_transition':
            return {_ALARM_FIELD: envelope[_ALARM_KEY]}
        return envelope

    def _from_record(self, record: Envelope) -> Envelope:
        if self.kind == 'event':
            event = record['event']
            try:
                event['payload'] = json.loads(event['payload'])
            except (ValueError, RecursionError, MemoryError) as exc:
                raise DecodeError('malformed event payload in Avro: %s'
                                  % exc) from None
        elif self.kind == 'alarm_state_transition':
            return {_ALARM_KEY: record[_ALARM_FIELD]}
        return record


def _fastavro():
    try:
        import fastavro
    except ImportError:
        raise errors.ConfigurationError(
            'Avro needs fastavro: pip install monasca-common[avro]'
        ) from None
    return fastavro


class BadPayload(typing.NamedTuple):
    """A payload the decoder could not read, and where it was."""

    topic: str | None
    partition: int | None
    offset: int | None
    reason: str
    payload: bytes


class EnvelopeDecoder:
    """Reads an envelope in any format a topic may hold.

    :param kinds: the Avro envelope kinds to know (all by default; none
        if fastavro is not installed and none are named).
    :param json_library: ``'json'`` or ``'orjson'``.
    :param on_bad: what :meth:`messages` does with a payload it cannot
        decode, after reporting it: ``'skip'`` it, or hand over its
        ``'raw'`` bytes instead of an envelope.
    :param callback: ``callback(bad)`` with a :class:`BadPayload`, for
        each.
    """

    def __init__(self, kinds: typing.Iterable[str] | None = None,
                 json_library: str = 'json', on_bad: str = 'skip',
                 callback: typing.Callable[[BadPayload], None] | None = None):
        if on_bad not in ('skip', 'raw'):
            raise errors.ConfigurationError(
                "on_bad is 'skip' or 'raw', got %r" % (on_bad,))
        self._json = JsonCodec(json_library)
        if kinds is None:
            try:
                _fastavro()
                kinds = envelope_schemas.SCHEMAS
            except errors.ConfigurationError:
                kinds = ()
        self._avro = {codec.fingerprint: codec
                      for codec in map(AvroCodec, kinds)}
        self._on_bad = on_bad
        self._callback = callback
        #: Payloads that could not be decoded, since the start.
        self.bad = 0

    def decode(self, payload: bytes) -> Envelope:
        """The envelope in ``payload``.

        :raises DecodeError: no format and schema known here decodes it;
            whatever a codec raised on the payload is said in it.
        """
        try:
            return self._decode(payload)
        except DecodeError:
            raise
        except Exception as exc:  # a payload never raises anything else
            raise DecodeError('undecodable payload: %s: %s'
                              % (type(exc).__name__, exc)) from None

    def _decode(self, payload: bytes) -> Envelope:
        if payload[:2] == SINGLE_OBJECT_MARKER:
            codec = self._avro.get(payload[2:_HEADER])
            if codec is None:
                raise DecodeError('Avro of an unknown schema (fingerprint '
                                  '%s)' % payload[2:_HEADER].hex())
            return codec.decode(payload)
        if payload[:1] == _REGISTRY_MAGIC and len(payload) >= 5:
            raise DecodeError('Avro in the schema registry wire format '
                              '(schema id %d): no registry is configured'
                              % int.from_bytes(payload[1:5], 'big'))
        envelope = self._json.decode(payload)
        if not isinstance(envelope, dict):
            raise DecodeError('JSON, but not an envelope object: %s'
                              % type(envelope).__name__)
        return envelope

    def messages(self, messages: typing.Iterable) -> typing.Iterator[
            tuple[typing.Any, Envelope | bytes]]:
        """``(message, envelope)`` for each of ``messages``.

        A payload that does not decode is reported, then skipped or
        handed over as ``(message, raw bytes)`` (``on_bad``): it never
        ends the loop.
        """
        for message in messages:
            payload = message.value() or b''
            try:
                envelope = self.decode(payload)
            except DecodeError as exc:
                self._report(message, payload, str(exc))
                if self._on_bad == 'raw':
                    yield message, payload
                continue
            yield message, envelope

    def _report(self, message, payload: bytes, reason: str) -> None:
        self.bad += 1
        bad = BadPayload(message.topic(), message.partition(),
                         message.offset(), reason, payload)
        LOG.warning('Kafka: payload at %s[%s]@%s not decoded (%s); %s',
                    bad.topic, bad.partition, bad.offset, reason,
                    'skipped' if self._on_bad == 'skip'
                    else 'handed over as bytes')
        if self._callback is not None:
            try:
                self._callback(bad)
            except Exception:
                LOG.exception('Kafka: bad payload callback raised')
