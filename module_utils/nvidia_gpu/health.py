"""Health of GPUs from their facts: the expectations, every check run once, findings that say what
is wrong and what usually causes it, and which findings fail a run. The checks themselves live in
health_gpus.py (the GPUs) and health_links.py (NVLink and PCIe)."""

from __future__ import annotations

from . import clock_events
from .health_gpus import (
    check_clock_events,
    check_inventory,
    check_kernel_log,
    check_memory,
    check_persistence,
    check_temperature,
)
from .health_links import check_nvlink, check_pcie
from .nvml import GpuError

SEVERITIES = ("info", "warning", "critical")
FAIL_ON = ("critical", "warning", "never")
DEFAULT_FORBIDDEN_REASONS = (
    "hw_slowdown",
    "hw_thermal_slowdown",
    "hw_power_brake_slowdown",
    "sw_thermal_slowdown",
)

DEFAULTS = {
    "expected_count": None,
    "expected_model": None,
    "nvlink_links_per_gpu": None,
    "nvlink_pair_links": None,
    "nvlink_peer_map": None,
    "nvlink_error_threshold": 100,
    "min_pcie_generation": None,
    "min_pcie_width": None,
    "pcie_replay_threshold": 100,
    "max_temperature_c": None,
    "max_temperature_spread_c": 15,
    "max_uncorrected_ecc": 0,
    "max_retired_pages": 60,
    "forbidden_clock_event_reasons": list(DEFAULT_FORBIDDEN_REASONS),
    "require_persistence": True,
    "kernel_log": "journal",
}


class Findings:
    def __init__(self):
        self.items = []

    def add(self, severity, check, message, gpu=None, value=None, expected=None):
        self.items.append(
            {
                "severity": severity,
                "check": check,
                "gpu": None if gpu is None else gpu["index"],
                "uuid": None if gpu is None else gpu.get("uuid"),
                "value": value,
                "expected": expected,
                "message": message,
            }
        )


def normalise(options):
    """Expectations with defaults filled in; invalid values raise GpuError naming them."""
    expected = dict(DEFAULTS)
    expected.update({k: v for k, v in options.items() if v is not None})
    unknown = sorted(set(expected["forbidden_clock_event_reasons"]) - set(clock_events.BITS))
    if unknown:
        raise GpuError(
            "forbidden_clock_event_reasons has unknown reason(s) %s; allowed: %s."
            % (", ".join(unknown), ", ".join(sorted(clock_events.BITS)))
        )
    if expected["nvlink_pair_links"] is not None and expected["nvlink_peer_map"] is not None:
        raise GpuError("nvlink_pair_links and nvlink_peer_map are mutually exclusive.")
    expected["nvlink_peer_map"] = _peer_map(expected["nvlink_peer_map"])
    return expected


def _peer_map(raw):
    """{gpu: {peer: links}} with int keys, from YAML that may use strings."""
    if raw is None:
        return None
    try:
        return {
            int(gpu): {int(peer): int(links) for peer, links in peers.items()}
            for gpu, peers in raw.items()
        }
    except (AttributeError, TypeError, ValueError) as error:
        raise GpuError(
            "nvlink_peer_map %r is not valid; expected a mapping like {0: {1: 2, 2: 2}} "
            "(GPU index -> peer index -> NVLink links)." % (raw,)
        ) from error


CHECKS = (
    check_inventory,
    check_nvlink,
    check_pcie,
    check_temperature,
    check_memory,
    check_clock_events,
    check_persistence,
)


def evaluate(facts, options):
    """Run every check. Returns {findings, healthy, gpus, xid_events} sorted worst first."""
    expected = normalise(options)
    findings = Findings()
    for check in CHECKS:
        check(facts, expected, findings)
    events = check_kernel_log(facts, expected, findings)
    order = {severity: rank for rank, severity in enumerate(reversed(SEVERITIES))}
    items = sorted(
        findings.items,
        key=lambda f: (order[f["severity"]], -1 if f["gpu"] is None else f["gpu"], f["check"]),
    )
    summary = []
    for gpu in facts["gpus"]:
        mine = [f["severity"] for f in items if f["gpu"] == gpu["index"]]
        status = next((s for s in ("critical", "warning") if s in mine), "ok")
        summary.append(
            {
                "index": gpu["index"],
                "uuid": gpu.get("uuid", "unknown"),
                "name": gpu.get("name", "unknown"),
                "status": status,
            }
        )
    healthy = not any(f["severity"] in ("critical", "warning") for f in items)
    return {"findings": items, "healthy": healthy, "gpus": summary, "xid_events": events}


def blocking(findings, fail_on):
    """The findings at least as severe as fail_on (critical, warning; never: none), in order."""
    if fail_on == "never":
        return []
    floor = SEVERITIES.index(fail_on)
    return [f for f in findings if SEVERITIES.index(f["severity"]) >= floor]
