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


"""Where librdkafka's log lines go, and how often the same one may.

librdkafka's lines (connection failures, disconnections, group events) go
to Python logging under ``monasca_common.confluent_kafka.librdkafka``, at
the level librdkafka gives them, instead of to stderr. While a broker is
down each client says so every time it tries to connect again, as often
as ten times a second: :class:`RepeatFilter` lets one line through per
client, broker thread, kind and level each interval, and the next one to
pass says how many it stood for. DEBUG lines (``debug=...``, asked for)
all pass.
"""

from __future__ import annotations

import logging
import threading
import time
import typing

LIBRDKAFKA_LOG = logging.getLogger('monasca_common.confluent_kafka.librdkafka')

#: Seconds between two lines of the same client, broker and kind.
REPEAT_INTERVAL = 30.0

# Entries older than the interval are dropped once there are this many:
# clients come and go (a health check builds one per check).
_PRUNE_AT = 1000


class RepeatFilter(logging.Filter):
    """One line per client, broker thread, kind and level each interval.

    :param interval: seconds a line's kind stays quiet after it passed.
    :param clock: monotonic seconds (tests pass their own).
    """

    def __init__(self, interval: float = REPEAT_INTERVAL,
                 clock: typing.Callable[[], float] = time.monotonic):
        super().__init__()
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        # kind -> [when the last line passed, lines held back since]
        self._seen: dict[tuple, list] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.INFO:
            return True
        kind = _kind(record)
        now = self._clock()
        with self._lock:
            seen = self._seen.get(kind)
            if seen is not None and now - seen[0] < self.interval:
                seen[1] += 1
                return False
            held, since = (seen[1], seen[0]) if seen is not None else (0, now)
            if len(self._seen) >= _PRUNE_AT:
                self._prune(now)
            self._seen[kind] = [now, 0]
        if held:
            record.msg = '%s (%d more like it in %.0f s)' % (
                record.msg, held, now - since)
        return True

    def _prune(self, now: float) -> None:
        self._seen = {k: v for k, v in self._seen.items()
                      if now - v[0] < self.interval}


def _kind(record: logging.LogRecord) -> tuple:
    """Level, facility, client and broker thread of a librdkafka line.

    confluent-kafka logs ``'%s [%s] %s'`` with the facility (FAIL, ...),
    the client's name and librdkafka's text, which starts with the thread
    (``[thrd:host:port/id]: ...``), that is the broker.
    """
    args = record.args
    if isinstance(args, tuple) and len(args) == 3:
        facility, client, text = args
        thread = str(text).split(': ', 1)[0]
        return record.levelno, facility, client, thread
    return record.levelno, str(record.msg)


LIBRDKAFKA_LOG.addFilter(RepeatFilter())
