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

"""The offset ledger: what a commit covers. Pure bookkeeping.

Per partition, the ledger knows the last message *handed* to the caller and
the offset last *committed*. A commit covers, for each partition still
owned, the offset after the last handed message, when that differs from
what was committed. A failed commit changes nothing: the offsets stay
pending and the next commit covers them again. Only a partition that left
the assignment (revoked or lost) is forgotten.
"""

from __future__ import annotations

import collections.abc
import typing

Key = tuple[str, int]


class OffsetLedger:
    """Handed and committed offsets per (topic, partition).

    :param single_topic: the topic, when the consumer reads only one. The
        iteration then files handed messages under the partition number
        alone: asking each message its topic builds and hashes a new string,
        the largest per-message cost of the bookkeeping.
    """

    def __init__(self, single_topic: str | None = None):
        self.single_topic = single_topic
        #: The last message handed out, by partition (one topic) or by
        #: (topic, partition). The reading loop writes it directly.
        self.handed: dict = {}
        self._committed: dict[Key, int] = {}

    def hand(self, message) -> None:
        """Note ``message`` as given to the caller."""
        if self.single_topic is not None:
            self.handed[message.partition()] = message
        else:
            self.handed[(message.topic(), message.partition())] = message

    def pending(self, owned: collections.abc.Container[Key] | None = None,
                only: collections.abc.Container[Key] | None = None
                ) -> dict[Key, int]:
        """Offsets to commit: after the last handed, not yet committed.

        :param owned: partitions still assigned (None: all).
        :param only: restrict to these partitions (None: all).
        """
        single_topic = self.single_topic
        pending = {}
        # A copy first: the reading thread may add to it meanwhile.
        for key, message in list(self.handed.items()):
            if single_topic is not None:
                key = (single_topic, key)
            if owned is not None and key not in owned:
                continue
            if only is not None and key not in only:
                continue
            offset = message.offset() + 1
            if self._committed.get(key) != offset:
                pending[key] = offset
        return pending

    def record_commit(self, committed: typing.Iterable[tuple[Key, int]]
                      ) -> None:
        """Kafka took these offsets."""
        for key, offset in committed:
            if offset > self._committed.get(key, -1):
                self._committed[key] = offset

    def committed(self, key: Key) -> int | None:
        """The offset last committed through this ledger, if any."""
        return self._committed.get(key)

    def forget(self, keys: typing.Iterable[Key]) -> None:
        """The partitions left the assignment, or were rewound."""
        single_topic = self.single_topic
        for key in keys:
            self.handed.pop(key[1] if single_topic is not None else key,
                            None)
            self._committed.pop(key, None)

    def forget_handed(self, keys: typing.Iterable[Key]) -> None:
        """Nothing of these partitions counts as handed any more."""
        single_topic = self.single_topic
        for key in keys:
            self.handed.pop(key[1] if single_topic is not None else key,
                            None)
