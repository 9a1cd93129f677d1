"""The node watches itself between plays: the gpu-health timer fires and writes its status,
node_exporter serves the GPU metrics (scraped over HTTP from the controller and parsed with
Prometheus' own parser, values equal to what NVML says on the node), and faults injected into
the running node appear as findings and metrics within one timer interval."""

import json
import os
import time
import urllib.request

import pytest
from node_gpus import RESET_FAULTS, read_back
from prometheus_client.parser import text_string_to_metric_families

INTERVAL_S = int(os.environ.get("GPU_HEALTH_TEST_INTERVAL_S", "15"))
STATUS = "/run/gpu-health/status.json"
PROM = "/var/lib/prometheus/node-exporter/gpu_health.prom"


def status(host):
    return json.loads(host.file(STATUS).content_string)


def next_status(host, after):
    """The first status the timer writes after time `after` (two intervals at most)."""
    deadline = time.time() + 2 * INTERVAL_S + 20
    while time.time() < deadline:
        if host.file(STATUS).exists:
            current = status(host)
            if current["time"] > after:
                return current
        time.sleep(1)
    pytest.fail("gpu-health.timer wrote no status within two intervals (%d s)" % INTERVAL_S)


def scrape(host):
    """{(name, labels): value} of node_exporter's /metrics, fetched from the controller."""
    address = host.interface("eth0").addresses[0]
    with urllib.request.urlopen("http://%s:9100/metrics" % address, timeout=10) as answer:
        text = answer.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def of_gpu(samples, name, index, **labels):
    found = [
        value
        for (metric, pairs), value in samples.items()
        if metric == name
        and ("gpu", str(index)) in pairs
        and all((k, v) in pairs for k, v in labels.items())
    ]
    assert len(found) == 1, (name, index, labels, found)
    return found[0]


@pytest.fixture
def clean(host):
    """Start and end with a healthy node: faults and the kernel log gone (a reboot's worth of
    driver state), the GPU settings applied again as the boot unit does."""

    def reset():
        host.check_output(RESET_FAULTS)
        return time.time()

    yield reset()
    reset()


def test_the_timer_runs_the_check(host):
    timer = host.service("gpu-health.timer")
    assert timer.is_enabled and timer.is_running
    timers = host.check_output("systemctl show gpu-health.timer -p TimersMonotonic --value")
    assert "OnUnitActiveUSec=%ds ;" % INTERVAL_S in timers, timers
    assert host.file("/etc/gpu-node/gpu-health.json").mode == 0o644


def test_status_and_metrics_equal_nvml(host, clean):
    current = next_status(host, clean)
    assert current["status"] == "ok", current["findings"]
    assert current["settings"]["hold"] is True
    # Its one InfiniBand port (the simulated ConnectX HCA) is up at the expected 4X EDR.
    (port,) = current["infiniband"]["ports"]
    assert (port["hca"], port["port"], port["state"], port["phys_state"]) == (
        "mlx5_0",
        1,
        "ACTIVE",
        "LinkUp",
    )
    assert (port["rate_gbps"], port["width"]) == (100, "4X")
    samples = scrape(host)
    assert samples[("gpu_node_health_status", ())] == 0
    assert samples[("gpu_node_settings_hold", ())] == 1
    for index, read in enumerate(read_back(host)):
        assert of_gpu(samples, "gpu_power_limit_watts", index) == read["power_limit_mw"] / 1000
        assert of_gpu(samples, "gpu_power_draw_watts", index) == read["power_mw"] / 1000
        assert of_gpu(samples, "gpu_temperature_celsius", index) == read["temperature_c"]
        assert of_gpu(samples, "gpu_settings_hold", index) == 1
    # node_exporter's own metrics come with ours: one scrape for the node.
    assert any(name == "node_load1" for name, _ in samples)


