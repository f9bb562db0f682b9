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

"""A persister: batches messages into SQLite, then commits. Killed often.

Each batch is written in one transaction to two tables: ``sink``, keyed
by (topic, partition, offset), so a redelivered message is written once
(the idempotent sink), and ``writes``, which records every write. The
journal file gets ``W partition:next-offset:rows ...`` after a batch is
written and ``C`` after its commit returned, each flushed, so the test
knows which batch was written but maybe not committed when the kill came.

    python persister_child.py SERVERS GROUP TOPIC DB JOURNAL BATCH
"""

import sqlite3
import sys
import time

from monasca_common import kafka

SCHEMA = '''
CREATE TABLE IF NOT EXISTS sink (topic TEXT, part INTEGER, off INTEGER,
                                 value BLOB, PRIMARY KEY (topic, part, off));
CREATE TABLE IF NOT EXISTS writes (value BLOB);
'''


def batch_positions(batch):
    """(partition, next offset, rows) for each partition in the batch."""
    positions = {}
    for _topic, partition, offset, _value in batch:
        next_offset, rows = positions.get(partition, (0, 0))
        positions[partition] = (max(next_offset, offset + 1), rows + 1)
    return sorted((partition, next_offset, rows)
                  for partition, (next_offset, rows) in positions.items())


def main(servers, group, topic, db_path, journal_path, batch_size):
    batch_size = int(batch_size)
    db = sqlite3.connect(db_path, isolation_level=None)
    db.executescript(SCHEMA)
    consumer = kafka.KafkaConsumer(servers, group, topic, timeout=3000)
    batch = []
    with open(journal_path, 'a', buffering=1) as journal:
        for message in consumer:
            batch.append((message.topic(), message.partition(),
                          message.offset(), message.value()))
            time.sleep(0.0005)  # some processing: kills land mid-batch
            if len(batch) < batch_size:
                continue
            db.execute('BEGIN')
            db.executemany('INSERT OR IGNORE INTO sink VALUES (?, ?, ?, ?)',
                           batch)
            db.executemany('INSERT INTO writes VALUES (?)',
                           [(row[3],) for row in batch])
            db.execute('COMMIT')
            journal.write('W %s\n' % ' '.join(
                '%d:%d:%d' % entry for entry in batch_positions(batch)))
            time.sleep(0.03)  # as a database fsync would: kills land here
            consumer.commit()
            journal.write('C\n')
            batch = []


if __name__ == '__main__':
    main(*sys.argv[1:])
