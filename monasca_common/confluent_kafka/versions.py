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

"""What the installed confluent-kafka offers, read once at import.

Each OpenStack release installs its own pinned confluent-kafka (2.8.0 in
2025.1, 2.11.0 in 2025.2, 2.13.0 in 2026.1, 2.15.0 on master): the clients
ask here instead of assuming the newest. A missing call has a fallback;
a feature that cannot exist on an older client is refused by
:func:`require`, naming the version it needs.
"""

from __future__ import annotations

import re

import confluent_kafka

from monasca_common.confluent_kafka import errors


def _installed() -> str:
    # A (str, int) pair up to 2.15, a str from 2.16 on.
    found = confluent_kafka.version()
    return found[0] if isinstance(found, tuple) else str(found)


#: The installed confluent-kafka, as it names itself, and as numbers.
INSTALLED: str = _installed()
VERSION: tuple[int, ...] = tuple(
    int(part) for part in re.findall(r'\d+', INSTALLED)[:3])

#: ``Producer.produce_batch`` (from 2.13.0): one C call queues a list.
#: Without it a list is queued one ``produce`` at a time.
PRODUCE_BATCH: bool = hasattr(confluent_kafka.Producer, 'produce_batch')

#: The features :func:`require` knows, and the release that made each
#: ready for production.
NEEDED = {
    # KIP-848 came as early access in 2.4.0, generally available in 2.12.0.
    'group.protocol=consumer': (2, 12, 0),
}


def offers(feature: str) -> bool:
    """Whether the installed confluent-kafka offers ``feature``."""
    return VERSION >= NEEDED[feature]


def require(feature: str) -> None:
    """Refuse ``feature`` on an older confluent-kafka, naming both versions.

    :raises ConfigurationError: the installed client is too old.
    """
    if not offers(feature):
        raise errors.ConfigurationError(
            '%s needs confluent-kafka %s or later; %s is installed' % (
                feature, '.'.join(map(str, NEEDED[feature])), INSTALLED))
