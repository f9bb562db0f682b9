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

"""A persister-like consumer process, to be killed by the tests.

Writes ``H <partition> <offset>`` for every message handed to it and
``C <partition> <offset>`` for every commit (offset of the next message to
read), flushing each line, and commits every ``batch`` messages. With
HOLD_AT, it stops taking messages once it has handed that many, writes
``HOLDING`` and waits to be killed: a kill mid-batch, every time.

    python consumer_child.py SERVERS GROUP TOPIC LOG BATCH [HOLD_AT]
"""

import sys
import time

from monasca_common import kafka


def main(servers, group, topic, log_path, batch, hold_at=0):
    batch = int(batch)
    hold_at = int(hold_at)
    consumer = kafka.KafkaConsumer(servers, group, topic, timeout=3000)
    with open(log_path, 'a', buffering=1) as log:
        handed = 0
        for message in consumer:
            log.write('H %d %d\n' % (message.partition(), message.offset()))
            handed += 1
            if handed % batch == 0:
                for tp in consumer.commit():
                    log.write('C %d %d\n' % (tp.partition, tp.offset))
            if handed == hold_at:
                log.write('HOLDING\n')
                while True:
                    time.sleep(1)


if __name__ == '__main__':
    main(*sys.argv[1:])
