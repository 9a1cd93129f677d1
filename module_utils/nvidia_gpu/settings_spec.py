"""The desired GPU settings as users write them: checked for shape, types and allowed values.

Used by the nvidia_gpu_settings module (its options) and by the boot-time tool (its config file),
so both accept exactly the same input and reject it with the same messages. Which options exist,
their types and their choices come from settings_options; the rules between values are here.
Every message names the option by its full key path (`request.overrides[1].clocks.graphics_mhz`
in the boot file), so a refusal can be found in the input it came from.
"""

from __future__ import annotations

import math
import re

from .nvml import GpuError
from .selection import parse_selector
from .settings_options import (
    CLOCK_KEYS,
    CLOCK_OPTIONS,
    OPTIONS,
    OVERRIDE_KEYS,
    REQUEST_KEYS,
    SETTING_KEYS,
)

# Options given as a whole number (MHz or watts): the unit messages add to the name, and whether
# 'default' is allowed instead.
WHOLE_NUMBERS = {
    "power_limit": (" (watts)", True),
    "graphics_mhz": ("", True),
    "memory_mhz": ("", True),
    "graphics_min_mhz": ("", False),
}
# Far above any GPU's watts or MHz: a larger value is a typo, refused before it reaches NVML
# (whose arguments are 32-bit; the power limit travels in milliwatts).
LARGEST_WHOLE_NUMBER = 100000
# Only ASCII digits make a number; '.0' after them is how templating may write a whole float
# ({{ 400 * 0.5 }} gives 200.0, which may reach a module as the text '200.0').
_WHOLE_TEXT = re.compile(r"([0-9]+)(?:\.0*)?")


