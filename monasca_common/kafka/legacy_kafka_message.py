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

"""A message from the old client's tuples, with the new message's methods.

Built from ``[partition, (offset, (key, value))]`` shapes, named tuples
(``.offset``, ``.message.key``, ``.message.value``) or plain ones.
"""


def _field(item, name, index):
    try:
        return getattr(item, name)
    except AttributeError:
        return item[index]


class LegacyKafkaMessage:

    def __init__(self, raw_message, topic=None):
        self.m_partition = raw_message[0]
        offset_and_message = raw_message[1]
        self.m_offset = _field(offset_and_message, 'offset', 0)
        message = _field(offset_and_message, 'message', 1)
        self.m_key = _field(message, 'key', 0)
        self.m_value = _field(message, 'value', 1)
        self.m_topic = topic

    def key(self):
        return self.m_key

    def offset(self):
        return self.m_offset

    def partition(self):
        return self.m_partition

    def topic(self):
        return self.m_topic

    def value(self):
        return self.m_value

    def error(self):
        return None

    def __repr__(self):
        return '<LegacyKafkaMessage partition=%r offset=%r>' % (
            self.m_partition, self.m_offset)
