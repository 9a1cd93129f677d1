"""The gpu_tuning role's boot-time command (nvidia_gpu.boot_cli) against simulated GPUs: it
waits for GPUs that appear late, applies to the GPUs that answer when others never do, keeps
settings with the card they were written for, names every GPU it could not set, and refuses bad
config files before touching anything. Each run is its own process, as under systemd."""

import io
import json
import os
import subprocess
import sys
import time

import pytest
from boot_tool import BOOT, HELD, QUIET, apply, command, recorded_gpus, run, write_config
from conftest import MODULE_UTILS


def test_applies_the_file_then_finds_nothing_to_do(machine):
    path = write_config(machine)
    first = apply(machine, path)
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""
    uuids = [g["uuid"] for g in recorded_gpus(machine)]
    assert first.stdout.splitlines() == [
        "GPU %d (%s): set persistence_mode off -> on, power_limit_w 300 W -> 200 W, "
        "locked_graphics_clocks unlocked -> 135-1005 MHz" % (index, uuid)
        for index, uuid in enumerate(uuids)
    ] + ["4 of 4 GPU(s) hold the settings of %s (profile quiet)" % path]
    assert machine.state() == [HELD] * 4
    second = apply(machine, path)
    assert second.returncode == 0
    assert second.stdout.count("already as configured") == 4
    assert machine.state() == [HELD] * 4


def test_reapplies_after_a_reboot(machine):
    path = write_config(machine)
    assert apply(machine, path).returncode == 0
    machine.reboot()
    assert machine.state() == [BOOT] * 4
    again = apply(machine, path)
    assert again.returncode == 0, again.stderr
    assert machine.state() == [HELD] * 4
    record = json.loads((machine.run_dir / "locked-clocks.json").read_text())
    assert [lock["graphics"] for lock in record["gpus"].values()] == [[135, 1005]] * 4


def test_waits_for_a_gpu_that_appears_late(machine):
    path = write_config(machine)
    machine.cli("fault", 2, "absent")
    proc = subprocess.Popen(
        command(machine, "apply", "--config", path, "--wait", 30),
        env=machine.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)
    assert proc.poll() is None, "gave up while GPU 2 was still missing"
    # Nothing is applied while waiting: with GPU 2 absent the indices of the others moved.
    assert machine.state() == [BOOT] * 3
    machine.cli("clear", 2)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    uuid2 = recorded_gpus(machine)[2]["uuid"]
    assert out.startswith(
        "waiting up to 30 s for GPU 2 (%s): not enumerated by the driver (3 GPU(s) present)\n"
        % uuid2
    )
    assert "every GPU of the file answers after" in out
    assert machine.state() == [HELD] * 4


def test_a_lost_gpu_is_named_and_the_others_are_applied(machine):
    path = write_config(machine)
    uuid2 = recorded_gpus(machine)[2]["uuid"]
    machine.cli("fault", 2, "lost")
    started = time.monotonic()
    result = apply(machine, path, wait=1)
    assert time.monotonic() - started < 10
    assert result.returncode == 1
    errors = result.stderr.splitlines()
    assert len(errors) == 1, errors
    assert errors[0].startswith(
        "GPU 2 (%s): NOT applied: did not answer within 1 s: NVML index 2 does not answer: "
        "the GPU has fallen off the bus (Xid 79)" % uuid2
    )
    assert "3 of 4 GPU(s) hold the settings" in result.stdout
    assert machine.state_of([0, 1, 3]) == [HELD] * 3


def test_a_gpu_nvml_cannot_name_is_named_by_index_and_the_others_are_applied(machine):
    path = write_config(machine)
    uuid2 = recorded_gpus(machine)[2]["uuid"]
    machine.cli("fault", 2, "fail", "nvmlDeviceGetUUID", "UNKNOWN")
    result = apply(machine, path, wait=0.5)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        "GPU 2 (%s): NOT applied: did not answer within 0.5 s: NVML index 2 does not answer: "
        "NVML cannot name it: nvmlDeviceGetUUID failed: NVML reported an unknown error: the "
        "driver is in a bad state; look for Xid lines in the kernel log (journalctl -k | grep -i "
        "xid); a reboot usually clears it" % uuid2
    ]
    assert "3 of 4 GPU(s) hold the settings" in result.stdout
    machine.cli("clear", 2)
    assert machine.state_of([0, 1, 3]) == [HELD] * 3
    assert machine.state_of([2]) == [BOOT]


def test_settings_follow_the_card_when_a_gpu_is_missing(machine):
    # GPU 3 gets 250 W by index; with GPU 2 absent, that card is NVML index 2 at boot.
    request = dict(QUIET, overrides=[{"gpus": [3], "power_limit": 250}])
    path = write_config(machine, request)
    gpus = recorded_gpus(machine)
    machine.cli("fault", 2, "absent")
    result = apply(machine, path, wait=0.5)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "GPU 2 (%s): NOT applied: did not answer within 0.5 s: not enumerated by the driver "
        "(3 GPU(s) present)" % gpus[2]["uuid"]
    ]
    assert "GPU 2 (%s): set" % gpus[3]["uuid"] in result.stdout
    assert [g["power_limit_mw"] for g in machine.state()] == [200000, 200000, 250000]


