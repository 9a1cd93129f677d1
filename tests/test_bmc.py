"""bmc.py: reading `ipmitool sensor` and judging the readings. Parsing and judging run on output
recorded from the simulated BMC (ipmitool 1.8.19 against tests/bmc_sim); the integration test
runs the real ipmi_sim and the real ipmitool and changes a value the way the NVML simulator does.
"""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT / "module_utils"))

from nvidia_gpu import bmc  # noqa: E402
from nvidia_gpu.health import Findings  # noqa: E402

BMC_SIM = PROJECT / "tests" / "bmc_sim" / "bmc-sim"
RECORDED = PROJECT / "tests" / "bmc_sim" / "recorded"
# playbooks/group_vars/hw_t180_g20.yml
T180_LIMITS = {"P_12V": {"lower_critical": 11.4, "lower_warning": 11.7}}
RAILS = ["P_12V"]
NAMES = [
    *("CPU0_TEMP", "CPU1_TEMP", "SYS_TEMP", "P_12V", "P_5V", "P_3V3", "P_VBAT"),
    *("FAN_SYS0", "FAN_SYS1", "FAN_SYS2", "FAN_SYS3", "FAN_SYS4"),
    *("PSU1_PIN", "PSU2_PIN", "PSU1_STATUS", "PSU2_STATUS"),
]
P12V_STEP_V = 0.03  # the SDR's resolution


def recorded(name):
    return bmc.parse_sensors((RECORDED / ("sensor-%s.txt" % name)).read_text())


def by_name(readings):
    return {reading["name"]: reading for reading in readings}


def judged(readings, limits=None, rails=RAILS):
    findings = Findings()
    summary = bmc.evaluate(readings, T180_LIMITS if limits is None else limits, rails, findings)
    return findings.items, summary


# -- parsing -------------------------------------------------------------------------------------


def test_parses_every_line_of_the_recorded_output():
    readings = recorded("nominal")
    assert [r["name"] for r in readings] == NAMES
    sensors = by_name(readings)
    assert sensors["P_12V"] == {
        "name": "P_12V",
        "value": 12.02,
        "unit": "Volts",
        "status": "ok",
        "thresholds": {
            "lnr": 10.19,
            "lcr": 10.79,
            "lnc": 11.39,
            "unc": 12.59,
            "ucr": 13.19,
            "unr": 13.79,
        },
    }
    assert sensors["CPU0_TEMP"]["unit"] == "degrees C"
    assert sensors["CPU0_TEMP"]["thresholds"]["lcr"] is None
    assert sensors["FAN_SYS0"]["value"] == 11400.0
    # An SDR without a sensor behind it: no reading at all.
    assert sensors["FAN_SYS4"]["value"] is None
    assert (sensors["FAN_SYS4"]["unit"], sensors["FAN_SYS4"]["status"]) == ("", "na")
    # Discrete: no value; the state bits (presence detected) are the status.
    assert sensors["PSU1_STATUS"]["value"] is None
    assert (sensors["PSU1_STATUS"]["unit"], sensors["PSU1_STATUS"]["status"]) == (
        "discrete",
        "0x0100",
    )


@pytest.mark.parametrize(
    "text, says",
    [
        ("", "printed no sensors"),
        ("P_12V | 12.020 | Volts | ok\n", "expected 10 fields"),
        ("P_12V | twelve | Volts | ok | na | na | na | na | na | na\n", "'twelve'"),
        ("P_12V | 12.0 | Volts | ok | na | na | na | na | na | nan\n", "'nan'"),
        (" | 12.0 | Volts | ok | na | na | na | na | na | na\n", "expected 10 fields"),
    ],
)
def test_unparseable_output_is_an_error_quoting_it(text, says):
    with pytest.raises(bmc.BmcError, match=says):
        bmc.parse_sensors(text)


# -- access --------------------------------------------------------------------------------------

LANPLUS = {
    "interface": "lanplus",
    "host": "10.0.0.5",
    "user": "admin",
    "password_file": "/etc/gpu-node/bmc-password",
}


