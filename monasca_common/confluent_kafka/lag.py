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

"""A consumer's lag figures, when its statistics do not have them.

Kafka is asked by an admin client of the consumer's own (the group's
committed offsets, then each partition's watermarks), on the thread that
wants the figures, never on the member thread: several health endpoints
or a busy reporter asking at once must not take its time from reading.
The answer is kept for ``fresh_for`` seconds and shared by every caller;
one question is asked at a time.
"""

from __future__ import annotations

import collections.abc
import logging
import threading
import time
import typing

from monasca_common.confluent_kafka import errors
from monasca_common.confluent_kafka import metrics

LOG = logging.getLogger('monasca_common.confluent_kafka.consumer')

Key = typing.Tuple[str, int]
#: (first available, end, committed or -1) per partition.
Offsets = typing.Dict[Key, typing.Tuple[int, int, int]]


class LagQuestion:
    """Kafka's offsets for a consumer's lag, asked off the member thread.

    :param config: the consumer's librdkafka configuration; its connection
        and security settings reach Kafka the same way.
    :param fresh_for: seconds an answer is served again without asking.
    """

    def __init__(self, config: collections.abc.Mapping, group: str,
                 fresh_for: float = 5.0):
        self._config = config
        self._group = group
        self._fresh_for = fresh_for
        self._lock = threading.Lock()
        self._admin: typing.Any = None
        self._answer: Offsets = {}
        self._answered_at: float | None = None
        #: Questions asked of Kafka, since the start.
        self.asked = 0

    def partition_offsets(self, assigned: collections.abc.Set[Key],
                          statistics: typing.Any, interval_ms: int,
                          timeout: float) -> Offsets:
        """(low, end, committed) per assigned partition.

        From librdkafka's statistics while they are on (``interval_ms``)
        and recent, and name every partition; otherwise asked of Kafka.
        """
        assigned = set(assigned)
        age = statistics.age()
        if interval_ms and age is not None and age < 3 * interval_ms / 1e3:
            found = metrics.offsets_from_statistics(statistics.document,
                                                    assigned)
            if set(found) == assigned:
                return found
        if not assigned:
            return {}
        return self.offsets(sorted(assigned), timeout)

    def offsets(self, keys: list[Key], timeout: float) -> Offsets:
        """The offsets of ``keys``; what is known at once if ``timeout`` 0.

        Partitions Kafka did not answer for are left out.
        """
        if self._fresh(keys) or timeout == 0:
            return self._known(keys)
        if not self._lock.acquire(timeout=timeout):
            return self._known(keys)  # another caller is asking
        try:
            if not self._fresh(keys):
                self._ask(keys, timeout)
        except errors.KafkaClientError as exc:
            LOG.debug('Kafka consumer: no offsets for the lag: %s', exc)
        finally:
            self._lock.release()
        return self._known(keys)

    def _fresh(self, keys: list[Key]) -> bool:
        answered_at = self._answered_at
        return (answered_at is not None and
                time.monotonic() - answered_at < self._fresh_for and
                all(key in self._answer for key in keys))

    def _known(self, keys: list[Key]) -> Offsets:
        answer = self._answer
        return {key: answer[key] for key in keys if key in answer}

    def _ask(self, keys: list[Key], timeout: float) -> None:
        # Imported here: the admin module builds on this package.
        from monasca_common.kafka import admin
        deadline = time.monotonic() + timeout
        kafka = self._admin
        if kafka is None:
            kafka = self._admin = admin.admin_for(self._config, timeout)
        self.asked += 1
        committed: dict = {}
        topics: dict[str, list[int]] = collections.defaultdict(list)
        for topic, partition in keys:
            topics[topic].append(partition)
        for topic, partitions in sorted(topics.items()):
            committed.update(kafka.committed_offsets(
                self._group, topic, partitions,
                max(0.001, deadline - time.monotonic())))
        bounds = kafka.log_bounds(
            keys, max(0.001, deadline - time.monotonic()))
        answer = {key: (low, high, -1 if committed.get(key) is None
                        else committed[key])
                  for key, (low, high) in bounds.items()}
        self._answer = answer
        self._answered_at = time.monotonic()

    def close(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            admin.close()
