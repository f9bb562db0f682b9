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

"""The old client, for tests that play the world before the upgrade.

monasca-common 3.8.0 from PyPI holds the vendored kafka-python 0.9.5
(``kafka_lib``) and the consumer that shares partitions through kazoo's
``SetPartitioner`` and keeps its offsets in ZooKeeper. It is installed once
into a virtual environment of its own in the cache beside the broker jars
(``~/.cache/monasca-common/legacy-client-3.8.0``): it must never be
imported by the process that tests this library.

Command line::

    python tools/legacy_client.py install     # prints the venv's python
"""

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import venv

LEGACY_VERSION = '3.8.0'
COMPLETE_MARKER = '.complete'


class LegacyClientError(RuntimeError):
    """The old client could not be installed."""


def default_venv_dir() -> pathlib.Path:
    cache = os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache')
    return (pathlib.Path(cache) / 'monasca-common' /
            ('legacy-client-' + LEGACY_VERSION))


def install(venv_dir: pathlib.Path | None = None) -> pathlib.Path:
    """The python of a venv holding the old client, installed once."""
    venv_dir = venv_dir or default_venv_dir()
    python = venv_dir / 'bin' / 'python'
    if (venv_dir / COMPLETE_MARKER).exists():
        return python
    # A venv's scripts name its directory, so it is built where it stays;
    # the marker, written last, tells a finished one from an interrupted.
    shutil.rmtree(venv_dir, ignore_errors=True)
    venv.EnvBuilder(with_pip=True).create(venv_dir)
    result = subprocess.run(
        [str(python), '-m', 'pip', 'install', '-q',
         '--disable-pip-version-check', 'monasca-common==' + LEGACY_VERSION],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise LegacyClientError('installing monasca-common %s failed:\n%s'
                                % (LEGACY_VERSION, result.stdout[-4000:]))
    (venv_dir / COMPLETE_MARKER).write_text(LEGACY_VERSION + '\n')
    return python


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    sub.add_parser('install', help='install it once; print its python')
    parser.parse_args(argv)
    print(install())
    return 0


if __name__ == '__main__':
    sys.exit(main())
