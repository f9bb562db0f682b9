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

"""How a group member lets go of partitions, and takes new ones.

A revocation that needs the reading thread (the service has a repartition
callback, or holds messages of those partitions it has not committed) is
handed to it: it runs the callback and commits what it was handed, at a
point where it holds no message half done, between two messages. The
member waits for that, bounded by ``revoke_timeout``, running the jobs the
reading thread sends meanwhile (its commit); past it, the partitions go
without a commit and what was handed for them will come again to their
new owner. Any other revocation is done at once, so a member that sleeps
holds up only partitions it is in the middle of. Partitions lost (the
session expired, the member fenced) are never committed.

:class:`Rebalancing` holds these callbacks for
:class:`~monasca_common.confluent_kafka.member.GroupMember`; they run
inside ``poll``, on its thread, or on the reading thread while that one
polls for itself: it then releases the partitions there and then, between
two messages as well.
"""

from __future__ import annotations

import collections
import inspect
import logging
import threading
import time
import typing

from monasca_common.confluent_kafka.offsets import describe

LOG = logging.getLogger('monasca_common.confluent_kafka.member')

# How long one wait for the reading thread to release partitions lasts
# before the member looks again (jobs, closing, the deadline).
_WAIT = 0.05


class Revocation:
    """Partitions leaving the assignment; the reading thread serves it."""

    def __init__(self, partitions: list):
        self.partitions = partitions
        self.keys = {(tp.topic, tp.partition) for tp in partitions}
        self.done = threading.Event()
        #: Set when the member stopped waiting: the partitions are gone.
        self.abandoned = False


class Rebalancing:
    """The rebalance callbacks of a group member; see the module."""

    # Kept by GroupMember; named here for the type checker.
    assigned: set
    flow: typing.Any
    buffer_lock: typing.Any
    revocations: collections.deque
    rebalances: int
    revoke_timeout: float
    left_at: float | None
    _assignment_changed: bool
    _closing: bool
    _revoking: bool
    _reader_release: typing.Callable | None
    handle: typing.Any
    _needs_reader: typing.Callable[[set], bool]
    _on_abandon: typing.Callable[[], None] | None
    drop_buffered: typing.Callable[[set], dict]
    interrupt: typing.Callable[[], None]

    def serve_revocations(self, release) -> None:
        """On the reading thread: let go of what rebalances take away.

        ``release(revocation)`` runs the service's callback and the commit
        (unless the partitions are already lost) and forgets them; then
        the member may give them up.
        """
        while self.revocations:
            revocation = self.revocations.popleft()
            self.drop_buffered(revocation.keys)
            release(revocation)
            revocation.done.set()
            self.handle.wake.set()

    def _post(self, revocation: Revocation) -> None:
        # The reading thread serves it before its next message.
        with self.buffer_lock:
            self.revocations.append(revocation)
            self.interrupt()

    def _on_assign(self, consumer, partitions) -> None:
        self.rebalances += 1
        self.assigned.update((tp.topic, tp.partition) for tp in partitions)
        self.flow.assigned_now(partitions)
        self._assignment_changed = True
        LOG.info('Kafka consumer assigned %s', describe(partitions))

    def _on_revoke(self, consumer, partitions) -> None:
        self._assignment_changed = True
        revocation = Revocation(partitions)
        if self._closing:
            self._release(revocation)
            LOG.info('Kafka consumer closing; released %s without '
                     'committing', describe(partitions))
            return
        if self.left_at is not None:
            # The reading thread is stuck: waiting for it would hold the
            # partitions back. It forgets them when it comes back.
            self.drop_buffered(revocation.keys)
            self._abandon()
            self._release(revocation)
            self._post(revocation)
            LOG.warning('Kafka consumer: released %s without a commit: '
                        'what was handed of them since the last one will '
                        'come again to their new owner', describe(partitions))
            return
        LOG.info('Kafka consumer: partitions revoked %s',
                 describe(partitions))
        if self._reader_release is not None:
            # Inside the reading thread's own poll: it lets go at once.
            self._post(revocation)
            self._revoking = True
            try:
                self.serve_revocations(self._reader_release)
            finally:
                self._revoking = False
            self._release(revocation)
            return
        if not self._needs_reader(revocation.keys):
            # Nothing handed of them waits for a commit: let them go now.
            # The reading thread still forgets them at its next turn.
            self.drop_buffered(revocation.keys)
            self._release(revocation)
            self._post(revocation)
            return
        self._revoking = True
        try:
            self._post(revocation)
            deadline = time.monotonic() + self.revoke_timeout
            while not revocation.done.is_set():
                self.handle.run_jobs()
                if self._closing:
                    break
                if time.monotonic() >= deadline:
                    LOG.warning(
                        'Kafka consumer: the reading thread did not come '
                        'back within %.0f s to release %s; they go without '
                        'a commit and what it was handed of them will '
                        'come again to their new owner',
                        self.revoke_timeout, describe(partitions))
                    self._abandon()
                    break
                self.handle.wake.wait(_WAIT)
                self.handle.wake.clear()
            self.handle.run_jobs()
        finally:
            self._revoking = False
        self._release(revocation)

    def _on_lost(self, consumer, partitions) -> None:
        LOG.warning('Kafka consumer lost partitions %s (session timed out '
                    'or fenced); not committing them: messages handed out '
                    'since the last commit will be redelivered',
                    describe(partitions))
        self.rebalances += 1
        self._assignment_changed = True
        revocation = Revocation(partitions)
        self._abandon()
        self._release(revocation)
        self._post(revocation)

    def _abandon(self) -> None:
        if self._on_abandon is not None:
            self._on_abandon()

    def _release(self, revocation: Revocation) -> None:
        if not revocation.done.is_set():
            # Gone without the reading thread: it must not commit them.
            revocation.abandoned = True
        self.assigned.difference_update(revocation.keys)
        self.flow.released(revocation.keys, self._closing)


def adapt_repartition_callback(callback):
    """Call ``callback(consumer, partitions)`` or ``callback()``."""
    if callback is None:
        return None
    try:
        params = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        return callback
    positional = [p for p in params
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    takes_args = any(p.kind == p.VAR_POSITIONAL for p in params)
    if not positional and not takes_args:
        return lambda consumer, partitions: callback()
    return callback
