"""Health checks of the GPUs themselves: values NVML could not read, presence and model,
temperature, memory (ECC, retired pages, remapped rows), clock event reasons, persistence, and the
Xid events of this boot. Each adds findings (health.Findings) that name the GPU and the likely
cause. Every check skips a value that is UNSUPPORTED or UNREADABLE (check_unreadable reports the
latter)."""

from __future__ import annotations

import fnmatch
import statistics

from . import clock_events, inventory_slots, xid
from .facts_read import known
from .identity import label_of
from .nvml import UNSUPPORTED

# Reasons that point at power delivery or hardware cooling: critical, the rest are warnings.
HARDWARE_REASONS = ("hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown")


# Values without which a check that guards against damage or silently wrong results cannot run:
# an unreadable one is critical (nobody would notice the GPU overheating, or its memory
# corrupting data). Any other unreadable value is a warning: the driver is unwell, but what it
# hides is a performance or bookkeeping figure.
SAFETY_FIELDS = ("temperature.gpu_c", "ecc.volatile_uncorrected", "remapped_rows")


def _safety(field):
    return any(field == name or field.startswith(name + ".") for name in SAFETY_FIELDS)


def check_unreadable(facts, expected, findings):
    """One finding per NVML call that failed on a GPU (or for the system), naming every value
    it left unreadable: a driver failing nvmlDeviceGetNvLinkErrorCounter fails it for every
    link and counter, and one finding each would bury the rest of the report."""
    sources = [(None, facts.get("unreadable") or [])]
    sources += [(g, g.get("unreadable") or []) for g in facts["gpus"] if not g["lost"]]
    for gpu, entries in sources:
        calls = {}
        for entry in entries:
            calls.setdefault((entry["call"], entry["error"]), []).append(entry["field"])
        for (call, error), fields in sorted(calls.items()):
            critical = any(_safety(field) for field in fields)
            findings.add(
                "critical" if critical else "warning",
                "unreadable",
                "%s: %s failed, so %s could not be read%s: %s."
                % (
                    label_of(gpu) if gpu else "NVML",
                    call,
                    ", ".join(fields),
                    " and the checks that need it did not run" if critical else "",
                    error,
                ),
                gpu=gpu,
                value=fields,
                expected="readable",
            )


def check_inventory(facts, expected, findings, slots=None):
    """The GPU count and models. slots (health_status.gpu_inventory_status): the recorded slots
    no GPU answers for, which name a missing GPU by slot; a recorded slot without a GPU while
    the count is right (or not expected) is a finding of its own (gpu_slot)."""
    count = facts["count"]
    want = expected["expected_count"]
    unanswered = [] if slots is None else slots["unanswered"]
    unplaced = () if slots is None else slots["unplaced"]
    short = want is not None and count < want
    named = inventory_slots.for_shortfall(unanswered, want - count) if short else []
    if short and named:
        more = want - count - len(named)
        findings.add(
            "critical",
            "gpu_count",
            "Only %d of %d GPUs are visible to the driver: %s%s. %s."
            % (
                count,
                want,
                "; ".join(inventory_slots.describe(entry, unplaced) for entry in named),
                "; %d more GPU(s) the GPU inventory does not name (look with lspci)" % more
                if more > 0
                else "",
                inventory_slots.causes(named),
            ),
            value=count,
            expected=want,
        )
    elif short:
        findings.add(
            "critical",
            "gpu_count",
            "Only %d of %d GPUs are visible to the driver: a GPU is not detected (seating in its "
            "socket, power to the GPU board, or a dead GPU; look for it with lspci)."
            % (count, want),
            value=count,
            expected=want,
        )
    if not short:
        _check_slots(unanswered, unplaced, findings)
    if want is not None and count > want:
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
        if (
            model
            and known(gpu["name"])
            and not fnmatch.fnmatchcase(gpu["name"].lower(), model.lower())
        ):
            findings.add(
                "warning",
                "gpu_model",
                "%s is a %s, the inventory expects %s (a swapped GPU?)."
                % (label_of(gpu), gpu["name"], model),
                gpu=gpu,
                value=gpu["name"],
                expected=model,
            )


def _check_slots(unanswered, unplaced, findings):
    """A slot of the inventory's `slots` with no GPU while the count is right: a card moved to
    another slot, or one missing that an extra card hides. History slots are not findings here:
    the inventory recorded them gone, and a right count says the node is whole."""
    for entry in unanswered:
        if entry["recorded"] != "slots":
            continue
        findings.add(
            "critical",
            "gpu_slot",
            "No GPU answers in a slot the GPU inventory records: %s. %s; a card moved to another "
            "slot on purpose is recorded there by the next gpu_inventory run."
            % (inventory_slots.describe(entry, unplaced), inventory_slots.causes([entry])),
            value=entry["slot"],
            expected=inventory_slots.card_id(entry["card"]),
        )


