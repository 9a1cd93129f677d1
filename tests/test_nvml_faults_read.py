"""Every NVML function the simulator implements, failing on one GPU, through facts and health.

For each (function, error) on GPU slot 1, facts.collect must still answer: the other GPUs read
in full and unchanged, the failing values of GPU 1 UNSUPPORTED or UNREADABLE (each UNREADABLE
one listed in its `unreadable` entries with that call), or GPU 1 lost; and health.evaluate on
those facts gives a table row for every GPU and a finding for what could not be read. A few
combinations then run through the real modules, which must fail with a message, not a traceback.
"""

import re

import pytest
from conftest import MODULE_UTILS
from nvml_faults import FAULT_ERRORS, device_functions, walk

SLOT = 1
UNSUPPORTED, UNREADABLE, MISSING = "unsupported", "unreadable", "<missing>"
HANDLE_LOOKUP = "nvmlDeviceGetHandleByIndex"
# Identity values Gpu.open reads; a tolerant open lists them as unreadable whatever the error.
IDENTITY_FIELDS = {"uuid", "name", "pci_bus_id", "pci_device_id", "compute_capability"}
# NVML answers NOT_SUPPORTED for a link number the GPU does not have: every link failing so reads
# as a GPU without NVLink (an empty list), and its NVSwitch pairs become PCIe paths.
NO_NVLINK = ("nvmlDeviceGetNvLinkState", "NOT_SUPPORTED")
HEALTH_OPTIONS = {  # every comparison of every check runs against the values read
    "expected_count": 4,
    "expected_model": "*",
    "nvlink_links_per_gpu": 6,
    "min_pcie_generation": 3,
    "min_pcie_width": 16,
    "max_temperature_c": 80,
    "max_corrected_ecc": 10,
    "kernel_log": "none",
}
BODY = """
from nvidia_gpu import facts as F, health as H
OPTIONS = %r
def run():
    facts = F.collect(with_supported_clocks=%r)
    return {"facts": facts, "report": H.evaluate(facts, OPTIONS)}
"""
# Profile -> (errors walked, `--times 1` errors, supported clocks read). The T180-G20 walks every
# error, the other two add what only they have (PCIe paths between GPUs without NVLink; row
# remapping and NVSwitches on Ampere) with a smaller set to stay within the time budget.
PROFILES = {
    "t180-g20": (FAULT_ERRORS, ("UNKNOWN",), True),
    "mixed-v100-a100": (FAULT_ERRORS, (), False),
    "hgx-a100-8": (("UNKNOWN", "NOT_SUPPORTED", "GPU_IS_LOST"), (), False),
}


def combinations(errors, counted):
    functions = device_functions()
    every = [(SLOT, f, e, None) for f in functions for e in errors]
    return every + [(SLOT, f, e, 1) for f in functions for e in counted]


def leaves(value, path=""):
    """{path: value} of every leaf, paths spelt as facts' `unreadable` fields are."""
    if isinstance(value, dict):
        found = {}
        for key, item in value.items():
            found.update(leaves(item, "%s.%s" % (path, key) if path else str(key)))
        return found
    if isinstance(value, list) and value:
        found = {}
        for number, item in enumerate(value):
            found.update(leaves(item, "%s[%d]" % (path, number)))
        return found
    return {path: value}


def changed(before, after):
    old, new = leaves(before), leaves(after)
    return {
        path: new.get(path, MISSING)
        for path in set(old) | set(new)
        if old.get(path, MISSING) != new.get(path, MISSING)
    }


def same_call(call, function):
    return re.sub(r"_v[0-9]+$", "", call) == function


def gpu_problems(gpu, before, function, error):
    """What is wrong with GPU 1's facts after function failed with error ([] when right)."""
    if gpu["lost"]:
        if error == "GPU_IS_LOST":
            return [] if "fallen off the bus" in gpu["error"] else ["lost: %s" % gpu["error"]]
        if function == HANDLE_LOOKUP and function in gpu["error"]:
            return []  # NVML could not open it at all: listed as lost, naming the call
        return ["lost on %s" % error]
    problems = []
    now = {k: v for k, v in gpu.items() if k != "unreadable"}
    diffs = changed({k: v for k, v in before.items() if k != "unreadable"}, now)
    values = leaves(now)
    for path, value in sorted(diffs.items()):
        if path == "nvlinks" and value == [] and (function, error) == NO_NVLINK:
            continue
        if value not in (UNSUPPORTED, UNREADABLE, MISSING):
            problems.append("%s became %r" % (path, value))
    fields = {entry["field"] for entry in gpu["unreadable"]}
    for path, value in sorted(values.items()):
        if value == UNREADABLE and path not in fields:
            problems.append("%s is unreadable without an entry" % path)
    for entry in gpu["unreadable"]:
        if not same_call(entry["call"], function) or not entry["error"]:
            problems.append("entry %r is not about %s" % (entry, function))
        if values.get(entry["field"]) != UNREADABLE:
            problems.append("entry %r: the value is %r" % (entry, values.get(entry["field"])))
        if error == "NOT_SUPPORTED" and entry["field"] not in IDENTITY_FIELDS:
            problems.append("NOT_SUPPORTED made %s unreadable" % entry["field"])
    return problems


