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

"""What the member fetches: the service's pauses, a stall, a stuck fetch.

Three reasons to stop fetching a partition, or to fetch it again, apart
from the group's rebalances (:mod:`~monasca_common.confluent_kafka.member`):

* the service paused it (``KafkaConsumer.pause``);
* the reading thread fell behind: the buffer stayed full (10,000
  messages, or ``queued.max.messages.kbytes`` of them: librdkafka's bound
  on what it fetches ahead, 64 MiB by default), so fetching stops until
  the reader has taken most of it, while polling (and so the group's
  rebalances) goes on;
* librdkafka's statistics show its fetch stuck while Kafka has messages
  for it (see :mod:`~monasca_common.confluent_kafka.fetching`): it is
  assigned again.

Every call runs on the member thread, the only one that calls librdkafka's
consumer.
"""

from __future__ import annotations

import logging
import time
import typing

import confluent_kafka

from monasca_common.confluent_kafka import fetching
from monasca_common.confluent_kafka import metrics
from monasca_common.confluent_kafka.offsets import describe

LOG = logging.getLogger('monasca_common.confluent_kafka.member')

Key = typing.Tuple[str, int]

_CHUNK = 500
# Buffered messages above which fetching is stopped if the reader does not
# take them within _STALL_AFTER, and below which it resumes.
_HIGH = 20 * _CHUNK
_LOW = 4 * _CHUNK
_STALL_AFTER = 1.0
# A partition silent this long whose fetch librdkafka's statistics show
# stuck is assigned again (see fetching.py).
_FETCH_GRACE = 15.0


