"""Health checks over GPU facts: findings that say what is wrong and what usually causes it."""

from __future__ import annotations

import fnmatch
import statistics

from . import clock_events, xid
from .nvml import UNSUPPORTED, GpuError

SEVERITIES = ("info", "warning", "critical")
FAIL_ON = ("critical", "warning", "never")
DEFAULT_FORBIDDEN_REASONS = (
    "hw_slowdown",
    "hw_thermal_slowdown",
    "hw_power_brake_slowdown",
    "sw_thermal_slowdown",
)
# Reasons that point at power delivery or hardware cooling: critical, the rest are warnings.
HARDWARE_REASONS = ("hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown")

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


def _label(gpu):
    if gpu.get("name"):
        return "GPU %d (%s)" % (gpu["index"], gpu["uuid"])
    return "GPU %d" % gpu["index"]


def check_inventory(facts, expected, findings):
    count = facts["count"]
    want = expected["expected_count"]
    if want is not None and count < want:
        findings.add(
            "critical",
            "gpu_count",
            "Only %d of %d GPUs are visible to the driver: a GPU is not detected (seating in its "
            "socket, power to the GPU board, or a dead GPU; look for it with lspci)."
            % (count, want),
            value=count,
            expected=want,
        )
    elif want is not None and count > want:
        findings.add(
            "warning",
            "gpu_count",
            "%d GPUs found where the inventory expects %d: update the host's hardware profile."
            % (count, want),
            value=count,
            expected=want,
        )
    for gpu in facts["gpus"]:
        if gpu["lost"]:
            findings.add(
                "critical",
                "gpu_lost",
                "GPU %d does not answer: %s." % (gpu["index"], gpu["error"]),
                gpu=gpu,
                value="lost",
                expected="present",
            )
            continue
        model = expected["expected_model"]
        if model and not fnmatch.fnmatchcase(gpu["name"].lower(), model.lower()):
            findings.add(
                "warning",
                "gpu_model",
                "%s is a %s, the inventory expects %s (a swapped GPU?)."
                % (_label(gpu), gpu["name"], model),
                gpu=gpu,
                value=gpu["name"],
                expected=model,
            )


def _expected_peers(facts, expected):
    indices = [g["index"] for g in facts["gpus"]]
    if expected["nvlink_peer_map"] is not None:
        return expected["nvlink_peer_map"]
    pair = expected["nvlink_pair_links"]
    if pair is None:
        return None
    return {a: {b: pair for b in indices if b != a} for a in indices}


def check_nvlink(facts, expected, findings):
    per_gpu = expected["nvlink_links_per_gpu"]
    threshold = expected["nvlink_error_threshold"]
    by_bus = {g["pci_bus_id"]: g["index"] for g in facts["gpus"] if not g["lost"]}
    some_lost = any(g["lost"] for g in facts["gpus"])
    for gpu in facts["gpus"]:
        if gpu["lost"]:
            continue
        active = [link for link in gpu["nvlinks"] if link["active"]]
        down = [link for link in gpu["nvlinks"] if not link["active"]]
        # Links to a GPU that fell off the bus are down because of it: that GPU is the finding.
        if some_lost:
            down = [link for link in down if link["remote_pci_bus_id"] in by_bus]
        wanted = (
            None if per_gpu is None else per_gpu - (len(gpu["nvlinks"]) - len(active) - len(down))
        )
        if wanted is not None and len(active) < wanted:
            peers = ", ".join(
                "link %d%s"
                % (
                    link["link"],
                    " to GPU %d" % by_bus[link["remote_pci_bus_id"]]
                    if link["remote_pci_bus_id"] in by_bus
                    else "",
                )
                for link in down
            )
            findings.add(
                "critical",
                "nvlink_active",
                "%s has %d of %d NVLink links up (down: %s): reseat the GPU and check its SXM "
                "mounting screws; NCCL will hang or fall back to PCIe (Xid 74)."
                % (_label(gpu), len(active), wanted, peers or "missing links"),
                gpu=gpu,
                value=len(active),
                expected=wanted,
            )
        for link in gpu["nvlinks"]:
            errors = {
                name: count
                for name, count in link["errors"].items()
                if count != UNSUPPORTED and count > threshold
            }
            if errors:
                findings.add(
                    "warning",
                    "nvlink_errors",
                    "%s NVLink link %d counts errors %s (threshold %d): a marginal connection, "
                    "usually SXM seating or screw torque."
                    % (
                        _label(gpu),
                        link["link"],
                        ", ".join("%s=%d" % item for item in sorted(errors.items())),
                        threshold,
                    ),
                    gpu=gpu,
                    value=errors,
                    expected="<= %d" % threshold,
                )
    _check_peer_map(facts, expected, findings)


