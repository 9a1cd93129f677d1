"""nvidia_gpu_health against simulated faults: each names the GPU, the check and the cause;
options that cannot be right are refused, with generated ones too (hypothesis)."""

import math
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "module_utils"))

from nvidia_gpu import health_options
from nvidia_gpu.nvml import GpuError

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
    # The facts it judged come back for the report: the same as nvidia_gpu_facts reads.
    judged = result["ansible_facts"]["nvidia_gpu"]
    facts = t180.module("nvidia_gpu_facts", {"supported_clocks": False})
    read = facts["ansible_facts"]["nvidia_gpu"]
    assert [g["uuid"] for g in judged["gpus"]] == [g["uuid"] for g in read["gpus"]]
    assert judged["driver_version"] == read["driver_version"]
    assert [g["power"]["limit_w"] for g in judged["gpus"]] == [300] * 4


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
    # A failing report still carries the facts it was made from (the table shows GPU 2 lost).
    assert [g["lost"] for g in result["ansible_facts"]["nvidia_gpu"]["gpus"]] == [
        False,
        False,
        True,
        False,
    ]


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


def test_xid_of_a_lost_gpu_names_its_index(t180, tmp_path):
    # The kernel names the GPU by PCI address; NVML cannot tell a lost GPU's, the PCI tree can.
    t180.cli("sysfs", tmp_path / "pci")
    t180.cli("fault", 2, "lost")
    log = tmp_path / "kern.log"
    log.write_text(
        "kernel: NVRM: Xid (PCI:0000:3d:00): 79, pid=4242, name=python, GPU has fallen off "
        "the bus.\n"
    )
    result = health(t180, kernel_log=str(log), sysfs_root=str(tmp_path / "pci"))
    (xid,) = only(result, "xid")
    assert xid["gpu"] == 2 and xid["message"].startswith("GPU 2 logged Xid 79")
    # Without a PCI tree that matches NVML's numbering, the address is all there is.
    result = health(t180, kernel_log=str(log), sysfs_root=str(tmp_path / "missing"))
    (xid,) = only(result, "xid")
    assert xid["gpu"] is None and "the GPU at PCI 0000:3d:00" in xid["message"]


@pytest.mark.parametrize(
    ("count", "threshold", "warned"), [(50, 10, True), (50, 0, False), (10, 10, False)]
)
def test_corrected_ecc_threshold(t180, count, threshold, warned):
    t180.cli("fault", 3, "ecc", "volatile", "corrected", count)
    result = health(t180, max_corrected_ecc=threshold)
    found = [f for f in result["findings"] if f["check"] == "ecc_corrected"]
    assert bool(found) is warned
    if warned:
        (finding,) = found
        assert finding["gpu"] == 3 and finding["severity"] == "warning"
        assert finding["value"] == 50 and finding["expected"] == "<= 10"
        assert "early warning" in finding["message"] and "DCGM" in finding["message"]
        assert "retired pages / remapped rows" in finding["message"]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("max_uncorrected_ecc", -1, "max_uncorrected_ecc is -1; allowed: a whole number from 0 up"),
        ("max_corrected_ecc", -5, "max_corrected_ecc is -5; allowed: a whole number from 0 up"),
        ("nvlink_error_threshold", -1, "nvlink_error_threshold is -1; allowed:"),
        ("pcie_replay_threshold", -100, "pcie_replay_threshold is -100; allowed:"),
        ("max_retired_pages", -1, "max_retired_pages is -1; allowed:"),
        ("expected_count", 0, "expected_count is 0; allowed: a whole number from 1 up"),
        (
            "nvlink_links_per_gpu",
            -1,
            "nvlink_links_per_gpu is -1; allowed: a whole number from 0 to 18",
        ),
        (
            "nvlink_links_per_gpu",
            19,
            "nvlink_links_per_gpu is 19; allowed: a whole number from 0 to 18",
        ),
        ("nvlink_pair_links", 0, "nvlink_pair_links is 0; allowed: a whole number from 1 to 18"),
        ("min_pcie_generation", 9, "min_pcie_generation is 9; allowed: a whole number from 1 to 6"),
        ("min_pcie_width", 0, "min_pcie_width is 0; allowed: a whole number from 1 to 32"),
        (
            "max_temperature_c",
            -40,
            "max_temperature_c is -40; allowed: a whole number from 1 to 120",
        ),
        ("max_temperature_spread_c", 500, "max_temperature_spread_c is 500; allowed:"),
        (
            "nvlink_peer_map",
            {"0": {"1": -2}},
            "nvlink_peer_map GPU 0 links to GPU 1 is -2; allowed:",
        ),
        ("nvlink_peer_map", {"0": {"0": 2}}, "nvlink_peer_map GPU 0 names itself as its peer"),
        (
            "nvlink_peer_map",
            {"-1": {"1": 2}},
            "nvlink_peer_map GPU index is '-1'; allowed: a whole number from 0 up",
        ),
        ("nvlink_peer_map", {"0": 2}, "nvlink_peer_map {'0': 2} is not valid"),
        (
            "nvlink_peer_map",
            {"0": {"7": 2}},
            "nvlink_peer_map names GPU(s) 7, this node has GPUs 0-3; allowed: indices of GPUs",
        ),
    ],
)
def test_thresholds_that_cannot_be_right_are_refused(t180, option, value, message):
    args = dict(T180, **{option: value})
    if option == "nvlink_peer_map":
        del args["nvlink_pair_links"]
    result = t180.module("nvidia_gpu_health", args)
    assert result["failed"] and "exception" not in result
    assert message in result["msg"], result["msg"]
    assert result["findings"] == [] and result["blocking"] == []


