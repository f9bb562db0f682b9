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

"""A Kafka-aware TCP proxy on 127.0.0.1 that loses produce responses.

It reads the Kafka framing (4-byte size, then for requests api_key,
api_version, correlation_id; for responses correlation_id) so it can pick
out the responses to Produce requests and, as its policy says, forward
them, delay them, drop them (the client hears nothing until its request
times out) or cut the connection instead (the request reached the broker;
its answer never reaches the client).
"""

import socket
import struct
import threading
import time

PRODUCE = 0


class Policy:
    """What happens to the n-th produce response (counted from 1)."""

    def __init__(self, drop=(), cut=(), delay=0.0):
        self.drop = set(drop)
        self.cut = set(cut)
        self.delay = delay
        self.enabled = True
        self.responses = 0
        self.dropped = 0
        self.cut_count = 0
        self.lock = threading.Lock()

    def decide(self):
        with self.lock:
            if not self.enabled:
                return 'forward'
            self.responses += 1
            n = self.responses
            if n in self.drop:
                self.dropped += 1
                return 'drop'
            if n in self.cut:
                self.cut_count += 1
                return 'cut'
        if self.delay:
            time.sleep(self.delay)
        return 'forward'


def _read_exact(sock, n):
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError('closed')
        data += chunk
    return bytes(data)


def _read_frame(sock):
    size = _read_exact(sock, 4)
    return size + _read_exact(sock, struct.unpack('>i', size)[0])


class KafkaProxy:

    def __init__(self, upstream_port, policy=None):
        self.upstream = ('127.0.0.1', upstream_port)
        self.policy = policy or Policy()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.connections = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self):
        return '127.0.0.1:%d' % self.port

    def _accept(self):
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            pair = (client, server)
            self.connections.append(pair)
            produce_ids = set()
            threading.Thread(target=self._requests,
                             args=(pair, produce_ids), daemon=True).start()
            threading.Thread(target=self._responses,
                             args=(pair, produce_ids), daemon=True).start()

    @staticmethod
    def _close(pair):
        for s in pair:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _requests(self, pair, produce_ids):
        client, server = pair
        try:
            while True:
                frame = _read_frame(client)
                api_key, _, correlation = struct.unpack('>hhi', frame[4:12])
                if api_key == PRODUCE:
                    produce_ids.add(correlation)
                server.sendall(frame)
        except (OSError, ConnectionError, struct.error):
            self._close(pair)

    def _responses(self, pair, produce_ids):
        client, server = pair
        try:
            while True:
                frame = _read_frame(server)
                correlation = struct.unpack('>i', frame[4:8])[0]
                if correlation in produce_ids:
                    produce_ids.discard(correlation)
                    action = self.policy.decide()
                    if action == 'drop':
                        continue
                    if action == 'cut':
                        self._close(pair)
                        return
                client.sendall(frame)
        except (OSError, ConnectionError, struct.error):
            self._close(pair)

    def close(self):
        self._closed = True
        self.listener.close()
        for pair in self.connections:
            self._close(pair)
