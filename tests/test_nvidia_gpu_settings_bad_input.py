"""Bad input to nvidia_gpu_settings: each case fails with a message that names the value and what
is allowed, and no GPU has changed (read back through NVML).

CASES run through the module, as Ansible runs it (its own option parsing included). REQUESTS are
what reaches settings.ensure after that parsing, or from the boot file, which takes JSON as it is:
they run in one child process (a module run per case would take a minute), each followed by a
read-back of every GPU.
"""

import json

import pytest
from conftest import MODULE_UTILS, STATE_READER

CLOCKS_APP = {"strategy": "application"}
ALLOWED_NUMBER = "is not valid; allowed: a positive whole number or 'default'"
TOO_LARGE = "is not valid; allowed: a positive whole number up to 100000"
CASES = [
    # (id, module args, text the error must contain)
    (
        "power above range",
        {"power_limit": 350},
        "power_limit 350 W is outside the card's range 150-300 W",
    ),
    (
        "power below range",
        {"power_limit": 100},
        "power_limit 100 W is outside the card's range 150-300 W",
    ),
    (
        "power word",
        {"power_limit": "max"},
        "power_limit (watts) 'max' is not valid; allowed: a positive whole number or 'default'",
    ),
    ("power negative", {"power_limit": -5}, "power_limit (watts) -5 is not valid"),
    ("power zero", {"power_limit": 0}, "power_limit (watts) 0 is not valid"),
    ("power fraction", {"power_limit": 200.5}, "power_limit (watts) 200.5 is not valid"),
    ("power boolean", {"power_limit": True}, "power_limit (watts) True is not valid"),
    (
        "graphics clock unsupported",
        {"clocks": dict(CLOCKS_APP, graphics_mhz=1000)},
        "1000 MHz is not a supported graphics clock at memory clock 877 MHz; nearest supported: "
        "990, 997, 1005 MHz",
    ),
    (
        "memory clock unsupported",
        {"clocks": dict(CLOCKS_APP, memory_mhz=900)},
        "900 MHz is not a supported memory clock; nearest supported: 877 MHz",
    ),
    (
        "graphics clock above max",
        {"clocks": {"strategy": "locked", "graphics_mhz": 2000}},
        "2000 MHz is not a supported graphics clock; nearest supported: 1515, 1522, 1530 MHz",
    ),
    (
        "graphics clock word",
        {"clocks": {"graphics_mhz": "fast"}},
        "clocks.graphics_mhz 'fast' is not valid; allowed: a positive whole number or 'default'",
    ),
    (
        "strategy unknown",
        {"clocks": {"strategy": "turbo", "graphics_mhz": 1005}},
        "value of strategy must be one of: auto, locked, application, default, got: turbo",
    ),
    (
        "locked without graphics",
        {"clocks": {"strategy": "locked"}},
        "clocks.strategy locked needs graphics_mhz",
    ),
    (
        "auto with default graphics",
        {"clocks": {"graphics_mhz": "default"}},
        "clocks.strategy auto needs graphics_mhz",
    ),
    (
        "minimum above maximum",
        {"clocks": {"strategy": "locked", "graphics_mhz": 1005, "graphics_min_mhz": 1200}},
        "graphics_min_mhz 1200 is above graphics_mhz 1005",
    ),
    (
        "default strategy with values",
        {"clocks": {"strategy": "default", "graphics_mhz": 1005}},
        "clocks.strategy default restores the card's own clocks and takes no MHz values",
    ),
    (
        "memory lock on volta",
        {"clocks": {"strategy": "locked", "graphics_mhz": 1005, "memory_mhz": 850}},
        "memory clocks can be locked on Ampere and newer only; this volta GPU's memory clocks are "
        "877 MHz",
    ),
    (
        "minimum with application clocks",
        {"clocks": dict(CLOCKS_APP, graphics_mhz=1005, graphics_min_mhz=500)},
        "clocks.graphics_min_mhz applies only to strategy locked or auto",
    ),
    (
        "reset and clocks together",
        {"reset_clocks": True, "clocks": {"graphics_mhz": 1005}},
        "parameters are mutually exclusive: clocks|reset_clocks",
    ),
    (
        "index not present",
        {"gpus": [7], "power_limit": 200},
        "GPU selector '7' matches no GPU on this host; present: 0 Tesla V100-SXM2-16GB",
    ),
    (
        "uuid not present",
        {"gpus": ["GPU-00000000-dead-beef-0000-000000000000"], "power_limit": 200},
        "GPU selector 'GPU-00000000-dead-beef-0000-000000000000' matches no GPU",
    ),
    (
        "model not present",
        {"gpus": ["*A100*"], "power_limit": 200},
        "GPU selector '*A100*' matches no GPU",
    ),
    (
        "selector boolean",
        {"gpus": [True], "power_limit": 200},
        "GPU selector True is not valid; allowed: 'all', an index",
    ),
    (
        "compute mode unknown",
        {"compute_mode": "exclusive_thread"},
        "value of compute_mode must be one of: default, exclusive_process, prohibited, got: "
        "exclusive_thread",
    ),
    ("persistence word", {"persistence_mode": "sometimes"}, "persistence_mode"),
    (
        "nothing requested",
        {},
        "No setting requested; give at least one of persistence_mode, power_limit, clocks",
    ),
    (
        "override without gpus",
        {"overrides": [{"power_limit": 200}]},
        "missing required arguments: gpus found in overrides",
    ),
    (
        "override unknown key",
        {"overrides": [{"gpus": [0], "power": 200}]},
        "Unsupported parameters for (basic.py) module: overrides.power",
    ),
    (
        "override out of range",
        {"power_limit": 200, "overrides": [{"gpus": [3], "power_limit": 400}]},
        "GPU 3 (Tesla V100-SXM2-16GB, GPU-",
    ),
    (
        "override clocks unknown key",
        {"overrides": [{"gpus": [0], "clocks": {"graphic": 1005}}]},
        "Unsupported parameters for (basic.py) module: overrides.clocks.graphic. Supported "
        "parameters include: graphics_mhz, graphics_min_mhz, memory_mhz, strategy",
    ),
    (
        "several problems at once",
        {"power_limit": 400, "clocks": dict(CLOCKS_APP, graphics_mhz=1001)},
        "power_limit 400 W is outside",
    ),
    # Ansible's own option parsing: every message names the option.
    (
        "clocks as text",
        {"clocks": "fast"},
        "argument 'clocks' is of type str and we were unable to convert to dict",
    ),
    (
        "overrides as text",
        {"overrides": "fast"},
        "Elements value for option 'overrides' is of type str",
    ),
    (
        "override clocks as text",
        {"overrides": [{"gpus": [0], "clocks": "fast"}]},
        "argument 'clocks' is of type str found in 'overrides'",
    ),
    ("override not a mapping", {"overrides": [5]}, "option 'overrides' is of type int"),
    ("persistence maybe", {"persistence_mode": "maybe"}, "argument 'persistence_mode' is of"),
    ("gpus a mapping", {"gpus": {"a": 1}, "power_limit": 200}, "argument 'gpus' is of type dict"),
    (
        "minimum infinity",
        {"clocks": {"graphics_mhz": 1005, "graphics_min_mhz": "Infinity"}},
        "clocks.graphics_min_mhz 'Infinity' is not valid; allowed: a positive whole number.",
    ),
    (
        "minimum arabic digit",
        {"clocks": {"graphics_mhz": 1005, "graphics_min_mhz": "\u0663"}},
        "clocks.graphics_min_mhz '\u0663' is not valid",
    ),
    (
        "minimum fraction",
        {"clocks": {"graphics_mhz": 1005, "graphics_min_mhz": 502.5}},
        "clocks.graphics_min_mhz 502.5 is not valid",
    ),
    ("power arabic digits", {"power_limit": "\u0662\u0660\u0660"}, ALLOWED_NUMBER),
    ("power huge", {"power_limit": 10**30}, TOO_LARGE),
    ("selection empty", {"gpus": [], "power_limit": 200}, "gpus: the selection is empty"),
    (
        "selector superscript",
        {"gpus": ["\u00b2"], "power_limit": 200},
        "gpus[0]: GPU selector '\u00b2' is not valid",
    ),
    (
        "override selection empty",
        {"overrides": [{"gpus": [], "power_limit": 200}]},
        "overrides[0].gpus: the selection is empty",
    ),
    (
        "override selector negative",
        {"overrides": [{"gpus": [-1], "power_limit": 200}]},
        "overrides[0].gpus[0]: GPU selector -1 is not valid",
    ),
]

