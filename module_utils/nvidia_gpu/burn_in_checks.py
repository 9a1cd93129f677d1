"""The burn-in's per-GPU checks (burn_in_verdict.Judge holds what they read and the findings):
temperature, clock event reasons, whether the load reached the GPU, the workers, error counters
that rose under load (ECC, retired pages / remapped rows, NVLink, PCIe), values NVML could not
read while sampling.

Standard library and the nvidia_gpu package only, Python 3.8+.
"""

from __future__ import annotations

from . import clock_events
from .burn_in_sampling import PHASES
from .burn_in_verdict import label, match_gpu, when
from .facts_read import known

COOL_MARGIN_C = 5
LOAD_PHASES = ("square_high", "sustained")
# Under full load a GPU that draws less than this share of its limit (and never hits the cap)
# was not loaded: the test then says nothing about the supply.
LOADED_FRACTION = 0.8
# Reasons that the 12 V supply can cause: the power-brake signal and HW slowdown.
SUPPLY_REASONS = ("hw_slowdown", "hw_power_brake_slowdown")


def _increase(before, after):
    if known(before) and known(after) and isinstance(before, int) and isinstance(after, int):
        return after - before
    return 0


def check_temperature(judge):
    samples = judge.run["samples"]
    hottest = {g["index"]: samples.overall(g["index"]).get("temperature_c") for g in judge.gpus}
    for gpu in judge.gpus:
        limit = judge.limits["max_temperature_c"]
        if limit is None and isinstance(gpu.get("slowdown_c"), int):
            limit = gpu["slowdown_c"] - 5
        peak = hottest[gpu["index"]]
        if limit is None or peak is None or peak["max"] <= limit:
            continue
        others = [t["max"] for i, t in hottest.items() if i != gpu["index"] and t]
        cause = (
            "the others stayed at or below %d C, so its heatsink contact (mounting, screw "
            "torque, thermal paste)" % max(others)
            if others and max(others) <= limit - COOL_MARGIN_C
            else "cooling: airflow, fans, inlet temperature"
        )
        judge.add(
            "critical",
            "temperature",
            "%s reached %d C (limit %d C): %s." % (label(gpu), peak["max"], limit, cause),
            gpu=gpu,
            value=peak["max"],
            expected="<= %d" % limit,
        )


def check_clock_events(judge):
    """One finding per GPU slowed down by a forbidden reason: the reasons, the phases, the
    causes (a sagging rail when the supply can be the cause and the rail was low)."""
    forbidden = set(judge.limits["forbidden_clock_event_reasons"])
    if not judge.limits["power_cap_expected"]:
        forbidden.add("sw_power_cap")
    samples = judge.run["samples"]
    for gpu in judge.gpus:
        seen = sorted(forbidden & set(samples.overall(gpu["index"])["clock_event_reasons"]))
        if not seen:
            continue
        phases = [
            phase
            for phase in PHASES
            if set(seen)
            & set(
                samples.phases.get(phase, {})
                .get(str(gpu["index"]), {})
                .get("clock_event_reasons", [])
            )
        ]
        causes = []
        for reason in seen:
            if reason in SUPPLY_REASONS and judge.low_rails:
                cause = judge.power_cause()
            else:
                cause = clock_events.CAUSES.get(reason, "see NVIDIA's documentation")
            if cause not in causes:
                causes.append(cause)
        judge.add(
            "critical",
            "clock_events",
            "%s was slowed down by %s during %s: %s."
            % (label(gpu), ", ".join(seen), ", ".join(phases), "; ".join(causes)),
            gpu=gpu,
            value=seen,
            expected="none of " + ", ".join(sorted(forbidden)),
        )


def check_loaded(judge):
    """Under full load a GPU should run into its power limit; one that did not was not tested."""
    if not judge.limits["power_cap_expected"]:
        return
    samples = judge.run["samples"]
    for gpu in judge.gpus:
        loaded = samples.overall(gpu["index"], LOAD_PHASES)
        limit_w = gpu.get("power_limit_w")
        power = loaded.get("power_w")
        if not loaded["samples"] or power is None or not isinstance(limit_w, (int, float)):
            continue
        if "sw_power_cap" in loaded["clock_event_reasons"] or power["max"] >= (
            LOADED_FRACTION * limit_w
        ):
            continue
        judge.add(
            "critical",
            "not_loaded",
            "%s drew at most %g W of its %g W limit under full load and never hit its "
            "power cap: the load worker did not load it, so the supply was not tested "
            "(check the worker's output in the report)." % (label(gpu), power["max"], limit_w),
            gpu=gpu,
            value=power["max"],
            expected=">= %.0f" % (LOADED_FRACTION * limit_w),
        )


