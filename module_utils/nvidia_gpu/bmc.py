"""The BMC's sensors through ipmitool: reading every sensor, and judging the readings against the
hardware profile's limits or, without them, the BMC's own thresholds. Access to the BMC (and
BmcError) is bmc_access.py's, exported here too.

ipmitool runs through a `run(argv) -> (rc, stdout, stderr)` callable: an Ansible module passes
its run_command, a command-line tool subprocess_runner(). Standard library only, Python 3.8+.
"""

from __future__ import annotations

import math

from .bmc_access import (
    BmcError,
    ipmitool_argv,
    is_number,
    subprocess_runner,
    where,
)

__all__ = [
    "BmcError",
    "check_limits",
    "check_settings",
    "evaluate",
    "ipmitool_argv",
    "parse_sensors",
    "read_sensors",
    "subprocess_runner",
]


# `ipmitool sensor`: Name | reading | unit | status | lnr | lcr | lnc | unc | ucr | unr
THRESHOLDS = ("lnr", "lcr", "lnc", "unc", "ucr", "unr")
SENSOR_FIELDS = 4 + len(THRESHOLDS)
NO_VALUE = "na"
DISCRETE = "discrete"
# ipmitool's status of a threshold sensor -> severity
STATUS_SEVERITY = {"nc": "warning", "cr": "critical", "nr": "critical"}
STATUS_WORDS = {"nc": "non-critical", "cr": "critical", "nr": "non-recoverable"}

LIMIT_KEYS = ("lower_critical", "lower_warning", "upper_warning", "upper_critical")
CHECK = "bmc_sensor"
RANK = {"ok": 0, "warning": 1, "critical": 2}
RAIL_12V_CAUSE = (
    "GPUs fall off the bus (Xid 79) when the 12 V rail sags under load; check PSU capacity and "
    "every high-current connection (lugs, plugs, bus bars)"
)
# (ipmitool's unit in lower case, side) -> what usually causes it
CAUSES = {
    ("volts", "lower"): "check the power supplies and the board's voltage regulators",
    ("volts", "upper"): "check the power supplies and the board's voltage regulators",
    ("degrees c", "upper"): "check airflow, fans and heatsinks",
    ("rpm", "lower"): "the fan is failing, blocked or unplugged",
    ("watts", "upper"): "the power supply runs at or over its rating",
}


def _float(text, line):
    if text == NO_VALUE:
        return None
    try:
        value = float(text)
    except ValueError:
        raise BmcError("ipmitool printed %r where a number belongs: %r" % (text, line)) from None
    if not math.isfinite(value):
        raise BmcError("ipmitool printed %r where a number belongs: %r" % (text, line))
    return value


def parse_sensors(text):
    """[{name, value, unit, status, thresholds: {lnr..unr}}] from `ipmitool sensor` output. value
    and thresholds are floats, or None where ipmitool prints na; a discrete sensor (unit
    'discrete') has value None and its state bits as status (e.g. 0x0100)."""
    readings = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split("|")]
        if len(fields) != SENSOR_FIELDS or not fields[0]:
            raise BmcError(
                "cannot parse ipmitool's sensor line %r: expected %d fields separated "
                "by '|'" % (line, SENSOR_FIELDS)
            )
        name, reading, unit, status = fields[:4]
        discrete = unit == DISCRETE
        readings.append(
            {
                "name": name,
                "value": None if discrete else _float(reading, line),
                "unit": unit,
                "status": status,
                "thresholds": {
                    key: None if discrete else _float(text, line)
                    for key, text in zip(THRESHOLDS, fields[4:])
                },
            }
        )
    if not readings:
        raise BmcError("ipmitool printed no sensors")
    return readings


def read_sensors(run, access, timeout_s):
    """Every sensor of the BMC (parse_sensors' list); BmcError with ipmitool's own message."""
    argv = [*ipmitool_argv(access), "sensor"]
    if not is_number(timeout_s) or timeout_s <= 0:
        raise BmcError("BMC timeout %r is not valid; allowed: seconds above 0" % (timeout_s,))
    try:
        rc, out, err = run(argv)
    except OSError as error:
        raise BmcError(
            "ipmitool cannot be run (%s): install the ipmitool package" % error
        ) from None
    except BmcError as error:
        raise BmcError("%s: no answer from %s" % (error, where(access))) from None
    if rc != 0:
        message = " ".join((err or out or "").split())[-600:] or "no message"
        hint = ""
        if "RMCP+" in message and access.get("cipher_suite") is None:
            hint = " (check user and password; a BMC without cipher suite 17 needs cipher_suite 3)"
        raise BmcError(
            "ipmitool sensor failed on %s (exit status %s): %s%s"
            % (where(access), rc, message, hint)
        )
    return parse_sensors(out)