def test_xid_79_is_a_finding_and_a_metric(host, clean):
    host.check_output("nvml-sim fault 2 lost")
    current = next_status(host, time.time())
    assert current["status"] == "critical"
    assert any(f["gpu"] == 2 and "Xid 79" in f["message"] for f in current["findings"])
    samples = scrape(host)
    assert of_gpu(samples, "gpu_lost", 2) == 1
    assert of_gpu(samples, "gpu_xid_events_total", 2, xid="79") == 1
    assert samples[("gpu_node_health_status", ())] == 2
    journal = host.check_output("journalctl -u gpu-health.service -p crit --no-pager -n 20")
    assert "fallen off the bus" in journal
    assert host.service("gpu-health.service").is_running is False
    assert host.run("systemctl is-failed gpu-health.service").stdout.strip() == "failed"


def test_hot_gpu_is_a_finding_and_a_metric(host, clean):
    host.check_output("nvml-sim fault 1 temp 92")
    current = next_status(host, time.time())
    assert any(f["gpu"] == 1 and f["check"] == "temperature" for f in current["findings"])
    samples = scrape(host)
    assert of_gpu(samples, "gpu_temperature_celsius", 1) == 92
    assert of_gpu(samples, "gpu_clock_event_active", 1, reason="hw_thermal_slowdown") == 1


def test_nvlink_down_is_a_finding_and_a_metric(host, clean):
    host.check_output("nvml-sim fault 0 nvlink-down 4")
    current = next_status(host, time.time())
    assert any(f["gpu"] == 0 and f["check"].startswith("nvlink") for f in current["findings"])
    samples = scrape(host)
    assert of_gpu(samples, "gpu_nvlink_active", 0, link="4") == 0
    assert of_gpu(samples, "gpu_nvlink_active", 0, link="3") == 1


def test_settings_lost_at_a_driver_reset_are_critical(host, clean):
    host.check_output("nvml-sim reset")  # as a driver reload: limits back to the defaults
    current = next_status(host, time.time())
    held = [f for f in current["findings"] if f["check"] == "settings"]
    assert len(held) == 4 and {f["severity"] for f in held} == {"critical"}
    samples = scrape(host)
    assert samples[("gpu_node_settings_hold", ())] == 0
    assert of_gpu(samples, "gpu_power_limit_watts", 3) == 300


def test_a_sagging_12v_rail_is_a_finding_naming_the_rail(host, clean):
    host.check_output("nvml-sim fault psu voltage 11.3")
    current = next_status(host, time.time() + 1)  # the BMC polls its value file
    rail = [f for f in current["findings"] if f["check"] == "bmc_sensor"]
    assert len(rail) == 1 and rail[0]["severity"] == "critical", current["findings"]
    assert "P_12V reads 11.3" in rail[0]["message"] and "Xid 79" in rail[0]["message"]
    samples = scrape(host)
    assert samples[("bmc_sensor_volts", (("sensor", "P_12V"),))] == pytest.approx(11.3, abs=0.03)
    assert samples[("bmc_sensor_status", (("sensor", "P_12V"),))] == 2
    assert samples[("bmc_up", ())] == 1


def test_an_infiniband_port_down_is_critical_and_named(host, clean):
    host.check_output("ib-sim fault /run/ib-sim mlx5_0 1 polling")
    current = next_status(host, time.time())
    assert current["status"] == "critical"
    (finding,) = [f for f in current["findings"] if f["check"] == "infiniband"]
    assert finding["message"].startswith("mlx5_0 port 1: state DOWN / phys_state Polling")
    assert "cable or switch port" in finding["message"]
    journal = host.check_output("journalctl -u gpu-health -p crit --no-pager -n 20")
    assert "mlx5_0 port 1" in journal


def test_a_degraded_infiniband_link_is_critical_and_named(host, clean):
    host.check_output("ib-sim fault /run/ib-sim mlx5_0 1 width 1X")
    current = next_status(host, time.time())
    (finding,) = [f for f in current["findings"] if f["check"] == "infiniband"]
    assert finding["severity"] == "critical"
    assert finding["message"].startswith("mlx5_0 port 1: width 1X, expected 4X")
