"""The desired GPU settings as users write them: checked for shape, types and allowed values.

Used by the nvidia_gpu_settings module (its options) and by the boot-time tool (its config file),
so both accept exactly the same input and reject it with the same messages. Which options exist,
their types and their choices come from settings_options; the rules between values are here.
"""

from __future__ import annotations

from .nvml import GpuError
from .selection import parse_selector
from .settings_options import CLOCK_KEYS, CLOCK_OPTIONS, OPTIONS, OVERRIDE_KEYS, SETTING_KEYS

# Options given as a whole number (MHz or watts), and whether 'default' is allowed instead.
WHOLE_NUMBERS = {
    "power_limit": ("power_limit (watts)", True),
    "graphics_mhz": ("clocks.graphics_mhz", True),
    "memory_mhz": ("clocks.memory_mhz", True),
    "graphics_min_mhz": ("clocks.graphics_min_mhz", False),
}


def _whole_number(name, value, allow_default):
    """An int (or a string of digits), or 'default' where allowed."""
    if allow_default and value == "default":
        return value
    number = value
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if isinstance(number, bool) or not isinstance(number, int) or number <= 0:
        raise GpuError(
            "%s %r is not valid; allowed: a positive whole number%s."
            % (name, value, " or 'default'" if allow_default else "")
        )
    return number


def _checked(where, name, option, value):
    """value, after the type and choices the options table gives for it."""
    if option["type"] == "bool" and not isinstance(value, bool):
        raise GpuError("%s%s %r is not valid; allowed: true, false." % (where, name, value))
    if "choices" in option and value not in option["choices"]:
        raise GpuError(
            "%s%s %r is not valid; allowed: %s."
            % (where, name, value, ", ".join(option["choices"]))
        )
    if name in WHOLE_NUMBERS:
        shown, allow_default = WHOLE_NUMBERS[name]
        return _whole_number(where + shown, value, allow_default)
    return value


def _clocks(value, where):
    if value is None:
        return None
    if not isinstance(value, dict):
        raise GpuError("%sclocks must be a mapping with keys %s." % (where, ", ".join(CLOCK_KEYS)))
    unknown = sorted(set(value) - set(CLOCK_KEYS))
    if unknown:
        raise GpuError(
            "%sclocks has unknown key(s) %s; allowed: %s."
            % (where, ", ".join(unknown), ", ".join(CLOCK_KEYS))
        )
    clocks = {}
    for key, option in CLOCK_OPTIONS.items():
        given = value.get(key)
        if given is None:
            clocks[key] = option.get("default")
        else:
            clocks[key] = _checked(where + "clocks.", key, option, given)
    strategy = clocks["strategy"]
    if strategy in ("locked", "auto") and clocks["graphics_mhz"] in (None, "default"):
        raise GpuError(
            "%sclocks.strategy %s needs graphics_mhz (the highest graphics clock allowed); "
            "use strategy 'default' to remove clock limits." % (where, strategy)
        )
    if strategy == "default" and any(
        clocks[key] is not None for key in CLOCK_KEYS if key != "strategy"
    ):
        raise GpuError(
            "%sclocks.strategy default restores the card's own clocks and takes no MHz values."
            % where
        )
    if strategy == "application" and clocks["graphics_min_mhz"] is not None:
        raise GpuError("%sclocks.graphics_min_mhz applies only to strategy locked or auto." % where)
    return clocks


def _settings(raw, where):
    """One layer of settings (the base or an override), every key validated."""
    settings = {
        key: _checked(where, key, OPTIONS[key], raw[key])
        for key in SETTING_KEYS
        if key not in ("clocks", "reset_clocks") and raw.get(key) is not None
    }
    clocks = _clocks(raw.get("clocks"), where)
    reset = raw.get("reset_clocks")
    if reset is not None and _checked(where, "reset_clocks", OPTIONS["reset_clocks"], reset):
        if clocks is not None:
            raise GpuError("%sreset_clocks and clocks are mutually exclusive." % where)
        clocks = {key: None for key in CLOCK_KEYS}
        clocks["strategy"] = "default"
    if clocks is not None:
        settings["clocks"] = clocks
    return settings


def _override(override, where):
    if not isinstance(override, dict):
        raise GpuError("%smust be a mapping of gpus and settings." % where)
    unknown = sorted(set(override) - set(OVERRIDE_KEYS))
    if unknown:
        raise GpuError(
            "%sunknown key(s) %s; allowed: %s."
            % (where, ", ".join(unknown), ", ".join(sorted(OVERRIDE_KEYS)))
        )
    if override.get("gpus") in (None, [], ""):
        raise GpuError("%sneeds gpus: the GPUs it applies to." % where)
    return {"gpus": parse_selector(override["gpus"]), "settings": _settings(override, where)}


def normalise(raw, where=""):
    """Check a whole request and return it as {gpus, settings, overrides, snap_clocks}.

    raw has the nvidia_gpu_settings module's options (settings_options.OPTIONS); where prefixes
    the option names in messages (the boot config file says 'request.').
    """
    overrides = raw.get("overrides")
    if overrides is not None and not isinstance(overrides, list):
        raise GpuError("%soverrides must be a list." % where)
    overrides = [
        _override(override, "%soverrides[%d]: " % (where, number))
        for number, override in enumerate(overrides or [])
    ]
    settings = _settings(raw, where)
    snap_clocks = raw.get("snap_clocks")
    if snap_clocks is not None:
        _checked(where, "snap_clocks", OPTIONS["snap_clocks"], snap_clocks)
    if not settings and not any(o["settings"] for o in overrides):
        raise GpuError(
            "No setting requested; give at least one of %s (or overrides)."
            % ", ".join(SETTING_KEYS)
        )
    return {
        "gpus": parse_selector(raw.get("gpus")),
        "settings": settings,
        "overrides": overrides,
        "snap_clocks": bool(snap_clocks),
    }
