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

"""The benchmark's figures: rounds, medians, ratios and their spread."""

import confluent_kafka.admin
import pytest

from monasca_common.cli import bench
from monasca_common.cli import main

RAW = 'raw confluent-kafka produce loop'
OURS = 'publish(list), error-only reports'


def result(scenario, rate, cpu_us, number, size=100):
    # ``rate`` msgs/s over one second, ``cpu_us`` CPU µs per message.
    return bench.Result(scenario, size, rate, 1.0,
                        cpu=cpu_us * rate / 1e6, round=number)


def test_cpu_per_message_in_microseconds():
    assert result(RAW, 500000, 2.0, 0).cpu_per_message == \
        pytest.approx(2.0)
    assert bench.Result('x', 100, 10, 1.0).cpu_per_message is None


def test_a_round_is_set_against_the_same_round_of_its_baseline():
    results = [result(RAW, 1000000, 1.0, 0), result(OURS, 900000, 1.2, 0),
               result(RAW, 500000, 2.0, 1), result(OURS, 450000, 2.4, 1),
               result(RAW, 800000, 1.0, 2), result(OURS, 880000, 1.1, 2)]
    ratio, = [r for r in bench.ratios(results)
              if r.label.startswith('publish(list), error-only')]
    # Round 1 ran on a slow second: both halved, the ratio held.
    assert ratio.rate == bench.Spread(0.9, 0.9, 1.1)
    assert ratio.cpu.median == pytest.approx(1.2)
    assert ratio.cpu.low == pytest.approx(1.1)
    assert not ratio.quoted.unclear


def test_a_spread_wider_than_the_effect_says_so():
    assert bench.Spread(1.05, 0.9, 1.2).unclear
    assert not bench.Spread(1.3, 1.2, 1.4).unclear
    results = [result(RAW, 100, 1.0, 0), result(OURS, 100, 0.9, 0),
               result(RAW, 100, 1.0, 1), result(OURS, 100, 1.15, 1)]
    lines = main.ratio_lines(bench.ratios(results))
    assert any('error-only reports / raw loop, 100 B' in line and
               'CPU/msg' in line for line in lines)
    assert any('spread wider' in line for line in lines)


def test_a_single_baseline_run_serves_every_round():
    results = [result('old wrapper: produce+flush per publish', 5000, 40, 0),
               result('publish(one message)', 100000, 8, 0),
               result('publish(one message)', 120000, 6, 1)]
    ratio, = bench.ratios(results)
    assert ratio.rate == bench.Spread(22.0, 20.0, 24.0)
    assert ratio.cpu.high == pytest.approx(0.2)


def test_summary_shows_the_median_round():
    results = [result(RAW, rate, 1.0, n)
               for n, rate in enumerate((300, 100, 200))]
    row, = bench.summary(results)
    assert row.rate == 200 and 'median of 3' in row.note
    assert [r.rate for r in results] == [300, 100, 200]  # not changed


def test_client_cpu_leaves_out_the_mock_cluster_thread(mock_cluster):
    # The mock broker's thread lives in this process; what it spends is
    # the broker's, not the client's.
    assert bench._mock_cpu() >= 0.0
    wall, cpu = bench.now()
    assert 0 <= cpu <= bench.time.process_time()


def test_each_producer_scenario_gets_an_empty_mock_cluster():
    """The mock keeps every message; a new cluster per scenario frees them.

    Without it a first ``monasca-kafka bench`` held 0.7-1.4 GB.
    """
    mock = bench.MockCluster()
    try:
        runner = bench.Bench(mock.bootstrap_servers, 1000, True,
                             rounds=2, seconds=0.2, renew=mock.renew)
        results = runner._rounds([runner.raw_produce_loop], 100,
                                 afresh=True)
        assert [r.messages > 0 for r in results] == [True, True]
        # The scenarios' topics went with their cluster.
        assert not [t for t in confluent_kafka.admin.AdminClient(
            {'bootstrap.servers': runner.servers}).list_topics(
                timeout=10).topics if t.startswith('bench-')]
    finally:
        mock.close()
