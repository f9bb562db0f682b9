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

"""Putting a call's messages into librdkafka's queue, with backpressure.

librdkafka's queue holds ``queue.buffering.max.messages``. A call goes in
with as few C calls as the room allows (``produce_batch``), in order; when
the queue is full the call waits for the poller to serve reports and free
room, up to its deadline, and gives back what did not fit.
"""

from __future__ import annotations

import logging
import threading
import time
import typing

import confluent_kafka

from monasca_common.confluent_kafka import versions

LOG = logging.getLogger('monasca_common.confluent_kafka.producer')

# Longest wait for room in a full queue between two attempts.
_ROOM_WAIT = 0.01
_WARN_INTERVAL = 10.0
QUEUE_FULL = confluent_kafka.KafkaError(confluent_kafka.KafkaError._QUEUE_FULL)


class Refused(Exception):
    """librdkafka refused message ``index`` of the call for good.

    ``queued`` messages of the call went in before it, ``not_queued`` did
    not.
    """

    def __init__(self, queued: int, not_queued: int, index: int,
                 err: confluent_kafka.KafkaError):
        super().__init__(err.str())
        self.queued = queued
        self.not_queued = not_queued
        self.index = index
        self.error = err


class SendQueue:
    """librdkafka's send queue, as publish calls fill it."""

    def __init__(self, handle, max_messages: int):
        self._handle = handle
        self._max_messages = max_messages
        self._room = threading.Event()
        self._room_wanted = False
        self._last_warning = -_WARN_INTERVAL
        self.closing = False

    def freed(self) -> None:
        """Reports were served: room may have come (the poller says)."""
        if self._room_wanted:
            self._room_wanted = False
            self._room.set()

    def stop_waiting(self) -> None:
        """A call waiting for room gives up now (the producer closes)."""
        self.closing = True
        self._room.set()

    def put(self, topic: str, payloads: list[str | bytes],
            key: bytes | None, report,
            deadline: float) -> list[str | bytes]:
        """Queue ``payloads`` in order; return those left at ``deadline``.

        What is left is a suffix of ``payloads``: the call's order holds.

        :raises Refused: librdkafka refused a message for good.
        """
        count = len(payloads)
        if count == 1 or not versions.PRODUCE_BATCH:
            return self._put_each(topic, payloads, key, report, deadline, 0)
        produce_batch = self._handle.produce_batch
        position = 0
        while position < count:
            room = self._max_messages - len(self._handle)
            if room > 0:
                end = min(count, position + room)
                chunk = payloads[position:end]
                batch: list[dict[str, typing.Any]] = (
                    [{'value': p} for p in chunk] if key is None else
                    [{'value': p, 'key': key} for p in chunk])
                queued = produce_batch(topic, batch, on_delivery=report)
                if queued == len(batch):
                    position = end
                    continue
                refused = [i for i, m in enumerate(batch) if '_error' in m]
                if any(batch[i]['_error'].code() != QUEUE_FULL.code()
                       for i in refused):
                    raise Refused(position + queued,
                                  count - position - queued,
                                  position + refused[0],
                                  batch[refused[0]]['_error'])
                if refused[0] == queued:
                    # The queue filled up at message ``queued``: the rest
                    # waits for room, in order.
                    position += queued
                else:
                    # Another thread took the room meanwhile: the refused
                    # ones follow the later ones of this chunk.
                    unqueued = self._put_each(
                        topic, [chunk[i] for i in refused], key, report,
                        deadline, position + queued)
                    if unqueued:
                        return unqueued + payloads[end:]
                    position = end
                    continue
            if not self._wait_for_room(deadline):
                break
        return payloads[position:]

    def _put_each(self, topic, payloads, key, report, deadline, already):
        produce = self._handle.produce
        position = 0
        count = len(payloads)
        while position < count:
            try:
                for position in range(position, count):
                    produce(topic, payloads[position], key,
                            on_delivery=report)
                position = count
            except BufferError:
                if not self._wait_for_room(deadline):
                    break
            except confluent_kafka.KafkaException as exc:
                raise Refused(already + position, count - position,
                              already + position, exc.args[0]) from None
        return payloads[position:]

    def _wait_for_room(self, deadline: float) -> bool:
        """Wait a moment for room in the queue; False past ``deadline``."""
        now = time.monotonic()
        if now >= deadline or self.closing:
            return False
        if now - self._last_warning >= _WARN_INTERVAL:
            self._last_warning = now
            LOG.warning('Kafka producer queue full; publish waits up to '
                        '%.1f s for room', deadline - now)
        # The poller frees room as it serves reports and says so; the cap
        # covers a report served between the failed attempt and this wait.
        self._room_wanted = True
        self._room.wait(min(deadline - now, _ROOM_WAIT))
        self._room.clear()
        return True