def check_temperature(facts, expected, findings):
    present = [g for g in facts["gpus"] if not g["lost"] and known(g["temperature"]["gpu_c"])]
    for gpu in present:
        temp = gpu["temperature"]
        slowdown = temp["slowdown_c"] if known(temp["slowdown_c"]) else None
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
                    label_of(gpu),
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
                    label_of(gpu),
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
        if known(volatile) and volatile > expected["max_uncorrected_ecc"]:
            findings.add(
                "critical",
                "ecc_uncorrected",
                "%s had %d uncorrectable ECC errors since the driver loaded (Xid 48): memory "
                "is failing; reboot to retire the pages, RMA if it recurs."
                % (label_of(gpu), volatile),
                gpu=gpu,
                value=volatile,
                expected="<= %d" % expected["max_uncorrected_ecc"],
            )
        aggregate = ecc.get("aggregate_uncorrected", UNSUPPORTED)
        if known(aggregate) and aggregate > 0 and (volatile == 0 or not known(volatile)):
            findings.add(
                "warning",
                "ecc_history",
                "%s has %d uncorrectable ECC errors in its lifetime record: watch it."
                % (label_of(gpu), aggregate),
                gpu=gpu,
                value=aggregate,
                expected=0,
            )
        _check_corrected(gpu, ecc, expected, findings)
        retired = gpu.get("retired_pages")
        if isinstance(retired, dict):
            _check_retired_pages(gpu, retired, expected, findings)
        rows = gpu.get("remapped_rows")
        if isinstance(rows, dict):
            _check_remapped_rows(gpu, rows, findings)


def _check_corrected(gpu, ecc, expected, findings):
    limit = expected["max_corrected_ecc"]
    corrected = ecc.get("volatile_corrected", UNSUPPORTED)
    if limit and known(corrected) and corrected > limit:
        findings.add(
            "warning",
            "ecc_corrected",
            "%s corrected %d single-bit ECC errors since the driver loaded (limit %d): an early "
            "warning, as DCGM treats a high corrected rate; watch for retired pages / remapped "
            "rows." % (label_of(gpu), corrected, limit),
            gpu=gpu,
            value=corrected,
            expected="<= %d" % limit,
        )


def _check_retired_pages(gpu, retired, expected, findings):
    if retired["pending"] is True:
        findings.add(
            "warning",
            "retired_pages_pending",
            "%s has pages waiting to be retired: reboot (or reset the GPU) to retire them."
            % label_of(gpu),
            gpu=gpu,
            value=True,
            expected=False,
        )
    counts = [v for v in (retired["single_bit_ecc"], retired["double_bit_ecc"]) if known(v)]
    total = sum(counts)
    if total > expected["max_retired_pages"]:
        findings.add(
            "critical",
            "retired_pages",
            "%s has retired %d pages (limit %d): its memory is wearing out, plan an RMA."
            % (label_of(gpu), total, expected["max_retired_pages"]),
            gpu=gpu,
            value=total,
            expected="<= %d" % expected["max_retired_pages"],
        )


def _check_remapped_rows(gpu, rows, findings):
    if rows["failure"] is True:
        findings.add(
            "critical",
            "remapped_rows_failure",
            "%s could not remap a failing memory row: RMA the GPU." % label_of(gpu),
            gpu=gpu,
            value=True,
            expected=False,
        )
    if rows["pending"] is True:
        findings.add(
            "warning",
            "remapped_rows_pending",
            "%s has a row remapping pending: reset the GPU (or reboot) to apply it."
            % label_of(gpu),
            gpu=gpu,
            value=True,
            expected=False,
        )


def check_clock_events(facts, expected, findings):
    forbidden = set(expected["forbidden_clock_event_reasons"])
    for gpu in facts["gpus"]:
        if gpu["lost"] or not isinstance(gpu["clock_event_reasons"], list):
            continue
        for reason in sorted(forbidden & set(gpu["clock_event_reasons"])):
            findings.add(
                "critical" if reason in HARDWARE_REASONS else "warning",
                "clock_events",
                "%s is slowed down by %s: %s."
                % (label_of(gpu), reason, clock_events.CAUSES.get(reason, "see NVIDIA's docs")),
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
                % label_of(gpu),
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
    # A lost GPU keeps the address it had (from NVML before, or from the PCI tree), so its own
    # Xid 79 names it by index.
    by_bus = {
        g["pci_bus_id"][:10]: g
        for g in facts["gpus"]
        if known(g.get("pci_bus_id", UNSUPPORTED)) and g["pci_bus_id"] != "unknown"
    }
    events = xid.parse(lines)
    counted = {}
    for event in events:
        counted.setdefault((event["pci_bus_id"], event["xid"]), []).append(event)
    for (bus, code), same in sorted(counted.items()):
        meaning = xid.describe(code)
        gpu = by_bus.get(bus)
        who = label_of(gpu) if gpu else "the GPU at PCI %s" % bus
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
