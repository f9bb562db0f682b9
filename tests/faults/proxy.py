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

"""A Kafka-aware TCP proxy on 127.0.0.1 that loses or alters responses.

It reads the Kafka framing (4-byte size, then for requests api_key,
api_version, correlation_id; for responses correlation_id) so it can pick
out the responses to Produce requests and, as its policy says, forward
them, delay them, drop them (the client hears nothing until its request
times out) or cut the connection instead (the request reached the broker;
its answer never reaches the client).

It can also have Kafka refuse commits for real, as while the group
rebalances: the OffsetCommit request goes on with a generation the group
does not have (Kafka stores nothing), and its answer comes back with the
error the policy names for every partition (REBALANCE_IN_PROGRESS by
default, which leaves the member in its group).
"""

import socket
import struct
import threading
import time

PRODUCE = 0
OFFSET_COMMIT = 8
REBALANCE_IN_PROGRESS = 27


class Policy:
    """What happens to the n-th produce response (counted from 1)."""

    def __init__(self, drop=(), cut=(), delay=0.0, refuse_commits=0,
                 commit_error=REBALANCE_IN_PROGRESS):
        self.drop = set(drop)
        self.cut = set(cut)
        self.delay = delay
        #: How many OffsetCommit requests, from now on, Kafka refuses.
        self.refuse_commits = refuse_commits
        self.commit_error = commit_error
        self.commits_refused = 0
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

    def refuse_commit(self):
        """Whether to have Kafka refuse this OffsetCommit request."""
        with self.lock:
            if not self.refuse_commits:
                return False
            self.refuse_commits -= 1
            self.commits_refused += 1
            return True


class _Reader:
    """Reads Kafka's wire types from a frame, remembering the position."""

    def __init__(self, frame, position):
        self.frame = frame
        self.position = position

    def take(self, fmt):
        value = struct.unpack_from(fmt, self.frame, self.position)[0]
        self.position += struct.calcsize(fmt)
        return value

    def uvarint(self):
        value = shift = 0
        while True:
            byte = self.frame[self.position]
            self.position += 1
            value |= (byte & 0x7f) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def skip_string(self, compact):
        length = self.uvarint() - 1 if compact else self.take('>h')
        self.position += max(length, 0)

    def skip_tags(self):
        for _ in range(self.uvarint()):
            self.uvarint()  # the tag
            size = self.uvarint()
            self.position += size


def spoil_offset_commit(frame, version):
    """``frame`` (an OffsetCommit request) with a generation never given."""
    frame = bytearray(frame)
    flexible = version >= 8
    reader = _Reader(frame, 12)  # size, api key, version, correlation id
    reader.skip_string(False)  # the header's client id: never compact
    if flexible:
        reader.skip_tags()
    reader.skip_string(flexible)  # group id
    generation = struct.unpack_from('>i', frame, reader.position)[0]
    struct.pack_into('>i', frame, reader.position, generation + 1000)
    return bytes(frame)


def refuse_offset_commit(frame, version, error):
    """``frame`` (an OffsetCommit response) with every partition's error.

    Versions 8 and above are flexible: compact arrays and strings (unsigned
    varint lengths plus one) and tagged fields after each structure.
    """
    frame = bytearray(frame)
    flexible = version >= 8
    reader = _Reader(frame, 8)  # size, correlation id
    if flexible:
        reader.skip_tags()
    if version >= 3:
        reader.take('>i')  # throttle_time_ms

    def count():
        return reader.uvarint() - 1 if flexible else reader.take('>i')
    for _ in range(count()):
        reader.skip_string(flexible)  # topic name
        for _ in range(count()):
            reader.take('>i')  # partition index
            struct.pack_into('>h', frame, reader.position, error)
            reader.position += 2
            if flexible:
                reader.skip_tags()
        if flexible:
            reader.skip_tags()
    return bytes(frame)


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
            produce_ids, commit_versions = set(), {}
            threading.Thread(target=self._requests,
                             args=(pair, produce_ids, commit_versions),
                             daemon=True).start()
            threading.Thread(target=self._responses,
                             args=(pair, produce_ids, commit_versions),
                             daemon=True).start()

    @staticmethod
    def _close(pair):
        for s in pair:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _requests(self, pair, produce_ids, commit_versions):
        client, server = pair
        try:
            while True:
                frame = _read_frame(client)
                api_key, version, correlation = struct.unpack(
                    '>hhi', frame[4:12])
                if api_key == PRODUCE:
                    produce_ids.add(correlation)
                elif api_key == OFFSET_COMMIT and self.policy.refuse_commit():
                    commit_versions[correlation] = version
                    frame = spoil_offset_commit(frame, version)
                server.sendall(frame)
        except (OSError, ConnectionError, struct.error):
            self._close(pair)

    def _responses(self, pair, produce_ids, commit_versions):
        client, server = pair
        try:
            while True:
                frame = _read_frame(server)
                correlation = struct.unpack('>i', frame[4:8])[0]
                version = commit_versions.pop(correlation, None)
                if version is not None:
                    frame = refuse_offset_commit(frame, version,
                                                 self.policy.commit_error)
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
