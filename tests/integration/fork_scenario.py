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

"""A process that builds a client, then forks, as a preforking server does.

    python fork_scenario.py producer SERVERS TOPIC
    python fork_scenario.py consumer SERVERS TOPIC GROUP

Exit 0 when the child used the inherited producer successfully (or was
told clearly not to use the inherited consumer) and the parent still
works; a child that hangs dumps its stack and fails.
"""

import faulthandler
import os
import sys
import time

from monasca_common import kafka

CHILD_TIMEOUT = 60


def in_child(body):
    pid = os.fork()
    if pid == 0:
        faulthandler.dump_traceback_later(CHILD_TIMEOUT - 5, exit=True)
        code = 1
        try:
            code = 0 if body() else 3
        finally:
            os._exit(code)
    deadline = time.monotonic() + CHILD_TIMEOUT
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return 'hung'


def producer(servers, topic):
    client = kafka.KafkaProducer(servers)
    client.publish(topic, b'parent before fork', sync=True)
    code = in_child(lambda: client.publish(
        topic, b'from child', sync=True, timeout=30).delivered == 1)
    client.publish(topic, b'parent after fork', sync=True)
    client.close()
    return code


def consumer(servers, topic, group):
    client = kafka.KafkaConsumer(servers, group, topic, timeout=6000)

    def refused_clearly():
        try:
            next(iter(client))
        except kafka.ForkedClientError as exc:
            client.close()  # allowed, and it must not hang
            return 'create the consumer after fork()' in str(exc)
        return False

    code = in_child(refused_clearly)
    if code == 0:
        # The parent's consumer is untouched and still reads.
        it = iter(client)
        got = [next(it).value(), next(it).value()]
        code = 0 if got == [b'a', b'b'] else 4
    client.close()
    return code


if __name__ == '__main__':
    mode, args = sys.argv[1], sys.argv[2:]
    result = {'producer': producer, 'consumer': consumer}[mode](*args)
    print('child exit: %s' % result)
    sys.exit(0 if result == 0 else 1)