def test_argv_keeps_the_password_in_its_file():
    assert bmc.ipmitool_argv(LANPLUS) == [
        "ipmitool", "-I", "lanplus", "-H", "10.0.0.5", "-p", "623", "-U", "admin",
        "-f", "/etc/gpu-node/bmc-password",
    ]  # fmt: skip
    argv = bmc.ipmitool_argv(dict(LANPLUS, port=6230, cipher_suite=3, privilege="user"))
    assert argv[-6:] == ["-f", "/etc/gpu-node/bmc-password", "-C", "3", "-L", "USER"]
    assert "6230" in argv
    assert bmc.ipmitool_argv({"interface": "open"}) == ["ipmitool", "-I", "open"]


@pytest.mark.parametrize(
    "change, says",
    [
        ({"interface": "ssh"}, "interface 'ssh' is not valid; allowed: lanplus or open"),
        ({"host": None}, "host None is not valid; allowed: the BMC's host name"),
        ({"host": "-oProxy"}, "host '-oProxy'"),
        ({"host": "bmc 1"}, "host 'bmc 1'"),
        ({"port": 0}, "port 0 is not valid; allowed: a whole number from 1 to 65535"),
        ({"port": 70000}, "port 70000"),
        ({"port": True}, "port True"),
        ({"port": "623"}, "port '623'"),
        ({"user": ""}, "user '' is not valid"),
        ({"user": "a" * 17}, "1 to 16 printable characters"),
        ({"password_file": "bmc-password"}, "password_file 'bmc-password' is not valid"),
        ({"cipher_suite": 4}, "cipher_suite 4 is not valid; allowed: one of 0, 1, 2, 3"),
        ({"privilege": "root"}, "privilege 'root' is not valid; allowed: user, operator"),
        ({"password": "secret"}, "unknown key"),
    ],
)
def test_wrong_access_names_the_value_and_what_is_allowed(change, says):
    with pytest.raises(bmc.BmcError) as error:
        bmc.ipmitool_argv(dict(LANPLUS, **change))
    assert says in str(error.value)


def test_open_needs_no_network_settings():
    assert bmc.ipmitool_argv(dict(LANPLUS, interface="open", port=623)) == [
        "ipmitool", "-I", "open"
    ]  # fmt: skip


def test_missing_ipmitool_says_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(bmc.BmcError, match="install the ipmitool package"):
        bmc.read_sensors(bmc.subprocess_runner(5), LANPLUS, 5)


