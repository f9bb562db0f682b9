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

"""The calls services still make to the vendored kafka-python 0.9.5.

Only what Monasca services call is here, as thin adapters over
:mod:`monasca_common.kafka.admin` and the new producer:
``client.KafkaClient``, ``producer.SimpleProducer``,
``consumer.SimpleConsumer`` and the names in ``common``. Any other name of
the old package raises an ImportError that says what replaces it.
"""

import importlib.abc
import sys

NEW_API = ('monasca_common.kafka: KafkaProducer, KafkaConsumer, and '
           'admin.KafkaAdmin for topics, offsets and group lag; see '
           'doc/source/migration.rst')


class RemovedError(ImportError):
    """A name of the old client that is gone; the message says instead."""


def removed(module: str, name: str, instead: str = NEW_API) -> RemovedError:
    return RemovedError('%s.%s of the old kafka-python client is gone; '
                        'use %s' % (module, name, instead),
                        name=module)


def module_getattr(module: str, replacements: dict):
    """A module ``__getattr__`` that names the replacement of old names.

    It raises ImportError, not AttributeError: ``from module import name``
    turns an AttributeError into a message of its own and drops ours.
    """
    def __getattr__(name: str):
        if name.startswith('_'):
            raise AttributeError('module %r has no attribute %r'
                                 % (module, name))
        raise removed(module, name, replacements.get(name, NEW_API))
    return __getattr__


class _RemovedModules(importlib.abc.MetaPathFinder):
    """Runs last: only modules of this package that do not exist reach it."""

    def find_spec(self, fullname, path=None, target=None):
        prefix = __name__ + '.'
        if fullname.startswith(prefix):
            raise RemovedError('module %s of the old kafka-python client is '
                               'gone; use %s' % (fullname, NEW_API),
                               name=fullname)
        return None


if not any(isinstance(f, _RemovedModules) for f in sys.meta_path):
    sys.meta_path.append(_RemovedModules())
