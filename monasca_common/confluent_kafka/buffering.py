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

"""What a group member fetched that the reading thread has not been handed.

Polls (the reading thread's own and the member's) put messages in the
buffer (:meth:`Buffering._store`); the reading thread takes all of it as
one chunk and hands it out through the list iterator the offset ledger
keeps (:meth:`Buffering.take_chunk`, see
:mod:`~monasca_common.confluent_kafka.offsets`). Whoever needs the
reading thread between two messages, or needs buffered messages of some
partitions gone (a revocation, a pause, a rewind, ``stop()``, the commit
callback), first takes the rest of that chunk back to the buffer
(:meth:`Buffering.interrupt`, :meth:`Buffering.drop_buffered`).

:class:`Buffering` holds these for
:class:`~monasca_common.confluent_kafka.member.GroupMember`.
"""

from __future__ import annotations

import collections
import typing

import confluent_kafka

Key = typing.Tuple[str, int]
_error = confluent_kafka.Message.error


class Buffering:
    """The member's buffer and the chunk being handed; see the module."""

    # Kept by GroupMember; named here for the type checker.
    buffer: collections.deque
    buffer_lock: typing.Any
    ledger: typing.Any
    fetched: int
    dropped: int
    rebalances: int
    assigned: set
    flow: typing.Any
    _assignment_changed: bool
    _on_message_error: typing.Callable

    def counts(self) -> dict[str, float]:
        """The member's figures, for the consumer's metrics."""
        buffered = self.waiting()
        return {'consumed': self.fetched - self.dropped - buffered,
                'buffered': buffered, 'rebalances': self.rebalances,
                'assigned': len(self.assigned)}

    def drop_buffered(self, keys) -> dict[Key, int]:
        """Remove buffered messages of ``keys``; their first offsets.

        What the reading thread has not handed of its chunk counts as
        buffered: it is taken back first.
        """
        first: dict[Key, int] = {}
        with self.buffer_lock:
            self._take_back()
            if not self.buffer:
                return first
            kept = []
            for message in self.buffer:
                key = (message.topic(), message.partition())
                if key in keys:
                    first.setdefault(key, message.offset())
                else:
                    kept.append(message)
            if first:
                self.dropped += len(self.buffer) - len(kept)
                self.buffer.clear()
                self.buffer.extend(kept)
        return first

    # -- handing out (reading thread) ---------------------------------------

    def take_chunk(self) -> typing.Iterator:
        """Everything buffered, as one iterator the reading thread hands.

        What an earlier one did not hand comes first.
        """
        with self.buffer_lock:
            self._take_back()
            chunk = list(self.buffer)
            self.buffer.clear()
            return self.ledger.handing(chunk)

    def interrupt(self) -> None:
        """Have the reading thread come back before its next message.

        What it has not handed of its chunk goes back to the buffer: its
        iterator ends there, and the reading loop looks at revocations,
        ``stop()`` and the commit callback before going on. Safe from any
        thread and from a signal handler.
        """
        with self.buffer_lock:
            self._take_back()

    def _take_back(self) -> None:
        rest = self.ledger.take_back()
        if rest:
            rest.reverse()
            self.buffer.extendleft(rest)

    def waiting(self) -> int:
        """Messages fetched that the reading thread has not been handed."""
        return len(self.buffer) + self.ledger.unhanded()

    def _store(self, messages: list, measure: bool) -> int:
        """Put what a poll got in the buffer; how many went there.

        ``measure``: keep the mean size the buffer's bound in bytes is
        reckoned by (the member's polls: the reading thread's own empty
        the buffer before the next).
        """
        if any(map(_error, messages)):
            for message in messages:
                err = message.error()
                if err is not None:
                    self._on_message_error(err)
            messages = [m for m in messages if m.error() is None]
        if self._assignment_changed:
            # A rebalance ran inside this poll: messages fetched before
            # it for partitions now gone must not be handed.
            self._assignment_changed = False
            assigned = self.assigned
            messages = [m for m in messages
                        if (m.topic(), m.partition()) in assigned]
        if not messages:
            return 0
        if measure:
            self.flow.fetched(len(messages), sum(map(len, messages)))
        with self.buffer_lock:
            self.fetched += len(messages)
            self.buffer.extend(messages)
        return len(messages)