def check_limits(limits):
    """Refuse limits that cannot be meant: {NAME: {lower_critical, lower_warning, upper_warning,
    upper_critical}} (any subset), numbers in that order, so warnings lie inside critical."""
    if not isinstance(limits, dict):
        raise BmcError(
            "BMC sensor limits %r are not valid; allowed: a mapping of sensor name to "
            "{%s}" % (limits, ", ".join(LIMIT_KEYS))
        )
    for name, limit in limits.items():
        if not isinstance(name, str) or not name.strip():
            raise BmcError(
                "BMC sensor limits name %r is not valid; allowed: a sensor name as "
                "`ipmitool sensor` prints it" % (name,)
            )
        if not isinstance(limit, dict):
            raise BmcError(
                "BMC sensor limits for %s %r are not valid; allowed: a mapping with "
                "keys %s" % (name, limit, ", ".join(LIMIT_KEYS))
            )
        unknown = sorted(str(key) for key in limit if key not in LIMIT_KEYS)
        if unknown:
            raise BmcError(
                "BMC sensor limits for %s have unknown key(s) %s; allowed: %s"
                % (name, ", ".join(unknown), ", ".join(LIMIT_KEYS))
            )
        previous = None
        for key in LIMIT_KEYS:
            if key not in limit:
                continue
            value = limit[key]
            if not is_number(value):
                raise BmcError(
                    "BMC sensor limit %s.%s %r is not valid; allowed: a number" % (name, key, value)
                )
            if previous is not None and value < limit[previous]:
                raise BmcError(
                    "BMC sensor limit %s.%s %s is below %s.%s %s; allowed: %s in that order "
                    "(each warning inside its critical limit)"
                    % (name, key, value, name, previous, limit[previous], " <= ".join(LIMIT_KEYS))
                )
            previous = key


def _show(value, unit):
    return ("%g %s" % (value, unit)).strip()


def _bounds(reading, limit):
    """[(severity, side, bound, what)] to test the value against, the most severe first on each
    side: the profile's limits where it sets them, else the BMC's thresholds."""
    bmc = reading["thresholds"]
    bounds = []
    for side, critical, warning, nr, cr, nc in (
        ("lower", "lower_critical", "lower_warning", "lnr", "lcr", "lnc"),
        ("upper", "upper_critical", "upper_warning", "unr", "ucr", "unc"),
    ):
        if critical in limit:
            bounds.append(
                ("critical", side, limit[critical], "the hardware profile's %s limit" % critical)
            )
        else:
            bounds.append(
                ("critical", side, bmc[nr], "the BMC's %s non-recoverable threshold" % side)
            )
            bounds.append(("critical", side, bmc[cr], "the BMC's %s critical threshold" % side))
        if warning in limit:
            bounds.append(
                ("warning", side, limit[warning], "the hardware profile's %s limit" % warning)
            )
        else:
            bounds.append(("warning", side, bmc[nc], "the BMC's %s non-critical threshold" % side))
    return [bound for bound in bounds if bound[2] is not None]


def _judge(reading, limit):
    """(severity, side, text, expected) of the worst limit the reading breaks, or None."""
    value, unit = reading["value"], reading["unit"]
    broken = [
        bound
        for bound in _bounds(reading, limit)
        if (value < bound[2] if bound[1] == "lower" else value > bound[2])
    ]
    if broken:  # the worst; of equals, the first: the furthest out
        severity, side, bound, what = max(broken, key=lambda b: RANK[b[0]])
        text = "%s %s of %s" % ("below" if side == "lower" else "above", what, _show(bound, unit))
        return severity, side, text, "%s %g" % (">=" if side == "lower" else "<=", bound)
    status = reading["status"]
    if limit or status not in STATUS_SEVERITY:
        return None  # the profile's limits replace the BMC's judgement
    # The BMC flags it although no threshold is crossed: a reading equal to one, or thresholds
    # it does not report. The side is the one whose thresholds the reading has reached.
    lower = [t for t in (reading["thresholds"][k] for k in ("lnr", "lcr", "lnc")) if t is not None]
    upper = [t for t in (reading["thresholds"][k] for k in ("unc", "ucr", "unr")) if t is not None]
    side = None
    if lower and value <= max(lower):
        side = "lower"
    elif upper and value >= min(upper):
        side = "upper"
    text = "which the BMC reports as %s (ipmitool status %s)" % (STATUS_WORDS[status], status)
    return STATUS_SEVERITY[status], side, text, "BMC status ok"


