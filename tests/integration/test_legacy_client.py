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

"""The old low-level calls, written as each service makes them.

Each ``*_shape`` function below is the service's code path, kept as the
service wrote it (Python 3 branch), so the tests run what the service runs.
"""

import json
import socket
import threading
import time

import confluent_kafka
import pytest

from monasca_common import kafka
from monasca_common.kafka import admin as kafka_admin
from monasca_common.kafka_lib import client
from monasca_common.kafka_lib import common
from monasca_common.kafka_lib import consumer
from monasca_common.kafka_lib.producer import SimpleProducer
from tests import waiting

pytestmark = [pytest.mark.integration, pytest.mark.compat]


# -- the services' code paths --

def api_health_shape(url, topics):
    """monasca-api healthcheck/kafka_check.py."""
    try:
        kafka_client = client.KafkaClient(hosts=url)
    except client.KafkaUnavailableError:
        return False, 'Could not connect to Kafka at {0}'.format(url)
    try:
        for topic in tuple(t.encode('utf-8') for t in topics):
            if topic not in kafka_client.topics:
                return False, 'Kafka: Topic {0} not found'.format(topic)
        return True, 'OK'
    finally:
        kafka_client.close()


def log_and_events_api_health_shape(url, topics, as_bytes):
    """monasca-log-api and monasca-events-api healthcheck/kafka_check.py.

    The same code but for the names: bytes in log-api, str in events-api.
    """
    try:
        kafka_client = client.KafkaClient(hosts=url)
    except client.KafkaUnavailableError:
        return False, 'Could not connect to kafka at %s' % url
    try:
        if as_bytes:
            topics = tuple(topic.encode('utf-8') for topic in topics)
        for t in topics:
            if t not in kafka_client.topic_partitions:
                return False, 'Kafka: Topic %s not found' % t
        return True, 'OK'
    finally:
        kafka_client.close()


def log_api_health_shape(url, topics):
    return log_and_events_api_health_shape(url, topics, as_bytes=True)


def events_api_health_shape(url, topics):
    return log_and_events_api_health_shape(url, topics, as_bytes=False)


HEALTH_SHAPES = [api_health_shape, log_api_health_shape,
                 events_api_health_shape]


def transform_offsets_shape(brokers, topic, offset_time):
    """monasca-transform pre_hourly_processor._get_offsets_from_kafka."""
    kafka_client = client.KafkaClient(brokers)
    partitions = kafka_client.topic_partitions[topic]
    offset_requests = [common.OffsetRequest(topic, part_name, offset_time, 1)
                       for part_name in partitions.keys()]
    offsets_responses = kafka_client.send_offset_request(offset_requests)
    offset_dict = {}
    for response in offsets_responses:
        key = '_'.join((response.topic, str(response.partition)))
        offset_dict[key] = response
    return offset_dict


class TransformPublisher:
    """monasca-transform messaging/adapter.py KafkaMessageAdapter."""

    def __init__(self, brokers):
        self.kafka_client = client.KafkaClient(brokers)
        self.kafka_producer = SimpleProducer(self.kafka_client)

    def do_send_metric(self, topic, metric):
        self.kafka_producer.send_messages(topic, json.dumps(metric))


def agent_lag_shape(connect_str, consumer_groups):
    """monasca-agent checks_d/kafka_consumer.py: consumer lag per partition.

    :returns: {(group, topic, partition): lag}
    """
    consumer_offsets = {}
    broker_offsets = {}
    kafka_conn = client.KafkaClient(connect_str)
    try:
        for group, topic_partitions in consumer_groups.items():
            for topic, partitions in topic_partitions.items():
                kafka_consumer = consumer.SimpleConsumer(
                    kafka_conn, group, topic, auto_commit=False)
                kafka_consumer.fetch_last_known_offsets()
                if not partitions:
                    partitions = kafka_consumer.offsets.keys()
                consumer_offsets[(group, topic)] = {
                    p: kafka_consumer.offsets[p] for p in partitions}
                kafka_consumer.stop()
                for p in partitions:
                    try:
                        response = kafka_conn.send_offset_request(
                            [common.OffsetRequest(topic.encode('utf-8'), p,
                                                  -1, 1)])
                    except common.KafkaError:
                        continue
                    broker_offsets[(topic, p)] = response[0].offsets[0]
    finally:
        kafka_conn.close()
    return {(group, topic, p): broker_offsets[(topic, p)] - offset
            for (group, topic), offsets in consumer_offsets.items()
            for p, offset in offsets.items()}


# -- helpers --

