"""Tests for the simulator's load model: readings that follow load, the node's 12 V rail, the
load worker and the kernel log. NVML is read through pynvml in child processes (see
SimulatedMachine in tests/conftest.py); rail and log files are read as their consumers read them.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent
CLI = HERE / "nvml-sim"
PROFILES = HERE / "profiles"
sys.path.insert(0, str(HERE.parent.parent / "module_utils"))

from nvidia_gpu.xid import parse as parse_xid  # noqa: E402 - the project's own Xid parser

IDLE, SW_POWER_CAP, HW_SLOWDOWN, SW_THERMAL, HW_THERMAL = 0x1, 0x4, 0x8, 0x20, 0x40
THERMAL = HW_SLOWDOWN | SW_THERMAL | HW_THERMAL
# Every GPU's utilization, power draw (mW), temperature (C) and clock event reasons.
READINGS = """
def readings(h):
    u = call(N.nvmlDeviceGetUtilizationRates, h)
    if isinstance(u, str):
        return u
    return [u.gpu, u.memory, N.nvmlDeviceGetPowerUsage(h), N.nvmlDeviceGetTemperature(h, 0),
            N.nvmlDeviceGetCurrentClocksEventReasons(h)]
result = [readings(gpu(i)) for i in range(N.nvmlDeviceGetCount())]
"""
SYSLOG_XID = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00 \S+ kernel: NVRM: Xid \(PCI:[0-9a-f:]+\): \d+, "
)


@pytest.fixture
def sim(machine):
    """A freshly booted T180-G20 (tests/conftest.py)."""
    machine.cli("reset")
    return machine


def rail_files(sim):
    bmc = sim.state_dir / "bmc"
    return (bmc / "P_12V").read_text(), (bmc / "P_12V.min").read_text()


def wait_for_utilization(sim, slot, want):
    """GPU slot's utilization as NVML reads it once it is `want` ("!GPU_IS_LOST" for a lost
    GPU), polled for up to 5 s: a worker applies its input asynchronously."""
    return sim.nvml(
        f"""
        import time
        def read():
            u = call(N.nvmlDeviceGetUtilizationRates, gpu({slot}))
            return u if isinstance(u, str) else u.gpu
        deadline = time.monotonic() + 5
        while read() != {want!r} and time.monotonic() < deadline:
            time.sleep(0.01)
        result = read()
        """
    )


def start_worker(sim, gpu):
    """A load worker with pipes, once it has said it is ready."""
    worker = subprocess.Popen(
        [sys.executable, str(CLI), "load-worker", str(gpu)],
        env=sim.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout.readline() == "ready\n"
    return worker


def tell(worker, line):
    worker.stdin.write(line + "\n")
    worker.stdin.flush()


# ---- readings follow load ----


def test_utilization_power_and_temperature_follow_load(sim):
    sim.cli("load", 1, 50)
    sim.cli("load", 2, 100)
    sim.cli("load", "GPU-165d308f-2f79-23dc-2a72-2dde155d424f", 1)  # slot 3 by UUID
    # Draw: idle + load x (limit - idle); temperature: idle + 0.14 C/W x (draw - idle draw).
    assert sim.nvml(READINGS) == [
        [0, 0, 41200, 34, IDLE],
        [50, 50, 39800 + 130100, 37 + 18, 0],
        [100, 100, 300000, 33 + 36, SW_POWER_CAP],  # a GPU under full load sits at its cap
        [1, 1, 40600 + 2594, 36, 0],
    ]
    status = json.loads(sim.cli("status", "--json").stdout)
    assert [g["load_pct"] for g in status["gpus"]] == [0, 50, 100, 1]
    sim.cli("load", "all", 0)
    assert [r[4] for r in sim.nvml(READINGS)] == [IDLE] * 4


def test_readings_follow_a_power_limit_set_through_nvml(sim):
    sim.cli("load", 0, 100)
    sim.cli("fault", "psu", "ohm", 0.002)
    body = "N.nvmlDeviceSetPowerManagementLimit(gpu(0), 200000)\n" + READINGS
    assert sim.nvml(body)[0] == [100, 100, 200000, 34 + 22, SW_POWER_CAP]
    sim.cli("load", 0, 50)
    assert sim.nvml(READINGS)[0] == [50, 50, 41200 + 79400, 34 + 11, 0]
    # The library's write kept the tool's entries (load, node faults).
    status = json.loads(sim.cli("status", "--json").stdout)
    assert status["gpus"][0]["load_pct"] == 50
    assert status["rail_12v"]["faults"] == ["psu ohm 0.002"]


def test_overrides_and_heatsink_fault_under_load(sim):
    sim.cli("fault", 2, "heatsink", 2)
    sim.cli("fault", 1, "temp", 50)
    sim.cli("fault", 3, "power-usage", 120)
    assert sim.nvml(READINGS)[2][3:] == [33, IDLE]  # at idle a bad heatsink does not show
    sim.cli("load", "all", 100)
    result = sim.nvml(READINGS)
    # 0.28 C/W: GPU 2 passes its slowdown temperature (87 C) and throttles for heat.
    assert result[2] == [100, 100, 300000, 33 + 72, SW_POWER_CAP | THERMAL]
    assert result[1][2:] == [300000, 50, SW_POWER_CAP]
    assert result[3][2:] == [120000, 36 + 11, 0]  # the injected draw heats it too
    assert result[0][3:] == [34 + 36, SW_POWER_CAP]
    assert "heatsink 2" in sim.cli("status").stdout


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 100), st.integers(150_000, 300_000)),
        min_size=1,
        max_size=10,
    )
)
def test_status_and_rail_use_the_draw_nvml_reports(sim, cases):
    # The tool sums the draws for the rail with the library's formula: both must agree.
    result = sim.nvml(
        f"""
        import contextlib, io, runpy
        SIM = runpy.run_path({str(CLI)!r}, run_name="nvml_sim_tool")
        result = []
        for slot, load, limit_mw in {cases!r}:
            N.nvmlDeviceSetPowerManagementLimit(gpu(slot), limit_mw)
            assert SIM["main"](["load", str(slot), str(load)]) == 0
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                SIM["main"](["status", "--json"])
            status = json.loads(out.getvalue())["gpus"][slot]
            h = gpu(slot)
            result.append([[N.nvmlDeviceGetPowerUsage(h), N.nvmlDeviceGetUtilizationRates(h).gpu],
                           [round(status["power_draw_w"] * 1000), status["load_pct"]]])
        """
    )
    for nvml, status in result:
        assert nvml == status


# ---- the load worker ----


def test_load_worker_applies_each_line_at_once(sim):
    worker = start_worker(sim, 1)
    try:
        tell(worker, "60")
        assert wait_for_utilization(sim, 1, 60) == 60  # stdin still open: no buffering
        tell(worker, "lots")
        tell(worker, "100")
        assert wait_for_utilization(sim, 1, 100) == 100
        assert sim.nvml(READINGS)[1][2] == 300000
    finally:
        worker.stdin.close()
        assert worker.wait(timeout=10) == 0
    assert "got 'lots'; ignored" in worker.stderr.read()
    assert sim.nvml(READINGS)[1] == [0, 0, 39800, 37, IDLE]  # EOF: idle again


def test_load_worker_is_idled_by_sigterm(sim):
    worker = start_worker(sim, "GPU-950ef6fc-0126-6432-b5fc-a0e14788d264")
    tell(worker, "80")
    assert wait_for_utilization(sim, 1, 80) == 80
    worker.terminate()
    assert worker.wait(timeout=10) == 143
    assert sim.nvml(READINGS)[1][0] == 0


# ---- the 12 V rail ----


def test_healthy_rail_holds_full_load(sim):
    assert rail_files(sim) == ("12.044\n", "12.044\n")  # idle, written at boot (reset)
    sim.cli("load", "all", 100)
    volts, lowest = rail_files(sim)
    assert float(volts) >= 11.85 and lowest == volts
    assert all(isinstance(r, list) for r in sim.nvml(READINGS))
    status = json.loads(sim.cli("status", "--json").stdout)["rail_12v"]
    assert status["voltage_v"] == float(volts) and status["drop_v"] == 11.4


def test_weak_psu_drops_a_gpu_under_full_load(sim):
    sim.cli("fault", "psu", "ohm", 0.006)  # the seed's corroded lug
    workers = [start_worker(sim, slot) for slot in range(4)]
    try:
        for slot in range(3):  # two, then three GPUs at full load: the rail holds
            tell(workers[slot], "100")
            assert wait_for_utilization(sim, slot, 100) == 100
            assert float(rail_files(sim)[0]) >= 11.40
        tell(workers[3], "100")  # the fourth pulls it to 11.30 V: GPU 3 falls off the bus
        assert wait_for_utilization(sim, 3, "!GPU_IS_LOST") == "!GPU_IS_LOST"
        assert workers[3].wait(timeout=10) == 1
        assert rail_files(sim) == ("11.450\n", "11.300\n")  # the sag stays on record
        assert [r if isinstance(r, str) else r[2] for r in sim.nvml(READINGS)] == [
            300000,
            300000,
            300000,
            "!GPU_IS_LOST",
        ]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.stdin.close()
    assert [w.wait(timeout=10) for w in workers[:3]] == [0, 0, 0]
    assert "GPU slot 3 fell off the bus" in workers[3].stderr.read()
    events = parse_xid((sim.state_dir / "kern.log").read_text().splitlines())
    assert [(e["pci_bus_id"], e["xid"]) for e in events] == [("0000:3e:00", 79)]
    assert SYSLOG_XID.match(events[0]["line"]) and events[0]["line"].endswith("off the bus.")
    assert rail_files(sim)[1] == "11.300\n"
    status = json.loads(sim.cli("status", "--json").stdout)
    assert status["gpus"][3]["faults"] == ["lost"]
    assert [g["load_pct"] for g in status["gpus"]] == [0] * 4


def test_psu_voltage_fault_is_what_the_bmc_reads(sim):
    sim.cli("fault", "psu", "voltage", 11.3)
    sim.cli("load", "all", 100)
    assert rail_files(sim) == ("11.300\n", "11.300\n")
    assert all(isinstance(r, list) for r in sim.nvml(READINGS))  # a reading, no sag
    assert "fault: psu voltage 11.3" in sim.cli("status").stdout
    sim.cli("clear", "psu")
    assert rail_files(sim) == ("11.940\n", "11.300\n")
    sim.cli("reset")  # a reboot forgets the lowest reading and empties the kernel log
    assert rail_files(sim) == ("12.044\n", "12.044\n")


def test_rail_follows_an_nvml_power_limit_on_refresh(sim):
    sim.cli("load", "all", 100)
    sim.nvml("result = [N.nvmlDeviceSetPowerManagementLimit(gpu(i), 150000) for i in range(4)]")
    assert rail_files(sim)[0] == "11.940\n"  # the library does not rewrite the rail files
    assert sim.cli("rail").stdout == "12.000\n" == rail_files(sim)[0]


def test_no_rail_no_bmc_files(sim):
    sim.use("h100-pcie")
    sim.cli("reset")
    sim.cli("load", "all", 100)
    assert not (sim.state_dir / "bmc").exists()
    assert json.loads(sim.cli("status", "--json").stdout)["rail_12v"] is None
    proc = sim.cli("fault", "psu", "ohm", 0.01, check=False)
    assert proc.returncode == 1 and "models no 12 V rail" in proc.stderr


def test_half_a_rail_is_a_profile_error(sim):
    broken = sim.root / "half-rail.conf"
    broken.write_text((PROFILES / "t180-g20.conf").read_text().replace("rail_12v_drop_v 11.40", ""))
    sim.use(str(broken))
    proc = subprocess.run(
        [sys.executable, "-c", sim.script("print(call(N.nvmlInit))", init=False)],
        env=sim.env,
        capture_output=True,
        text=True,
    )
    assert proc.stdout.strip() == "!UNKNOWN"
    assert "the rail_12v_* keys come together" in proc.stderr
    assert "the rail keys come together" in sim.cli("status", check=False).stderr


# ---- the kernel log ----


def test_xid_faults_are_kernel_log_lines(sim):
    sim.cli("fault", 0, "xid", 48, "--count", 2)
    sim.cli("fault", 2, "xid", 74)
    sim.cli("fault", 1, "lost")
    sim.cli("fault", 1, "lost")  # already off the bus: logged once
    sim.cli("clear", "all")  # a log is a log
    log = sim.state_dir / "kern.log"
    assert str(log) in sim.cli("status").stdout
    lines = log.read_text().splitlines()
    assert all(SYSLOG_XID.match(line) for line in lines)
    assert [(e["pci_bus_id"], e["xid"]) for e in parse_xid(lines)] == [
        ("0000:1a:00", 48),
        ("0000:1a:00", 48),
        ("0000:3d:00", 74),
        ("0000:1b:00", 79),
    ]
    assert "uncorrectable double bit error" in lines[0]
    sim.cli("reset")
    assert log.read_text() == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["load", 0, 101], "whole percent from 0 to 100, got '101'"),
        (["load", 0, "half"], "got 'half'"),
        (["load", 4, 10], "no GPU slot 4"),
        (["load", "GPU-00000000-0000-0000-0000-000000000000", 10], "no GPU with UUID"),
        (["fault", "psu", "ohm", 2], "psu ohm must be from 0 to 1, got 2"),
        (["fault", "psu", "lost"], "the psu's faults are 'ohm OHMS' and 'voltage VOLTS'"),
        (["fault", 0, "voltage", 11], "'voltage' is a fault of the psu"),
        (["fault", 0, "heatsink", 0], "heatsink factor must be above 0"),
    ],
)
def test_tool_rejects_bad_load_and_psu_faults(sim, args, message):
    before = (sim.state_dir / "state").read_text()
    proc = sim.cli(*args, check=False)
    assert proc.returncode == 1 and message in proc.stderr
    assert (sim.state_dir / "state").read_text() == before


def test_lost_or_absent_gpus_take_no_load_or_xid(sim):
    sim.cli("fault", 1, "lost")
    sim.cli("fault", 2, "absent")
    assert "GPU slot 1 is lost" in sim.cli("load", 1, 50, check=False).stderr
    assert "GPU slot 2 is absent" in sim.cli("fault", 2, "xid", 13, check=False).stderr
    proc = subprocess.run(
        [sys.executable, str(CLI), "load-worker", "1"],
        env=sim.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    assert proc.returncode == 1
    sim.cli("load", "all", 30)  # the usable ones
    status = json.loads(sim.cli("status", "--json").stdout)["gpus"]
    assert [g["load_pct"] for g in status] == [30, 0, 0, 30]
