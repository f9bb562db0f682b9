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

"""What a publish call's messages become before librdkafka gets them."""

import pytest

from monasca_common.confluent_kafka import encoding
from monasca_common.confluent_kafka import errors

LIMIT = 100 + encoding.MESSAGE_OVERHEAD  # 100 bytes of value, no key


def test_ascii_str_and_bytes_go_to_librdkafka_as_they_are():
    # librdkafka encodes a str itself: the JSON services publish needs no
    # copy in Python.
    strs = ['{"a": 1}', 'x' * 100]
    assert encoding.encode_all(strs, None, LIMIT) is strs
    raw = [b'\xff', b'y' * 100]
    assert encoding.encode_all(raw, None, LIMIT) is raw


def test_anything_else_becomes_bytes():
    payloads = encoding.encode_all(
        ['h\xe9', b'b', bytearray(b'c'), memoryview(b'd'), 'a'], None, LIMIT)
    assert payloads == ['h\xe9'.encode('utf-8'), b'b', b'c', b'd', b'a']
    assert {type(p) for p in payloads} == {bytes}


def test_the_size_of_a_non_ascii_str_is_its_utf8_size():
    fits = '\xe9' * 50  # 100 bytes
    assert encoding.encode_all([fits], None, LIMIT) == [fits.encode()]
    with pytest.raises(errors.InvalidMessageError,
                       match='message 1 of the publish call is 102 bytes'):
        encoding.encode_all(['a', fits + '\xe9'], None, LIMIT)
    with pytest.raises(errors.InvalidMessageError,
                       match='message 0 .* 101 bytes'):
        encoding.encode_all(['x' * 101], None, LIMIT)


def test_a_key_counts_against_the_limit():
    with pytest.raises(errors.InvalidMessageError,
                       match='with a 2-byte key'):
        encoding.encode_all(['x' * 99], b'kk', LIMIT)


def test_a_str_that_cannot_be_encoded_raises_before_queueing():
    with pytest.raises(UnicodeEncodeError):
        encoding.encode_all(['fine', 'lone \ud800 surrogate'], None, LIMIT)


def test_a_message_of_another_type_is_named():
    with pytest.raises(TypeError, match='message 2 of the publish call is '
                                        'int'):
        encoding.encode_all(['a', b'b', 3], None, LIMIT)


def test_as_bytes_gives_what_kafka_stores():
    assert encoding.as_bytes('h\xe9') == 'h\xe9'.encode('utf-8')
    assert encoding.as_bytes(b'b') == b'b'