def watermarks(servers, topic, partitions):
    """Independently of the code under test: librdkafka's consumer."""
    reader = confluent_kafka.Consumer({'bootstrap.servers': servers,
                                       'group.id': 'watermarks'})
    try:
        return {p: reader.get_watermark_offsets(
            confluent_kafka.TopicPartition(topic, p), timeout=30)
            for p in partitions}
    finally:
        reader.close()


def produce(servers, topic, count, partitions, timestamp=None):
    producer = confluent_kafka.Producer({'bootstrap.servers': servers})
    for i in range(count):
        producer.produce(topic, b'm-%d' % i, partition=i % partitions,
                         timestamp=timestamp or 0)
    assert producer.flush(30) == 0


@pytest.fixture
def silent_server():
    """Accepts connections and never answers: a hung broker."""
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield '127.0.0.1:%d' % listener.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()


# -- health checks --

@pytest.mark.parametrize('shape', HEALTH_SHAPES, ids=lambda s: s.__name__)
def test_health_check_healthy_and_missing_topic(shape, bootstrap_servers,
                                                make_topic):
    topics = [make_topic(), make_topic()]
    assert shape(bootstrap_servers, topics) == (True, 'OK')
    healthy, message = shape(bootstrap_servers, topics + ['no-such-topic'])
    assert not healthy
    assert 'no-such-topic' in message and 'not found' in message


@pytest.mark.parametrize('shape', HEALTH_SHAPES, ids=lambda s: s.__name__)
def test_health_check_broker_down_is_unhealthy_at_once(shape,
                                                       unreachable_servers):
    started = time.monotonic()
    healthy, message = shape(unreachable_servers, ['logs'])
    elapsed = time.monotonic() - started
    assert not healthy
    assert message.lower() == ('could not connect to kafka at %s'
                               % unreachable_servers)
    # The old client's timeout is 120 s; a refused connection must not
    # wait for it.
    assert elapsed < 10, elapsed


def test_client_facing_a_silent_broker_gives_up_within_its_timeout(
        silent_server):
    started = time.monotonic()
    with pytest.raises(client.KafkaUnavailableError):
        client.KafkaClient(hosts=silent_server, timeout=3)
    assert time.monotonic() - started < 3 + 2


def test_health_check_module_on_a_stopped_broker(controllable_kafka, topic):
    from oslo_config import cfg

    from monasca_common.healthcheck.checks import kafka_check
    conf = cfg.ConfigOpts()
    check = kafka_check.KafkaHealthCheck(conf)
    conf.set_override('kafka_url', controllable_kafka.bootstrap_servers,
                      'kafka_healthcheck')
    conf.set_override('kafka_topics', [topic], 'kafka_healthcheck')
    conf.set_override('timeout', 3, 'kafka_healthcheck')
    assert check.healthcheck() == (True, 'OK')
    node = controllable_kafka.nodes[0]
    node.stop()
    started = time.monotonic()
    result = check.healthcheck()
    assert time.monotonic() - started < 3 + 2
    assert result == (False, 'Could not connect to kafka at %s'
                      % controllable_kafka.bootstrap_servers)


# -- monasca-transform --

def test_transform_publisher_str_metrics_arrive_once_each(bootstrap_servers,
                                                          make_topic):
    topic = make_topic(partitions=3)
    publisher = TransformPublisher(bootstrap_servers)
    metrics = [{'metric': {'name': 'usage', 'value': i}} for i in range(300)]
    try:
        for metric in metrics:
            publisher.do_send_metric(topic, metric)
    finally:
        publisher.kafka_producer.stop()
        publisher.kafka_client.close()
    read = waiting.read_topic(bootstrap_servers, topic, expected=300)
    values = sorted(json.loads(m.value())['metric']['value'] for m in read)
    assert values == list(range(300))
    # Nothing more comes: no message was stored twice.
    assert len(waiting.read_topic(bootstrap_servers, topic, idle=1)) == 300


def test_send_messages_is_synchronous_and_answers_partitions(
        bootstrap_servers, topic):
    kafka_client = client.KafkaClient(bootstrap_servers)
    producer = SimpleProducer(kafka_client)
    try:
        first = producer.send_messages(topic, 'a', b'b')
        second = producer.send_messages(topic.encode('utf-8'), 'c')
        # Synchronous: the high watermark already counts them.
        (response,) = kafka_client.send_offset_request(
            [common.OffsetRequest(topic, 0, -1, 1)])
        assert response.offsets == [3]
        assert first == [common.ProduceResponse(topic, 0, 0, 0)]
        assert second[0].offset == 2
        with pytest.raises(TypeError):
            producer.send_messages(topic, 42)
        with pytest.raises(common.FailedPayloadsError):
            producer.send_messages('bad topic name', 'x')
    finally:
        producer.stop()
        kafka_client.close()