NAN, INF = float("nan"), float("inf")
LOCKED = {"strategy": "locked", "graphics_mhz": 1005}
# (id, request as settings.ensure takes it, text the error must contain)
REQUESTS = [
    ("power text digits", {"power_limit": "\u0662\u0660\u0660"}, ALLOWED_NUMBER),
    ("power underscore", {"power_limit": "1_000"}, "'1_000' " + ALLOWED_NUMBER),
    ("power spaces", {"power_limit": " 200"}, "' 200' " + ALLOWED_NUMBER),
    ("power text fraction", {"power_limit": "200.5"}, "'200.5' " + ALLOWED_NUMBER),
    ("power nan", {"power_limit": NAN}, "power_limit (watts) nan " + ALLOWED_NUMBER),
    ("power inf", {"power_limit": INF}, "power_limit (watts) inf " + ALLOWED_NUMBER),
    ("power minus inf", {"power_limit": -INF}, "power_limit (watts) -inf " + ALLOWED_NUMBER),
    ("power minus zero", {"power_limit": -0.0}, "power_limit (watts) -0.0 " + ALLOWED_NUMBER),
    ("power 1e308", {"power_limit": 1e308}, "power_limit (watts) 1e+308 " + TOO_LARGE),
    ("power huge int", {"power_limit": 10**30}, TOO_LARGE + " or 'default'"),
    ("power 5000 digits", {"power_limit": "9" * 5000}, TOO_LARGE),
    ("power list", {"power_limit": [200]}, "power_limit (watts) [200] " + ALLOWED_NUMBER),
    ("power mapping", {"power_limit": {"w": 200}}, "power_limit (watts) {'w': 200} is not"),
    ("power Default", {"power_limit": "Default"}, "'Default' " + ALLOWED_NUMBER),
    ("power hex", {"power_limit": "0x10"}, "'0x10' " + ALLOWED_NUMBER),
    ("power exponent", {"power_limit": "2e2"}, "'2e2' " + ALLOWED_NUMBER),
    ("power plus", {"power_limit": "+200"}, "'+200' " + ALLOWED_NUMBER),
    ("power minus text", {"power_limit": "-200"}, "'-200' " + ALLOWED_NUMBER),
    ("power two dots", {"power_limit": "200.0.0"}, "'200.0.0' " + ALLOWED_NUMBER),
    ("power superscript", {"power_limit": "\u00b2"}, ALLOWED_NUMBER),
    ("power false", {"power_limit": False}, "power_limit (watts) False " + ALLOWED_NUMBER),
    ("power above range whole float", {"power_limit": 400.0}, "power_limit 400 W is outside"),
    (
        "graphics arabic digits",
        {"clocks": {"graphics_mhz": "\u0661\u0660\u0660\u0665"}},
        "clocks.graphics_mhz '\u0661\u0660\u0660\u0665' " + ALLOWED_NUMBER,
    ),
    ("graphics fraction", {"clocks": {"graphics_mhz": 1005.5}}, "clocks.graphics_mhz 1005.5 is"),
    (
        "graphics nan",
        {"clocks": {"graphics_mhz": NAN}},
        "clocks.graphics_mhz nan " + ALLOWED_NUMBER,
    ),
    (
        "graphics huge",
        {"clocks": {"graphics_mhz": 200000}},
        "clocks.graphics_mhz 200000 " + TOO_LARGE,
    ),
    (
        "graphics text fraction",
        {"clocks": {"graphics_mhz": "1005.5"}},
        "'1005.5' " + ALLOWED_NUMBER,
    ),
    (
        "memory default with space",
        {"clocks": {"strategy": "application", "memory_mhz": "default "}},
        "clocks.memory_mhz 'default ' " + ALLOWED_NUMBER,
    ),
    ("memory true", {"clocks": dict(LOCKED, memory_mhz=True)}, "clocks.memory_mhz True is not"),
    (
        "minimum default",
        {"clocks": dict(LOCKED, graphics_min_mhz="default")},
        "clocks.graphics_min_mhz 'default' is not valid; allowed: a positive whole number.",
    ),
    ("minimum negative", {"clocks": dict(LOCKED, graphics_min_mhz=-1)}, "graphics_min_mhz -1 is"),
    ("minimum arabic", {"clocks": dict(LOCKED, graphics_min_mhz="\u0663")}, "'\u0663' is not"),
    (
        "minimum huge",
        {"clocks": dict(LOCKED, graphics_min_mhz=10**6)},
        "clocks.graphics_min_mhz 1000000 is not valid; allowed: a positive whole number up to",
    ),
    (
        "strategy number",
        {"clocks": {"strategy": 5}},
        "clocks.strategy 5 is not valid; allowed: auto, locked, application, default",
    ),
    ("strategy list", {"clocks": {"strategy": ["locked"]}}, "clocks.strategy ['locked'] is not"),
    ("strategy case", {"clocks": {"strategy": "Locked"}}, "clocks.strategy 'Locked' is not valid"),
    ("clocks text", {"clocks": "fast"}, "clocks must be a mapping of clock settings; got 'fast'"),
    ("clocks list", {"clocks": [1005]}, "clocks must be a mapping of clock settings; got [1005]"),
    ("clocks unknown key", {"clocks": dict(LOCKED, mhz=1)}, "clocks has unknown key(s) mhz"),
    (
        "default strategy with memory",
        {"clocks": {"strategy": "default", "memory_mhz": 877}},
        "clocks.strategy default restores the card's own clocks and takes no MHz values",
    ),
    ("persistence yes", {"persistence_mode": "yes"}, "persistence_mode 'yes' is not valid; all"),
    ("persistence one", {"persistence_mode": 1}, "persistence_mode 1 is not valid; allowed: t"),
    ("reset text", {"reset_clocks": "true"}, "reset_clocks 'true' is not valid; allowed: true"),
    ("snap one", {"power_limit": 200, "snap_clocks": 1}, "snap_clocks 1 is not valid"),
    ("compute mode case", {"compute_mode": "Default"}, "compute_mode 'Default' is not valid"),
    ("compute mode number", {"compute_mode": 0}, "compute_mode 0 is not valid; allowed: default"),
    ("compute mode list", {"compute_mode": ["default"]}, "compute_mode ['default'] is not"),
    ("selection empty", {"gpus": [], "power_limit": 200}, "gpus: the selection is empty"),
    ("selector empty text", {"gpus": "", "power_limit": 200}, "gpus[0]: GPU selector '' is not"),
    ("selector blank", {"gpus": ["  "], "power_limit": 200}, "gpus[0]: GPU selector '  ' is"),
    ("selector arabic", {"gpus": ["\u0663"], "power_limit": 200}, "GPU selector '\u0663' is not"),
    ("selector negative", {"gpus": [-1], "power_limit": 200}, "gpus[0]: GPU selector -1 is not"),
    ("selector float", {"gpus": [0, 1.0], "power_limit": 200}, "gpus[1]: GPU selector 1.0 is"),
    ("selector null", {"gpus": [None], "power_limit": 200}, "gpus[0]: GPU selector None is not"),
    ("selector list", {"gpus": [[0]], "power_limit": 200}, "gpus[0]: GPU selector [0] is not"),
    ("selector mapping", {"gpus": [{"index": 0}], "power_limit": 200}, "GPU selector {'index'"),
    ("selector false", {"gpus": [False], "power_limit": 200}, "GPU selector False is not valid"),
    ("selector underscore", {"gpus": ["1_0"], "power_limit": 200}, "'1_0' matches no GPU"),
    ("selector 5000 digits", {"gpus": ["9" * 5000], "power_limit": 200}, "matches no GPU"),
    ("selector mapping alone", {"gpus": {"a": 1}, "power_limit": 200}, "gpus[0]: GPU selector"),
    ("overrides mapping", {"overrides": {"gpus": [0]}}, "overrides must be a list of mappings"),
    ("overrides text", {"overrides": "x"}, "overrides must be a list of mappings; got 'x'"),
    ("override number", {"overrides": [5]}, "overrides[0] must be a mapping of gpus and settings"),
    ("override list", {"overrides": [[0]]}, "overrides[0] must be a mapping of gpus and settings"),
    (
        "override without gpus",
        {"overrides": [{"power_limit": 200}]},
        "overrides[0] needs gpus: the GPUs it applies to",
    ),
    (
        "override selection empty",
        {"overrides": [{"gpus": [], "power_limit": 200}]},
        "overrides[0].gpus: the selection is empty",
    ),
    (
        "override snap_clocks",
        {"overrides": [{"gpus": [0], "snap_clocks": True}]},
        "overrides[0] has unknown key(s) snap_clocks",
    ),
    (
        "override nested overrides",
        {"overrides": [{"gpus": [0], "overrides": []}]},
        "overrides[0] has unknown key(s) overrides",
    ),
    (
        "override power digits",
        {"overrides": [{"gpus": [0], "power_limit": "\u0662\u0660\u0660"}]},
        "overrides[0].power_limit (watts) '\u0662\u0660\u0660' " + ALLOWED_NUMBER,
    ),
    (
        "second override graphics nan",
        {
            "overrides": [
                {"gpus": [0], "power_limit": 200},
                {"gpus": [1], "clocks": {"graphics_mhz": NAN}},
            ]
        },
        "overrides[1].clocks.graphics_mhz nan " + ALLOWED_NUMBER,
    ),
    (
        "override locked without graphics",
        {"overrides": [{"gpus": [0], "clocks": {"strategy": "locked"}}]},
        "overrides[0].clocks.strategy locked needs graphics_mhz",
    ),
    (
        "override reset and clocks",
        {"overrides": [{"gpus": [0], "reset_clocks": True, "clocks": LOCKED}]},
        "overrides[0].reset_clocks and overrides[0].clocks are mutually exclusive",
    ),
    (
        "override selector arabic",
        {"overrides": [{"gpus": ["\u0663"], "power_limit": 200}]},
        "overrides[0].gpus[0]: GPU selector '\u0663' is not valid",
    ),
    (
        "override persistence text",
        {"overrides": [{"gpus": [0], "persistence_mode": "on"}]},
        "overrides[0].persistence_mode 'on' is not valid",
    ),
    (
        "override minimum above maximum",
        {"overrides": [{"gpus": [2], "clocks": dict(LOCKED, graphics_min_mhz=1200)}]},
        "graphics_min_mhz 1200 is above graphics_mhz 1005",
    ),
    ("request a list", [], "the request must be a mapping of options; got []"),
    ("request text", "power_limit=200", "the request must be a mapping of options"),
    ("request unknown option", {"power": 200}, "the request has unknown option(s) power; allowed"),
    ("nothing but gpus", {"gpus": [0]}, "No setting requested"),
    ("override without settings", {"overrides": [{"gpus": [0]}]}, "No setting requested"),
]

