"""nvidia_gpu_health against simulated faults: each names the GPU, the check and the cause."""

import pytest

T180 = {  # what a healthy T180-G20 looks like
    "expected_count": 4,
    "expected_model": "Tesla V100-SXM2-16GB",
    "nvlink_links_per_gpu": 6,
    "nvlink_pair_links": 2,
    "min_pcie_generation": 3,
    "min_pcie_width": 16,
    "kernel_log": "none",
    "fail_on": "never",
}


@pytest.fixture
def t180(machine):
    """A T180-G20 after the gpu_tuning role: persistence on, so the baseline is healthy."""
    for index in range(4):
        machine.nvml("N.nvmlDeviceSetPersistenceMode(gpu(%d), 1)\nresult = 0" % index)
    return machine


def health(machine, **overrides):
    result = machine.module("nvidia_gpu_health", dict(T180, **overrides))
    assert "findings" in result, result
    return result


def only(result, check):
    found = [f for f in result["findings"] if f["check"] == check]
    assert found, result["findings"]
    return found


def test_healthy_node(t180):
    result = health(t180)
    assert result["healthy"] is True and not result.get("failed")
    assert [f for f in result["findings"] if f["severity"] != "info"] == []
    assert [g["status"] for g in result["gpus"]] == ["ok"] * 4


def test_gpu_fallen_off_the_bus(t180):
    t180.cli("fault", 2, "lost")
    result = health(t180, fail_on="critical")
    assert result["failed"] and result["healthy"] is False
    lost = only(result, "gpu_lost")[0]
    assert lost["severity"] == "critical" and lost["gpu"] == 2
    assert "Xid 79" in lost["message"] and "12 V" in lost["message"]
    # Its peers' links to it are down because of it: no NVLink findings blame the others.
    assert not [f for f in result["findings"] if f["check"].startswith("nvlink")]
    assert result["msg"].startswith("GPU health check failed: GPU 2 does not answer")


def test_gpu_missing_at_boot(t180):
    t180.cli("fault", 3, "absent")
    finding = only(health(t180), "gpu_count")[0]
    assert finding["severity"] == "critical" and finding["value"] == 3
    assert "Only 3 of 4 GPUs" in finding["message"] and "seating" in finding["message"]


def test_nvlink_down_names_both_ends(t180):
    t180.cli("fault", 1, "nvlink-down", 3)
    result = health(t180)
    active = only(result, "nvlink_active")
    assert {f["gpu"] for f in active} == {1, 2}
    assert "link 3 to GPU 2" in active[0]["message"] and "SXM" in active[0]["message"]
    topology = only(result, "nvlink_topology")
    assert {(f["gpu"], f["value"]) for f in topology} == {(1, "NV1"), (2, "NV1")}


def test_nvlink_error_counters(t180):
    t180.cli("fault", 0, "nvlink-errors", 5, "replay", 5000)
    finding = only(health(t180), "nvlink_errors")[0]
    assert finding["severity"] == "warning" and finding["gpu"] == 0
    assert finding["value"] == {"replay": 5000} and "screw torque" in finding["message"]


def test_hot_gpu_against_its_peers(t180):
    t180.cli("fault", 2, "temp", 62)
    finding = only(health(t180), "temperature_spread")[0]
    assert finding["gpu"] == 2 and finding["severity"] == "warning"
    assert "heatsink" in finding["message"]


def test_gpu_at_slowdown_temperature(t180):
    t180.cli("fault", 1, "temp", 88)
    result = health(t180, fail_on="critical")
    assert result["failed"]
    temperature = only(result, "temperature")[0]
    assert temperature["severity"] == "critical" and temperature["value"] == 88
    # Crossing the slowdown threshold also shows as hardware thermal slowdown.
    assert "hw_thermal_slowdown" in {f["value"] for f in only(result, "clock_events")}


def test_power_brake_from_the_psu(t180):
    t180.cli("fault", 0, "throttle", "0x80")
    finding = only(health(t180), "clock_events")[0]
    assert finding["severity"] == "critical" and finding["value"] == "hw_power_brake_slowdown"
    assert "PSU" in finding["message"] or "power supply" in finding["message"]


def test_uncorrected_ecc(t180):
    t180.cli("fault", 3, "ecc", "volatile", "uncorrected", 1)
    finding = only(health(t180), "ecc_uncorrected")[0]
    assert finding["severity"] == "critical" and "Xid 48" in finding["message"]


def test_ecc_history_only(t180):
    t180.cli("fault", 3, "ecc", "aggregate", "uncorrected", 2)
    assert only(health(t180), "ecc_history")[0]["severity"] == "warning"


def test_retired_pages(t180):
    t180.cli("fault", 0, "retired-pages", "dbe", 2, "--pending")
    t180.cli("fault", 1, "retired-pages", "sbe", 61)
    result = health(t180)
    assert only(result, "retired_pages_pending")[0]["gpu"] == 0
    worn = only(result, "retired_pages")[0]
    assert worn["gpu"] == 1 and worn["severity"] == "critical" and "RMA" in worn["message"]


def test_remapped_rows_on_ampere(machine):
    machine.use("hgx-a100-8")
    machine.cli("fault", 4, "remapped-rows", 0, 1, "--failure")
    result = machine.module("nvidia_gpu_health", {"kernel_log": "none", "fail_on": "never"})
    finding = only(result, "remapped_rows_failure")[0]
    assert finding["gpu"] == 4 and finding["severity"] == "critical"


