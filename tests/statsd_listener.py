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

"""A UDP statsd listener that reads datagrams as the monasca-agent does."""

import ast
import socket
import threading


def parse(datagram):
    """(name, value, type, dimensions) per line, or raise like the agent.

    The monasca-agent's statsd server splits a line at the first ``:``,
    then at ``|``: value, type, and ``#`` followed by a Python dict
    literal of dimensions (``ast.literal_eval``).
    """
    metrics = []
    for line in datagram.split('\n'):
        if not line.strip():
            continue
        name, rest = line.split(':', 1)
        fields = rest.split('|')
        value, kind = float(fields[0]), fields[1]
        dimensions = {}
        for extra in fields[2:]:
            if extra.startswith('#'):
                dimensions = ast.literal_eval(extra[1:])
        assert isinstance(dimensions, dict), line
        metrics.append((name, value, kind, dimensions))
    return metrics


class Listener:
    """Collects what arrives on a UDP port of 127.0.0.1."""

    def __init__(self):
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(('127.0.0.1', 0))
        self._socket.settimeout(0.2)
        self.address = '127.0.0.1:%d' % self._socket.getsockname()[1]
        self.datagrams = []
        self.metrics = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data = self._socket.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            text = data.decode('utf-8')
            parsed = parse(text)
            with self._lock:
                self.datagrams.append(data)
                self.metrics.extend(parsed)

    def latest(self, name, **dimensions):
        """The last value received for ``name`` with these dimensions."""
        with self._lock:
            for metric, value, _, found in reversed(self.metrics):
                if metric == name and all(found.get(k) == v
                                          for k, v in dimensions.items()):
                    return value
        return None

    def names(self):
        with self._lock:
            return {metric for metric, _, _, _ in self.metrics}

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self._socket.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
