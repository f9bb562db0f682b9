#!/usr/bin/env python3
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

"""One-message publish against the old wrapper's pattern, with the broker
a given number of milliseconds away.

A local broker answers in well under a millisecond, which flatters any
pattern that waits for the broker on every call. This starts a broker
behind the test proxy, which holds each produce response for
``--delay-ms``, and runs both scenarios of ``monasca-kafka bench`` there::

    python tools/bench_with_latency.py --delay-ms 1
"""

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'tools'))

import kafka_broker  # noqa: E402

from monasca_common.cli import bench  # noqa: E402
from tests.faults import proxy as kafka_proxy  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--delay-ms', type=float, default=1.0)
    parser.add_argument('--messages', type=int, default=100000)
    args = parser.parse_args()

    cluster = kafka_broker.KafkaCluster(1)
    node = cluster.nodes[0]
    proxy = kafka_proxy.KafkaProxy(
        node.port, kafka_proxy.Policy(delay=args.delay_ms / 1000.0))
    cluster.advertised[node.node_id] = proxy.address
    cluster.start()
    try:
        runner = bench.Bench(proxy.address, args.messages, mock=False)
        results = [runner.old_wrapper_pattern(100),
                   runner.publish_one(100)]
    finally:
        proxy.close()
        cluster.stop()
    print('produce responses delayed by %.1f ms' % args.delay_ms)
    for r in results:
        print('%-42s %9d msgs %10.0f msgs/s' % (r.scenario, r.messages,
                                                r.rate))
    print('one-message publish / old pattern: %.0fx'
          % (results[1].rate / results[0].rate))


if __name__ == '__main__':
    main()
