"""Every NVML function the simulator implements, failing with each error of FAULT_ERRORS on a GPU,
while settings.ensure changes every setting on every GPU of a mixed V100/A100 node.

Each combination ends in one of: the requested state (ok), or a GpuError that names the GPU and
the failing call with every GPU read back at its state before the run (rolled back) except what
the error lists as not restored. Never a traceback, never a lock the record under /run does not
show. Setters also fail once only (--times 1), and once after a first call succeeded (--after 1)
while a later step fails, so that the rollback itself meets the failure.
"""

import json
import re

import pytest
from nvml_faults import FAULT_ERRORS, device_functions, walk

PROFILE = "mixed-v100-a100"  # GPUs 0-1 Tesla V100 (Volta), 2-3 A100 (Ampere: memory locks too)
FULL = {  # changes every setting the module manages, on every GPU
    "persistence_mode": True,
    "power_limit": 200,
    "compute_mode": "prohibited",
    "clocks": {"strategy": "locked", "graphics_mhz": 1005},
    "overrides": [
        {
            "gpus": [0],
            "clocks": {"strategy": "application", "memory_mhz": 877, "graphics_mhz": 1005},
        },
        {
            "gpus": ["*A100*"],
            "clocks": {"strategy": "locked", "graphics_mhz": 1005, "memory_mhz": 1215},
        },
    ],
}
# From FULL's state back to the cards' own: removes every lock, puts application clocks back.
RESET = {
    "persistence_mode": False,
    "power_limit": "default",
    "compute_mode": "default",
    "reset_clocks": True,
}
SETTERS = [name for name in device_functions() if re.match(r"nvmlDevice(Set|Reset)", name)]
# Read in the plan and again in the read-back: failing the second call fails after the changes.
STATE_GETTERS = [
    "nvmlDeviceGetPersistenceMode",
    "nvmlDeviceGetPowerManagementLimit",
    "nvmlDeviceGetApplicationsClock",
    "nvmlDeviceGetComputeMode",
]
# Fails the last change of the run (GPU 3's compute mode), so that everything before is undone.
TRIGGER = (3, "nvmlDeviceSetComputeMode", "UNKNOWN")
# Which plan setting a field of the simulator's read-back shows.
FIELD_SETTINGS = {
    "persistence": {"persistence_mode"},
    "power_limit_mw": {"power_limit_w"},
    "app_clocks": {"applications_clocks"},
    "graphics_clock": {"applications_clocks", "locked_graphics_clocks"},
    "compute_mode": {"compute_mode"},
}

BODY = """
import os, shutil
from nvidia_gpu import locked_clocks
from nvidia_gpu.settings import ensure

REQUEST = %(request)r
START = %(start)r
# Per combination, in the walker's order (its `outcomes` counts those done): None, or the
# --after variant {"after": N, "trigger": [slot, function, error] or None}.
VARIANTS = %(variants)r

def record():
    try:
        with open(locked_clocks.path()) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None

def run():
    # The walker reboots the simulator; a reboot also empties /run, and with it the lock record.
    shutil.rmtree(os.path.dirname(locked_clocks.path()), ignore_errors=True)
    variant = VARIANTS[len(outcomes)]
    if START is not None or variant:
        tool("clear", "all")
        if START is not None:
            ensure(START)
        extra = ["--times", times] if times else []
        if variant:
            extra = ["--times", 1, "--after", variant["after"]]
            if variant["trigger"]:
                tool("fault", *variant["trigger"][:1], "fail", *variant["trigger"][1:])
        tool("fault", slot, "fail", function, error, *extra)
    try:
        ensure(REQUEST)
    except GpuError as err:
        err.lock_record = record()
        raise
    return {"lock_record": record()}
"""


def locks(record):
    """{uuid: {domain: [min, max]}} of a lock record, removals (null) left out."""
    gpus = (record or {}).get("gpus", {})
    found = {uuid: {d: v for d, v in domains.items() if v} for uuid, domains in gpus.items()}
    return {uuid: domains for uuid, domains in found.items() if domains}


def combinations(functions):
    """(slot, function, error, times) and the variant of each, in walking order. A setter fails
    and a read of the state on every GPU; any other function on GPU 3 (the last, an A100, planned
    after the others)."""
    combos, variants = [], []
    for function in functions:
        slots = range(4) if function in SETTERS + STATE_GETTERS else (3,)
        for error in FAULT_ERRORS:
            for slot in slots:
                combos.append((slot, function, error, None))
                variants.append(None)
                if function in SETTERS:
                    combos.append((slot, function, error, 1))
                    variants.append(None)
                if function in SETTERS and (slot, function) != TRIGGER[:2]:
                    combos.append((slot, function, error, 1))
                    variants.append({"after": 1, "trigger": list(TRIGGER)})
                if function in STATE_GETTERS:
                    for after in (1, 2):
                        combos.append((slot, function, error, 1))
                        variants.append({"after": after, "trigger": None})
    return combos, variants


