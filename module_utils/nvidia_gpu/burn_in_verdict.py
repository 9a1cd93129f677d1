"""The burn-in's verdict: the counters read before and after the load, what changed, what the
samples and the 12 V rail showed, as findings (health.Findings) that name the GPU or the sensor,
the value and the limit, and the likely cause. Any critical finding fails the burn-in.

Standard library and the nvidia_gpu package only, Python 3.8+.
"""

from __future__ import annotations

import collections

from . import xid
from .facts_read import known
from .health import Findings
from .identity import gpu_label

PSU_CAUSE = "the 12 V supply sags under load: PSU capacity or a poor high-current connection"
UNREAD_RAIL_CAUSE = (
    "most likely the 12 V supply sagging under the lock-step load (PSU capacity or a poor "
    "high-current connection), else the GPU's seating; the 12 V rail was not read (give the "
    "burn-in BMC access to tell)"
)
HELD_RAIL_CAUSE = (
    "the 12 V rail held (lowest %s), so rather the GPU's seating, its power connector or the GPU "
    "itself"
)
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def counters(facts, lines, problem):
    """What is compared before and after: per GPU the error counters and the values the checks
    need, and the Xid events of this boot (lines from xid.read_kernel_log)."""
    gpus = []
    for gpu in facts["gpus"]:
        entry = {k: gpu.get(k) for k in ("index", "uuid", "name", "pci_bus_id", "lost")}
        if gpu["lost"]:
            entry["error"] = gpu.get("error")
            gpus.append(entry)
            continue
        links = gpu["nvlinks"]
        entry.update(
            ecc=gpu["ecc"],
            retired_pages=gpu.get("retired_pages"),
            remapped_rows=gpu.get("remapped_rows"),
            nvlink_errors=(
                {str(link["link"]): link["errors"] for link in links}
                if isinstance(links, list)
                else links
            ),
            pcie_replays=gpu["pcie"]["replay_counter"],
            power_limit_w=gpu["power"]["limit_w"],
            temperature_c=gpu["temperature"]["gpu_c"],
            slowdown_c=gpu["temperature"]["slowdown_c"],
            clock_event_reasons=gpu["clock_event_reasons"],
            unreadable=gpu.get("unreadable") or [],
        )
        gpus.append(entry)
    return {
        "driver_version": facts.get("driver_version"),
        "count": facts["count"],
        "lost_count": facts["lost_count"],
        "gpus": gpus,
        "xid_events": xid.parse(lines),
        "kernel_log_problem": problem,
    }


def label(gpu):
    return gpu_label(gpu["index"], gpu.get("uuid"))


def _bus(gpu):
    """The '0000:1a:00' form Xid lines name a GPU by; None when unknown."""
    bus_id = gpu.get("pci_bus_id") if gpu else None
    return bus_id[:10] if bus_id and known(bus_id) and bus_id != "unknown" else None


def when(where):
    cycle = " cycle %d" % where["cycle"] if where.get("cycle") else ""
    return "during %s%s at %.1f s" % (where["phase"], cycle, where["elapsed_s"])


def match_gpu(gpu, after):
    """The after-entry of a GPU: by UUID, else by index."""
    for other in after["gpus"]:
        if gpu.get("uuid") and other.get("uuid") == gpu["uuid"]:
            return other
    for other in after["gpus"]:
        if other["index"] == gpu["index"]:
            return other
    return None


