# Copyright: the gpu-node project contributors
# SPDX-License-Identifier: Apache-2.0
"""Filters of the gpu_tuning role: model overrides for the GPUs a node has, and the power budget.

Both run on the controller with plain data (module results and facts); nothing here talks to a
GPU. GPUs are selected and named by the project's module_utils/nvidia_gpu (selection.py,
identity.py), the code the modules run on the nodes.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import ansible.module_utils
from ansible.errors import AnsibleFilterError

# On the controller ansible.module_utils holds only ansible-core's own; the modules get the
# project's through AnsiballZ. Make the project's importable the same way (as tests/conftest.py
# does): roles/gpu_tuning/filter_plugins/ -> the repository root's module_utils/.
_MODULE_UTILS = str(Path(__file__).resolve().parents[3] / "module_utils")
if _MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_MODULE_UTILS)

from ansible.module_utils.nvidia_gpu.identity import NOT_AN_IDENTITY, gpu_label  # noqa: E402
from ansible.module_utils.nvidia_gpu.nvml import GpuError  # noqa: E402
from ansible.module_utils.nvidia_gpu.pci import SLOT  # noqa: E402
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
            raise AnsibleFilterError(
                "gpu_tuning_model_overrides: every entry needs gpus (a list of indices, UUIDs or "
                "model patterns) and the settings for them; got %r" % (override,)
            )
        items = override["gpus"] if isinstance(override["gpus"], list) else [override["gpus"]]
        try:
            items = [item for item in items if names_a_gpu(item, present)]
        except GpuError as error:
            raise AnsibleFilterError("gpu_tuning_model_overrides: %s" % error) from error
        if items:
            kept.append(dict(override, gpus=items))
    return kept


def records(gpus):
    """[{index, uuid, name, slot, serial}] of the GPUs that answer: what the config file records.

    The slot (PCI address) lets the boot command tell a card that replaced the recorded one from
    a card that does not answer; a serial NVML cannot read (unsupported, unreadable) is left out.
    """
    kept = []
    for gpu in gpus or []:
        if gpu.get("lost"):
            continue
        record = {"index": gpu["index"], "uuid": gpu["uuid"], "name": gpu["name"]}
        if SLOT.match(str(gpu.get("pci_bus_id"))):
            record["slot"] = gpu["pci_bus_id"]
        if gpu.get("serial") not in NOT_AN_IDENTITY:
            record["serial"] = gpu["serial"]
        kept.append(record)
    return kept


def gate_files(units, content, name):
    """node_files entries for the start gates: each unit's drop-in directory and file (content).
    The role removes the others with node_files' exclusive."""
    wanted = ["/etc/systemd/system/%s.d/%s" % (unit, name) for unit in units or []]
    entries = []
    for path in wanted:
        entries.append(
            {
                "path": path.rsplit("/", 1)[0],
                "state": "directory",
                "mode": "0755",
                "owner": "root",
                "group": "root",
            }
        )
        entries.append(
            {"path": path, "content": content, "mode": "0644", "owner": "root", "group": "root"}
        )
    return entries


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


# Only ASCII digits make a number (YAML gives numbers; a string comes from a template).
_DECIMAL = re.compile(r"[0-9]+(?:[.][0-9]+)?")
_SUPPLY_KEYS = ("count", "watts", "derating", "redundant", "name")