def _cause(reading, side, rails_12v):
    if side == "lower" and reading["name"] in rails_12v:
        return RAIL_12V_CAUSE
    return CAUSES.get((reading["unit"].lower(), side))


def _unknown_names(kind, names, readings, findings):
    have = [r["name"] for r in readings]
    for name in names:
        if name not in have:
            findings.add(
                "warning",
                CHECK,
                "%s the sensor %s, which this BMC does not have, so it is not checked (a misspelt "
                "name?); the BMC's sensors: %s." % (kind, name, ", ".join(have)),
                value=name,
                expected="one of the BMC's sensors",
            )


def evaluate(readings, limits, rails_12v, findings):
    """Add a finding for each sensor outside its limits (the profile's, else the BMC's) and for
    limits or 12 V rails naming sensors the BMC lacks. Returns {NAME: {value, unit, status}},
    status ok, warning or critical as judged, or na (no reading, or a discrete sensor)."""
    check_limits(limits)
    if not isinstance(rails_12v, (list, tuple)) or not all(isinstance(r, str) for r in rails_12v):
        raise BmcError(
            "BMC 12 V rails %r are not valid; allowed: a list of sensor names" % (rails_12v,)
        )
    _unknown_names("The hardware profile's BMC sensor limits name", limits, readings, findings)
    _unknown_names("The hardware profile's 12 V rails name", rails_12v, readings, findings)
    summary = {}
    for reading in readings:
        name, value, unit = reading["name"], reading["value"], reading["unit"]
        limit = limits.get(name, {})
        status = "na"
        if value is None:
            if name in limits or name in rails_12v:
                kind = "is a discrete sensor" if unit == DISCRETE else "gives no reading"
                findings.add(
                    "warning",
                    CHECK,
                    "%s %s (ipmitool status %s), so its limits cannot be checked."
                    % (name, kind, reading["status"]),
                    value=None,
                    expected="a reading",
                )
        else:
            status = "ok"
            judged = _judge(reading, limit)
            if judged is not None:
                status, side, text, expected = judged
                cause = _cause(reading, side, rails_12v)
                findings.add(
                    status,
                    CHECK,
                    "%s reads %s, %s%s."
                    % (name, _show(value, unit), text, ": " + cause if cause else ""),
                    value=value,
                    expected=expected,
                )
        earlier = summary.get(name)
        if earlier is None or RANK.get(status, -1) > RANK.get(earlier["status"], -1):
            summary[name] = {"value": value, "unit": unit, "status": status}
    return summary


SETTINGS_KEYS = ("access", "limits", "rails_12v", "timeout_s")
TIMEOUT_RANGE_S = (1, 120)
DEFAULT_TIMEOUT_S = 10


def check_settings(value):
    """A config file's `bmc` section (gpu-health, gpu-burn-in) checked, defaults filled in:
    {access, limits, rails_12v, timeout_s}; BmcError names the key that is wrong."""
    if not isinstance(value, dict) or "access" not in value:
        raise BmcError(
            "bmc %r is not valid; allowed: null or a mapping with keys %s"
            % (value, ", ".join(SETTINGS_KEYS))
        )
    unknown = sorted(str(key) for key in value if key not in SETTINGS_KEYS)
    if unknown:
        raise BmcError(
            "bmc has unknown key(s) %s; allowed: %s"
            % (", ".join(unknown), ", ".join(SETTINGS_KEYS))
        )
    ipmitool_argv(value["access"])
    limits = value.get("limits") or {}
    check_limits(limits)
    rails = value.get("rails_12v") or []
    if not isinstance(rails, list) or not all(isinstance(r, str) and r.strip() for r in rails):
        raise BmcError("bmc.rails_12v %r is not valid; allowed: a list of sensor names" % (rails,))
    timeout_s = value.get("timeout_s")
    timeout_s = DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
    lowest, highest = TIMEOUT_RANGE_S
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, int)
        or not (lowest <= timeout_s <= highest)
    ):
        raise BmcError(
            "bmc.timeout_s %r is not valid; allowed: whole seconds from %d to %d"
            % (timeout_s, lowest, highest)
        )
    return {"access": value["access"], "limits": limits, "rails_12v": rails, "timeout_s": timeout_s}