def test_pcie_downtrained_width(t180):
    t180.cli("fault", 2, "pcie", 3, 8)
    finding = only(health(t180), "pcie_width")[0]
    assert finding["gpu"] == 2 and finding["value"] == 8 and "riser" in finding["message"]


def test_pcie_generation_of_an_idle_gpu_is_only_info(t180):
    t180.cli("fault", 2, "pcie", 1, 16)
    finding = only(health(t180), "pcie_generation")[0]
    assert finding["severity"] == "info" and "idle" in finding["message"]


def test_pcie_replays(t180):
    t180.cli("fault", 1, "pcie-replays", 1000)
    assert only(health(t180), "pcie_replays")[0]["gpu"] == 1


def test_persistence_off(machine):
    finding = only(health(machine), "persistence_mode")
    assert {f["gpu"] for f in finding} == {0, 1, 2, 3}
    assert health(machine, require_persistence=False)["healthy"] is True


def test_wrong_model_after_a_swap(t180):
    finding = only(health(t180, expected_model="*V100-SXM2-32GB"), "gpu_model")
    assert len(finding) == 4 and finding[0]["severity"] == "warning"


def test_xid_events_from_the_kernel_log(t180, tmp_path):
    log = tmp_path / "kern.log"
    log.write_text(
        "kernel: NVRM: loading NVIDIA UNIX x86_64 Kernel Module  580.95.05\n"
        "kernel: NVRM: Xid (PCI:0000:3d:00): 79, pid=4242, name=python, GPU has fallen off "
        "the bus.\n"
        "kernel: NVRM: Xid (PCI:0000:1b:00): 74, pid=4242, name=python, NVLink: fatal error\n"
        "kernel: NVRM: Xid (PCI:0000:1b:00): 74, pid=4242, name=python, NVLink: fatal error\n"
        "kernel: NVRM: Xid (PCI:0000:1a:00): 13, pid=99, name=train, Graphics Exception\n"
    )
    result = health(t180, kernel_log=str(log))
    xids = {(f["gpu"], f["value"]): f for f in only(result, "xid")}
    assert xids[(2, 79)]["severity"] == "critical" and "12 V" in xids[(2, 79)]["message"]
    assert "2 time(s)" in xids[(1, 74)]["message"] and "SXM2" in xids[(1, 74)]["message"]
    assert xids[(0, 13)]["severity"] == "info" and "application" in xids[(0, 13)]["message"]
    assert len(result["xid_events"]) == 4


def test_unreadable_kernel_log_is_info_not_failure(t180):
    result = health(t180, kernel_log="/nonexistent/kern.log", fail_on="warning")
    assert not result.get("failed")
    assert only(result, "kernel_log")[0]["severity"] == "info"


@pytest.mark.parametrize(
    ("fail_on", "fails"), [("never", False), ("critical", False), ("warning", True)]
)
def test_fail_on_levels(t180, fail_on, fails):
    t180.cli("fault", 2, "temp", 62)  # a warning, nothing critical
    assert bool(health(t180, fail_on=fail_on).get("failed")) is fails


@pytest.mark.parametrize(
    ("fail_on", "severities"),
    [("never", []), ("critical", ["critical"]), ("warning", ["critical", "warning"])],
)
def test_blocking_findings_are_those_at_fail_on(t180, fail_on, severities):
    t180.cli("fault", 0, "throttle", "0x80")  # power brake from the PSU: critical
    t180.cli("fault", 2, "temp", 62)  # hotter than its peers: a warning
    result = health(t180, fail_on=fail_on)
    assert {f["severity"] for f in result["findings"]} >= {"critical", "warning"}
    assert result["blocking"] == [f for f in result["findings"] if f["severity"] in severities]
    assert [f["severity"] for f in result["blocking"]] == sorted(
        (f["severity"] for f in result["blocking"]), key=["critical", "warning"].index
    )
    assert bool(result.get("failed")) is bool(severities)
    if severities:
        messages = [f["message"] for f in result["blocking"]]
        assert result["msg"] == "GPU health check failed: " + " | ".join(messages)


def test_no_driver_fails_with_no_blocking_findings(machine):
    # The role fails at the check itself when the module failed without findings to block on.
    machine.use(None)
    result = machine.module("nvidia_gpu_health", {"kernel_log": "none"})
    assert result["failed"] and "driver is not loaded" in result["msg"]
    assert result["blocking"] == [] and result["findings"] == []


def test_peer_map_for_a_partial_mesh(machine):
    machine.use("mixed-v100-a100")
    result = machine.module(
        "nvidia_gpu_health",
        {"nvlink_peer_map": {"0": {"1": 2}, "1": {"0": 2}}, "kernel_log": "none"},
    )
    assert not [f for f in result["findings"] if f["check"] == "nvlink_topology"]


def test_unknown_throttle_reason_is_refused(machine):
    result = machine.module("nvidia_gpu_health", {"forbidden_clock_event_reasons": ["hot"]})
    assert result["failed"]
    assert "unknown reason(s) hot; allowed:" in result["msg"] and "hw_slowdown" in result["msg"]
