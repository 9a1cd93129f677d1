# Copyright: the gpu-node project contributors
# SPDX-License-Identifier: Apache-2.0
"""Filters of the gpu_tuning role: model overrides for the GPUs a node has, and the power budget.

Both run on the controller with plain data (module results and facts); nothing here talks to a
GPU. GPUs are selected and named by the project's module_utils/nvidia_gpu (selection.py,
identity.py), the code the modules run on the nodes.
"""

from __future__ import annotations

from pathlib import Path

import ansible.module_utils
from ansible.errors import AnsibleFilterError

# On the controller ansible.module_utils holds only ansible-core's own; the modules get the
# project's through AnsiballZ. Make the project's importable the same way (as tests/conftest.py
# does): roles/gpu_tuning/filter_plugins/ -> the repository root's module_utils/.
_MODULE_UTILS = str(Path(__file__).resolve().parents[3] / "module_utils")
if _MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_MODULE_UTILS)

from ansible.module_utils.nvidia_gpu.identity import gpu_label  # noqa: E402
from ansible.module_utils.nvidia_gpu.nvml import GpuError  # noqa: E402
from ansible.module_utils.nvidia_gpu.selection import names_a_gpu  # noqa: E402


def matching_overrides(overrides, gpus):
    """Overrides narrowed to the selectors that match a GPU of this node.

    For inventory-wide (group_vars) overrides such as `gpus: ['*A100*']`: on a node without A100s
    the selector is dropped, and an override left without selectors is dropped, instead of
    failing as a selector that matches nothing does in nvidia_gpu_settings.
    """
    present = [gpu for gpu in gpus or [] if not gpu.get("lost")]
    kept = []
    for override in overrides or []:
        if not isinstance(override, dict) or not override.get("gpus"):
            raise AnsibleFilterError("every override needs gpus: %r" % (override,))
        items = override["gpus"] if isinstance(override["gpus"], list) else [override["gpus"]]
        try:
            items = [item for item in items if names_a_gpu(item, present)]
        except GpuError as error:
            raise AnsibleFilterError(str(error)) from error
        if items:
            kept.append(dict(override, gpus=items))
    return kept


def records(gpus):
    """[{index, uuid, name}] of the GPUs that answer: what the config file records."""
    return [
        {"index": gpu["index"], "uuid": gpu["uuid"], "name": gpu["name"]}
        for gpu in gpus or []
        if not gpu.get("lost")
    ]


def _number(value):
    """1100 -> '1100', 0.8 -> '0.8', 2640.0 -> '2640'."""
    value = round(float(value), 3)
    return str(int(value)) if value == int(value) else ("%g" % value)


def _gpu_watts(plan_gpus, facts_gpus):
    """[(index, watts)] for every GPU: its planned limit, else its current one."""
    planned = {
        gpu["index"]: gpu["after"]["power_limit_w"]
        for gpu in plan_gpus or []
        if isinstance(gpu.get("after", {}).get("power_limit_w"), (int, float))
    }
    watts, notes = [], []
    for gpu in facts_gpus or []:
        if gpu.get("lost"):
            notes.append("%s is lost and not counted" % gpu_label(gpu["index"]))
            continue
        if gpu["index"] in planned:
            watts.append((gpu["index"], planned[gpu["index"]]))
            continue
        power = gpu.get("power", {})
        for key in ("limit_w", "default_limit_w", "max_limit_w"):
            if isinstance(power.get(key), (int, float)):
                watts.append((gpu["index"], power[key]))
                break
        else:
            notes.append("%s reports no power limit and is not counted" % gpu_label(gpu["index"]))
    return watts, notes


def _gpu_terms(watts):
    """('4 GPUs x 200 W = 800 W' or 'GPUs 2 x 200 W + 2 x 300 W = 1000 W', total watts)."""
    groups = {}
    for _index, value in watts:
        groups[value] = groups.get(value, 0) + 1
    total = sum(value for _index, value in watts)
    if not groups:
        return "GPUs 0 W", 0
    if len(groups) == 1:
        ((value, count),) = groups.items()
        return "%d GPU%s x %s W = %s W" % (
            count,
            "s" if count > 1 else "",
            _number(value),
            _number(total),
        ), total
    parts = ["%d x %s W" % (count, _number(value)) for value, count in groups.items()]
    return "GPUs %s = %s W" % (" + ".join(parts), _number(total)), total


def power_budget(plan_gpus, facts_gpus, supply, other_loads):
    """The node's power budget as arithmetic people can check.

    plan_gpus: the `gpus` of a check-mode nvidia_gpu_settings result (after.power_limit_w);
    facts_gpus: ansible_facts.nvidia_gpu.gpus (current limits of GPUs without a planned one);
    supply: {count, watts, derating (0.8), redundant (0), name}; other_loads: {name: watts}.
    Returns {ok, total_w, budget_w, text}.
    """
    supply = supply or {}
    try:
        count = int(supply["count"])
        unit_w = float(supply["watts"])
        derating = float(supply.get("derating", 0.8))
        redundant = int(supply.get("redundant", 0))
        loads = [(str(name), float(value)) for name, value in (other_loads or {}).items()]
    except (KeyError, TypeError, ValueError) as error:
        raise AnsibleFilterError(
            "power supply %r / other loads %r are not valid: %s" % (supply, other_loads, error)
        ) from error
    watts, notes = _gpu_watts(plan_gpus, facts_gpus)
    gpu_text, gpu_total = _gpu_terms(watts)
    total = gpu_total + sum(value for _name, value in loads)
    usable = count - redundant
    budget = usable * unit_w * derating
    units = "%d" % count if not redundant else "(%d - %d redundant)" % (count, redundant)
    name = supply.get("name")
    budget_text = "budget %s x %s W x %s = %s W%s" % (
        units,
        _number(unit_w),
        _number(derating),
        _number(budget),
        " (%s)" % name if name else "",
    )
    ok = total <= budget
    terms = [gpu_text] + ["%s %s W" % (load, _number(value)) for load, value in loads]
    text = " + ".join(terms)
    if loads:
        text += " = %s W" % _number(total)
    text += " %s %s" % ("<=" if ok else ">", budget_text)
    if notes:
        text += " (%s)" % "; ".join(notes)
    return {"ok": ok, "total_w": total, "budget_w": budget, "text": text}


class FilterModule:
    def filters(self):
        return {
            "gpu_tuning_matching_overrides": matching_overrides,
            "gpu_tuning_power_budget": power_budget,
            "gpu_tuning_records": records,
        }
