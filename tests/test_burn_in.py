"""The burn-in (nvidia_gpu.burn_in*, `gpu-burn-in`) against a simulated T180-G20: the simulator's
load workers make power, temperature and the 12 V rail follow the load, and a weak supply
(`nvml-sim fault psu ohm`) drops a GPU off the bus when all four step up together, as on the
seed machine. Parameters are refused before anything starts; the GEMM worker of the validation
package follows its stdin on the CPU."""

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import MODULE_UTILS, PROJECT, SIM_CLI
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(MODULE_UTILS))
from nvidia_gpu import burn_in_config
from nvidia_gpu.burn_in_config import BurnInConfigError, validate
from validation_tool import VALIDATION

TOOL = (
    "import sys; sys.path.insert(0, %r); from nvidia_gpu.burn_in_cli import main; "
    "sys.exit(main(sys.argv[1:]))" % str(MODULE_UTILS)
)
SIM_WORKER = [sys.executable, str(SIM_CLI), "load-worker", "{uuid}"]
# A few seconds in all: 2 cycles of 0.5 s high / 0.5 s low, 1 s sustained, 0.2 s samples.
SHORT = {
    "cycles": 2,
    "high_s": 0.5,
    "low_s": 0.5,
    "sustained_s": 1,
    "sample_interval_s": 0.2,
    "progress_interval_s": 0.5,
    "worker_start_s": 10,  # the simulator's workers say "ready" at once
    "load_command": SIM_WORKER,
}
BMC_SIM = PROJECT / "tests" / "bmc_sim" / "bmc-sim"
REPORT_KEYS = {
    "format", "tool", "result", "verdict", "interrupted", "stopped_early", "started_at",
    "duration_s", "planned_s", "parameters", "gpus", "phases", "lost", "rail_12v", "workers",
    "worker_exits", "findings", "before", "after", "after_error", "summary",
}  # fmt: skip


