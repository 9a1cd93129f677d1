"""gpu-health (nvidia_gpu.health_cli) as the timer runs it: its own process against a simulated
T180-G20, a config file as the gpu_health role writes it, the status JSON and the .prom file
read back - the metrics parsed with Prometheus' own parser and compared with what NVML says."""

import json
import subprocess
import sys

import pytest
from boot_tool import run as gpu_tuning
from boot_tool import write_config
from conftest import MODULE_UTILS, ib_sim
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

TOOL = (
    "import sys; sys.path.insert(0, %r); from nvidia_gpu.health_cli import main; "
    "sys.exit(main(sys.argv[1:]))" % str(MODULE_UTILS)
)
T180 = {
    "expected_count": 4,
    "expected_model": "Tesla V100-SXM2-*",
    "nvlink_links_per_gpu": 6,
    "nvlink_pair_links": 2,
    "min_pcie_generation": 3,
    "min_pcie_width": 16,
    "require_persistence": False,
}
XID_79 = (
    "2026-12-01T14:25:27.123456+00:00 node kernel: NVRM: Xid (PCI:0000:1b:00): 79, "
    "pid='<unknown>', name=<unknown>, GPU has fallen off the bus.\n"
)


def health(machine, *args):
    return subprocess.run(
        [sys.executable, "-c", TOOL, *map(str, args)],
        env=machine.env,
        capture_output=True,
        text=True,
    )


@pytest.fixture
def node(machine):
    """The machine, its fake PCI tree and an empty kernel log, and a config writer."""
    sysfs = machine.root / "pci"
    machine.cli("sysfs", sysfs)
    kernel_log = machine.root / "kern.log"
    kernel_log.write_text("")

    def config(**changes):
        data = {
            "format": 1,
            "expectations": dict(T180, kernel_log=str(kernel_log)),
            "settings_file": None,
            "status_file": str(machine.root / "status" / "status.json"),
            "textfile": str(machine.root / "textfile" / "gpu_health.prom"),
            "sysfs_root": str(sysfs),
        }
        data.update(changes)
        path = machine.root / "gpu-health.json"
        path.write_text(json.dumps(data))
        return path

    machine.config = config
    machine.kernel_log = kernel_log
    return machine


def check(node, **changes):
    """Run `gpu-health check`; (process, status document, {(name, labels): value})."""
    proc = health(node, "check", "--config", node.config(**changes))
    status = json.loads((node.root / "status" / "status.json").read_text())
    samples = {}
    for family in text_string_to_metric_families(
        (node.root / "textfile" / "gpu_health.prom").read_text()
    ):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return proc, status, samples


def gpu_labels(gpu, **more):
    return tuple(sorted(dict({"gpu": str(gpu["index"]), "uuid": gpu["uuid"]}, **more).items()))


def test_healthy_node_metrics_equal_nvml(node):
    proc, status, samples = check(node)
    assert proc.returncode == 0, proc.stderr
    assert status["status"] == "ok" and status["blocking"] == 0
    assert "ok: 4 GPU(s), 0 lost" in proc.stdout
    assert samples[("gpu_node_health_status", ())] == 0
    assert samples[("gpu_node_gpus", (("state", "enumerated"),))] == 4
    nvml = node.nvml(
        """
        result = []
        for i in range(4):
            h = gpu(i)
            result.append({
                "uuid": N.nvmlDeviceGetUUID(h),
                "power_mw": N.nvmlDeviceGetPowerUsage(h),
                "limit_mw": N.nvmlDeviceGetPowerManagementLimit(h),
                "temp": N.nvmlDeviceGetTemperature(h, 0),
                "sm_mhz": N.nvmlDeviceGetClockInfo(h, 1),
            })
        """
    )
    for index, read in enumerate(nvml):
        gpu = {"index": index, "uuid": read["uuid"]}
        assert samples[("gpu_power_draw_watts", gpu_labels(gpu))] == read["power_mw"] / 1000
        assert samples[("gpu_power_limit_watts", gpu_labels(gpu))] == read["limit_mw"] / 1000
        assert samples[("gpu_temperature_celsius", gpu_labels(gpu))] == read["temp"]
        sm = gpu_labels(gpu, clock="sm")
        assert samples[("gpu_clock_hertz", sm)] == read["sm_mhz"] * 1e6
        assert samples[("gpu_lost", gpu_labels(gpu))] == 0
        links = [k for k in samples if k[0] == "gpu_nvlink_active" and ("gpu", str(index)) in k[1]]
        assert len(links) == 6 and all(samples[k] == 1 for k in links)