def matrix_problems(facts, before, function, error):
    lost = {g["index"] for g in facts["gpus"] if g["lost"]}
    # NVLink or PCIe between a GPU whose link states are unreadable and an NVSwitch user is
    # unknown: the GPU's own `nvlinks` entry says why.
    links_unread = {g["index"] for g in facts["gpus"] if g.get("nvlinks") == UNREADABLE}
    problems = []
    entries = {e["field"]: e for e in facts["unreadable"]}
    for a, row in before["link_matrix"].items():
        for b, cell in row.items():
            pair = {int(a), int(b)}
            if pair & lost or (SLOT in pair and (function, error) == NO_NVLINK):
                continue
            now = facts["link_matrix"][a][b]
            if now == UNREADABLE and pair & links_unread:
                continue
            if now == UNREADABLE:
                entry = entries.get("link_matrix.%s.%s" % (a, b))
                if not entry or not same_call(entry["call"], function):
                    problems.append("link_matrix %s-%s unreadable without an entry" % (a, b))
            elif now != cell and not (now == UNSUPPORTED and error == "NOT_SUPPORTED"):
                problems.append("link_matrix %s-%s: %s, was %s" % (a, b, now, cell))
    for entry in facts["unreadable"]:
        if not entry["field"].startswith("link_matrix.") or not same_call(entry["call"], function):
            problems.append("system entry %r" % entry)
    return problems


def health_problems(report, facts):
    problems = []
    if [g["index"] for g in report["gpus"]] != [g["index"] for g in facts["gpus"]]:
        problems.append("health table %r" % report["gpus"])
    findings = report["findings"]
    for gpu in facts["gpus"]:
        mine = [f for f in findings if f["gpu"] == gpu["index"]]
        if gpu["lost"] and not [f for f in mine if f["check"] == "gpu_lost"]:
            problems.append("no gpu_lost finding for GPU %d" % gpu["index"])
        for entry in gpu.get("unreadable", []):
            if not [f for f in mine if f["check"] == "unreadable" and entry["field"] in f["value"]]:
                problems.append("no finding for unreadable %s" % entry["field"])
    return problems


def outcome_problems(outcome, baseline):
    what = "%s %s%s" % (outcome["function"], outcome["error"], " x1" if outcome["times"] else "")
    if outcome["outcome"] != "ok":
        return ["%s: %s %s" % (what, outcome["outcome"], outcome.get("traceback", outcome))]
    facts, report = outcome["result"]["facts"], outcome["result"]["report"]
    problems = []
    if facts["count"] != baseline["count"]:
        problems.append("count %d" % facts["count"])
    lost_slot = facts["gpus"][SLOT]["lost"]
    for gpu, before in zip(facts["gpus"], baseline["gpus"], strict=True):
        if gpu["index"] == SLOT:
            problems += gpu_problems(gpu, before, outcome["function"], outcome["error"])
            continue
        # A lost GPU takes its NVLinks down: its peers' link states change with it.
        ignore = ("nvlinks",) if lost_slot else ()
        if (
            gpu["lost"]
            or gpu["unreadable"]
            or any(gpu[key] != before[key] for key in before if key not in ignore)
        ):
            problems.append("GPU %d changed: %s" % (gpu["index"], changed(before, gpu)))
    problems += matrix_problems(facts, baseline, outcome["function"], outcome["error"])
    problems += health_problems(report, facts)
    return ["%s: %s" % (what, problem) for problem in problems]


