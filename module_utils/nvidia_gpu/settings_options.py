"""The options of a GPU settings request, written once.

One table for everything that accepts a request: the nvidia_gpu_settings module builds its
argument_spec from it, settings_spec validates module options and the boot config file with it,
and tests/test_settings_options.py fails when the module's DOCUMENTATION or the gpu_tuning role's
argument specs disagree with it (names, types, elements, choices, defaults, suboptions).

Each entry is an Ansible argument spec (type, elements, choices, default, `options` for the
suboptions) plus `in_overrides`: whether an item of `overrides` may set it. In an override an
option has no default (what an override leaves out comes from the request it overrides), and its
`gpus` are required.
"""

from __future__ import annotations

from .nvml import COMPUTE_MODE_NUMBER_BY_NAME

CLOCK_STRATEGIES = ("auto", "locked", "application", "default")
# exclusive_thread is deprecated: drivers since CUDA 8 refuse to set it (facts may still show it).
COMPUTE_MODE_CHOICES = tuple(sorted(set(COMPUTE_MODE_NUMBER_BY_NAME) - {"exclusive_thread"}))

CLOCK_OPTIONS = {
    "strategy": {"type": "str", "choices": CLOCK_STRATEGIES, "default": "auto"},
    "graphics_mhz": {"type": "raw"},
    # raw, not int: Ansible's int conversion takes '٣', '1_000' and ' 5' for numbers and fails
    # with a traceback on 'Infinity'; settings_spec reads whole numbers alike for every option.
    "graphics_min_mhz": {"type": "raw"},
    "memory_mhz": {"type": "raw"},
}

OPTIONS = {
    "gpus": {"type": "list", "elements": "raw", "default": ["all"], "in_overrides": True},
    "persistence_mode": {"type": "bool", "in_overrides": True},
    "power_limit": {"type": "raw", "in_overrides": True},
    "clocks": {"type": "dict", "options": CLOCK_OPTIONS, "in_overrides": True},
    "reset_clocks": {"type": "bool", "default": False, "in_overrides": True},
    "compute_mode": {"type": "str", "choices": COMPUTE_MODE_CHOICES, "in_overrides": True},
    "snap_clocks": {"type": "bool", "default": False, "in_overrides": False},
    # Its suboptions are the options above that are in_overrides (OVERRIDE_OPTIONS).
    "overrides": {"type": "list", "elements": "dict", "in_overrides": False},
}
# Pairs of options a request (and each override) may not give together.
MUTUALLY_EXCLUSIVE = (("clocks", "reset_clocks"),)

REQUEST_KEYS = tuple(OPTIONS)
CLOCK_KEYS = tuple(CLOCK_OPTIONS)
OVERRIDE_KEYS = tuple(name for name, option in OPTIONS.items() if option["in_overrides"])
# What a request can set on a GPU (gpus says which GPUs, snap_clocks how to read clocks).
SETTING_KEYS = tuple(name for name in OVERRIDE_KEYS if name != "gpus")


def _spec(option, in_override=False):
    """One table entry as AnsibleModule takes it (lists, not tuples, as DOCUMENTATION has)."""
    spec = {}
    for key, value in option.items():
        if key == "in_overrides" or (in_override and key == "default"):
            continue
        if key == "options":
            value = {name: _spec(sub) for name, sub in value.items()}
        spec[key] = list(value) if isinstance(value, tuple) else value
    return spec


def override_options():
    """The suboptions of `overrides`: the options an override may set, with gpus required."""
    options = {name: _spec(OPTIONS[name], in_override=True) for name in OVERRIDE_KEYS}
    options["gpus"]["required"] = True
    return options


def argument_spec():
    """The nvidia_gpu_settings module's argument_spec."""
    spec = {name: _spec(option) for name, option in OPTIONS.items()}
    spec["overrides"]["options"] = override_options()
    spec["overrides"]["mutually_exclusive"] = [list(pair) for pair in MUTUALLY_EXCLUSIVE]
    return spec