def whole_number(value):
    """value as an int when it is a whole number (an int, a finite whole float or ASCII digits,
    optionally followed by '.0'), else None. Booleans are not numbers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str):
        match = _WHOLE_TEXT.fullmatch(value)
        if match:
            digits = match.group(1).lstrip("0") or "0"
            # int() refuses very long digit strings; any that long is out of range anyway.
            return int(digits) if len(digits) <= 18 else 10**18
    return None


def _whole_number(path, value, allow_default):
    """An int within 1..LARGEST_WHOLE_NUMBER, or 'default' where allowed."""
    if allow_default and value == "default":
        return value
    number = whole_number(value)
    default = " or 'default'" if allow_default else ""
    if number is None or number <= 0:
        raise GpuError(
            "%s %r is not valid; allowed: a positive whole number%s." % (path, value, default)
        )
    if number > LARGEST_WHOLE_NUMBER:
        raise GpuError(
            "%s %r is not valid; allowed: a positive whole number up to %d%s."
            % (path, value, LARGEST_WHOLE_NUMBER, default)
        )
    return number


def _checked(path, name, option, value):
    """value, after the type and choices the options table gives for it; path names it."""
    if option["type"] == "bool" and not isinstance(value, bool):
        raise GpuError("%s %r is not valid; allowed: true, false." % (path, value))
    if "choices" in option and not (isinstance(value, str) and value in option["choices"]):
        raise GpuError(
            "%s %r is not valid; allowed: %s." % (path, value, ", ".join(option["choices"]))
        )
    if name in WHOLE_NUMBERS:
        unit, allow_default = WHOLE_NUMBERS[name]
        return _whole_number(path + unit, value, allow_default)
    return value


def _unknown(mapping, allowed):
    """The keys of mapping that allowed lacks, as text, sorted (keys need not be strings)."""
    return sorted(str(key) for key in mapping if not (isinstance(key, str) and key in allowed))


def _mapping(value, path, what, allowed, keys="key(s)"):
    """Refuse a value that is not a mapping, or one with keys outside allowed."""
    if not isinstance(value, dict):
        raise GpuError(
            "%s must be a mapping of %s; got %r (allowed keys: %s)."
            % (path, what, value, ", ".join(allowed))
        )
    unknown = _unknown(value, allowed)
    if unknown:
        raise GpuError(
            "%s has unknown %s %s; allowed: %s."
            % (path, keys, ", ".join(unknown), ", ".join(allowed))
        )


def _clocks(value, path):
    if value is None:
        return None
    _mapping(value, path, "clock settings", CLOCK_KEYS)
    clocks = {}
    for key, option in CLOCK_OPTIONS.items():
        given = value.get(key)
        if given is None:
            clocks[key] = option.get("default")
        else:
            clocks[key] = _checked("%s.%s" % (path, key), key, option, given)
    strategy = clocks["strategy"]
    if strategy in ("locked", "auto") and clocks["graphics_mhz"] in (None, "default"):
        raise GpuError(
            "%s.strategy %s needs graphics_mhz (the highest graphics clock allowed); "
            "use strategy 'default' to remove clock limits." % (path, strategy)
        )
    if strategy == "default" and any(
        clocks[key] is not None for key in CLOCK_KEYS if key != "strategy"
    ):
        raise GpuError(
            "%s.strategy default restores the card's own clocks and takes no MHz values." % path
        )
    if strategy == "application" and clocks["graphics_min_mhz"] is not None:
        raise GpuError("%s.graphics_min_mhz applies only to strategy locked or auto." % path)
    return clocks


def _settings(raw, where):
    """One layer of settings (the base or an override), every key validated; where is the key
    path prefix of the layer ('', 'request.', 'overrides[1].')."""
    settings = {
        key: _checked(where + key, key, OPTIONS[key], raw[key])
        for key in SETTING_KEYS
        if key not in ("clocks", "reset_clocks") and raw.get(key) is not None
    }
    clocks = _clocks(raw.get("clocks"), where + "clocks")
    reset = raw.get("reset_clocks")
    if reset is not None and _checked(
        where + "reset_clocks", "reset_clocks", OPTIONS["reset_clocks"], reset
    ):
        if clocks is not None:
            raise GpuError("%sreset_clocks and %sclocks are mutually exclusive." % (where, where))
        clocks = {key: None for key in CLOCK_KEYS}
        clocks["strategy"] = "default"
    if clocks is not None:
        settings["clocks"] = clocks
    return settings


def _override(override, where):
    path = where.rstrip(".")
    _mapping(override, path, "gpus and settings", OVERRIDE_KEYS)
    if override.get("gpus") is None:
        raise GpuError("%s needs gpus: the GPUs it applies to." % path)
    return {
        "gpus": parse_selector(override["gpus"], where + "gpus"),
        "settings": _settings(override, where),
    }


def normalise(raw, where=""):
    """Check a whole request and return it as {gpus, settings, overrides, snap_clocks}.

    raw has the nvidia_gpu_settings module's options (settings_options.OPTIONS); where prefixes
    the key paths in messages (the boot config file says 'request.').
    """
    _mapping(raw, where.rstrip(".") or "the request", "options", REQUEST_KEYS, "option(s)")
    overrides = raw.get("overrides")
    if overrides is not None and not isinstance(overrides, list):
        raise GpuError("%soverrides must be a list of mappings; got %r." % (where, overrides))
    overrides = [
        _override(override, "%soverrides[%d]." % (where, number))
        for number, override in enumerate(overrides or [])
    ]
    settings = _settings(raw, where)
    snap_clocks = raw.get("snap_clocks")
    if snap_clocks is not None:
        _checked(where + "snap_clocks", "snap_clocks", OPTIONS["snap_clocks"], snap_clocks)
    if not settings and not any(o["settings"] for o in overrides):
        raise GpuError(
            "No setting requested; give at least one of %s (or overrides)."
            % ", ".join(SETTING_KEYS)
        )
    return {
        "gpus": parse_selector(raw.get("gpus"), where + "gpus"),
        "settings": settings,
        "overrides": overrides,
        "snap_clocks": bool(snap_clocks),
    }
