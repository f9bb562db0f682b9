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

"""A persister process is SIGKILLed mid-batch five times."""

import os
import pathlib
import random
import signal
import sqlite3
import subprocess
import sys
import time

import confluent_kafka
import pytest

from monasca_common import kafka
from tests import waiting

pytestmark = [pytest.mark.integration, pytest.mark.faults]

CHILD = pathlib.Path(__file__).with_name('persister_child.py')
MESSAGES = 20000
BATCH = 100
KILLS = 5


def rows(db_path, table):
    if not os.path.exists(db_path):
        return 0
    with sqlite3.connect(db_path) as db:
        try:
            return db.execute('SELECT COUNT(*) FROM %s' % table).fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def uncommitted_rows(journal, servers, group_id, topic):
    """Rows of the last batch written whose commit did not land.

    A kill can come after the commit request reached the broker but
    before its answer did; the committed offsets tell which way it went.
    """
    lines = journal.read_text().splitlines() if journal.exists() else []
    if not lines or not lines[-1].startswith('W '):
        return 0
    written = [tuple(int(n) for n in entry.split(':'))
               for entry in lines[-1].split()[1:]]
    reader = confluent_kafka.Consumer({'bootstrap.servers': servers,
                                       'group.id': group_id})
    try:
        committed = reader.committed(
            [confluent_kafka.TopicPartition(topic, partition)
             for partition, _next, _rows in written], timeout=30)
    finally:
        reader.close()
    landed = {tp.partition: tp.offset for tp in committed}
    return sum(rows for partition, next_offset, rows in written
               if landed[partition] < next_offset)


def test_persister_killed_five_times_stores_everything_once(
        bootstrap_servers, make_topic, group_id, tmp_path):
    topic = make_topic(partitions=2)
    with kafka.KafkaProducer(bootstrap_servers) as producer:
        producer.publish(topic, [b'v-%06d' % i for i in range(MESSAGES)],
                         sync=True, timeout=60)
    db = str(tmp_path / 'persister.db')
    rng = random.Random(7)
    redelivered_expected = 0
    started = time.monotonic()
    for kill in range(KILLS + 1):
        journal = tmp_path / ('journal-%d' % kill)
        child = subprocess.Popen([sys.executable, str(CHILD),
                                  bootstrap_servers, group_id, topic, db,
                                  str(journal), str(BATCH)])
        try:
            if kill == KILLS:
                waiting.until(lambda: rows(db, 'sink') >= MESSAGES, 180,
                              'the last persister to finish the topic')
                continue
            before = rows(db, 'writes')
            target = before + rng.randint(3, 12) * BATCH + rng.randint(1, 90)
            waiting.until(lambda: rows(db, 'writes') >= target or
                          child.poll() is not None, 120, 'progress')
            # Wait a random part of a batch, then kill without warning.
            time.sleep(rng.uniform(0.0, 0.08))
            os.kill(child.pid, signal.SIGKILL)
        finally:
            if child.poll() is None:
                child.kill()
            child.wait(30)
        redelivered_expected += uncommitted_rows(
            journal, bootstrap_servers, group_id, topic)

    sink = rows(db, 'sink')
    writes = rows(db, 'writes')
    with sqlite3.connect(db) as conn:
        distinct = conn.execute(
            'SELECT COUNT(DISTINCT value) FROM sink').fetchone()[0]
    print('persister kills: messages=%d kills=%d sink=%d writes=%d '
          'redelivered=%d uncommitted-at-kill=%d seconds=%.0f'
          % (MESSAGES, KILLS, sink, writes, writes - MESSAGES,
             redelivered_expected, time.monotonic() - started))
    # The idempotent sink holds every message exactly once.
    assert sink == MESSAGES and distinct == MESSAGES
    # Without it, what came twice is exactly what was written but whose
    # commit had not landed when each kill came: nothing else.
    assert writes - MESSAGES == redelivered_expected
