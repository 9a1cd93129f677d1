"""Walk injected NVML failures through the project's code: the fault tests' shared harness.

Every per-device function the simulator exports can be made to fail (`nvml-sim fault SLOT fail
FUNCTION ERROR`). Running a module process per combination would take minutes, so one child
process walks a list of combinations: for each it reboots the simulated machine (`nvml-sim
reset`), injects the failure through the nvml-sim tool's own code, runs the code under test
in-process, then clears the faults and reads every GPU's settings back through NVML. What came out
(a result, a GpuError message, or any other exception with its traceback) is returned as data for
the test to judge.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

from conftest import MODULE_UTILS, SIM_CLI, SIM_SOURCE, STATE_READER

# The errors every function is walked through (the minimum); tests may add more.
FAULT_ERRORS = ("UNKNOWN", "NOT_SUPPORTED", "NO_PERMISSION", "GPU_IS_LOST")

_EXPORTED = re.compile(r"NVML_API\s+nvmlReturn_t\s+(nvmlDevice\w+)\s*\(")
_VERSION = re.compile(r"_v[0-9]+$")


def device_functions():
    """Every per-device NVML function the simulator implements, without version suffixes."""
    names = set()
    for source in sorted((SIM_SOURCE / "src").glob("*.c")):
        names.update(_VERSION.sub("", name) for name in _EXPORTED.findall(source.read_text()))
    return sorted(names)


# The child: `run()` (defined by the test's body) is the code under test.
_WALKER = """
import json, runpy, sys, traceback
sys.path.insert(0, %(module_utils)r)
import pynvml as N
from nvidia_gpu.nvml import GpuError
SIM = runpy.run_path(%(sim_cli)r, run_name="nvml_sim_tool")

def tool(*args):
    assert SIM["main"]([str(a) for a in args]) == 0, args

def call(fn, *args):
    try:
        return fn(*args)
    except N.NVMLError as err:
        return "!" + str(err)

def gpu(index):
    return N.nvmlDeviceGetHandleByIndex(index)

def settings():
    N.nvmlInit()
    try:
        INDICES = None
%(state_reader)s
        return result
    finally:
        N.nvmlShutdown()

%(body)s

outcomes = []
for slot, function, error, times in json.load(sys.stdin):
    tool("reset")
    fault = ["fault", slot, "fail", function, error] + (["--times", times] if times else [])
    tool(*fault)
    outcome = {"slot": slot, "function": function, "error": error, "times": times}
    try:
        outcome["result"] = run()
        outcome["outcome"] = "ok"
    except GpuError as err:
        outcome["outcome"] = "error"
        outcome["message"] = str(err)
        outcome["type"] = type(err).__name__
        outcome["attributes"] = {
            k: v for k, v in vars(err).items() if isinstance(v, (str, int, list, dict, type(None)))
        }
    except BaseException as err:  # noqa: BLE001 - anything else is the defect being looked for
        outcome["outcome"] = "traceback"
        outcome["message"] = "%%s: %%s" %% (type(err).__name__, err)
        outcome["traceback"] = traceback.format_exc()
    tool("clear", "all")
    outcome["settings"] = settings()
    outcomes.append(outcome)
print(json.dumps(outcomes))
"""


def walk(machine, body, combinations, timeout_s=600):
    """Run body's `run()` once per (slot, function, error, times) on machine; list of outcomes.

    times None means the function fails on every call. body may use `tool(...)` (nvml-sim),
    `call`, `gpu`, `N` (pynvml) and `settings()`; it runs with nvidia_gpu importable.
    """
    indented = "\n".join("        " + line for line in STATE_READER.strip().splitlines())
    code = _WALKER % {
        "module_utils": str(MODULE_UTILS),
        "sim_cli": str(SIM_CLI),
        "state_reader": indented,
        "body": body,
    }
    proc = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps([list(c) for c in combinations]),
        env=machine.env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout)
