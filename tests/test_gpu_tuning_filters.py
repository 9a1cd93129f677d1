"""The gpu_tuning role's filters: the power budget arithmetic people read when the guard fails,
and inventory-wide model overrides narrowed to the GPUs a node has, with the project's own GPU
selector (module_utils/nvidia_gpu/selection.py, as the modules use it)."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from hypothesis import given, settings
from hypothesis import strategies as st

PLUGIN = (
    Path(__file__).resolve().parent.parent
    / "roles"
    / "gpu_tuning"
    / "filter_plugins"
    / "gpu_tuning.py"
)
spec = importlib.util.spec_from_file_location("gpu_tuning_filters", PLUGIN)
filters = importlib.util.module_from_spec(spec)
spec.loader.exec_module(filters)
MODULE_UTILS = Path(__file__).resolve().parent.parent / "module_utils"

V100 = "Tesla V100-SXM2-16GB"
A100 = "NVIDIA A100-PCIE-40GB"
SEED_SUPPLY = {"count": 3, "watts": 1100, "derating": 0.8, "name": "Dell L1100E"}
SEED_LOADS = {"CPUs": 240, "fans": 150, "disks": 20}


def facts(*limits, name=V100):
    return [
        {"index": i, "uuid": "GPU-%d" % i, "name": name, "lost": False, "power": {"limit_w": w}}
        for i, w in enumerate(limits)
    ]


def plan(*limits):
    return [{"index": i, "after": {"power_limit_w": w}} for i, w in enumerate(limits)]


def test_the_seed_machine_fits_its_three_supplies():
    budget = filters.power_budget(
        plan(200, 200, 200, 200), facts(300, 300, 300, 300), SEED_SUPPLY, SEED_LOADS
    )
    assert budget == {
        "ok": True,
        "total_w": 1210,
        "budget_w": pytest.approx(2640),
        "text": "4 GPUs x 200 W = 800 W + CPUs 240 W + fans 150 W + disks 20 W = 1210 W "
        "<= budget 3 x 1100 W x 0.8 = 2640 W (Dell L1100E)",
    }


def test_too_small_a_supply_fails_with_each_term():
    supply = {"count": 2, "watts": 1100, "derating": 0.5}
    budget = filters.power_budget(
        plan(300, 300, 300, 300), facts(200, 200, 200, 200), supply, SEED_LOADS
    )
    assert budget["ok"] is False
    assert budget["text"] == (
        "4 GPUs x 300 W = 1200 W + CPUs 240 W + fans 150 W + disks 20 W = 1610 W "
        "> budget 2 x 1100 W x 0.5 = 1100 W"
    )


def test_gpus_without_a_planned_limit_count_with_their_current_one():
    # Only GPUs 0 and 1 get a limit; GPUs 2 and 3 keep 300 W and still draw from the supply.
    budget = filters.power_budget(plan(200, 200), facts(300, 300, 300, 300), SEED_SUPPLY, {})
    assert budget["text"].startswith("GPUs 2 x 200 W + 2 x 300 W = 1000 W <= budget")


def test_redundant_supplies_and_default_derating():
    supply = {"count": 3, "watts": 1100, "redundant": 1}
    budget = filters.power_budget(plan(300, 300, 300, 300), facts(300, 300, 300, 300), supply, {})
    assert budget["text"] == (
        "4 GPUs x 300 W = 1200 W <= budget (3 - 1 redundant) x 1100 W x 0.8 = 1760 W"
    )
    assert budget["ok"] is True


def test_lost_gpus_are_noted_not_counted():
    gpus = [*facts(300, 300), {"index": 2, "lost": True, "uuid": "GPU-2"}]
    budget = filters.power_budget([], gpus, SEED_SUPPLY, {})
    assert budget["text"].endswith("(GPU 2 is lost and not counted)")
    assert budget["total_w"] == 600


def test_a_budget_exactly_met_passes():
    supply = {"count": 1, "watts": 1000, "derating": 1}
    assert filters.power_budget(plan(250), facts(250), supply, {"rest": 750})["ok"] is True
    assert filters.power_budget(plan(251), facts(251), supply, {"rest": 750})["ok"] is False


def test_a_supply_without_watts_is_an_error():
    with pytest.raises(AnsibleFilterError, match="gpu_tuning_power_supply has no watts"):
        filters.power_budget([], facts(300), {"count": 2}, {})


def test_model_overrides_keep_only_what_the_node_has():
    overrides = [
        {"gpus": ["*A100*"], "power_limit": 250},
        {"gpus": ["*V100*", "*H100*"], "power_limit": 220},
        {"gpus": [7], "power_limit": 200},
    ]
    v100_node = facts(300, 300, 300, 300)
    assert filters.matching_overrides(overrides, v100_node) == [
        {"gpus": ["*V100*"], "power_limit": 220}
    ]
    mixed = [*facts(300, 300), {"index": 2, "uuid": "GPU-a", "name": A100, "lost": False}]
    assert [o["gpus"] for o in filters.matching_overrides(overrides, mixed)] == [
        ["*A100*"],
        ["*V100*"],
    ]


def test_records_are_what_the_config_file_keeps():
    gpus = [*facts(300, 300), {"index": 2, "lost": True, "uuid": "unknown"}]
    gpus[0].update(pci_bus_id="0000:1a:00.0", serial="0323618008123")
    gpus[1].update(pci_bus_id="unreadable", serial="unsupported")
    assert filters.records(gpus) == [
        {
            "index": 0,
            "uuid": "GPU-0",
            "name": V100,
            "slot": "0000:1a:00.0",
            "serial": "0323618008123",
        },
        {"index": 1, "uuid": "GPU-1", "name": V100},
    ]


def test_gates_follow_the_units():
    entries = filters.gate_files(["slurmd.service"], "C", "gpu-tuning-gate.conf")
    assert [(entry["path"], entry.get("state", "file")) for entry in entries] == [
        ("/etc/systemd/system/slurmd.service.d", "directory"),
        ("/etc/systemd/system/slurmd.service.d/gpu-tuning-gate.conf", "file"),
    ]
    assert entries[1]["content"] == "C"


def test_the_filter_selects_with_the_projects_selector():
    # The plugin found module_utils/ itself; nothing in this test put it on a path.
    selection = sys.modules["ansible.module_utils.nvidia_gpu.selection"]
    assert Path(selection.__file__) == MODULE_UTILS / "nvidia_gpu" / "selection.py"
    assert filters.names_a_gpu is selection.names_a_gpu


@pytest.mark.parametrize(
    "selector, kept",
    [
        (["all"], True),
        ([1], True),
        (["1"], True),
        ([4], False),
        (["gpu-1"], True),  # UUIDs match whatever their case
        (["GPU-9"], False),
        (["tesla v100-*"], True),  # model patterns too
        (["*A100*"], False),
        ([" *V100* "], True),  # as the module reads them: surrounding blanks ignored
    ],
)
def test_overrides_keep_the_selectors_the_module_would_match(selector, kept):
    result = filters.matching_overrides([{"gpus": selector, "power_limit": 250}], facts(300, 300))
    assert result == ([{"gpus": selector, "power_limit": 250}] if kept else [])


def test_a_lost_gpu_does_not_keep_an_override():
    gpus = [*facts(300), {"index": 1, "lost": True, "uuid": "GPU-1"}]
    assert filters.matching_overrides([{"gpus": [1], "power_limit": 250}], gpus) == []


def test_a_selector_the_module_would_refuse_is_an_error():
    with pytest.raises(AnsibleFilterError, match="GPU selector True is not valid"):
        filters.matching_overrides([{"gpus": [True], "power_limit": 250}], facts(300))


# Generated inputs: whatever the inventory holds, the filters answer with a result or an
# AnsibleFilterError that names the variable, never a Python exception of their own.
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["3", "1100", "0.8", "1e3", "inf", "nan", " 3", "٣", "²", "1_000", "-1"]),
    st.lists(st.integers(), max_size=2),
)
NEAR_NUMBER = st.one_of(
    st.integers(min_value=-2, max_value=6),
    st.floats(min_value=-1, max_value=6, allow_nan=False),
    st.sampled_from([1.0, 0.8, "2", "0.5", "1100", 2.5]),
)
SUPPLY = st.one_of(
    # Close to a real supply, so that many are accepted and their arithmetic checked.
    st.fixed_dictionaries(
        {"count": NEAR_NUMBER, "watts": st.one_of(NEAR_NUMBER, st.integers(1, 3000), ANY_VALUE)},
        optional={"derating": NEAR_NUMBER, "redundant": NEAR_NUMBER, "name": ANY_VALUE},
    ),
    st.dictionaries(
        st.sampled_from(["count", "watts", "derating", "redundant", "name", "volts"]),
        ANY_VALUE,
    ),
    ANY_VALUE,
)
LOADS = st.one_of(
    st.dictionaries(st.text(max_size=6), st.one_of(st.integers(0, 500), NEAR_NUMBER), max_size=3),
    st.dictionaries(st.text(max_size=6), ANY_VALUE, max_size=3),
    ANY_VALUE,
)


@settings(derandomize=True, max_examples=1500, deadline=None)
@given(supply=SUPPLY, loads=LOADS)
def test_any_supply_gives_a_budget_or_names_the_bad_value(supply, loads):
    try:
        budget = filters.power_budget(plan(200, 200), facts(300, 300), supply, loads)
    except AnsibleFilterError as error:
        message = str(error)
        assert message.startswith(("gpu_tuning_power_supply", "gpu_tuning_other_loads_w"))
        assert "allowed: " in message or "has no" in message or "budget guard" in message
        return
    # Accepted: only finite numbers, whole PSU counts, fewer redundant PSUs than PSUs.
    count, redundant = supply["count"], supply.get("redundant", 0)
    assert float(count) == int(float(count)) >= 1 and 0 <= float(redundant) < float(count)
    assert math.isfinite(budget["budget_w"]) and math.isfinite(budget["total_w"])


@st.composite
def valid_supplies(draw):
    count = draw(st.integers(min_value=1, max_value=8))
    supply = {
        "count": draw(st.sampled_from([count, float(count), str(count)])),
        "watts": draw(st.one_of(st.integers(1, 5000), st.floats(0.5, 5000))),
        "derating": draw(st.floats(min_value=0.01, max_value=1)),
        "redundant": draw(st.integers(min_value=0, max_value=count - 1)),
    }
    return supply


@settings(derandomize=True, max_examples=500, deadline=None)
@given(
    supply=valid_supplies(),
    loads=st.dictionaries(st.text(max_size=6), st.floats(0, 1000), max_size=3),
)
def test_every_valid_supply_is_accepted_and_adds_up(supply, loads):
    budget = filters.power_budget(plan(200, 250), facts(300, 300), supply, loads)
    usable = int(supply["count"]) - supply["redundant"]
    assert budget["budget_w"] == pytest.approx(usable * supply["watts"] * supply["derating"])
    assert budget["total_w"] == pytest.approx(450 + sum(loads.values()))
    assert budget["ok"] == (budget["total_w"] <= budget["budget_w"])


@settings(derandomize=True, max_examples=300, deadline=None)
@given(
    count=st.integers(min_value=1, max_value=64),
    watts=st.integers(min_value=1, max_value=5000),
    load=st.integers(min_value=0, max_value=5000),
)
def test_whole_floats_count_as_their_integers(count, watts, load):
    # {{ 6 / 2 }} gives 3.0: the same budget as 3.
    as_int = filters.power_budget(
        plan(200), facts(300), {"count": count, "watts": watts}, {"x": load}
    )
    as_float = filters.power_budget(
        plan(200), facts(300), {"count": float(count), "watts": float(watts)}, {"x": float(load)}
    )
    assert as_int == as_float


SELECTOR_ITEM = st.one_of(
    st.integers(min_value=-3, max_value=8),
    st.text(max_size=8),
    st.sampled_from(["all", "*V100*", "GPU-1", "gpu-9", "0", "²", "٣", " 1 "]),
    st.booleans(),
    st.none(),
    st.floats(),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)
OVERRIDE = st.one_of(
    st.fixed_dictionaries(
        {"gpus": st.one_of(st.lists(SELECTOR_ITEM, max_size=3), SELECTOR_ITEM)},
        optional={"power_limit": st.integers(100, 300)},
    ),
    ANY_VALUE,
)


@settings(derandomize=True, max_examples=1500, deadline=None)
@given(overrides=st.lists(OVERRIDE, max_size=3))
def test_any_model_override_is_kept_dropped_or_named(overrides):
    try:
        kept = filters.matching_overrides(overrides, facts(300, 300, 300))
    except AnsibleFilterError as error:
        assert str(error).startswith("gpu_tuning_model_overrides: ")
        return
    # Kept selectors are the overrides' own, each naming a GPU of the node.
    for override in kept:
        assert override["gpus"] and isinstance(override, dict)
        for item in override["gpus"]:
            assert filters.names_a_gpu(item, facts(300, 300, 300))