def test_a_hanging_ipmitool_is_ended_after_the_timeout(tmp_path, monkeypatch):
    fake = tmp_path / "ipmitool"
    fake.write_text("#!/bin/sh\nexec /bin/sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    began = time.monotonic()
    with pytest.raises(bmc.BmcError, match=r"did not finish within 0\.5 s: no answer from the BMC"):
        bmc.read_sensors(bmc.subprocess_runner(0.5), LANPLUS, 0.5)
    assert time.monotonic() - began < 5


# -- limits --------------------------------------------------------------------------------------

ORDER = list(bmc.LIMIT_KEYS)
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(st.dictionaries(st.sampled_from(ORDER), finite))
def test_limits_are_refused_exactly_when_out_of_order(limit):
    values = [limit[key] for key in ORDER if key in limit]
    if values == sorted(values):
        bmc.check_limits({"P_12V": limit})
    else:
        with pytest.raises(bmc.BmcError, match=r"P_12V\.\w+ \S+ is below P_12V\.\w+"):
            bmc.check_limits({"P_12V": limit})


@pytest.mark.parametrize(
    "limits, says",
    [
        ([], "limits [] are not valid"),
        ({"P_12V": 11.4}, "limits for P_12V 11.4 are not valid"),
        ({"P_12V": {"lower_crit": 11.4}}, "unknown key(s) lower_crit; allowed: lower_critical"),
        ({"P_12V": {"lower_critical": "11.4"}}, "P_12V.lower_critical '11.4' is not valid"),
        ({"P_12V": {"lower_critical": True}}, "P_12V.lower_critical True"),
        ({"P_12V": {"upper_warning": float("inf")}}, "P_12V.upper_warning inf"),
        ({"": {}}, "name '' is not valid"),
    ],
)
def test_wrong_limits_name_the_key(limits, says):
    with pytest.raises(bmc.BmcError) as error:
        bmc.check_limits(limits)
    assert says in str(error.value)


# -- judging -------------------------------------------------------------------------------------


def test_the_recorded_faults_are_judged_with_their_causes():
    findings, summary = judged(recorded("faults"))
    by_sensor = {f["message"].split()[0]: f for f in findings}
    assert set(by_sensor) == {"CPU0_TEMP", "P_12V", "P_VBAT", "FAN_SYS2", "PSU2_PIN"}
    rail = by_sensor["P_12V"]
    assert (rail["severity"], rail["check"], rail["value"], rail["expected"]) == (
        "critical",
        "bmc_sensor",
        11.3,
        ">= 11.4",
    )
    assert rail["message"] == (
        "P_12V reads 11.3 Volts, below the hardware profile's lower_critical limit of 11.4 Volts: "
        "GPUs fall off the bus (Xid 79) when the 12 V rail sags under load; check PSU capacity "
        "and every high-current connection (lugs, plugs, bus bars)."
    )
    assert by_sensor["CPU0_TEMP"]["severity"] == "critical"
    assert (
        "above the BMC's upper critical threshold of 90 degrees C"
        in (by_sensor["CPU0_TEMP"]["message"])
    )
    fan = by_sensor["FAN_SYS2"]
    assert fan["severity"] == "critical"
    assert "below the BMC's lower non-recoverable threshold of 1000 RPM: the fan" in fan["message"]
    assert by_sensor["P_VBAT"]["severity"] == "warning"
    assert "GPUs" not in by_sensor["P_VBAT"]["message"]  # only 12 V rails get that cause
    assert by_sensor["PSU2_PIN"]["severity"] == "warning"
    assert summary["P_12V"] == {"value": 11.3, "unit": "Volts", "status": "critical"}
    assert summary["P_VBAT"]["status"] == "warning"
    assert summary["CPU1_TEMP"]["status"] == "ok"
    assert summary["FAN_SYS4"] == {"value": None, "unit": "", "status": "na"}
    assert summary["PSU2_STATUS"]["status"] == "na"


def test_nominal_readings_give_no_findings():
    findings, summary = judged(recorded("nominal"))
    assert findings == []
    assert {s["status"] for s in summary.values()} == {"ok", "na"}


def test_without_profile_limits_the_bmc_status_counts_even_on_a_threshold():
    # P_12V reads exactly its lnc (11.390): no threshold is crossed, but the BMC says nc.
    findings, _summary = judged(recorded("at-threshold"), limits={})
    assert [(f["severity"], f["message"]) for f in findings] == [
        (
            "warning",
            "P_12V reads 11.39 Volts, which the BMC reports as non-critical (ipmitool status "
            "nc): GPUs fall off the bus (Xid 79) when the 12 V rail sags under load; check PSU "
            "capacity and every high-current connection (lugs, plugs, bus bars).",
        )
    ]
    findings, _summary = judged(recorded("at-threshold"))  # the profile's limits replace it
    assert [f["severity"] for f in findings] == ["critical"]


def test_misspelt_names_are_warnings_listing_the_bmc_sensors():
    findings, _summary = judged(recorded("nominal"), {"P12V": {"lower_critical": 11.4}}, ["P_12 V"])
    assert [f["severity"] for f in findings] == ["warning", "warning"]
    assert findings[0]["message"].startswith(
        "The hardware profile's BMC sensor limits name the sensor P12V, which this BMC does not "
        "have, so it is not checked (a misspelt name?); the BMC's sensors: CPU0_TEMP, CPU1_TEMP,"
    )
    assert "12 V rails name the sensor P_12 V" in findings[1]["message"]


def test_limits_on_sensors_without_a_number_cannot_be_checked():
    limits = {"FAN_SYS4": {"lower_critical": 1500}, "PSU1_STATUS": {"upper_critical": 0}}
    findings, _summary = judged(recorded("nominal"), limits)
    assert [f["message"] for f in findings] == [
        "FAN_SYS4 gives no reading (ipmitool status na), so its limits cannot be checked.",
        "PSU1_STATUS is a discrete sensor (ipmitool status 0x0100), so its limits cannot be "
        "checked.",
    ]


def sensor_line(value, thresholds):
    """A threshold sensor's line as ipmitool 1.8.19 prints it."""
    cells = ["%-10.3f" % t if t is not None else "na        " for t in thresholds]
    return "P_12V            | %-10.3f | Volts      | ok    | %s\n" % (value, " | ".join(cells))


def severity_of(value, thresholds, limit):
    findings = Findings()
    reading = bmc.parse_sensors(sensor_line(value, thresholds))
    bmc.evaluate(reading, {"P_12V": limit} if limit else {}, RAILS, findings)
    return bmc.RANK[findings.items[0]["severity"]] if findings.items else 0


volts = st.integers(min_value=800, max_value=1565).map(lambda raw: raw / 100)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(volts, min_size=10, max_size=10, unique=True).map(sorted),
    st.permutations(range(5)),
    st.permutations(range(5)),
    st.sets(st.sampled_from(bmc.LIMIT_KEYS)),
    st.booleans(),
    volts,
    volts,
)
def test_a_value_further_out_is_never_judged_milder(points, low, high, keys, with_bmc, a, b):
    """The BMC's thresholds and the profile's limits, in any mix, all lower ones below the
    middle and upper ones above it: of two readings on one side of the middle, the one further
    out is judged at least as severe, and a tighter lower_critical never judges milder."""
    lower = [points[i] for i in low]  # 3 BMC thresholds + 2 limits in any interleaving
    upper = [points[5 + i] for i in high]
    middle = (points[4] + points[5]) / 2
    thresholds = tuple(sorted(lower[:3]) + sorted(upper[:3])) if with_bmc else (None,) * 6
    limit = dict(zip(bmc.LIMIT_KEYS, sorted(lower[3:]) + sorted(upper[3:]), strict=True))
    limit = {key: limit[key] for key in keys}
    a, b = sorted((a, b))
    if b <= middle:
        assert severity_of(a, thresholds, limit) >= severity_of(b, thresholds, limit)
    if a >= middle:
        assert severity_of(b, thresholds, limit) >= severity_of(a, thresholds, limit)
    if "lower_critical" in limit:  # raised as far as the order allows
        tighter = dict(limit, lower_critical=limit.get("lower_warning", middle))
        assert severity_of(a, thresholds, tighter) >= severity_of(a, thresholds, limit)