def test_transform_offset_reader_answers_the_watermarks(bootstrap_servers,
                                                        make_topic, admin):
    topic = make_topic(partitions=3)
    produce(bootstrap_servers, topic, 30, 3)
    # Retention moved partition 1's start: earliest is no longer 0.
    futures = admin.delete_records(
        [confluent_kafka.TopicPartition(topic, 1, 4)])
    for future in futures.values():
        future.result(30)
    latest = transform_offsets_shape(bootstrap_servers, topic, -1)
    earliest = transform_offsets_shape(bootstrap_servers, topic, -2)
    expected = watermarks(bootstrap_servers, topic, range(3))
    assert expected[1] == (4, 10)
    for p in range(3):
        key = '%s_%d' % (topic, p)
        assert latest[key] == common.OffsetResponse(topic, p, 0,
                                                    [expected[p][1]])
        assert earliest[key].offsets == [expected[p][0]]


def test_offsets_for_a_time_are_the_first_at_or_after_it(bootstrap_servers,
                                                         topic):
    produce(bootstrap_servers, topic, 5, 1, timestamp=1_000_000)
    produce(bootstrap_servers, topic, 5, 1, timestamp=2_000_000)
    kafka_client = client.KafkaClient(bootstrap_servers)
    try:
        answers = [r.offsets[0] for r in kafka_client.send_offset_request(
            [common.OffsetRequest(topic, 0, t, 1)
             for t in (999_999, 1_000_000, 1_500_000, 2_000_000,
                       2_000_001)])]
    finally:
        kafka_client.close()
    # After the last message: the next offset to be written.
    assert answers == [0, 0, 5, 5, 10]


def test_unknown_topic_and_partition_are_errors_of_their_response(
        bootstrap_servers, topic):
    kafka_client = client.KafkaClient(bootstrap_servers)
    try:
        requests = [common.OffsetRequest(topic, 0, -1, 1),
                    common.OffsetRequest('no-such-topic', 0, -1, 1),
                    common.OffsetRequest(topic, 7, -2, 1)]
        started = time.monotonic()
        with pytest.raises(common.UnknownTopicOrPartitionError,
                           match='no-such-topic'):
            kafka_client.send_offset_request(requests)
        responses = kafka_client.send_offset_request(requests,
                                                     fail_on_error=False)
        assert time.monotonic() - started < 10
        assert [(r.topic, r.partition, r.error) for r in responses] == [
            (topic, 0, 0), ('no-such-topic', 0, 3), (topic, 7, 3)]
        assert responses[0].offsets == [0]
        assert kafka_client.get_partition_ids_for_topic('no-such-topic') \
            == []
        with pytest.raises(common.KafkaTimeoutError):
            kafka_client.ensure_topic_exists('no-such-topic', timeout=1)
        with pytest.raises(KeyError):
            kafka_client.topic_partitions['no-such-topic']
    finally:
        kafka_client.close()


# -- monasca-agent's consumer lag check --

def test_agent_lag_beside_a_live_consumer_that_keeps_its_partitions(
        bootstrap_servers, make_topic, group_id, admin):
    topic = make_topic(partitions=3)
    produce(bootstrap_servers, topic, 90, 3)
    revoked = []
    live = kafka.KafkaConsumer(
        bootstrap_servers, group_id, topic,
        repartition_callback=lambda consumer, parts: revoked.append(parts))
    try:
        waiting.take(live, 40)
        live.commit()
        assignment = set(live.assignment())
        assert len(assignment) == 3
        committed = waiting.committed_offsets(bootstrap_servers, group_id,
                                              topic, range(3))
        ends = watermarks(bootstrap_servers, topic, range(3))

        lag = agent_lag_shape(bootstrap_servers, {group_id: {topic: []}})

        # A partition the group never committed in counts from 0, as the
        # agent always computed it.
        assert lag == {(group_id, topic, p): ends[p][1] - max(0, committed[p])
                       for p in range(3)}
        assert sum(lag.values()) == 50
        # The check did not join the group: one member, same partitions,
        # no rebalance; the member reads on.
        (description,) = [f.result(30) for f in admin.describe_consumer_groups(
            [group_id]).values()]
        assert len(description.members) == 1
        waiting.take(live, 50)
        assert set(live.assignment()) == assignment
        assert revoked == []
    finally:
        live.close()