def burn_in(machine, params=None, *args, report=True):
    """Run gpu-burn-in in its own process; (process, report or None)."""
    config = machine.root / "burn-in.json"
    data = dict(SHORT, kernel_log=str(machine.state_dir / "kern.log"))
    data.update(params or {})
    config.write_text(json.dumps(data))
    path = machine.root / "report.json"
    argv = ["--config", str(config), *(["--report", str(path)] if report else []), *args]
    proc = subprocess.run(
        [sys.executable, "-c", TOOL, *argv],
        env=machine.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc, json.loads(path.read_text()) if path.exists() else None


def sim_status(machine):
    return json.loads(machine.cli("status", "--json").stdout)


def uuids(machine):
    return [gpu["uuid"] for gpu in sim_status(machine)["gpus"]]


@pytest.fixture
def bmc(machine):
    """The simulated BMC (OpenIPMI's ipmi_sim) of the machine, read with ipmitool over lanplus:
    its P_12V sensor follows the simulator's rail. Yields the burn-in's bmc parameters."""
    if not (shutil.which("ipmi_sim") and shutil.which("ipmitool")):
        pytest.skip("the BMC simulator needs ipmi_sim (openipmi) and ipmitool")
    password = machine.root / "bmc-password"
    password.write_text("burn-in-test")
    password.chmod(0o600)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    access = {
        "interface": "lanplus",
        "host": "127.0.0.1",
        "port": port,
        "user": "admin",
        "password_file": str(password),
        "cipher_suite": 3,
    }
    command = [sys.executable, str(BMC_SIM), "run", "--address", "127.0.0.1"]
    command += ["--port", str(port), "--password-file", str(password)]
    log = machine.root / "bmc-sim.log"
    with open(log, "w") as output:
        proc = subprocess.Popen(command, env=machine.env, stdout=output, stderr=output)
    try:
        argv = ["ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", str(port), "-U", "admin"]
        # until it answers: a 1 s timeout, one retry (ipmitool's default waits 20 s)
        argv += ["-f", str(password), "-C", "3", "-N", "1", "-R", "1", "sensor", "get", "P_12V"]
        deadline = time.monotonic() + 15
        while subprocess.run(argv, capture_output=True, timeout=10).returncode != 0:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield {"access": access, "rails_12v": ["P_12V"], "timeout_s": 5}
    finally:
        proc.terminate()
        proc.wait(timeout=15)


# ---- parameters ----


def test_the_defaults_are_a_valid_burn_in():
    config = validate({})
    assert config["load_command"] == ["gpu-node-validate", "load", "--device", "cuda:{index}"]
    assert config["gpus"] == ["all"] and config["bmc"] is None
    assert config["limits"]["power_cap_expected"] is True
    assert "sw_power_cap" not in config["limits"]["forbidden_clock_event_reasons"]
    assert burn_in_config.duration_s(config) == 10 * 20 + 600


@pytest.mark.parametrize(
    "data, named",
    [
        ({"cycles": -1}, "cycles -1 is not valid; allowed: a whole number from 0 to 100000"),
        ({"cycles": 1.5}, "cycles 1.5"),
        ({"high_s": True}, "high_s true"),
        ({"low_s": "10"}, 'low_s "10"'),
        ({"cycles": 0, "sustained_s": 0}, "load nothing"),
        (
            {"high_s": 0.5, "sample_interval_s": 1},
            "sample_interval_s 1 is longer than high_s 0.5: that phase would go unsampled",
        ),
        ({"cycle": 3}, "unknown key(s) cycle"),
        ({"format": 2}, "format 2 is not supported"),
        ({"load_command": []}, "load_command [] is not valid"),
        ({"load_command": ["worker"]}, "names no GPU"),
        ({"load_command": ["w", "{gpu}"]}, "has the field {gpu}"),
        ({"load_command": ["w", "{index:>3}"]}, "has the field {index}"),
        ({"load_command": ["w", "{index"]}, "expected '}'"),
        ({"gpus": []}, "the selection is empty"),
        ({"kernel_log": "syslog"}, 'kernel_log "syslog" is not valid'),
        ({"stop_on_lost_gpu": "yes"}, "stop_on_lost_gpu"),
        ({"bmc": {"rails_12v": ["P_12V"]}}, "bmc {"),
        ({"limits": {"min_rail_v": 14}}, "min_rail_v 14 is not valid"),
        ({"limits": {"max_temperature_c": 85.5}}, "max_temperature_c 85.5"),
        ({"limits": {"forbidden_clock_event_reasons": ["hot"]}}, "forbidden_clock_event"),
        (
            {"limits": {"forbidden_clock_event_reasons": ["sw_power_cap"]}},
            "sw_power_cap while power_cap_expected is true",
        ),
        ({"limits": {"power_cap_expected": 1}}, "power_cap_expected 1"),
        ({"limits": {"min_volts": 11}}, "limits: unknown key(s) min_volts"),
    ],
)
def test_bad_parameters_are_named(data, named):
    with pytest.raises(BurnInConfigError) as error:
        validate(data)
    assert named in str(error.value)


# Long phases, so that the interval rule does not get in the way of a number under test.
ROOMY = {"high_s": 100, "low_s": 100, "sustained_s": 100, "sample_interval_s": 0.1}
ANY_VALUE = (
    st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.text(max_size=5)
    | st.none()
)


@given(key=st.sampled_from(sorted(burn_in_config.NUMBERS)), value=ANY_VALUE)
def test_a_number_is_taken_in_its_range_and_refused_by_name_outside(key, value):
    default, lowest, highest, whole = burn_in_config.NUMBERS[key]
    fits = value is None or (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and lowest <= value <= highest
        and (not whole or float(value).is_integer())
    )
    data = dict(ROOMY, **{key: value})
    try:
        config = validate(data)
    except BurnInConfigError as error:
        assert key in str(error), str(error)  # its own range, or the interval rule
        return
    assert fits and config[key] == (default if value is None else value)


@given(
    key=st.sampled_from(sorted(burn_in_config.LIMITS)),
    value=ANY_VALUE,
)
def test_a_limit_is_taken_in_its_range_and_refused_by_name_outside(key, value):
    default, lowest, highest, whole = burn_in_config.LIMITS[key]
    fits = value is None or (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and lowest <= value <= highest
        and (not whole or float(value).is_integer())
    )
    try:
        limits = validate({"limits": {key: value}})["limits"]
    except BurnInConfigError as error:
        assert not fits and str(error).startswith(key + " "), str(error)
        return
    assert fits
    assert limits[key] == (default if value is None else value)


@given(part=st.text(max_size=12))
def test_any_load_command_is_taken_or_refused_by_name(part):
    try:
        argv = validate({"load_command": ["worker", "{uuid}", part]})["load_command"]
    except BurnInConfigError as error:
        assert str(error).startswith("load_command "), str(error)
        return
    assert burn_in_config.worker_argv(argv, 1, "GPU-x")[:2] == ["worker", "GPU-x"]


def test_check_validates_the_file_only(machine):
    proc, report = burn_in(machine, {}, "--check", report=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith(": valid\n") and report is None


def test_bad_input_starts_nothing(machine):
    proc, _ = burn_in(machine, {"gpus": [7]})
    assert proc.returncode == 2
    assert "nothing started: gpus: GPU selector '7' matches no GPU" in proc.stderr
    assert all(gpu["load_pct"] == 0 for gpu in sim_status(machine)["gpus"])
    config = machine.root / "broken.json"
    config.write_text('{"cycles": NaN}')
    proc = subprocess.run(
        [sys.executable, "-c", TOOL, "--config", str(config), "--report", "/nonexistent/r.json"],
        env=machine.env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "cycles: NaN is not a JSON number" in proc.stderr and "Traceback" not in proc.stderr
    proc, _ = burn_in(machine, {}, "--report", "/nonexistent/r.json", report=False)
    assert proc.returncode == 2
    assert "the directory /nonexistent does not exist" in proc.stderr


def test_environment_problems_are_named(machine):
    proc, _ = burn_in(machine, {"load_command": ["/nonexistent/worker", "{index}"]})
    assert proc.returncode == 3
    assert "the load worker of GPU 0 (%s) cannot start" % uuids(machine)[0] in proc.stderr
    proc, _ = burn_in(machine, {"load_command": [sys.executable, "-c", "exit(5)", "{index}"]})
    assert proc.returncode == 3
    assert "exited with status 5 (no output)" in proc.stderr
    machine.cli("fault", 1, "lost")
    proc, _ = burn_in(machine)
    assert proc.returncode == 3
    assert "GPU 1 does not answer before the load" in proc.stderr
    machine.use(None)
    proc, _ = burn_in(machine)
    assert proc.returncode == 3
    assert "NVML could not be initialised" in proc.stderr and "Traceback" not in proc.stderr


# ---- runs ----


def test_a_healthy_node_passes(machine, bmc):
    proc, report = burn_in(machine, {"bmc": bmc})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert set(report) == REPORT_KEYS
    assert report["result"] == "pass" and report["verdict"]["reasons"] == []
    assert [g["uuid"] for g in report["gpus"]] == uuids(machine)
    for index in map(str, range(4)):
        high = report["phases"]["square_high"][index]
        low = report["phases"]["square_low"][index]
        sustained = report["phases"]["sustained"][index]
        # full load holds the 300 W limit (the power cap is expected), idle is far below
        # (max and min: a sample may come before a busy host's workers switched)
        assert high["power_w"]["max"] == sustained["power_w"]["max"] == 300.0
        assert "sw_power_cap" in sustained["clock_event_reasons"]
        assert low["power_w"]["min"] < 50 and high["temperature_c"]["max"] > 60
        assert high["samples"] >= 2 and sustained["samples"] >= 2
    assert [w["exit_status"] for w in report["workers"]] == [0] * 4
    assert len(report["before"]["gpus"]) == len(report["after"]["gpus"]) == 4
    assert report["parameters"]["cycles"] == 2 and 3 <= report["duration_s"] < 10
    lines = proc.stdout.splitlines()
    assert "square_high 1/2: all GPUs to 100 % for 0.5 s (at 0.0 of 3.0 s)" in lines
    progress = r"(square_high|square_low|sustained)( \d/2)? \d\.\d/3\.0 s \| GPU0 [\d.]+ W \d+ C \|"
    assert any(re.match(progress + r".* \| P_12V 1\d\.\d\d V$", line) for line in lines)
    # the BMC's 12 V rail, read with ipmitool every sample: ~11.94 V under full load is healthy
    rail = report["rail_12v"]
    assert rail["error_count"] == 0 and rail["readings"] >= 3
    assert 11.8 < rail["lowest"]["P_12V"]["value_v"] < 12.0
    assert rail["per_phase"]["idle"]["P_12V"] > rail["lowest"]["P_12V"]["value_v"]
    assert report["parameters"]["bmc"] == bmc
    assert "burn-in-test" not in (machine.root / "report.json").read_text()  # the password
    assert lines[-2:] == ["PASS: 0 reason(s)", "report: %s" % (machine.root / "report.json")]
    # the workers are gone and the GPUs idle again
    assert [gpu["load_pct"] for gpu in sim_status(machine)["gpus"]] == [0] * 4


def test_a_weak_supply_drops_a_gpu_and_fails(machine):
    machine.cli("fault", "psu", "ohm", 0.006)
    proc, report = burn_in(machine, {"stop_on_lost_gpu": True})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    uuid3 = uuids(machine)[3]
    assert report["result"] == "fail"
    # in the first high phase, or the low phase that follows on a host too busy to sample
    assert [(e["gpu"], e["uuid"], e["phase"][:7]) for e in report["lost"]] == [
        (3, uuid3, "square_")
    ]
    (reason,) = report["verdict"]["reasons"]
    assert reason.startswith("GPU 3 (%s) fell off the bus during square_" % uuid3)
    assert "(Xid 79 logged)" in reason and "12 V supply" in reason
    assert report["stopped_early"] == "a GPU fell off the bus (stop_on_lost_gpu)"
    assert report["after"]["gpus"][3]["lost"] is True
    assert "GPU 3 (%s) fell off the bus" % uuid3 in proc.stderr
    assert "FAIL: 1 reason(s)" in proc.stdout
    assert [gpu["load_pct"] for gpu in sim_status(machine)["gpus"]] == [0] * 4


def test_a_weak_supply_is_named_by_its_rail(machine, bmc):
    """With the BMC read, the sagging rail is the reason, with its reading and the limit; the
    run goes on after the loss (stop_on_lost_gpu false), so the rail is read under load."""
    machine.cli("fault", "psu", "ohm", 0.006)
    proc, report = burn_in(machine, {"bmc": bmc})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    uuid3 = uuids(machine)[3]
    (lost,) = [r for r in report["verdict"]["reasons"] if r.startswith("GPU 3")]
    (rail,) = [r for r in report["verdict"]["reasons"] if r.startswith("P_12V")]
    assert lost.startswith("GPU 3 (%s) fell off the bus during square_" % uuid3)
    assert (
        ": the 12 V supply sags under load: PSU capacity or a poor high-current connection "
        "(P_12V read 11.4" in lost
    )
    assert re.match(
        r"P_12V read 11\.4\d V during \w+( cycle \d)? at [\d.]+ s \(limit 11\.70 V\): the 12 V "
        r"supply sags under load: PSU capacity or a poor high-current connection\.$",
        rail,
    )
    assert report["stopped_early"] is None and report["phases"]["sustained"]["2"]["samples"] >= 2
    assert [e["gpu"] for e in report["lost"]] == [3]


def test_a_sick_node_fails_with_each_cause(machine):
    """GPU 2 has a poorly seated heatsink; under load GPU 0's NVLink errors rise and GPU 1 has
    an uncorrectable ECC error (injected by their workers as the load starts); GPU 3's worker
    dies at its first line. The workers say "ready", so the long start wait ends at once."""
    machine.cli("fault", 2, "heatsink", 2)
    script = " ".join(  # one line: the parameter file holds no control characters
        [
            'case "$1" in 0) "$3" "$4" fault 0 nvlink-errors 1 replay 7 ;;',
            '1) "$3" "$4" fault 1 ecc volatile uncorrected 1 ;;',
            '3) echo ready; read level; echo "CUDA error: an illegal memory access" >&2; exit 1',
            ";; esac;",
            'echo ready; exec "$3" "$4" load-worker "$2"',
        ]
    )
    worker = ["/bin/sh", "-c", script, "worker", "{index}", "{uuid}", sys.executable, str(SIM_CLI)]
    # and its BMC does not answer (nothing listens there): a warning, not a crash
    password = machine.root / "bmc-password"
    password.write_text("x")
    access = {"interface": "lanplus", "host": "127.0.0.1", "port": 9, "user": "admin"}
    access["password_file"] = str(password)
    unreachable = {"access": access, "timeout_s": 1}
    started = time.monotonic()
    params = {"load_command": worker, "bmc": unreachable, "worker_start_s": 30}
    proc, report = burn_in(machine, params)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert time.monotonic() - started < 20
    found = {}
    for finding in report["findings"]:
        key = (finding["check"], finding["gpu"])
        found[key] = (found.get(key, "") + " " + finding["message"]).strip()
    assert "rose by 7 under load (link 1 replay +7; limit 0)" in found[("nvlink_errors", 0)]
    assert "SXM2 mounting screw torque" in found[("nvlink_errors", 0)]
    assert "1 new uncorrected ECC error(s)" in found[("ecc_uncorrected", 1)]
    assert "limit 82 C): the others stayed at or below" in found[("temperature", 2)]
    assert "heatsink contact" in found[("temperature", 2)]
    assert re.match(
        r"the load worker of GPU 3 \(GPU-[0-9a-f-]+\) stopped during square_\w+ cycle \d at "
        r"[\d.]+ s \(it exited with status 1: CUDA error: an illegal memory access\), so the "
        r"GPU was not loaded from then on\.$",
        found[("load_worker", 3)],
    )
    assert "drew at most 40.6 W of its 300 W limit under full load" in found[("not_loaded", 3)]
    assert re.match(
        r"the BMC could not be read \d+ of \d+ time\(s\), first during idle at [\d.]+ s: "
        r"ipmitool did not finish within 1 s: no answer from the BMC at 127\.0\.0\.1 port 9\.$",
        found[("bmc", None)],
    )
    assert (
        "slowed down by hw_slowdown, hw_thermal_slowdown, sw_thermal_slowdown during "
        "square_high, sustained: the GPU asserted HW slowdown" in found[("clock_events", 2)]
    )


def test_an_interrupted_run_stops_the_workers_and_writes_a_partial_report(machine):
    config = machine.root / "burn-in.json"
    config.write_text(json.dumps(dict(SHORT, sustained_s=60, kernel_log="none")))
    path = machine.root / "report.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", TOOL, "--config", str(config), "--report", str(path)],
        env=machine.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stdout:
        if line.startswith("sustained:"):
            break
    deadline = time.monotonic() + 10
    while [gpu["load_pct"] for gpu in sim_status(machine)["gpus"]] != [100] * 4:
        assert time.monotonic() < deadline, "the workers did not load the GPUs"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    report = json.loads(path.read_text())
    assert report["interrupted"]["signal"] == "SIGINT"
    assert report["interrupted"]["phase"] == "sustained"
    assert report["verdict"]["reasons"][0].startswith("the burn-in was interrupted (SIGINT)")
    assert "FAIL (interrupted)" in out
    assert [gpu["load_pct"] for gpu in sim_status(machine)["gpus"]] == [0] * 4
    assert [w["exit_status"] for w in report["workers"]] == [0] * 4


# ---- the GEMM load worker ----


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_the_gemm_worker_follows_its_input_on_the_cpu():
    if importlib.util.find_spec("torch") is None:  # found, not imported: that takes seconds
        pytest.skip("torch is not installed in this environment")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpu_node_validate", "load", "--device", "cpu", "--size", "96"],
        env=dict(os.environ, PYTHONPATH=str(VALIDATION), OMP_NUM_THREADS="1"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline() == "ready\n"

        def busy_over(seconds):
            before = cpu_seconds(proc.pid)
            time.sleep(seconds)
            return (cpu_seconds(proc.pid) - before) / seconds

        # CPU seconds per second of one thread (OMP_NUM_THREADS=1); margins for a busy host
        assert busy_over(0.3) < 0.1  # starts idle
        proc.stdin.write("100\n")
        proc.stdin.flush()
        time.sleep(0.2)
        loaded = busy_over(0.6)
        proc.stdin.write("0\n")
        proc.stdin.flush()
        time.sleep(0.2)
        idle = busy_over(0.6)
        assert loaded > 0.25 and idle < 0.1 and loaded > 4 * idle, (loaded, idle)
        proc.stdin.close()
        assert proc.wait(timeout=10) == 0
        assert "load worker cpu: fp32 96x96" in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


def test_the_gemm_worker_refuses_bad_arguments():
    proc = subprocess.run(
        [sys.executable, "-m", "gpu_node_validate", "load", "--device", "gpu0"],
        env=dict(os.environ, PYTHONPATH=str(VALIDATION)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "--device 'gpu0': allowed: cpu, cuda, cuda:N or cuda:GPU-<uuid>" in proc.stderr