def judge(outcome, variant, start, start_locks, final, final_locks, uuids):
    """What is wrong with one outcome (empty when nothing)."""
    what = "%(function)s %(error)s on GPU %(slot)s (times %(times)s)" % outcome
    if outcome["outcome"] == "traceback":
        return ["%s: traceback %s" % (what, outcome["traceback"])]
    if outcome["outcome"] == "ok":
        problems = []
        if outcome["settings"] != final:
            problems.append("%s: ok but read back %s" % (what, outcome["settings"]))
        if locks(outcome["result"]["lock_record"]) != final_locks:
            problems.append("%s: ok but lock record %s" % (what, outcome["result"]))
        return problems
    message = outcome["message"]
    problems = []
    if not re.search(r"GPU [0-3]", message):
        problems.append("%s: error names no GPU: %s" % (what, message))
    calls = [outcome["function"]] + (
        [variant["trigger"][1]] if variant and variant["trigger"] else []
    )
    if not any(call in message for call in calls) and not message.startswith("Nothing was changed"):
        problems.append("%s: error names no call: %s" % (what, message))
    not_restored = outcome["attributes"].get("not_restored") or []
    unrestored = {(entry["index"], entry["setting"]) for entry in not_restored}
    for index, (seen, expected) in enumerate(zip(outcome["settings"], start, strict=True)):
        for field, value in seen.items():
            if value != expected[field] and not any(
                (index, setting) in unrestored for setting in FIELD_SETTINGS[field]
            ):
                problems.append(
                    "%s: GPU %d %s is %s, was %s, and the error does not say so: %s"
                    % (what, index, field, value, expected[field], message)
                )
    record = locks(outcome["attributes"].get("lock_record"))
    for index, uuid in enumerate(uuids):
        lock_settings = {"locked_graphics_clocks", "locked_memory_clocks"}
        if record.get(uuid, {}) != start_locks.get(uuid, {}) and not any(
            (index, setting) in unrestored for setting in lock_settings
        ):
            problems.append(
                "%s: GPU %d's lock record is %s, was %s: %s"
                % (what, index, record.get(uuid), start_locks.get(uuid), message)
            )
    return problems


def recorded_locks(machine):
    path = machine.run_dir / "locked-clocks.json"
    return locks(json.loads(path.read_text())) if path.exists() else {}


def expected_states(machine, start, request):
    """(state, locks) before request (after start) and after it, from a run without faults."""
    if start is not None:
        assert not machine.module("nvidia_gpu_settings", start).get("failed")
    before = (machine.state(), recorded_locks(machine))
    result = machine.module("nvidia_gpu_settings", request)
    assert not result.get("failed"), result["msg"]
    after = (machine.state(), recorded_locks(machine))
    machine.reboot()
    return before, after


# What RESET calls beyond FULL's reads: from a changed state, the setters, the reads of the
# state and of the cards' defaults (walking every function again would double the time).
RESET_PATH = (
    SETTERS
    + STATE_GETTERS
    + [
        "nvmlDeviceGetDefaultApplicationsClock",
        "nvmlDeviceGetPowerManagementDefaultLimit",
        "nvmlDeviceGetSupportedGraphicsClocks",
        "nvmlDeviceGetSupportedMemoryClocks",
    ]
)


@pytest.mark.parametrize(
    "start, request_, functions",
    [(None, FULL, device_functions()), (FULL, RESET, RESET_PATH)],
    ids=["boot state to every setting", "every setting back to the cards' own"],
)
def test_every_nvml_failure_is_named_and_rolled_back(machine, start, request_, functions):
    machine.use(PROFILE)
    uuids = machine.nvml("result = [N.nvmlDeviceGetUUID(gpu(i)) for i in range(4)]")
    (start_state, start_locks), (final, final_locks) = expected_states(machine, start, request_)
    assert start_state != final
    combos, variants = combinations(functions)
    body = BODY % {"request": request_, "start": start, "variants": variants}
    outcomes = walk(machine, body, combos)
    assert len(outcomes) == len(combos)
    problems = [
        problem
        for outcome, variant in zip(outcomes, variants, strict=True)
        for problem in judge(outcome, variant, start_state, start_locks, final, final_locks, uuids)
    ]
    assert problems == [], "%d problems:\n%s" % (len(problems), "\n".join(problems[:20]))
    kinds = {kind: sum(o["outcome"] == kind for o in outcomes) for kind in ("ok", "error")}
    # The walk reaches the apply step: part-way failures happened and were undone.
    assert any(o["attributes"].get("rolled_back") for o in outcomes if o["outcome"] == "error")
    assert kinds["ok"] > 0 and kinds["error"] > 0
    print("%d combinations: %s" % (len(outcomes), kinds))