class Judge:
    """Everything the run recorded, and the findings made from it."""

    def __init__(self, config, gpus, before, after, run):
        self.limits = config["limits"]
        self.config = config
        self.gpus = gpus  # the GPUs under test: before-entries
        self.before = before
        self.after = after  # None when it could not be read
        self.run = run  # {samples (Sampler), rail (record or None), worker_exits, interrupted}
        self.findings = Findings()
        low = self.limits["min_rail_v"]
        rail = run["rail"] or {}
        self.low_rails = [
            (sensor, reading)
            for sensor, reading in sorted((rail.get("lowest") or {}).items())
            if reading["value_v"] < low
        ]
        self.rail_read = bool(rail.get("lowest"))
        self.xid = self.new_xid()  # check_lost takes the Xid 79 of a lost GPU out

    def power_cause(self):
        """Why a GPU fell off the bus (or logged Xid 79) under this run's rail readings."""
        if self.low_rails:
            sensor, reading = self.low_rails[0]
            return "%s (%s read %.2f V %s, limit %.2f V)" % (
                PSU_CAUSE,
                sensor,
                reading["value_v"],
                when(reading),
                self.limits["min_rail_v"],
            )
        if not self.rail_read:
            return UNREAD_RAIL_CAUSE
        lowest = min(self.run["rail"]["lowest"].items(), key=lambda item: item[1]["value_v"])
        return HELD_RAIL_CAUSE % ("%s %.2f V" % (lowest[0], lowest[1]["value_v"]))

    def add(self, severity, check, message, gpu=None, value=None, expected=None):
        self.findings.add(severity, check, message, gpu=gpu, value=value, expected=expected)

    def new_xid(self):
        """{(pci bus, code): [events]} of the Xid lines logged during the run."""
        if self.after is None:
            return {}
        seen = collections.Counter(event["line"] for event in self.before["xid_events"])
        new = collections.OrderedDict()
        for event in self.after["xid_events"]:
            if seen[event["line"]]:
                seen[event["line"]] -= 1
                continue
            new.setdefault((event["pci_bus_id"], event["xid"]), []).append(event)
        return new

    def check_lost(self):
        during = {event["gpu"]: event for event in self.run["samples"].lost}
        for gpu in self.gpus:
            event = during.get(gpu["index"])
            later = match_gpu(gpu, self.after) if self.after else None
            if event is None and not (self.after and (later is None or later["lost"])):
                continue
            moment = when(event) if event else "by the end of the run"
            logged = self.xid.pop((_bus(gpu), 79), None)
            self.add(
                "critical",
                "gpu_lost",
                "%s fell off the bus %s%s: %s."
                % (label(gpu), moment, " (Xid 79 logged)" if logged else "", self.power_cause()),
                gpu=gpu,
                value="lost",
                expected="present",
            )

    def check_xid(self):
        by_bus = {_bus(g): g for g in self.gpus}
        for (bus, code), events in self.xid.items():
            meaning = xid.describe(code)
            gpu = by_bus.get(bus)
            cause = self.power_cause() if code == 79 else meaning["likely_cause"]
            self.add(
                meaning["severity"],
                "xid",
                "%s logged Xid %d (%s) %d time(s) during the burn-in: %s."
                % (
                    label(gpu) if gpu else "the GPU at PCI %s" % bus,
                    code,
                    meaning["meaning"],
                    len(events),
                    cause,
                ),
                gpu=gpu,
                value=code,
                expected="no Xid",
            )

    def check_rail(self):
        if self.config["bmc"] is None:
            return
        rail = self.run["rail"]
        for sensor, reading in self.low_rails:
            self.add(
                "critical",
                "rail_12v",
                "%s read %.2f V %s (limit %.2f V): %s."
                % (
                    sensor,
                    reading["value_v"],
                    when(reading),
                    self.limits["min_rail_v"],
                    PSU_CAUSE,
                ),
                value=reading["value_v"],
                expected=">= %s" % self.limits["min_rail_v"],
            )
        errors = rail["errors"]
        if rail["error_count"]:
            self.add(
                "warning",
                "bmc",
                "the BMC could not be read %d of %d time(s), first %s: %s."
                % (
                    rail["error_count"],
                    rail["error_count"] + rail["readings"],
                    when(errors[0]),
                    errors[0]["error"],
                ),
                value=rail["error_count"],
                expected=0,
            )
        for sensor in rail["sensors"]:
            if sensor not in rail["lowest"] and rail["readings"]:
                self.add(
                    "warning",
                    "rail_12v",
                    "the BMC gave no reading for the 12 V sensor %s: check bmc.rails_12v "
                    "against `ipmitool sensor`." % sensor,
                    value=None,
                    expected="a reading",
                )

    def check_run(self):
        """How the run itself went: interrupted, counters after unreadable, no kernel log."""
        interrupted = self.run["interrupted"]
        if interrupted:
            self.add(
                "critical",
                "interrupted",
                "the burn-in was interrupted (%s) %s: it did not finish, so it proves nothing."
                % (interrupted["signal"], when(interrupted)),
                value=interrupted["signal"],
                expected="finished",
            )
        if self.after is None:
            self.add(
                "warning",
                "counters_after",
                "the counters could not be read after the load: %s." % self.run["after_error"],
                value=None,
                expected="readable",
            )
        problem = self.before["kernel_log_problem"] or (self.after or {}).get("kernel_log_problem")
        if problem:
            self.add("info", "kernel_log", "Xid events were not checked: %s." % problem)


def evaluate(config, gpus, before, after, run, checks=()):
    """Findings (worst first) and the verdict {result: pass|fail, reasons}.

    gpus: the before-entries of the GPUs under test; run: {samples (a Sampler), rail (the
    RailMonitor's record or None), worker_exits, interrupted, after_error}; checks: more
    functions of a Judge (burn_in_checks.CHECKS).
    """
    judge = Judge(config, gpus, before, after, run)
    for check in (judge.check_run, judge.check_lost, judge.check_xid, judge.check_rail):
        check()
    for check in checks:
        check(judge)
    findings = sorted(
        judge.findings.items,
        key=lambda f: (SEVERITY_ORDER[f["severity"]], -1 if f["gpu"] is None else f["gpu"]),
    )
    reasons = [f["message"] for f in findings if f["severity"] == "critical"]
    return findings, {"result": "fail" if reasons else "pass", "reasons": reasons}