def baseline_facts(machine, with_supported_clocks):
    body = "sys.path.insert(0, %r)\nfrom nvidia_gpu import facts\nresult = facts.collect(%r)\n"
    return machine.nvml(body % (str(MODULE_UTILS), with_supported_clocks), init=False)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_function_failing_on_one_gpu(machine, profile):
    errors, counted, with_clocks = PROFILES[profile]
    machine.use(profile)
    baseline = baseline_facts(machine, with_clocks)
    assert not baseline["unreadable"] and all(not g["unreadable"] for g in baseline["gpus"])
    walked = combinations(errors, counted)
    outcomes = walk(machine, BODY % (HEALTH_OPTIONS, with_clocks), walked)
    assert len(outcomes) == len(walked) >= 3 * len(device_functions())
    problems = [p for outcome in outcomes for p in outcome_problems(outcome, baseline)]
    assert problems == []
    # The walk reached the read path: values went unreadable, unsupported and lost.
    gpus = [o["result"]["facts"]["gpus"][SLOT] for o in outcomes]
    assert sum(1 for g in gpus if g["lost"]) >= 10
    assert sum(1 for g in gpus if not g["lost"] and g["unreadable"]) >= 20


def facts_of(result):
    assert not result.get("failed") and "exception" not in result, result
    return result["ansible_facts"]["nvidia_gpu"]


def test_facts_module_reports_one_unreadable_value(machine):
    machine.cli("fault", SLOT, "fail", "nvmlDeviceGetTemperature", "UNKNOWN")
    facts = facts_of(machine.module("nvidia_gpu_facts", {"supported_clocks": False}))
    gpu = facts["gpus"][SLOT]
    assert gpu["temperature"]["gpu_c"] == UNREADABLE and gpu["temperature"]["slowdown_c"] == 87
    assert gpu["unreadable"] == [
        {
            "field": "temperature.gpu_c",
            "call": "nvmlDeviceGetTemperature",
            "error": gpu["unreadable"][0]["error"],
        }
    ]
    assert "unknown error" in gpu["unreadable"][0]["error"]
    assert [g["unreadable"] for g in facts["gpus"] if g["index"] != SLOT] == [[], [], []]


@pytest.mark.parametrize(
    ("function", "error", "fail_on", "failed", "severity"),
    [
        # The temperature guards against damage: unreadable, it is critical and fails the run.
        ("nvmlDeviceGetTemperature", "UNKNOWN", "critical", True, "critical"),
        ("nvmlDeviceGetTotalEccErrors", "NO_PERMISSION", "critical", True, "critical"),
        ("nvmlDeviceGetPcieReplayCounter", "NO_PERMISSION", "critical", False, "warning"),
        ("nvmlDeviceGetNvLinkErrorCounter", "UNKNOWN", "warning", True, "warning"),
    ],
)
def test_health_module_with_one_failing_call(machine, function, error, fail_on, failed, severity):
    machine.cli("fault", SLOT, "fail", function, error)
    result = machine.module("nvidia_gpu_health", {"kernel_log": "none", "fail_on": fail_on})
    assert "exception" not in result and bool(result.get("failed")) is failed, result
    assert [g["index"] for g in result["gpus"]] == [0, 1, 2, 3]
    (finding,) = [f for f in result["findings"] if f["check"] == "unreadable"]
    assert finding["gpu"] == SLOT and finding["severity"] == severity
    assert function in finding["message"] and finding["message"].startswith("GPU 1 (")
    if failed:
        assert result["msg"].startswith("GPU health check failed: ") and function in result["msg"]


def test_health_module_when_a_gpu_cannot_be_opened(machine):
    machine.cli("fault", SLOT, "fail", HANDLE_LOOKUP, "UNKNOWN")
    result = machine.module("nvidia_gpu_health", {"kernel_log": "none"})
    assert result["failed"] and "exception" not in result
    lost = [f for f in result["findings"] if f["check"] == "gpu_lost"]
    assert [f["gpu"] for f in lost] == [SLOT]
    assert HANDLE_LOOKUP in lost[0]["message"] and HANDLE_LOOKUP in result["msg"]
    assert [g["index"] for g in result["gpus"]] == [0, 1, 2, 3]


def test_facts_module_when_the_identity_cannot_be_read(machine):
    machine.cli("fault", SLOT, "fail", "nvmlDeviceGetUUID", "UNKNOWN")
    facts = facts_of(machine.module("nvidia_gpu_facts", {"supported_clocks": False}))
    gpu = facts["gpus"][SLOT]
    assert gpu["lost"] is False and gpu["uuid"] == UNREADABLE
    assert gpu["name"] == "Tesla V100-SXM2-16GB" and isinstance(gpu["temperature"]["gpu_c"], int)
    assert [e["field"] for e in gpu["unreadable"]] == ["uuid"]
    assert facts["link_matrix"]["0"]["1"] == "NV2"