def test_lost_gpu_with_its_xid_is_critical(node):
    _, before, _ = check(node)
    uuid = before["gpus"][1]["uuid"]
    node.cli("fault", 1, "lost")
    node.kernel_log.write_text(XID_79)
    proc, status, samples = check(node)
    # The card keeps its name (from the last run, by PCI address) in findings and series.
    assert status["gpus"][1]["uuid"] == uuid
    assert samples[("gpu_lost", (("gpu", "1"), ("uuid", uuid)))] == 1
    assert proc.returncode == 1
    assert status["status"] == "critical"
    assert "crit" in proc.stderr or "critical: " in proc.stderr
    assert any("fallen off the bus" in f["message"] and f["gpu"] == 1 for f in status["findings"])
    lost = [k for k in samples if k[0] == "gpu_lost" and ("gpu", "1") in k[1]]
    assert [samples[k] for k in lost] == [1]
    xid = [k for k in samples if k[0] == "gpu_xid_events_total"]
    assert len(xid) == 1 and ("xid", "79") in xid[0][1] and ("gpu", "1") in xid[0][1]
    assert samples[xid[0]] == 1
    assert samples[("gpu_node_health_status", ())] == 2


def test_hot_gpu_shows_its_throttle_reasons(node):
    node.cli("fault", 2, "temp", 91)
    _, status, samples = check(node)
    assert status["status"] in ("warning", "critical"), status["findings"]
    assert any(f["check"] == "temperature" and f["gpu"] == 2 for f in status["findings"])
    uuid = status["gpus"][2]["uuid"]
    gpu = {"index": 2, "uuid": uuid}
    assert samples[("gpu_temperature_celsius", gpu_labels(gpu))] == 91
    reason = gpu_labels(gpu, reason="hw_thermal_slowdown")
    assert samples[("gpu_clock_event_active", reason)] == 1
    assert samples[("gpu_clock_event_active", gpu_labels(gpu, reason="sw_power_cap"))] == 0


def test_nvlink_down_is_a_finding_and_a_zero(node):
    node.cli("fault", 0, "nvlink-down", 3)
    proc, status, samples = check(node)
    assert proc.returncode in (0, 1)
    assert any(f["check"].startswith("nvlink") for f in status["findings"]), status["findings"]
    gpu = {"index": 0, "uuid": status["gpus"][0]["uuid"]}
    assert samples[("gpu_nvlink_active", gpu_labels(gpu, link="3"))] == 0
    assert samples[("gpu_nvlink_active", gpu_labels(gpu, link="2"))] == 1


def test_settings_that_no_longer_hold_are_critical(node):
    settings_file = write_config(node)
    applied = gpu_tuning(node, "apply", "--config", settings_file, "--wait", 0)
    assert applied.returncode == 0, applied.stderr
    proc, status, samples = check(node, settings_file=str(settings_file))
    assert proc.returncode == 0, proc.stderr
    assert status["settings"]["hold"] is True
    assert samples[("gpu_node_settings_hold", ())] == 1
    node.reboot()  # the driver forgets power limits and clocks
    proc, status, samples = check(node, settings_file=str(settings_file))
    assert proc.returncode == 1
    assert samples[("gpu_node_settings_hold", ())] == 0
    held = [f for f in status["findings"] if f["check"] == "settings"]
    assert len(held) == 4 and all(f["severity"] == "critical" for f in held)
    assert "power_limit_w 300 W -> 200 W" in held[0]["message"], held[0]["message"]
    assert held[0]["message"].startswith("GPU 0 (GPU-")


def test_bad_config_named_and_nothing_written(node):
    path = node.config(fail_on="sometimes")
    proc = health(node, "check", "--config", path)
    assert proc.returncode == 2
    assert "fail_on" in proc.stderr and "sometimes" in proc.stderr
    assert not (node.root / "status").exists()
    proc = health(node, "validate", node.config(expectations={"expected_count": 0}))
    assert proc.returncode == 2 and "expected_count" in proc.stderr
    assert health(node, "validate", node.config()).returncode == 0


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    key=st.sampled_from(
        [
            "format",
            "fail_on",
            "status_file",
            "textfile",
            "bmc",
            "expectations",
            "infiniband",
            "gpu_inventory",
        ]
    ),
    value=st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.text(max_size=8),
        st.lists(st.integers(), max_size=2),
    ),
)
def test_any_config_value_gets_an_answer(node, key, value):
    proc = health(node, "validate", node.config(**{key: value}))
    assert proc.returncode in (0, 2), proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    if proc.returncode == 2:
        assert key in proc.stderr


def test_every_series_written_is_declared_once(node):
    """metrics.METRICS is the one list: every sample and TYPE line written is in it."""
    sys.path.insert(0, str(MODULE_UTILS))
    from nvidia_gpu.metrics import METRICS

    node.cli("fault", 0, "ecc", "volatile", "corrected", 3)
    node.kernel_log.write_text(XID_79)
    check(node)
    text = (node.root / "textfile" / "gpu_health.prom").read_text()
    typed = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            typed[name] = kind
        elif not line.startswith("#"):
            assert line.split("{")[0].split(" ")[0] in METRICS, line
    assert typed == {name: METRICS[name][0] for name in typed}
    assert "gpu_ecc_errors_total" in typed and "gpu_xid_events_total" in typed


IB_PORT = {"hca": "mlx5_0", "port": 1, "rate_gbps": 100, "width": "4X"}


