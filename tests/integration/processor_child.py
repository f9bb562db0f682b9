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

"""A processor copying a topic, transformed, until it is killed.

``processor_child.py SERVERS GROUP INPUT OUTPUT INSTANCE BATCH``

Each input ``id-N`` becomes ``copy-N`` on the output topic. Prints
``STARTED`` once it holds its ``transactional.id``.
"""

import signal
import sys

from monasca_common import kafka


def transform(batch):
    return [('%s' % OUTPUT, b'copy-' + m.value()[3:], m.key())
            for m in batch]


if __name__ == '__main__':
    servers, group, source, OUTPUT, instance, batch = sys.argv[1:7]
    processor = kafka.Processor(
        servers, group, source, transform, instance,
        batch_size=int(batch), batch_timeout=0.2,
        consumer_config={'session.timeout.ms': 6000})
    signal.signal(signal.SIGTERM, lambda *_: processor.stop())
    processor.start()
    print('STARTED', flush=True)
    try:
        processor.run()
    finally:
        processor.close()