def test_peer_map_may_name_a_gpu_the_node_should_have_but_lost(t180):
    # GPU 3 missing at boot: the inventory finding tells it, the peer map is not wrong.
    t180.cli("fault", 3, "absent")
    peers = {a: {b: 2 for b in range(4) if b != a} for a in range(4)}
    args = dict(T180, nvlink_peer_map=peers)
    del args["nvlink_pair_links"]
    result = t180.module("nvidia_gpu_health", args)
    assert not result.get("failed"), result
    assert only(result, "gpu_count")[0]["value"] == 3
    assert not [f for f in result["findings"] if f["check"] == "nvlink_topology"]


# Values of every kind an inventory, Jinja or a caller could hand over.
ANY_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
    | st.sampled_from(["0", "12", "-3", "1.5", " 7", "\u0661", "hw_slowdown", "journal"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
# Per option: values near and inside its range most of the time, anything now and then.
NEAR_RANGE = st.integers(-3, 130) | st.integers(-3, 130).map(float) | st.integers(0, 20).map(str)
# (one_of picks a branch evenly: three near-range branches to one of anything)
SOME_NUMBER = st.one_of(NEAR_RANGE, NEAR_RANGE, NEAR_RANGE, ANY_VALUE)
OPTION_VALUES = {name: SOME_NUMBER for name in health_options.INTEGER_OPTIONS}
OPTION_VALUES.update(
    expected_model=st.sampled_from(["Tesla V100*", "", "  "]) | ANY_VALUE,
    kernel_log=st.sampled_from(["journal", "dmesg", "none", ""]) | ANY_VALUE,
    require_persistence=st.booleans() | ANY_VALUE,
    forbidden_clock_event_reasons=st.lists(st.sampled_from(["hw_slowdown", "sw_power_cap", "hot"]))
    | ANY_VALUE,
    nvlink_peer_map=st.dictionaries(
        st.integers(0, 4) | st.sampled_from(["0", "1", "x", "-1", "\u0661"]),
        st.dictionaries(st.integers(0, 4) | st.sampled_from(["2", "y"]), st.integers(0, 20))
        | ANY_VALUE,
        min_size=1,
        max_size=3,
    )
    | ANY_VALUE,
    bogus=ANY_VALUE,  # not an option
)
OPTIONS = st.lists(st.sampled_from(sorted(OPTION_VALUES)), max_size=4, unique=True).flatmap(
    lambda names: st.fixed_dictionaries({name: OPTION_VALUES[name] for name in names})
)


@settings(derandomize=True, max_examples=1500, deadline=None)
@given(OPTIONS, st.integers(1, 8))
def test_generated_options_are_accepted_or_refused_with_a_message(options, count):
    try:
        expected = health_options.normalise(options)
        health_options.check_against(expected, {"count": count})
    except GpuError as error:
        assert str(error).endswith(".") and len(str(error)) > 20
        return
    for name, (_default, lowest, highest) in health_options.INTEGER_OPTIONS.items():
        value = expected[name]
        assert value is None or (type(value) is int and lowest <= value <= (highest or math.inf))
    assert set(expected) == set(health_options.DEFAULTS)
    for gpu, row in (expected["nvlink_peer_map"] or {}).items():
        assert type(gpu) is int and 0 <= gpu < max(count, expected["expected_count"] or 0)
        assert all(type(b) is int and b != gpu and 1 <= n <= 18 for b, n in row.items())


@pytest.mark.parametrize(
    ("value", "accepted"),
    [(200.0, 200), ("12", 12), (12, 12), (True, None), (1.5, None), ("\u0661", None), (" 7", None)],
)
def test_whole_numbers(value, accepted):
    if accepted is None:
        with pytest.raises(GpuError, match=r"pcie_replay_threshold is .*; allowed: a whole number"):
            health_options.normalise({"pcie_replay_threshold": value})
    else:
        assert (
            health_options.normalise({"pcie_replay_threshold": value})["pcie_replay_threshold"]
            == accepted
        )


IB_PORT = {"hca": "mlx5_0", "port": 1, "rate_gbps": 100, "width": "4X"}


def test_infiniband_ports_join_the_report_and_a_degraded_one_is_named(t180, tmp_path):
    from conftest import ib_sim

    root = tmp_path / "node"
    ib_sim("sysfs", root, "--profile", "t180-g20", "--node-index", 1)
    section = {"sysfs_root": str(root), "expected_ports": [IB_PORT]}
    result = health(t180, infiniband=section)
    assert result["healthy"] is True, result["findings"]
    assert [
        (p["hca"], p["port"], p["state"], p["width"]) for p in result["infiniband"]["ports"]
    ] == [("mlx5_0", 1, "ACTIVE", "4X")]
    ib_sim("fault", root, "mlx5_0", 1, "width", "1X")
    result = health(t180, infiniband=section, fail_on="critical")
    (finding,) = only(result, "infiniband")
    assert finding["severity"] == "critical" and "mlx5_0 port 1" in finding["message"]
    assert "1X" in finding["message"] and result["failed"]
    assert finding in result["blocking"] and [g["status"] for g in result["gpus"]] == ["ok"] * 4
    # Without the option no port is read.
    assert health(t180)["infiniband"] is None


def test_a_bad_infiniband_section_is_refused_by_name(t180):
    result = health(t180, infiniband={"sysfs_root": "relative", "expected_ports": None})
    assert result["failed"] and 'infiniband.sysfs_root "relative" is not valid' in result["msg"]
    result = health(t180, infiniband={"expected_ports": [{"hca": "mlx5_0", "width": "wide"}]})
    assert result["failed"] and result["msg"].startswith("infiniband.expected_ports[0]: ")
    assert "Traceback" not in result["msg"] and result["findings"] == []