class FlowControl:
    """Pauses and resumes the member's partitions; see the module.

    :param consumer: the librdkafka consumer.
    :param assigned: the member's set of assigned (topic, partition) keys,
        kept up to date by the member.
    :param max_bytes: bytes of messages the buffer may hold, reckoned from
        their mean size.
    """

    def __init__(self, consumer: confluent_kafka.Consumer,
                 assigned: set[Key], max_bytes: int = 64 * 1024 * 1024):
        self.consumer = consumer
        self.assigned = assigned
        self.max_bytes = max_bytes
        #: Mean size of the messages fetched lately, in bytes.
        self.mean_size = 0.0
        self.paused_by_user: set[Key] = set()
        self.paused_by_stall: set[Key] = set()
        self.stalled = False
        self._full_since: float | None = None
        self.fetch_watch = fetching.FetchWatch(_FETCH_GRACE)
        self._states: dict[Key, dict] | None = None

    def pause(self, keys: set[Key], rewind: dict[Key, int]) -> None:
        """The service's pause; fetching starts again at ``rewind``."""
        self.paused_by_user |= keys
        self.consumer.pause([confluent_kafka.TopicPartition(*k)
                             for k in keys])
        for (topic, partition), offset in rewind.items():
            self.consumer.seek(confluent_kafka.TopicPartition(
                topic, partition, offset))

    def resume(self, keys: set[Key]) -> None:
        """The service's resume; a stall keeps its own pause."""
        self.paused_by_user -= keys
        keys = keys - self.paused_by_stall
        if keys:
            self.consumer.resume([confluent_kafka.TopicPartition(*k)
                                  for k in keys])

    def fetched(self, count: int, size: int) -> None:
        """``count`` messages of ``size`` bytes in all went to the buffer."""
        mean = size / count
        self.mean_size = (self.mean_size + mean) / 2 if self.mean_size \
            else mean

    def too_full(self, count: int, commits_waiting: bool) -> bool:
        """Whether to skip polling; stops fetching on a real stall.

        A reader that keeps up takes a full buffer within moments; one that
        does not (a service busy or asleep) must still have its rebalances
        served, so fetching stops and polling goes on.
        """
        size = count * self.mean_size
        if (count < _HIGH and size < self.max_bytes) or commits_waiting:
            # A commit's answer queues behind the messages librdkafka
            # fetched before it: polling goes on until it comes.
            self._full_since = None
            if self.stalled and count <= _LOW and \
                    size <= self.max_bytes / 5:
                self.stalled = False
                keys = (self.paused_by_stall & self.assigned) - \
                    self.paused_by_user
                self.paused_by_stall = set()
                if keys:
                    self.resume_quietly(keys)
            return False
        if self.stalled:
            return False
        now = time.monotonic()
        if self._full_since is None:
            self._full_since = now
        if now - self._full_since < _STALL_AFTER:
            return True
        self.stalled = True
        self.paused_by_stall = self.assigned - self.paused_by_user
        if self.paused_by_stall:
            self.consumer.pause([confluent_kafka.TopicPartition(*k)
                                 for k in self.paused_by_stall])
        return False

    def on_statistics(self, document: dict) -> None:
        """librdkafka's statistics: keep the partitions' fetch states.

        Called inside ``poll``, on the member thread; the partitions are
        assigned again, if need be, after the poll.
        """
        states = metrics.partitions(document)
        # Received counts from the statistics: the consume loop itself
        # does nothing for the watch.
        self.fetch_watch.progress(
            {key: state.get('rxmsgs') for key, state in states.items()},
            time.monotonic())
        self._states = states

    @property
    def statistics_waiting(self) -> bool:
        return self._states is not None

    def assign_stuck_again(self) -> None:
        """Assign again silent partitions whose fetch is stuck."""
        states, self._states = self._states or {}, None
        now = time.monotonic()
        watch = self.fetch_watch
        watch.reset(self.paused_by_user | self.paused_by_stall, now)
        due = sorted(watch.due(now))
        stuck = [key for key in due if fetching.stuck(states.get(key, {}))]
        watch.reset(due, now)  # idle ones, and stuck ones assigned again
        if not stuck:
            return
        silent = [confluent_kafka.TopicPartition(*key) for key in stuck]
        LOG.warning('Kafka consumer: nothing fetched from %s for %.0f s '
                    'while Kafka has messages for them; assigning them '
                    'again', describe(silent), watch.grace)
        self.resume_quietly(stuck)
        try:
            self.consumer.incremental_unassign(silent)
            self.consumer.incremental_assign(silent)
        except confluent_kafka.KafkaException:
            # The eager protocol replaces the whole assignment: the others
            # resume where they are.
            positions = [
                confluent_kafka.TopicPartition(tp.topic, tp.partition)
                if (tp.topic, tp.partition) in stuck else tp
                for tp in self.consumer.position(
                    self.consumer.assignment())]
            try:
                self.consumer.assign(positions)
            except confluent_kafka.KafkaException as exc:
                LOG.warning('Kafka consumer: could not assign %s again: '
                            '%s', describe(silent), exc)

    def assigned_now(self, partitions: list) -> None:
        """Partitions just assigned: watched, and paused during a stall."""
        self.fetch_watch.assigned(((tp.topic, tp.partition)
                                   for tp in partitions), time.monotonic())
        if self.stalled:
            # Fetching is stopped for everything else too.
            self.consumer.pause(partitions)
            self.paused_by_stall.update((tp.topic, tp.partition)
                                        for tp in partitions)

    def released(self, keys: set[Key], closing: bool) -> None:
        """Partitions gone: forgotten, and resumed if they were paused."""
        self.fetch_watch.forget(keys)
        paused = keys & (self.paused_by_user | self.paused_by_stall)
        self.paused_by_user -= keys
        self.paused_by_stall -= keys
        if paused and not closing:
            # librdkafka keeps a partition paused across its leaving and
            # coming back: it would come back assigned and never fetched.
            self.resume_quietly(paused)

    def resume_quietly(self, keys) -> None:
        partitions = [confluent_kafka.TopicPartition(*k) for k in keys]
        try:
            self.consumer.resume(partitions)
        except confluent_kafka.KafkaException as exc:
            LOG.warning('Kafka consumer: could not resume %s: %s',
                        describe(partitions), exc)
