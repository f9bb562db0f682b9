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

"""Messages and keys as the bytes Kafka stores, checked before queueing.

A publish call is validated as a whole: a message of the wrong type or too
large raises before any message of the call is queued, so a caller never
has to find out which half of a bulk went in.
"""

from __future__ import annotations

from monasca_common.confluent_kafka import errors

# librdkafka's per-message overhead within message.max.bytes (record
# headers of the v2 format): a value of exactly message.max.bytes is
# refused by produce(), so it is refused here, before the call queues any.
MESSAGE_OVERHEAD = 36


_BYTES = frozenset((bytes,))
_STR = frozenset((str,))
_is_ascii = str.isascii


def encode_key(key) -> bytes | None:
    """A message key as bytes: str is UTF-8, an int its decimal digits."""
    if key is None or isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode('utf-8')
    if isinstance(key, int) and not isinstance(key, bool):
        # The old client's keys were millisecond timestamps given as ints.
        return str(key).encode('ascii')
    raise TypeError('message key is %s; keys must be str, bytes or int'
                    % type(key).__name__)


def _encode_value(value, position: int) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode('utf-8')
    raise TypeError('message %d of the publish call is %s; messages must be '
                    'str or bytes' % (position, type(value).__name__))


def encode_all(messages: list, key: bytes | None,
               max_bytes: int) -> list[str | bytes]:
    """Every message checked, each within ``max_bytes`` with its key.

    What comes back is for librdkafka: bytes as they are, and ASCII str
    as they are too, since librdkafka encodes a str value itself and an
    ASCII str is as many bytes as characters (Python knows whether a str
    is ASCII without reading it). Any other message is turned into bytes
    here, so that its size is checked exactly and a str that cannot be
    encoded raises before anything of the call is queued.

    :param max_bytes: the producer's ``message.max.bytes``.
    :raises TypeError: a message is neither str nor bytes.
    :raises InvalidMessageError: a message (or the key) is too large.
    :raises UnicodeEncodeError: a str holds a lone surrogate.
    """
    kinds = set(map(type, messages))
    if kinds == _BYTES or kinds == _STR and all(map(_is_ascii, messages)):
        payloads: list = messages
    else:
        payloads = [_encode_value(message, position)
                    for position, message in enumerate(messages)]
    key_size = len(key) if key else 0
    limit = max_bytes - MESSAGE_OVERHEAD - key_size
    if limit < 0:
        raise errors.InvalidMessageError(
            'the message key is %d bytes, over the producer limit '
            'message.max.bytes=%d; nothing of the call was queued'
            % (key_size, max_bytes))
    if max(map(len, payloads)) > limit:
        position, payload = next((i, p) for i, p in enumerate(payloads)
                                 if len(p) > limit)
        raise errors.InvalidMessageError(
            'message %d of the publish call is %d bytes%s, over the '
            'producer limit message.max.bytes=%d (%d bytes of each message '
            'are librdkafka\'s); nothing of the call was queued'
            % (position, len(payload),
               ' with a %d-byte key' % key_size if key_size else '',
               max_bytes, MESSAGE_OVERHEAD))
    return payloads


def as_bytes(payload: str | bytes) -> bytes:
    """A payload :func:`encode_all` gave, as the bytes Kafka stores."""
    return payload.encode('utf-8') if isinstance(payload, str) else payload
