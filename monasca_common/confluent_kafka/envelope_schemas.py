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

"""Avro schemas of Monasca's four envelopes, as the services write them.

* ``metric``: monasca-api's metrics topic, the spec's envelope
  (``metric``, ``meta``, ``creation_time``); ``timestamp`` in
  milliseconds, ``creation_time`` in seconds; ``value_meta`` may be null.
* ``log``: monasca-log-api's, a log line with its dimensions.
* ``event``: monasca-events-api's. An event's ``payload`` is any JSON the
  emitting service chose: it travels as a JSON string inside the record
  (see :mod:`~monasca_common.confluent_kafka.codecs`).
* ``alarm_state_transition``: the threshold engine's
  ``{"alarm-transitioned": {...}}``. Avro names allow no ``-``: the field
  is ``alarm_transitioned`` in the record, and the codec renames it.

Each schema is identified on the wire by its CRC-64-AVRO fingerprint
(single-object encoding): changing one makes a new schema, which readers
must know before writers use it.
"""

_DIMENSIONS = {'type': 'map', 'values': 'string'}
_META = {
    'type': 'record', 'name': 'Meta',
    'namespace': 'monasca',
    'fields': [
        {'name': 'tenantId', 'type': ['null', 'string'], 'default': None},
        {'name': 'region', 'type': ['null', 'string'], 'default': None},
    ],
}


def _envelope(name: str, field: str, record: str, fields: list) -> dict:
    """``{field: {...}, "meta": {...}, "creation_time": seconds}``."""
    return {
        'type': 'record', 'name': name, 'namespace': 'monasca',
        'fields': [
            {'name': field,
             'type': {'type': 'record', 'name': record, 'fields': fields}},
            {'name': 'meta', 'type': _META},
            {'name': 'creation_time', 'type': 'long'},
        ],
    }


METRIC = _envelope('MetricEnvelope', 'metric', 'Metric', [
    {'name': 'name', 'type': 'string'},
    {'name': 'dimensions', 'type': _DIMENSIONS},
    {'name': 'timestamp', 'type': 'long'},
    {'name': 'value', 'type': 'double'},
    {'name': 'value_meta',
     'type': ['null', {'type': 'map', 'values': 'string'}],
     'default': None},
])

LOG = _envelope('LogEnvelope', 'log', 'Log', [
    {'name': 'message', 'type': 'string'},
    {'name': 'dimensions', 'type': _DIMENSIONS},
])

EVENT = _envelope('EventEnvelope', 'event', 'Event', [
    {'name': 'event_type', 'type': 'string'},
    {'name': 'timestamp', 'type': 'string'},
    {'name': 'message_id', 'type': ['null', 'string'], 'default': None},
    {'name': 'dimensions', 'type': _DIMENSIONS},
    {'name': 'project_id', 'type': ['null', 'string'], 'default': None},
    # Any JSON: the emitting service's own structure.
    {'name': 'payload', 'type': 'string'},
])

_METRIC_DEFINITION = {
    'type': 'record', 'name': 'MetricDefinition',
    'fields': [
        {'name': 'name', 'type': 'string'},
        {'name': 'dimensions', 'type': _DIMENSIONS},
    ],
}

ALARM_STATE_TRANSITION = {
    'type': 'record', 'name': 'AlarmStateTransitionEnvelope',
    'namespace': 'monasca',
    'fields': [
        {'name': 'alarm_transitioned', 'type': {
            'type': 'record', 'name': 'AlarmTransitioned',
            'fields': [
                {'name': 'tenantId', 'type': 'string'},
                {'name': 'alarmId', 'type': 'string'},
                {'name': 'alarmDefinitionId', 'type': 'string'},
                {'name': 'alarmName', 'type': 'string'},
                {'name': 'alarmDescription', 'type': 'string'},
                {'name': 'actionsEnabled', 'type': 'boolean'},
                {'name': 'stateChangeReason', 'type': 'string'},
                {'name': 'severity', 'type': 'string'},
                {'name': 'link', 'type': ['null', 'string'],
                 'default': None},
                {'name': 'lifecycleState', 'type': ['null', 'string'],
                 'default': None},
                {'name': 'oldState', 'type': 'string'},
                {'name': 'newState', 'type': 'string'},
                {'name': 'timestamp', 'type': 'long'},
                {'name': 'metrics',
                 'type': {'type': 'array', 'items': _METRIC_DEFINITION}},
                {'name': 'subAlarms', 'type': {'type': 'array', 'items': {
                    'type': 'record', 'name': 'SubAlarm',
                    'fields': [
                        {'name': 'subAlarmExpression', 'type': {
                            'type': 'record', 'name': 'SubAlarmExpression',
                            'fields': [
                                {'name': 'function', 'type': 'string'},
                                {'name': 'metricDefinition',
                                 'type': 'MetricDefinition'},
                                {'name': 'operator', 'type': 'string'},
                                {'name': 'threshold', 'type': 'double'},
                                {'name': 'period', 'type': 'int'},
                                {'name': 'periods', 'type': 'int'},
                            ]}},
                        {'name': 'subAlarmState', 'type': 'string'},
                        {'name': 'currentValues',
                         'type': {'type': 'array', 'items': 'double'}},
                    ]}}},
            ]}},
    ],
}

#: Envelope kind -> its schema.
SCHEMAS = {
    'metric': METRIC,
    'log': LOG,
    'event': EVENT,
    'alarm_state_transition': ALARM_STATE_TRANSITION,
}
