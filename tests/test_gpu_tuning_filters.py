"""The gpu_tuning role's filters: the power budget arithmetic people read when the guard fails,
and inventory-wide model overrides narrowed to the GPUs a node has, with the project's own GPU
selector (module_utils/nvidia_gpu/selection.py, as the modules use it)."""

import importlib.util
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

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
    with pytest.raises(AnsibleFilterError, match="not valid"):
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
    assert filters.records(gpus) == [
        {"index": 0, "uuid": "GPU-0", "name": V100},
        {"index": 1, "uuid": "GPU-1", "name": V100},
    ]


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