def _check_peer_map(facts, expected, findings):
    peers = _expected_peers(facts, expected)
    if peers is None:
        return
    matrix = facts["link_matrix"]
    answering = {g["index"]: g for g in facts["gpus"] if not g["lost"]}
    for a, row in sorted(peers.items()):
        for b, links in sorted(row.items()):
            if a not in answering or b not in answering:
                continue  # a missing or lost GPU is reported by the inventory checks
            actual = matrix[str(a)][str(b)]
            if actual != "NV%d" % links:
                findings.add(
                    "critical",
                    "nvlink_topology",
                    "GPU %d reaches GPU %d over %s, the board should give NV%d: an NVLink between "
                    "them is down (seating, SXM screws) or the hardware profile is wrong."
                    % (a, b, actual, links),
                    gpu=answering[a],
                    value=actual,
                    expected="NV%d" % links,
                )


def check_pcie(facts, expected, findings):
    min_gen, min_width = expected["min_pcie_generation"], expected["min_pcie_width"]
    for gpu in facts["gpus"]:
        if gpu["lost"]:
            continue
        pcie = gpu["pcie"]
        idle = "gpu_idle" in (gpu["clock_event_reasons"] or [])
        if (
            min_gen is not None
            and pcie["generation"] != UNSUPPORTED
            and pcie["generation"] < min_gen
        ):
            findings.add(
                "info" if idle else "warning",
                "pcie_generation",
                "%s PCIe link runs at Gen%d, expected Gen%d or better%s."
                % (
                    _label(gpu),
                    pcie["generation"],
                    min_gen,
                    " (the GPU is idle; GPUs lower the link speed when idle, check again "
                    "under load)"
                    if idle
                    else ": check the slot, riser and BIOS link speed setting",
                ),
                gpu=gpu,
                value=pcie["generation"],
                expected=min_gen,
            )
        if min_width is not None and pcie["width"] != UNSUPPORTED and pcie["width"] < min_width:
            findings.add(
                "warning",
                "pcie_width",
                "%s PCIe link is x%d, expected x%d: the card or riser is badly seated, or the slot "
                "is wired narrower." % (_label(gpu), pcie["width"], min_width),
                gpu=gpu,
                value=pcie["width"],
                expected=min_width,
            )
        replays = pcie["replay_counter"]
        if replays != UNSUPPORTED and replays > expected["pcie_replay_threshold"]:
            findings.add(
                "warning",
                "pcie_replays",
                "%s has %d PCIe replays (threshold %d): signal problems on the link (seating, "
                "riser, slot)." % (_label(gpu), replays, expected["pcie_replay_threshold"]),
                gpu=gpu,
                value=replays,
                expected="<= %d" % expected["pcie_replay_threshold"],
            )


def check_temperature(facts, expected, findings):
    present = [
        g for g in facts["gpus"] if not g["lost"] and g["temperature"]["gpu_c"] != UNSUPPORTED
    ]
    for gpu in present:
        temp = gpu["temperature"]
        slowdown = temp["slowdown_c"] if temp["slowdown_c"] != UNSUPPORTED else None
        limit = expected["max_temperature_c"]
        if limit is None and slowdown is not None:
            limit = slowdown - 5
        if limit is not None and temp["gpu_c"] > limit:
            at_slowdown = slowdown is not None and temp["gpu_c"] >= slowdown
            findings.add(
                "critical" if at_slowdown else "warning",
                "temperature",
                "%s is at %d C (limit %d C%s): check airflow, fans and the heatsink mounting."
                % (
                    _label(gpu),
                    temp["gpu_c"],
                    limit,
                    ", slowdown at %d C" % slowdown if slowdown is not None else "",
                ),
                gpu=gpu,
                value=temp["gpu_c"],
                expected="<= %d" % limit,
            )
    spread = expected["max_temperature_spread_c"]
    if spread is None or len(present) < 3:
        return
    for gpu in present:
        peers = [g["temperature"]["gpu_c"] for g in present if g is not gpu]
        typical = statistics.median(peers)
        if gpu["temperature"]["gpu_c"] - typical > spread:
            findings.add(
                "warning",
                "temperature_spread",
                "%s runs %d C hotter than its peers (%d C against a median of %d C): its heatsink "
                "is likely badly seated or torqued, or its thermal paste has dried."
                % (
                    _label(gpu),
                    gpu["temperature"]["gpu_c"] - typical,
                    gpu["temperature"]["gpu_c"],
                    typical,
                ),
                gpu=gpu,
                value=gpu["temperature"]["gpu_c"],
                expected="<= median + %d" % spread,
            )


