"""bmc-sim, the simulated BMC's tool: value files it writes and the input it refuses (no ipmi_sim
needed). tests/test_bmc.py runs the simulator itself against the project's BMC code."""

import subprocess
import sys
from pathlib import Path

import pytest

BMC_SIM = Path(__file__).resolve().parent / "bmc-sim"
NAMES = [
    *("CPU0_TEMP", "CPU1_TEMP", "SYS_TEMP", "P_12V", "P_5V", "P_3V3", "P_VBAT"),
    *("FAN_SYS0", "FAN_SYS1", "FAN_SYS2", "FAN_SYS3", "FAN_SYS4"),
    *("PSU1_PIN", "PSU2_PIN", "PSU1_STATUS", "PSU2_STATUS"),
]


def bmc_sim(state, *args):
    return subprocess.run(
        [sys.executable, str(BMC_SIM), "--state-dir", str(state), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_sets_and_clears_value_files(tmp_path):
    listed = bmc_sim(tmp_path, "list")
    assert listed.returncode == 0, listed.stderr  # the emu file and the SDRs agree
    assert [line.split()[0] for line in listed.stdout.splitlines()] == NAMES
    assert bmc_sim(tmp_path, "set", "P_12V", "11.943").returncode == 0
    assert (tmp_path / "bmc" / "P_12V").read_text() == "11.943\n"
    assert bmc_sim(tmp_path, "set", "PSU2_STATUS", "0x9").returncode == 0
    assert bmc_sim(tmp_path, "clear", "all").returncode == 0
    assert list((tmp_path / "bmc").iterdir()) == []


@pytest.mark.parametrize(
    "args, says",
    [
        (("set", "P_12v", "12"), "no simulated sensor 'P_12v'; allowed: CPU0_TEMP,"),
        (("set", "FAN_SYS4", "9000"), "no simulated sensor 'FAN_SYS4'"),
        (("set", "P_12V", "12,0"), "P_12V takes a number in Volts; got '12,0'"),
        (("set", "PSU1_STATUS", "ok"), "PSU1_STATUS takes state bits, e.g. 0x1; got 'ok'"),
        (("set", "PSU1_STATUS", "0x8000"), "state bits must be 0 to 0x7fff"),
    ],
)
def test_refuses_bad_values(tmp_path, args, says):
    done = bmc_sim(tmp_path, *args)
    assert done.returncode == 2
    assert says in done.stderr


def test_says_when_a_value_is_beyond_the_sensor(tmp_path):
    done = bmc_sim(tmp_path, "set", "P_12V", "16.5")
    assert done.returncode == 0
    assert "outside what the sensor shows (8 to 15.65): shown as 15.65" in done.stderr


def test_a_missing_file_is_the_default_and_sets_show_in_list(tmp_path):
    assert bmc_sim(tmp_path, "set", "FAN_SYS1", "900").returncode == 0
    lines = {line.split()[0]: line for line in bmc_sim(tmp_path, "list").stdout.splitlines()}
    assert lines["FAN_SYS1"].split()[-1] == "900"
    assert lines["FAN_SYS0"].split()[-3:] == ["11400", "now", "(default)"]
    assert lines["FAN_SYS4"].endswith("no reading")
