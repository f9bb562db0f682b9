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


"""The fetch watch: assigned partitions whose fetching is stuck.

librdkafka can leave an assigned partition silent for good while its
messages wait in Kafka, until the partition is assigned again. Seen after
a broker restart: the partition's fetcher reports itself active, at an
offset below the high watermark, with nothing fetched and nothing queued;
and, when the coordinator answers NOT_COORDINATOR to the question for the
committed offsets, the fetcher is never started at all (librdkafka issue
5586). From librdkafka's statistics the member keeps, per partition, since
when it received nothing (:class:`FetchWatch`), and assigns again those
silent longer than the grace whose statistics say :func:`stuck`.

Pure bookkeeping: the clock is passed in.
"""

from __future__ import annotations

import collections.abc
import typing

Key = tuple[str, int]

# Fetch states of a fetcher that was never started or was stopped.
_NOT_STARTED = frozenset(('none', 'stopped'))


class FetchWatch:
    """Since when each assigned partition has delivered nothing.

    :param grace: seconds a partition may stay silent (a coordinator still
        loading, a leader being elected) before it is looked at.
    """

    def __init__(self, grace: float):
        self.grace = grace
        self._since: dict[Key, float] = {}
        self._received: dict[Key, typing.Any] = {}

    def assigned(self, keys: collections.abc.Iterable[Key],
                 now: float) -> None:
        """Start the clock of newly assigned partitions."""
        for key in keys:
            self._since.setdefault(key, now)

    def progress(self, received: collections.abc.Mapping[Key, typing.Any],
                 now: float) -> None:
        """Messages received so far, per partition (``rxmsgs``).

        The clock of a watched partition whose count moved starts again;
        one missing from ``received`` is left as it is.
        """
        moved = [key for key in self._since if key in received and
                 received[key] != self._received.get(key)]
        for key in moved:
            self._received[key] = received[key]
        self.reset(moved, now)

    def reset(self, keys: collections.abc.Iterable[Key],
              now: float) -> None:
        """Their clock starts again.

        Messages came, they were assigned again, they are paused (a paused
        partition fetches nothing) or idle at the end of their log.
        """
        since = self._since
        for key in keys:
            if key in since:
                since[key] = now

    def forget(self, keys: collections.abc.Iterable[Key]) -> None:
        """Revoked or lost: no longer watched."""
        for key in keys:
            self._since.pop(key, None)
            self._received.pop(key, None)

    def due(self, now: float) -> set[Key]:
        """Partitions silent for ``grace`` seconds or more."""
        return {key for key, since in self._since.items()
                if now - since >= self.grace}


def stuck(state: collections.abc.Mapping) -> bool:
    """Whether librdkafka's statistics of a partition show a stuck fetch.

    ``state`` is the partition's entry in the statistics JSON. A fetcher
    never started (or stopped) is stuck; so is an active one with messages
    to fetch (``hi_offset`` above ``next_offset``) and none queued. One
    still looking up its offsets is not, nor one at the end of its log.
    """
    fetch_state = state.get('fetch_state')
    if fetch_state in _NOT_STARTED:
        return True
    if fetch_state != 'active':
        return False
    high, position = state.get('hi_offset', -1), state.get('next_offset', -1)
    return (state.get('fetchq_cnt', 0) == 0 and 0 <= position < high)
