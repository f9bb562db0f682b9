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

"""A notification-engine-like process, written as monasca-notification is.

Through the factory, with the six positional arguments: for each message
it takes, it (optionally) sleeps as the retry engine does, publishes one
outcome naming the input, then commits; no try/except around either.
Writes ``H <partition> <offset>`` per message taken and ``C`` after each
commit returned, flushing each line. With KILL_AT, it SIGKILLs itself
right after the commit of that many messages; with KILL_MODE ``before``,
right before that commit instead, once the outcome is in Kafka. With
``ENGINE_CONFIG`` in
its environment it reads that configuration file first, as a service
reads its own (``[kafka_client]`` applies to its clients). With
``ENGINE_SLEEP_AFTER_PUBLISH`` it sleeps between publishing and
committing instead.

    python engine_child.py SERVERS GROUP IN_TOPIC OUT_TOPIC LOG SLEEP \
        [KILL_AT [KILL_MODE]]
"""

import os
import signal
import sys
import time

from oslo_config import cfg

from monasca_common.confluent_kafka import opts
from monasca_common.kafka import client_factory

opts.register_opts(cfg.CONF)


def main(servers, group, in_topic, out_topic, log_path, sleep, kill_at=0,
         kill_mode='after'):
    if os.environ.get('ENGINE_CONFIG'):
        cfg.CONF(args=[], project='engine',
                 default_config_files=[os.environ['ENGINE_CONFIG']])
    sleep = float(sleep)
    sleep_after = bool(os.environ.get('ENGINE_SLEEP_AFTER_PUBLISH'))
    kill_at = int(kill_at)
    consumer = client_factory.get_kafka_consumer(
        servers, group, in_topic, None, None, False)
    producer = client_factory.get_kafka_producer(servers)
    handled = 0
    with open(log_path, 'a', buffering=1) as log:
        for message in consumer:
            log.write('H %d %d\n' % (message.partition(), message.offset()))
            if sleep and not sleep_after:
                time.sleep(sleep)
            producer.publish(out_topic, [b'%s %d %d' % (
                in_topic.encode(), message.partition(), message.offset())])
            if sleep and sleep_after:
                time.sleep(sleep)
            if handled + 1 == kill_at and kill_mode == 'before':
                producer.flush(30)
                os.kill(os.getpid(), signal.SIGKILL)
            consumer.commit()
            log.write('C\n')
            handled += 1
            if handled == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)


if __name__ == '__main__':
    main(*sys.argv[1:])