# -- the real ipmitool against the simulated BMC -----------------------------------------------

MISSING = [tool for tool in ("ipmi_sim", "sdrcomp", "ipmitool") if shutil.which(tool) is None]


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def simulated_bmc(tmp_path, request):
    """A running bmc-sim on 127.0.0.1; yields (access, state dir). An indirect parameter
    {NAME: value} sets sensor values before it starts."""
    password_file = tmp_path / "bmc-password"
    password_file.write_text("sim-Passw0rd\n")
    password_file.chmod(0o600)
    state = tmp_path / "state"
    (state / "bmc").mkdir(parents=True)
    for name, value in getattr(request, "param", {}).items():
        (state / "bmc" / name).write_text("%s\n" % value)
    port = free_udp_port()
    process = subprocess.Popen(
        [sys.executable, str(BMC_SIM), "run", "--state-dir", str(state), "--address",
         "127.0.0.1", "--port", str(port), "--user", "admin", "--password-file",
         str(password_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    access = {
        "interface": "lanplus",
        "host": "127.0.0.1",
        "port": port,
        "user": "admin",
        "password_file": str(password_file),
        # ipmi_sim offers no SHA-256 suite and ignores ipmitool's cipher suite query
        "cipher_suite": 3,
    }
    try:
        yield access, state
    finally:
        process.terminate()
        try:
            output, _ = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        assert process.returncode == 0, output


def read_until(access, name, wanted, timeout_s=5.0):
    """The readings once `name` reads within one step of `wanted` (ipmi_sim polls its files)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(bmc.BmcError):  # not listening yet
            readings = bmc.read_sensors(bmc.subprocess_runner(5), access, 5)
            value = by_name(readings)[name]["value"]
            if value is not None and abs(value - wanted) <= P12V_STEP_V / 2 + 1e-9:
                return readings
        if time.monotonic() > deadline:
            raise AssertionError("%s never read %s" % (name, wanted))
        time.sleep(0.2)


@pytest.mark.skipif(
    bool(MISSING),
    reason="needs %s: apt-get install openipmi ipmitool (`make host`)" % ", ".join(MISSING),
)
def test_a_sagging_12v_rail_read_through_ipmitool_is_critical(simulated_bmc):
    access, state = simulated_bmc
    readings = read_until(access, "P_12V", 12.02)  # the SDR's nominal reading
    assert [r["name"] for r in readings] == NAMES
    # What the NVML simulator does under load: rewrite the volts file atomically.
    values = state / "bmc"
    (values / "P_12V.tmp").write_text("11.3\n")
    os.replace(values / "P_12V.tmp", values / "P_12V")
    readings = read_until(access, "P_12V", 11.3)
    findings, summary = judged(readings)
    assert [(f["severity"], f["check"], f["value"]) for f in findings] == [
        ("critical", "bmc_sensor", 11.3)
    ]
    assert findings[0]["message"].startswith("P_12V reads 11.3 Volts, below the hardware ")
    assert summary["P_12V"]["status"] == "critical"
    subprocess.run(
        [sys.executable, str(BMC_SIM), "--state-dir", str(state), "set", "P_12V", "12.0"],
        check=True,
    )
    findings, summary = judged(read_until(access, "P_12V", 11.99))  # 12.0 V on the 0.03 V grid
    assert findings == []
    assert summary["P_12V"] == {"value": 11.99, "unit": "Volts", "status": "ok"}


@pytest.mark.skipif(bool(MISSING), reason="needs %s" % ", ".join(MISSING))
@pytest.mark.parametrize("simulated_bmc", [{"P_12V": "11.3"}], indirect=True)
def test_the_first_answer_already_has_every_reading(simulated_bmc):
    """No reading of the BMC shows a value its sensors never had (ipmi_sim's raw 0 before its
    first poll: P_12V at 8.00 V, no PSU present): a client that reads it at once, as the
    burn-in does, would report a sag."""
    access, state = simulated_bmc
    deadline = time.monotonic() + 5
    while True:
        try:
            readings = by_name(bmc.read_sensors(bmc.subprocess_runner(5), access, 5))
            break
        except bmc.BmcError:  # not listening yet
            assert time.monotonic() < deadline, "the BMC never answered"
            time.sleep(0.05)
    assert readings["P_12V"]["value"] == 11.3
    time.sleep(0.6)  # two of ipmi_sim's polls of its files
    assert by_name(bmc.read_sensors(bmc.subprocess_runner(5), access, 5)) == readings
    # The window before the first poll is too short to hit at will: the commands ipmi_sim ran
    # at its start set the readings (P_12V, sensor 0x10: (11.3 - 8.00) / 0.03 = raw 110).
    commands = (state / "bmc-sim" / "t180-g20.emu").read_text().splitlines()
    assert commands.index("sensor_set_value 0x20 0 0x10 110 0") < commands.index("mc_enable 0x20")


@pytest.mark.skipif(bool(MISSING), reason="needs %s" % ", ".join(MISSING))
def test_a_wrong_password_is_ipmitools_own_message(simulated_bmc, tmp_path):
    access, _state = simulated_bmc
    read_until(access, "P_12V", 12.02)
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-it\n")
    with pytest.raises(bmc.BmcError) as error:
        bmc.read_sensors(bmc.subprocess_runner(5), dict(access, password_file=str(wrong)), 5)
    assert str(error.value) == (
        "ipmitool sensor failed on the BMC at 127.0.0.1 port %d (exit status 1): Error: Unable "
        "to establish IPMI v2 / RMCP+ session" % access["port"]
    )
