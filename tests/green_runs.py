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

"""Runs ``green_child`` in a patched process and checks what it counted."""

import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

from monasca_common.confluent_kafka import versions

ROOT = pathlib.Path(__file__).resolve().parents[1]


def skip_unless_installed(kind):
    """Skip unless ``kind`` is installed.

    Never imported here: eventlet would warn at every fork of this process.
    """
    if importlib.util.find_spec(kind) is None:
        pytest.skip('%s is not installed' % kind)


def skip_unless_gunicorn_serves(worker_class):
    """Skip unless gunicorn and ``worker_class`` are installed.

    gunicorn 26 has no eventlet worker class any more.
    """
    skip_unless_installed(worker_class)
    module = {'eventlet': 'geventlet', 'gevent': 'ggevent'}[worker_class]
    if importlib.util.find_spec('gunicorn.workers.' + module) is None:
        pytest.skip('this gunicorn has no %s worker' % worker_class)


def run(kind, servers, unreachable):
    """The child's report, on ``servers`` (``mock``: a mock cluster)."""
    skip_unless_installed(kind)
    child = subprocess.run(
        [sys.executable, '-m', 'tests.green_child', kind, servers,
         unreachable], cwd=ROOT, capture_output=True, text=True,
        timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    assert 'Assertion' not in child.stderr, child.stderr[-3000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    print(report)
    assert report['runtime'] == kind
    return report


def check(report):
    total = report['total']
    assert report['producer_delivered'] == total - 100
    assert report['factory_left'] == 0
    assert report['watermarks'] == total
    assert report['healthy'] is True
    assert report['unreachable_healthy'] is False
    assert report['consumed'] == total and report['lag'] == 0
    if 'two_members_taken' in report:  # on Kafka
        assert report['two_members_taken'] == total
        # librdkafka before 2.10 takes a commit that meets the second
        # member's join (ILLEGAL_GENERATION) for a lost assignment: the
        # message each member was committing is read again.
        assert report['two_members_repeated'] <= (
            0 if versions.VERSION >= (2, 10) else 2), report
        assert all(report['two_members_split']), report['two_members_split']
        assert report['two_members_lag'] == 0
    assert report['refused_with'] == 'PublishUnavailableError'
    # Unpatched, the producer's report thread never let the hub run
    # again, and a metadata call held it for a second.
    assert report['longest_stall_s'] < 0.25, report
