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

"""The old persister's read loop, for ``tools/bench_persister.py``.

Runs in the old client's venv (monasca-common 3.8.0)::

    python legacy_persister.py SERVERS ZOOKEEPER GROUP TOPIC COUNT PARSE

For the measurement only, the old decoder's ``raise StopIteration()``
(which Python 3.7+ turns into "generator raised StopIteration" as soon as
a fetch ends in a partial message, PEP 479) becomes ``return``: what it
did on Python 2.7 and 3.6. Prints ``{"messages", "seconds", "cpu"}``
counted from the first message.
"""

import inspect
import json
import sys
import textwrap
import time

from monasca_common.kafka import consumer as old_consumer
from monasca_common.kafka_lib import protocol

BATCH = 1000


def _decoder_as_on_python_36():
    source = textwrap.dedent(inspect.getsource(
        protocol.KafkaProtocol._decode_message_set_iter.__func__))
    if 'raise StopIteration()' not in source:
        raise SystemExit('the old decoder is not the one this patches')
    namespace = dict(vars(protocol))
    exec(source.replace('raise StopIteration()', 'return')
         .replace('@classmethod', ''), namespace)
    protocol.KafkaProtocol._decode_message_set_iter = classmethod(
        namespace['_decode_message_set_iter'])


def main(servers, zookeeper, group, topic, count, parse):
    _decoder_as_on_python_36()
    count, parse = int(count), parse == '1'
    consumer = old_consumer.KafkaConsumer(
        servers, zookeeper, '/bench-partitions/%s' % group, group.encode(),
        topic.encode())
    batch, read, start = [], 0, None
    for _partition, message in consumer:
        if start is None:
            start = time.perf_counter(), time.process_time()
        value = message.message.value
        batch.append(json.loads(value) if parse else value)
        read += 1
        if len(batch) == BATCH:
            consumer.commit()
            batch = []
        if read >= count:
            break
    end = time.perf_counter(), time.process_time()
    print(json.dumps({'messages': read, 'seconds': end[0] - start[0],
                      'cpu': end[1] - start[1]}))
    return 0


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:]))