def _parse(name, value, allowed, whole=False):
    """value as a finite number (int when whole), or an error naming the variable and what is
    allowed. Whole floats (200.0, as Jinja arithmetic gives them) count as whole."""
    number = None
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        number = float(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = None
    if number is None or not math.isfinite(number) or (whole and not number.is_integer()):
        raise AnsibleFilterError("%s %r is not valid; allowed: %s." % (name, value, allowed))
    return int(number) if whole else number


def _check(name, ok, value, allowed):
    if not ok:
        raise AnsibleFilterError("%s %r is not valid; allowed: %s." % (name, value, allowed))


def supply_and_loads(supply, other_loads):
    """The power supply and the other loads, checked: (count, watts, derating, redundant, name,
    [(load, watts)]); an error names the variable and what it allows. The role's preflight and
    the budget guard both use it, so the rules are written once. An empty supply (the guard off)
    gives count 0; the loads are checked either way."""
    loads = {} if other_loads is None else other_loads
    if not isinstance(loads, dict):
        raise AnsibleFilterError(
            "gpu_tuning_other_loads_w %r is not valid; allowed: a mapping of names to watts "
            "(numbers >= 0), e.g. {CPUs: 240, fans: 150, disks: 20}." % (other_loads,)
        )
    parsed_loads = []
    for load, value in loads.items():
        name = "gpu_tuning_other_loads_w.%s" % load
        watts = _parse(name, value, "watts, a number >= 0")
        _check(name, watts >= 0, value, "watts, a number >= 0")
        parsed_loads.append((str(load), watts))
    supply = {} if supply is None else supply
    if not isinstance(supply, dict):
        raise AnsibleFilterError(
            "gpu_tuning_power_supply %r is not valid; allowed: {} (no budget guard) or a "
            "mapping with count and watts, optionally derating, redundant and name." % (supply,)
        )
    unknown = sorted(str(key) for key in supply if key not in _SUPPLY_KEYS)
    _check(
        "gpu_tuning_power_supply keys",
        not unknown,
        unknown,
        ", ".join(_SUPPLY_KEYS),
    )
    if not supply:
        return 0, 0.0, 0.8, 0, None, parsed_loads
    for key, meaning in (("count", "the number of PSUs"), ("watts", "the rating of one PSU")):
        if key not in supply:
            raise AnsibleFilterError(
                "gpu_tuning_power_supply has no %s (%s), which the budget guard needs; "
                "got %r." % (key, meaning, supply)
            )
    count = _parse("gpu_tuning_power_supply.count", supply["count"], "a whole number >= 1", True)
    _check("gpu_tuning_power_supply.count", count >= 1, supply["count"], "a whole number >= 1")
    watts_allowed = "the rating of one PSU in watts, a number > 0"
    unit_w = _parse("gpu_tuning_power_supply.watts", supply["watts"], watts_allowed)
    _check("gpu_tuning_power_supply.watts", unit_w > 0, supply["watts"], watts_allowed)
    derating_allowed = "a share of the rating, 0 < derating <= 1 (default 0.8)"
    derating = _parse(
        "gpu_tuning_power_supply.derating", supply.get("derating", 0.8), derating_allowed
    )
    _check(
        "gpu_tuning_power_supply.derating",
        0 < derating <= 1,
        supply.get("derating"),
        derating_allowed,
    )
    redundant_allowed = "a whole number >= 0 and below count (%d)" % count
    redundant = _parse(
        "gpu_tuning_power_supply.redundant", supply.get("redundant", 0), redundant_allowed, True
    )
    _check(
        "gpu_tuning_power_supply.redundant",
        0 <= redundant < count,
        supply.get("redundant"),
        redundant_allowed,
    )
    name = supply.get("name")
    return count, unit_w, derating, redundant, None if name is None else str(name), parsed_loads


def supply_valid(supply, other_loads):
    """True, or an error naming the bad value (for the role's preflight assert)."""
    supply_and_loads(supply, other_loads)
    return True


def power_budget(plan_gpus, facts_gpus, supply, other_loads):
    """The node's power budget as arithmetic people can check.

    plan_gpus: the `gpus` of a check-mode nvidia_gpu_settings result (after.power_limit_w);
    facts_gpus: ansible_facts.nvidia_gpu.gpus (current limits of GPUs without a planned one);
    supply: {count, watts, derating (0.8), redundant (0), name}; other_loads: {name: watts}.
    Returns {ok, total_w, budget_w, text}.
    """
    count, unit_w, derating, redundant, name, loads = supply_and_loads(supply, other_loads)
    _check("gpu_tuning_power_supply", count > 0, supply, "count and watts for the budget guard")
    watts, notes = _gpu_watts(plan_gpus, facts_gpus)
    gpu_text, gpu_total = _gpu_terms(watts)
    total = gpu_total + sum(value for _name, value in loads)
    usable = count - redundant
    budget = usable * unit_w * derating
    units = "%d" % count if not redundant else "(%d - %d redundant)" % (count, redundant)
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
            "gpu_tuning_power_supply_valid": supply_valid,
            "gpu_tuning_records": records,
            "gpu_tuning_gate_files": gate_files,
        }
