"""Generated settings requests (hypothesis) through settings_spec.normalise and settings_plan.plan
against the simulated GPUs of a mixed V100/A100 node: every input is either accepted or refused
with a GpuError whose message names what it refuses (an option's key path, a GPU or a selector).
Nothing else: no other exception, no empty message.

The requests come from the options table (settings_options), with values of every kind at every
level: nested mappings and lists, digits of other scripts, NaN, infinities, -0.0, huge numbers,
booleans, unknown keys. The run is derandomised with a fixed budget, so `make test` repeats it
exactly; plan needs NVML, so the whole run happens in one child process on the simulator.
"""

import json

from conftest import MODULE_UTILS

MAX_EXAMPLES = 2500

PROPERTY = """
import sys
sys.path.insert(0, %(module_utils)r)
from hypothesis import HealthCheck, given, settings, strategies as st
from nvidia_gpu.device import open_all
from nvidia_gpu.nvml import GpuError, Nvml
from nvidia_gpu.settings_options import (
    CLOCK_KEYS, CLOCK_STRATEGIES, COMPUTE_MODE_CHOICES, OVERRIDE_KEYS, REQUEST_KEYS,
)
from nvidia_gpu.settings_plan import plan
from nvidia_gpu.settings_spec import normalise

NAMES = sorted(set(REQUEST_KEYS) | set(CLOCK_KEYS))
COUNTS = {"examples": 0, "refused_by_normalise": 0, "refused_by_plan": 0, "planned": 0}

words = st.sampled_from([
    "default", "all", "200", "200.0", "1005", "877", "\\u0662\\u0660\\u0660", "\\u00b2", "1_000",
    " 5", "5 ", "*V100*", "*A100*", "tesla*", "GPU-", "MIG-x", "locked", "application", "auto",
    "exclusive_process", "prohibited", "", "nan", "inf", "1e3", "0x10", "-1", "+2", "9" * 40,
])
scalars = st.one_of(
    st.none(), st.booleans(), words,
    st.integers(min_value=-(2**70), max_value=2**70), st.integers(min_value=-2, max_value=2000),
    st.floats(), st.sampled_from([float("nan"), float("inf"), -float("inf"), -0.0, 1e308, 200.0]),
    st.text(alphabet=st.characters(categories=["Nd", "No"]), max_size=4),
    st.text(max_size=6),
)
keys = st.one_of(st.sampled_from(NAMES + ["power", "graphic", "x"]), st.text(max_size=4))
anything = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)
    ),
    max_leaves=8,
)
mhz = st.one_of(st.sampled_from([135, 502, 1005, 1215, 1312, 877, 1530, 1410, "default"]), scalars)
watts = st.one_of(st.integers(min_value=100, max_value=300), st.just("default"), scalars)
clocks = st.one_of(
    st.fixed_dictionaries({}, optional={
        "strategy": st.one_of(st.sampled_from(CLOCK_STRATEGIES), anything),
        "graphics_mhz": mhz, "graphics_min_mhz": mhz, "memory_mhz": mhz, "graphic": anything,
    }),
    anything,
)
selector = st.one_of(
    st.none(), st.just("all"),
    st.lists(st.one_of(st.integers(min_value=-1, max_value=4), words, anything), max_size=3),
    anything,
)
SETTINGS = {
    "gpus": selector,
    "persistence_mode": st.one_of(st.booleans(), anything),
    "power_limit": watts,
    "clocks": clocks,
    "reset_clocks": st.one_of(st.booleans(), anything),
    "compute_mode": st.one_of(st.sampled_from(COMPUTE_MODE_CHOICES), anything),
}
override = st.one_of(
    st.fixed_dictionaries({"gpus": selector}, optional=dict(
        {k: v for k, v in SETTINGS.items() if k != "gpus"}, snap_clocks=anything
    )),
    anything,
)
hostile = st.one_of(
    st.fixed_dictionaries({}, optional=dict(
        SETTINGS,
        snap_clocks=st.one_of(st.booleans(), anything),
        overrides=st.one_of(st.lists(override, max_size=3), anything),
        power=anything,
    )),
    anything,
)
# Requests a user may well write: valid shapes, values near the GPUs' limits, so that the plan
# (what each GPU supports) is exercised as much as the shape checks.
near_mhz = st.one_of(
    st.sampled_from([135, 502, 990, 1005, 1000, 1215, 1312, 1410, 1530, 877, 900, "default"]),
    st.integers(min_value=100, max_value=1600), st.sampled_from([1005.0, "1005", "1005.0"]),
)
plausible_clocks = st.fixed_dictionaries({}, optional={
    "strategy": st.sampled_from(CLOCK_STRATEGIES),
    "graphics_mhz": near_mhz, "graphics_min_mhz": near_mhz, "memory_mhz": near_mhz,
})
plausible_selector = st.sampled_from(
    [None, "all", [0], [1, 3], ["*A100*"], ["*V100*"], ["tesla*", 2], [5], ["GPU-0"], "3"]
)
PLAUSIBLE = {
    "gpus": plausible_selector,
    "persistence_mode": st.booleans(),
    "power_limit": st.one_of(
        st.integers(min_value=100, max_value=320), st.sampled_from(["default", 200.0, "250"])
    ),
    "clocks": plausible_clocks,
    "reset_clocks": st.booleans(),
    "compute_mode": st.sampled_from(COMPUTE_MODE_CHOICES),
}
plausible_override = st.fixed_dictionaries(
    {"gpus": plausible_selector.filter(lambda s: s is not None)},
    optional={k: v for k, v in PLAUSIBLE.items() if k != "gpus"},
)
plausible = st.fixed_dictionaries({}, optional=dict(
    PLAUSIBLE, snap_clocks=st.booleans(), overrides=st.lists(plausible_override, max_size=2)
))
requests = st.one_of(plausible, hostile, plausible)


def names_something(message):
    return any(name in message for name in NAMES + ["the request", "GPU selector", "GPU "])


@settings(
    derandomize=True, max_examples=%(max_examples)d, deadline=None, database=None,
    suppress_health_check=list(HealthCheck),
)
@given(raw=requests)
def check(raw):
    COUNTS["examples"] += 1
    try:
        request = normalise(raw)
    except GpuError as error:
        assert str(error) and names_something(str(error)), (raw, str(error))
        COUNTS["refused_by_normalise"] += 1
        return
    try:
        plan(GPUS, request)
    except GpuError as error:
        assert str(error) and names_something(str(error)), (raw, str(error))
        COUNTS["refused_by_plan"] += 1
        return
    COUNTS["planned"] += 1


with Nvml():
    GPUS = open_all()
    check()
result = COUNTS
"""


def test_generated_requests_are_accepted_or_refused_by_name(machine):
    machine.use("mixed-v100-a100")
    counts = machine.nvml(
        PROPERTY % {"module_utils": str(MODULE_UTILS), "max_examples": MAX_EXAMPLES}
    )
    print("generated settings requests: %s" % json.dumps(counts))
    assert counts["examples"] >= MAX_EXAMPLES
    # The generator reaches every outcome, so the property is tested where it matters.
    assert counts["planned"] > 0 and counts["refused_by_plan"] > 0