def check_memory(facts, expected, findings):
    for gpu in facts["gpus"]:
        if gpu["lost"]:
            continue
        ecc = gpu["ecc"]
        volatile = ecc.get("volatile_uncorrected", UNSUPPORTED)
        if volatile != UNSUPPORTED and volatile > expected["max_uncorrected_ecc"]:
            findings.add(
                "critical",
                "ecc_uncorrected",
                "%s had %d uncorrectable ECC errors since the driver loaded (Xid 48): memory "
                "is failing; reboot to retire the pages, RMA if it recurs."
                % (_label(gpu), volatile),
                gpu=gpu,
                value=volatile,
                expected="<= %d" % expected["max_uncorrected_ecc"],
            )
        aggregate = ecc.get("aggregate_uncorrected", UNSUPPORTED)
        if aggregate != UNSUPPORTED and aggregate > 0 and volatile in (0, UNSUPPORTED):
            findings.add(
                "warning",
                "ecc_history",
                "%s has %d uncorrectable ECC errors in its lifetime record: watch it."
                % (_label(gpu), aggregate),
                gpu=gpu,
                value=aggregate,
                expected=0,
            )
        retired = gpu.get("retired_pages")
        if isinstance(retired, dict):
            _check_retired_pages(gpu, retired, expected, findings)
        rows = gpu.get("remapped_rows")
        if isinstance(rows, dict):
            _check_remapped_rows(gpu, rows, findings)


def _check_retired_pages(gpu, retired, expected, findings):
    if retired["pending"] is True:
        findings.add(
            "warning",
            "retired_pages_pending",
            "%s has pages waiting to be retired: reboot (or reset the GPU) to retire them."
            % _label(gpu),
            gpu=gpu,
            value=True,
            expected=False,
        )
    counts = [v for v in (retired["single_bit_ecc"], retired["double_bit_ecc"]) if v != UNSUPPORTED]
    total = sum(counts)
    if total > expected["max_retired_pages"]:
        findings.add(
            "critical",
            "retired_pages",
            "%s has retired %d pages (limit %d): its memory is wearing out, plan an RMA."
            % (_label(gpu), total, expected["max_retired_pages"]),
            gpu=gpu,
            value=total,
            expected="<= %d" % expected["max_retired_pages"],
        )


def _check_remapped_rows(gpu, rows, findings):
    if rows["failure"]:
        findings.add(
            "critical",
            "remapped_rows_failure",
            "%s could not remap a failing memory row: RMA the GPU." % _label(gpu),
            gpu=gpu,
            value=True,
            expected=False,
        )
    if rows["pending"]:
        findings.add(
            "warning",
            "remapped_rows_pending",
            "%s has a row remapping pending: reset the GPU (or reboot) to apply it." % _label(gpu),
            gpu=gpu,
            value=True,
            expected=False,
        )


def check_clock_events(facts, expected, findings):
    forbidden = set(expected["forbidden_clock_event_reasons"])
    for gpu in facts["gpus"]:
        if gpu["lost"] or gpu["clock_event_reasons"] == UNSUPPORTED:
            continue
        for reason in sorted(forbidden & set(gpu["clock_event_reasons"])):
            findings.add(
                "critical" if reason in HARDWARE_REASONS else "warning",
                "clock_events",
                "%s is slowed down by %s: %s."
                % (_label(gpu), reason, clock_events.CAUSES.get(reason, "see NVIDIA's docs")),
                gpu=gpu,
                value=reason,
                expected="not " + reason,
            )


def check_persistence(facts, expected, findings):
    if not expected["require_persistence"]:
        return
    for gpu in facts["gpus"]:
        if not gpu["lost"] and gpu["persistence_mode"] is False:
            findings.add(
                "warning",
                "persistence_mode",
                "%s has persistence mode off: the driver unloads between jobs, so start-up is slow "
                "and settings can be lost; enable it (gpu_tuning role or nvidia-persistenced)."
                % _label(gpu),
                gpu=gpu,
                value=False,
                expected=True,
            )


def check_kernel_log(facts, expected, findings):
    """Xid lines of this boot, attributed to GPUs by PCI bus id. Returns the events."""
    source = expected["kernel_log"]
    if source == "none":
        return []
    lines, problem = xid.read_kernel_log(source)
    if problem:
        findings.add("info", "kernel_log", "Xid events were not checked: %s." % problem)
        return []
    by_bus = {g["pci_bus_id"][:10]: g for g in facts["gpus"] if g.get("pci_bus_id")}
    events = xid.parse(lines)
    counted = {}
    for event in events:
        counted.setdefault((event["pci_bus_id"], event["xid"]), []).append(event)
    for (bus, code), same in sorted(counted.items()):
        meaning = xid.describe(code)
        gpu = by_bus.get(bus)
        who = _label(gpu) if gpu else "the GPU at PCI %s" % bus
        findings.add(
            meaning["severity"],
            "xid",
            "%s logged Xid %d (%s) %d time(s) this boot: %s."
            % (who, code, meaning["meaning"], len(same), meaning["likely_cause"]),
            gpu=gpu,
            value=code,
            expected="no Xid",
        )
    return events


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


def should_fail(findings, fail_on):
    if fail_on == "never":
        return False
    levels = ("critical",) if fail_on == "critical" else ("critical", "warning")
    return any(f["severity"] in levels for f in findings)