def test_unknown_group_has_committed_nothing(bootstrap_servers, make_topic):
    topic = make_topic(partitions=2)
    produce(bootstrap_servers, topic, 10, 2)
    lag = agent_lag_shape(bootstrap_servers, {'no-such-group': {topic: []}})
    assert lag == {('no-such-group', topic, 0): 5,
                   ('no-such-group', topic, 1): 5}
    with kafka_admin.KafkaAdmin(bootstrap_servers) as kafka_admin_client:
        assert kafka_admin_client.group_lag('no-such-group') == []
        rows = kafka_admin_client.group_lag('no-such-group', topic)
    assert [(r.partition, r.committed, r.lag) for r in rows] == [
        (0, None, 5), (1, None, 5)]


def test_simple_consumer_on_an_unknown_topic_has_no_offsets(
        bootstrap_servers, group_id):
    kafka_client = client.KafkaClient(bootstrap_servers)
    try:
        simple = consumer.SimpleConsumer(kafka_client, group_id,
                                         'no-such-topic')
        assert simple.offsets == {}
        with pytest.raises(AttributeError, match='KafkaConsumer'):
            simple.get_messages(10)
    finally:
        kafka_client.close()


# -- the new API and the CLI --

def test_admin_lag_and_cli_agree(bootstrap_servers, make_topic, group_id):
    from monasca_common.cli import main
    topic = make_topic(partitions=2)
    produce(bootstrap_servers, topic, 20, 2)
    reader = kafka.KafkaConsumer(bootstrap_servers, group_id, topic)
    try:
        # One partition read through, the other partly: both commit.
        waiting.take(reader, 13)
        reader.commit()
    finally:
        reader.close()
    committed = waiting.committed_offsets(bootstrap_servers, group_id, topic,
                                          range(2))
    assert sorted(committed.values()) == [3, 10]

    with kafka_admin.KafkaAdmin(bootstrap_servers) as kafka_admin_client:
        rows = kafka_admin_client.group_lag(group_id)
        assert kafka_admin_client.group_lag(group_id, topic) == rows
    assert [(r.topic, r.partition, r.committed, r.end, r.lag)
            for r in rows] == [(topic, p, committed[p], 10,
                                10 - committed[p]) for p in range(2)]

    out = run_cli(main, 'lag', '-b', bootstrap_servers, group_id, '--json')
    assert json.loads(out) == [
        {'group': group_id, 'topic': topic, 'partition': p,
         'committed': committed[p], 'start': 0, 'end': 10,
         'lag': 10 - committed[p]} for p in range(2)]
    text = run_cli(main, 'lag', '-b', bootstrap_servers, group_id, topic)
    lines = text.splitlines()
    assert lines[0].split() == ['GROUP', 'TOPIC', 'PARTITION',
                                'CURRENT-OFFSET', 'LOG-END-OFFSET', 'LAG']
    assert lines[1].split() == [group_id, topic, '0', str(committed[0]),
                                '10', str(10 - committed[0])]
    assert lines[-1] == 'total lag: 7'


def test_cli_lag_of_an_unknown_group_and_a_dead_broker(bootstrap_servers,
                                                       unreachable_servers,
                                                       capsys):
    from monasca_common.cli import main
    assert main.main(['lag', '-b', bootstrap_servers, 'no-such-group',
                      '--json']) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out) == []
    assert 'no-such-group has committed no offsets' in captured.err
    assert main.main(['lag', '-b', unreachable_servers, 'g',
                      '--timeout', '5']) == 2
    assert 'no Kafka broker reachable' in capsys.readouterr().err


def run_cli(main, *args):
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main.main(list(args)) == 0
    return out.getvalue()


def test_one_admin_through_a_broker_restart(controllable_kafka, topic):
    servers = controllable_kafka.bootstrap_servers
    with kafka_admin.KafkaAdmin(servers, timeout=5) as admin_client:
        assert admin_client.partitions(topic) == [0]
        controllable_kafka.nodes[0].stop()
        for _ in range(2):
            # Each call while the broker is away fails, none waits long.
            started = time.monotonic()
            with pytest.raises((kafka.KafkaUnavailableError,
                                kafka.KafkaTimeoutError)):
                admin_client.watermarks(topic)
            assert time.monotonic() - started < 5 + 2
        controllable_kafka.nodes[0].start()
        controllable_kafka.wait_ready()
        assert waiting.until(lambda: _answers(admin_client, topic), 60,
                             'admin answers again') == {0: (0, 0)}


def _answers(admin_client, topic):
    try:
        return admin_client.watermarks(topic)
    except kafka.KafkaClientError:
        return None