def check_workers(judge):
    lost = {event["gpu"] for event in judge.run["samples"].lost}
    for event in judge.run["worker_exits"]:
        if event["gpu"] in lost:
            continue  # a worker dies with its GPU: the lost GPU is the finding
        gpu = next(g for g in judge.gpus if g["index"] == event["gpu"])
        judge.add(
            "critical",
            "load_worker",
            "the load worker of %s stopped %s (it %s), so the GPU was not loaded from then on."
            % (label(gpu), when(event), event["how"]),
            gpu=gpu,
            value=event["how"],
            expected="running",
        )


def check_unreadable(judge):
    for entry in judge.run["samples"].unreadable.values():
        gpu = next(g for g in judge.gpus if g["index"] == entry["gpu"])
        judge.add(
            "warning",
            "unreadable",
            "%s: %s failed %d time(s) while sampling: %s."
            % (label(gpu), entry["call"], entry["count"], entry["error"]),
            gpu=gpu,
            value=entry["count"],
            expected=0,
        )


def check_counters(judge):
    if judge.after is None:
        return
    for gpu in judge.gpus:
        later = match_gpu(gpu, judge.after)
        if gpu["lost"] or later is None or later["lost"]:
            continue
        _memory(judge, gpu, later)
        _links(judge, gpu, later)


def _memory(judge, gpu, later):
    ecc_before, ecc_after = gpu["ecc"], later["ecc"]
    for kind, severity, cause in (
        ("uncorrected", "critical", "is failing (RMA if it recurs after a reboot)"),
        ("corrected", "warning", "is degrading; watch retired pages / remapped rows"),
    ):
        rise = _increase(ecc_before.get("volatile_" + kind), ecc_after.get("volatile_" + kind))
        if rise > 0:
            judge.add(
                severity,
                "ecc_" + kind,
                "%s had %d new %s ECC error(s) under load: its memory %s."
                % (label(gpu), rise, kind, cause),
                gpu=gpu,
                value=rise,
                expected=0,
            )
    pages = [gpu.get("retired_pages"), later.get("retired_pages")]
    rows = [gpu.get("remapped_rows"), later.get("remapped_rows")]
    rise = 0
    if all(isinstance(p, dict) for p in pages):
        rise = sum(
            _increase(pages[0][k], pages[1][k]) for k in ("single_bit_ecc", "double_bit_ecc")
        )
    elif all(isinstance(r, dict) for r in rows):
        rise = _increase(rows[0]["uncorrected"], rows[1]["uncorrected"])
        rise += int(rows[1]["failure"] and not rows[0]["failure"])
    if rise > 0:
        judge.add(
            "critical",
            "memory_retirement",
            "%s retired or remapped %d more memory page(s)/row(s) under load: its memory is "
            "failing (plan an RMA)." % (label(gpu), rise),
            gpu=gpu,
            value=rise,
            expected=0,
        )


def _links(judge, gpu, later):
    before, after = gpu["nvlink_errors"], later["nvlink_errors"]
    limit = judge.limits["max_nvlink_error_increase"]
    if isinstance(before, dict) and isinstance(after, dict):
        rises = []
        for link, errors in sorted(after.items(), key=lambda item: int(item[0])):
            for counter, value in sorted(errors.items()):
                rise = _increase((before.get(link) or {}).get(counter), value)
                if rise > 0:
                    rises.append(("link %s %s +%d" % (link, counter, rise), rise))
        total = sum(rise for _text, rise in rises)
        if total > limit:
            judge.add(
                "critical",
                "nvlink_errors",
                "%s's NVLink error counters rose by %d under load (%s; limit %d): the module's "
                "seating: SXM2 mounting screw torque, a dirty or damaged connector."
                % (label(gpu), total, ", ".join(text for text, _rise in rises), limit),
                gpu=gpu,
                value=total,
                expected="<= %d" % limit,
            )
    limit = judge.limits["max_pcie_replay_increase"]
    rise = _increase(gpu["pcie_replays"], later["pcie_replays"])
    if rise > limit:
        judge.add(
            "critical",
            "pcie_replays",
            "%s's PCIe replay counter rose by %d under load (limit %d): the link is marginal: "
            "riser or slot seating, signal integrity." % (label(gpu), rise, limit),
            gpu=gpu,
            value=rise,
            expected="<= %d" % limit,
        )


CHECKS = (
    check_temperature,
    check_clock_events,
    check_loaded,
    check_workers,
    check_counters,
    check_unreadable,
)
