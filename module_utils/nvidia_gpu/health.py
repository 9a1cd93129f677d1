"""Health of GPUs from their facts: the expectations, every check run once, findings that say what
is wrong and what usually causes it, and which findings fail a run. The options and their ranges
live in health_options.py, the checks in health_gpus.py (the GPUs) and health_links.py (NVLink and
PCIe)."""

from __future__ import annotations

from .facts_read import known
from .health_gpus import (
    check_clock_events,
    check_inventory,
    check_kernel_log,
    check_memory,
    check_persistence,
    check_temperature,
    check_unreadable,
)
from .health_links import check_nvlink, check_pcie
from .health_options import DEFAULTS, check_against, normalise

__all__ = [
    "DEFAULTS",
    "FAIL_ON",
    "SEVERITIES",
    "Findings",
    "blocking",
    "evaluate",
    "normalise",
    "verdict",
    "worst",
]

SEVERITIES = ("info", "warning", "critical")
FAIL_ON = ("critical", "warning", "never")


class Findings:
    def __init__(self):
        self.items = []

    def add(self, severity, check, message, gpu=None, value=None, expected=None):
        uuid = None if gpu is None else gpu.get("uuid")
        self.items.append(
            {
                "severity": severity,
                "check": check,
                "gpu": None if gpu is None else gpu["index"],
                "uuid": uuid if known(uuid) else None,
                "value": value,
                "expected": expected,
                "message": message,
            }
        )


# check_inventory runs first, apart: it also takes the slots of the GPU inventory.
CHECKS = (
    check_unreadable,
    check_nvlink,
    check_pcie,
    check_temperature,
    check_memory,
    check_clock_events,
    check_persistence,
)


def evaluate(facts, options, slots=None):
    """Run every check. Returns {findings, healthy, gpus, xid_events} sorted worst first.
    Options that cannot be right raise GpuError before anything is evaluated. slots: the
    recorded slots no GPU answers for (health_status.gpu_inventory_status), or None."""
    expected = normalise(options)
    check_against(expected, facts)
    findings = Findings()
    check_inventory(facts, expected, findings, slots)
    for check in CHECKS:
        check(facts, expected, findings)
    events = check_kernel_log(facts, expected, findings)
    return verdict(facts, findings.items, events)


def verdict(facts, items, events):
    """{findings (worst first), healthy, gpus (status of each), xid_events} from findings that
    may come from more than the GPU checks (the BMC's, the settings')."""
    order = {severity: rank for rank, severity in enumerate(reversed(SEVERITIES))}
    items = sorted(
        items,
        key=lambda f: (order[f["severity"]], -1 if f["gpu"] is None else f["gpu"], f["check"]),
    )
    summary = []
    for gpu in facts["gpus"]:
        mine = [f["severity"] for f in items if f["gpu"] == gpu["index"]]
        summary.append(
            {
                "index": gpu["index"],
                "uuid": gpu.get("uuid", "unknown"),
                "name": gpu.get("name", "unknown"),
                "status": worst(mine),
            }
        )
    healthy = not any(f["severity"] in ("critical", "warning") for f in items)
    return {"findings": items, "healthy": healthy, "gpus": summary, "xid_events": events}


def worst(severities):
    """critical, warning or ok: the worst of some findings' severities (info counts as ok)."""
    return next((s for s in ("critical", "warning") if s in severities), "ok")


def blocking(findings, fail_on):
    """The findings at least as severe as fail_on (critical, warning; never: none), in order."""
    if fail_on == "never":
        return []
    floor = SEVERITIES.index(fail_on)
    return [f for f in findings if SEVERITIES.index(f["severity"]) >= floor]