# Runs every request through settings.ensure in one child; reads every GPU back after each.
ENSURE_ALL = """
import sys
sys.path.insert(0, %(module_utils)r)
from nvidia_gpu.nvml import GpuError
from nvidia_gpu.settings import ensure

def read_back():
    space = {"N": N, "call": call, "gpu": gpu, "INDICES": None}
    exec(%(state_reader)r, space)
    return space["result"]

outcomes = []
for request in json.loads(%(requests)r):
    try:
        ensure(request)
        outcome = ["ok", ""]
    except GpuError as error:
        outcome = ["error", str(error)]
    except Exception as error:  # noqa: BLE001 - a traceback is the defect looked for
        outcome = ["traceback", repr(error)]
    outcomes.append(outcome + [read_back()])
result = outcomes
"""


@pytest.mark.parametrize(("args", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_and_nothing_changes(machine, args, message):
    before = machine.state()
    result = machine.module("nvidia_gpu_settings", args)
    assert result.get("failed"), result
    assert message in result["msg"]
    assert machine.state() == before
    assert not (machine.run_dir / "locked-clocks.json").exists()


def test_every_problem_of_every_gpu_is_listed(machine):
    result = machine.module(
        "nvidia_gpu_settings", {"power_limit": 400, "clocks": dict(CLOCKS_APP, graphics_mhz=1001)}
    )
    lines = result["msg"].splitlines()
    assert lines[0].startswith("Nothing was changed")
    assert len(lines) == 1 + 4 * 2  # one line per problem: power and clock on each of 4 GPUs


def test_lost_gpu_in_the_selection_stops_everything(machine):
    machine.cli("fault", 3, "lost")
    before = machine.state_of([0, 1, 2])
    result = machine.module("nvidia_gpu_settings", {"power_limit": 200})
    assert result["failed"]
    assert "GPU 3: the GPU has fallen off the bus (Xid 79)" in result["msg"]
    assert machine.state_of([0, 1, 2]) == before


def test_gpu_without_power_limits(machine):
    machine.cli("fault", 1, "fail", "nvmlDeviceGetPowerManagementLimitConstraints", "NOT_SUPPORTED")
    before = machine.state()
    result = machine.module("nvidia_gpu_settings", {"power_limit": 200})
    assert result["failed"] and "does not support power limits" in result["msg"]
    assert machine.state() == before


def test_bad_requests_are_refused_and_nothing_changes(machine):
    boot = machine.state()
    requests = json.dumps([case[1] for case in REQUESTS])
    code = ENSURE_ALL % {
        "module_utils": str(MODULE_UTILS),
        "state_reader": STATE_READER,
        "requests": requests,
    }
    outcomes = machine.nvml(code)
    wrong = [
        "%s: %s %r" % (case[0], kind, message)
        for case, (kind, message, state) in zip(REQUESTS, outcomes, strict=True)
        if kind != "error" or case[2] not in message or state != boot
    ]
    assert len(outcomes) == len(REQUESTS)
    assert wrong == [], "\n".join(wrong)
    assert not (machine.run_dir / "locked-clocks.json").exists()


def test_the_table_has_at_least_100_cases():
    assert len(CASES) + len(REQUESTS) >= 100


@pytest.mark.parametrize(
    "selection",
    [{"gpus": ["*V100*"]}, {"gpus": [0], "overrides": [{"gpus": ["tesla*"], "power_limit": 250}]}],
    ids=["selection", "override"],
)
def test_a_model_pattern_does_not_skip_a_lost_gpu(machine, selection):
    # GPU 3 fell off the bus: its model cannot be read, so '*V100*' may mean it, as 'all' does.
    machine.cli("fault", 3, "lost")
    before = machine.state_of([0, 1, 2])
    result = machine.module("nvidia_gpu_settings", dict(selection, power_limit=200))
    assert result["failed"]
    assert "GPU 3: the GPU has fallen off the bus (Xid 79)" in result["msg"]
    assert machine.state_of([0, 1, 2]) == before