def test_a_gpu_whose_setting_fails_is_named_and_the_others_are_applied(machine):
    path = write_config(machine)
    uuid1 = recorded_gpus(machine)[1]["uuid"]
    machine.cli("fault", 1, "fail", "nvmlDeviceSetPowerManagementLimit", "UNKNOWN")
    result = apply(machine, path)
    assert result.returncode == 3  # NVML failed a call: not the exit status of a missing GPU
    errors = result.stderr.splitlines()
    assert errors[0].startswith("applying to all GPUs at once failed")
    assert errors[1:] == [
        line for line in errors[1:] if line.startswith("GPU 1 (%s): NOT applied: " % uuid1)
    ]
    assert len(errors) == 2
    state = machine.state()
    assert state[1] == BOOT  # GPU 1's own earlier changes (persistence) were rolled back
    assert [state[0], state[2], state[3]] == [HELD] * 3


def test_a_failure_that_clears_on_retry_still_ends_well(machine):
    path = write_config(machine)
    machine.cli("fault", 3, "fail", "nvmlDeviceSetPowerManagementLimit", "UNKNOWN", "--times", 1)
    result = apply(machine, path)
    assert result.returncode == 0, result.stderr
    assert "trying GPU by GPU" in result.stderr
    assert machine.state() == [HELD] * 4


def test_without_a_driver_every_gpu_is_named(machine):
    path = write_config(machine)
    gpus = recorded_gpus(machine)
    machine.use(None)
    result = apply(machine, path, wait=0.3)
    assert result.returncode == 1
    errors = result.stderr.splitlines()
    assert [line.split(":")[0] for line in errors] == [
        "GPU %d (%s)" % (g["index"], g["uuid"]) for g in gpus
    ]
    assert all("NVIDIA kernel driver is not loaded" in line for line in errors)


def test_overrides_per_model_on_a_mixed_node(machine):
    machine.use("mixed-v100-a100")
    request = dict(QUIET, overrides=[{"gpus": ["*A100*"], "power_limit": 250}])
    result = apply(machine, write_config(machine, request))
    assert result.returncode == 0, result.stderr
    assert [g["power_limit_mw"] for g in machine.state()] == [200000, 200000, 250000, 250000]


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not valid JSON"),
        (json.dumps({"format": 1, "request": QUIET}), "gpus must list the GPUs"),
        (json.dumps({"format": 2, "request": QUIET, "gpus": []}), "format 2 is not supported"),
        (json.dumps({"format": 1, "request": QUIET, "gpus": [], "x": 1}), "unknown key(s) x"),
        ("[]", "must hold a JSON object"),
    ],
)
def test_a_broken_file_changes_nothing(machine, content, message):
    path = machine.root / "broken.json"
    path.write_text(content)
    for args in (("apply", "--config", path, "--wait", 0), ("check", path)):
        result = run(machine, *args)
        assert result.returncode == 2
        assert message in result.stderr, result.stderr
    assert machine.state() == [BOOT] * 4


@pytest.mark.parametrize(
    "change, message",
    [
        ({"power_limit": "lots"}, "power_limit (watts) 'lots' is not valid"),
        ({"clocks": {"strategy": "fast"}}, "clocks.strategy 'fast' is not valid"),
        ({"power_limt": 200}, "request has unknown option(s) power_limt"),
        ({"snap_clocks": "yes"}, "request.snap_clocks 'yes' is not valid"),
        ({"overrides": [{"gpus": [7], "power_limit": 250}]}, "'7' matches no GPU"),
    ],
)
def test_a_bad_request_is_refused_by_check_and_apply(machine, change, message):
    path = write_config(machine, dict(QUIET, **change))
    check = run(machine, "check", "--structure-only", path)
    assert check.returncode == 2 and message in check.stderr, check.stderr
    result = apply(machine, path, wait=0)
    assert result.returncode == 2 and message in result.stderr
    assert machine.state() == [BOOT] * 4


def test_missing_file_is_refused(machine):
    result = apply(machine, machine.root / "nope.json", wait=0)
    assert result.returncode == 2
    assert "nope.json cannot be read: No such file or directory" in result.stderr