def test_infiniband_port_down_is_critical_and_named(node):
    root = node.root / "ib"
    ib_sim("sysfs", root, "--profile", "t180-g20", "--node-index", 1)
    infiniband = {"sysfs_root": str(root), "expected_ports": [IB_PORT]}
    proc, status, _ = check(node, infiniband=infiniband)
    assert proc.returncode == 0, proc.stderr
    assert not [f for f in status["findings"] if f["check"] == "infiniband"]
    (port,) = status["infiniband"]["ports"]
    assert (port["hca"], port["port"], port["state"], port["rate_gbps"]) == (
        "mlx5_0",
        1,
        "ACTIVE",
        100,
    )
    ib_sim("fault", root, "mlx5_0", 1, "polling")
    proc, status, samples = check(node, infiniband=infiniband)
    assert proc.returncode == 1 and status["status"] == "critical"
    (finding,) = [f for f in status["findings"] if f["check"] == "infiniband"]
    assert finding["severity"] == "critical"
    assert finding["message"].startswith("mlx5_0 port 1: state DOWN / phys_state Polling")
    assert "mlx5_0 port 1" in proc.stderr  # the journal line names the port
    assert samples[("gpu_node_health_findings", (("severity", "critical"),))] == 1


@pytest.mark.parametrize(
    ("infiniband", "message"),
    [
        ({"expected_ports": [{"hca": "mlx5_0"}]}, "infiniband.expected_ports[0]"),
        ({"expected_ports": "mlx5_0:1"}, "infiniband.expected_ports must be a list"),
        ({"expected_ports": [dict(IB_PORT, width="wide")]}, "infiniband.expected_ports[0]"),
        ({"sysfs_root": "relative"}, 'infiniband.sysfs_root "relative"'),
        ({"ports": []}, "infiniband {"),
        ("mlx5_0", 'infiniband "mlx5_0"'),
    ],
)
def test_bad_infiniband_settings_are_named(node, infiniband, message):
    proc = health(node, "check", "--config", node.config(infiniband=infiniband))
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not (node.root / "status" / "status.json").exists()


EMPTY_3D = (
    "slot 0000:3d:00.0 is empty (no device on the PCI bus; it last held Tesla V100-SXM2-16GB, "
    "serial 0323618009016)"
)


def test_a_pulled_card_is_named_by_its_slot(node):
    """The timer's run names the slot from the inventory nvidia_gpu_inventory wrote."""
    inventory = node.root / "facts.d" / "gpu_inventory.fact"
    recorded = node.module(
        "nvidia_gpu_inventory", {"path": str(inventory), "sysfs_root": str(node.root / "pci")}
    )
    assert not recorded.get("failed"), recorded
    proc = health(node, "validate", node.config(gpu_inventory=str(inventory)))
    assert proc.returncode == 0 and "GPU inventory %s" % inventory in proc.stdout + proc.stderr
    proc, status, _ = check(node, gpu_inventory=str(inventory))
    assert proc.returncode == 0, proc.stderr
    assert status["gpu_inventory"]["read"] is True and status["gpu_inventory"]["unanswered"] == []
    node.cli("fault", 2, "absent")
    node.cli("sysfs", node.root / "pci")  # pulled: gone from the PCI tree
    proc, status, samples = check(node, gpu_inventory=str(inventory))
    assert proc.returncode == 1 and status["status"] == "critical"
    (count,) = [f for f in status["findings"] if f["check"] == "gpu_count"]
    assert count["message"].startswith("Only 3 of 4 GPUs are visible to the driver: " + EMPTY_3D)
    assert EMPTY_3D in proc.stderr  # the journal line names the slot and the serial
    (slot,) = status["gpu_inventory"]["unanswered"]
    assert (slot["slot"], slot["state"], slot["card"]["serial"]) == (
        "0000:3d:00.0",
        "empty",
        "0323618009016",
    )
    critical = [f for f in status["findings"] if f["severity"] == "critical"]
    assert samples[("gpu_node_health_findings", (("severity", "critical"),))] == len(critical)
    assert not [f for f in status["findings"] if f["check"] == "gpu_slot"]  # named once
    # Without the key the count alone, as before.
    _, status, _ = check(node)
    assert status["gpu_inventory"] is None
    (count,) = [f for f in status["findings"] if f["check"] == "gpu_count"]
    assert "a GPU is not detected" in count["message"]


def test_a_damaged_inventory_is_a_warning_and_the_run_goes_on(node):
    inventory = node.root / "gpu_inventory.fact"
    inventory.write_text("{not json")
    node.cli("fault", 2, "absent")
    proc, status, _ = check(node, gpu_inventory=str(inventory))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (warning,) = [f for f in status["findings"] if f["check"] == "gpu_inventory"]
    assert warning["severity"] == "warning" and str(inventory) in warning["message"]
    (count,) = [f for f in status["findings"] if f["check"] == "gpu_count"]
    assert "a GPU is not detected" in count["message"]
    assert status["gpu_inventory"]["read"] is False


@pytest.mark.parametrize("value", ["relative/gpu_inventory.fact", "", 7, ["/a"]])
def test_a_bad_gpu_inventory_path_is_named(node, value):
    proc = health(node, "check", "--config", node.config(gpu_inventory=value))
    assert proc.returncode == 2
    assert "gpu_inventory" in proc.stderr and "an absolute path or null" in proc.stderr
    assert not (node.root / "status" / "status.json").exists()