def test_check_plans_against_the_gpus_and_changes_nothing(machine):
    path = write_config(machine)
    result = run(machine, "check", path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("would set persistence_mode off -> on") == 4
    assert machine.state() == [BOOT] * 4


def test_check_refuses_a_value_the_gpus_do_not_support(machine):
    path = write_config(machine, dict(QUIET, power_limit=400))
    result = run(machine, "check", path)
    assert result.returncode == 2
    assert "power_limit 400 W is outside the card's range 150-300 W" in result.stderr
    assert run(machine, "check", "--structure-only", path).returncode == 0
    applied = apply(machine, path, wait=0)
    assert applied.returncode == 1
    assert len([line for line in applied.stderr.splitlines() if "NOT applied" in line]) == 4
    assert machine.state() == [BOOT] * 4


def test_lines_carry_syslog_priorities_under_journald(machine, tmp_path):
    path = write_config(machine)
    machine.cli("fault", 2, "lost")
    stderr_path = tmp_path / "stderr"
    with open(stderr_path, "w") as stderr:
        stat = os.fstat(stderr.fileno())
        proc = subprocess.run(
            command(machine, "apply", "--config", path, "--wait", 0),
            env=dict(machine.env, JOURNAL_STREAM="%d:%d" % (stat.st_dev, stat.st_ino)),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert proc.returncode == 1
    assert stderr_path.read_text().startswith("<3>GPU 2 (")
    assert proc.stdout.startswith("<6>GPU 0 (")


def test_usage_errors_exit_2(machine):
    assert run(machine).returncode == 2
    assert run(machine, "apply", "--wait", -1).returncode == 2


def test_gpus_that_never_appear_end_within_the_wait(machine):
    ghost = {"index": 4, "uuid": "GPU-99999999-0000-0000-0000-000000000000", "name": "ghost"}
    path = write_config(machine, gpus=[*recorded_gpus(machine), ghost])
    started = time.monotonic()
    result = apply(machine, path, wait=2)
    assert time.monotonic() - started < 15
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "GPU 4 (%s): NOT applied: did not answer within 2 s: not enumerated by the driver "
        "(4 GPU(s) present)" % ghost["uuid"]
    ]
    assert machine.state() == [HELD] * 4


@pytest.mark.parametrize(
    "function, error, call",
    [
        ("nvmlDeviceSetPowerManagementLimit", "UNKNOWN", "nvmlDeviceSetPowerManagementLimit"),
        ("nvmlDeviceGetPowerManagementLimit", "UNKNOWN", "nvmlDeviceGetPowerManagementLimit"),
        ("nvmlDeviceSetPersistenceMode", "NO_PERMISSION", "nvmlDeviceSetPersistenceMode"),
        ("nvmlDeviceSetGpuLockedClocks", "GPU_IS_LOST", "nvmlDeviceSetGpuLockedClocks"),
        ("nvmlDeviceGetSupportedGraphicsClocks", "UNKNOWN", "nvmlDeviceGetSupportedGraphicsClocks"),
    ],
)
def test_an_nvml_failure_is_one_line_naming_the_gpu_and_the_call(machine, function, error, call):
    path = write_config(machine)
    uuid1 = recorded_gpus(machine)[1]["uuid"]
    machine.cli("fault", 1, "fail", function, error)
    result = apply(machine, path)
    assert result.returncode == 3, result.stderr
    failed = [line for line in result.stderr.splitlines() if "NOT applied" in line]
    assert len(failed) == 1, result.stderr
    assert failed[0].startswith("GPU 1 (%s): NOT applied: " % uuid1) and call in failed[0]
    check = run(machine, "check", path)  # plans GPU 1 again: only a read can fail there
    if "Get" in function:
        assert check.returncode == 3 and call in check.stderr, check.stderr
    else:
        assert check.returncode == 0 and "would set" in check.stdout, check.stderr
    machine.cli("clear", 1)
    state = machine.state()
    assert state[1] == BOOT  # its own changes were rolled back
    assert [state[0], state[2], state[3]] == [HELD] * 3


def test_a_setting_the_gpu_does_not_support_is_not_an_nvml_failure(machine):
    path = write_config(machine)
    machine.cli("fault", 1, "fail", "nvmlDeviceGetPowerManagementLimitConstraints", "NOT_SUPPORTED")
    result = apply(machine, path)
    assert result.returncode == 1, result.stderr
    assert "does not support power limits" in result.stderr
    assert machine.state_of([0, 2, 3]) == [HELD] * 3


def test_a_bug_is_one_line_with_its_own_exit_status(monkeypatch, tmp_path):
    """Exit status 4 and one line saying where, never a traceback over many journal lines."""
    sys.path.insert(0, str(MODULE_UTILS))
    from nvidia_gpu import boot_cli

    def broken(path):
        raise TypeError("a bug")

    monkeypatch.setattr(boot_cli, "load", broken)
    stdout, stderr = io.StringIO(), io.StringIO()
    status = boot_cli.main(
        ["check", "--structure-only", str(tmp_path / "x.json")], out=boot_cli.Output(stdout, stderr)
    )
    assert status == boot_cli.EXIT_INTERNAL == 4
    assert stderr.getvalue().splitlines() == [
        "internal error, please report: TypeError: a bug (test_gpu_tuning_boot.py line %d)"
        % (broken.__code__.co_firstlineno + 1)
    ]
