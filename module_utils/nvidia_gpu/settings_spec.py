"""The desired GPU settings as users write them: checked for shape, types and allowed values.

Used by the nvidia_gpu_settings module (its options) and by the boot-time tool (its config file),
so both accept exactly the same input and reject it with the same messages.
"""

from __future__ import annotations

from .nvml import GpuError
from .selection import parse_selector

CLOCK_STRATEGIES = ("auto", "locked", "application", "default")
COMPUTE_MODE_NAMES = ("default", "exclusive_process", "prohibited")
SETTING_KEYS = ("persistence_mode", "power_limit", "clocks", "compute_mode")
CLOCK_KEYS = ("strategy", "graphics_mhz", "graphics_min_mhz", "memory_mhz")


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
    clocks = {key: value.get(key) for key in CLOCK_KEYS}
    strategy = clocks["strategy"] or "auto"
    if strategy not in CLOCK_STRATEGIES:
        raise GpuError(
            "%sclocks.strategy %r is not valid; allowed: %s."
            % (where, strategy, ", ".join(CLOCK_STRATEGIES))
        )
    clocks["strategy"] = strategy
    for key in ("graphics_mhz", "memory_mhz"):
        if clocks[key] is not None:
            clocks[key] = _whole_number(where + "clocks." + key, clocks[key], allow_default=True)
    if clocks["graphics_min_mhz"] is not None:
        clocks["graphics_min_mhz"] = _whole_number(
            where + "clocks.graphics_min_mhz", clocks["graphics_min_mhz"], allow_default=False
        )
    if strategy in ("locked", "auto") and clocks["graphics_mhz"] in (None, "default"):
        raise GpuError(
            "%sclocks.strategy %s needs graphics_mhz (the highest graphics clock allowed); "
            "use strategy 'default' to remove clock limits." % (where, strategy)
        )
    if strategy == "default" and any(clocks[key] is not None for key in CLOCK_KEYS[1:]):
        raise GpuError(
            "%sclocks.strategy default restores the card's own clocks and takes no MHz values."
            % where
        )
    if strategy == "application" and clocks["graphics_min_mhz"] is not None:
        raise GpuError("%sclocks.graphics_min_mhz applies only to strategy locked or auto." % where)
    return clocks


def _settings(raw, where):
    """One layer of settings (the base or an override), every key validated."""
    settings = {}
    if raw.get("persistence_mode") is not None:
        if not isinstance(raw["persistence_mode"], bool):
            raise GpuError(
                "%spersistence_mode %r is not valid; allowed: true, false."
                % (where, raw["persistence_mode"])
            )
        settings["persistence_mode"] = raw["persistence_mode"]
    if raw.get("power_limit") is not None:
        settings["power_limit"] = _whole_number(
            where + "power_limit (watts)", raw["power_limit"], allow_default=True
        )
    clocks = _clocks(raw.get("clocks"), where)
    if raw.get("reset_clocks"):
        if clocks is not None:
            raise GpuError("%sreset_clocks and clocks are mutually exclusive." % where)
        clocks = {key: None for key in CLOCK_KEYS}
        clocks["strategy"] = "default"
    if clocks is not None:
        settings["clocks"] = clocks
    if raw.get("compute_mode") is not None:
        if raw["compute_mode"] not in COMPUTE_MODE_NAMES:
            raise GpuError(
                "%scompute_mode %r is not valid; allowed: %s."
                % (where, raw["compute_mode"], ", ".join(COMPUTE_MODE_NAMES))
            )
        settings["compute_mode"] = raw["compute_mode"]
    return settings


def normalise(raw):
    """Check a whole request and return it as {gpus, settings, overrides, snap_clocks}.

    raw has the module's options: gpus, persistence_mode, power_limit, clocks, reset_clocks,
    compute_mode, snap_clocks and overrides (a list of the same settings with their own gpus).
    """
    overrides = []
    for number, override in enumerate(raw.get("overrides") or []):
        where = "overrides[%d]: " % number
        if not isinstance(override, dict):
            raise GpuError("%smust be a mapping of gpus and settings." % where)
        allowed = set(SETTING_KEYS) | {"gpus", "reset_clocks"}
        unknown = sorted(set(override) - allowed)
        if unknown:
            raise GpuError(
                "%sunknown key(s) %s; allowed: %s."
                % (where, ", ".join(unknown), ", ".join(sorted(allowed)))
            )
        if override.get("gpus") in (None, [], ""):
            raise GpuError("%sneeds gpus: the GPUs it applies to." % where)
        overrides.append(
            {"gpus": parse_selector(override["gpus"]), "settings": _settings(override, where)}
        )
    settings = _settings(raw, "")
    if not settings and not any(o["settings"] for o in overrides):
        raise GpuError(
            "No setting requested; give at least one of persistence_mode, power_limit, clocks, "
            "reset_clocks, compute_mode (or overrides)."
        )
    return {
        "gpus": parse_selector(raw.get("gpus")),
        "settings": settings,
        "overrides": overrides,
        "snap_clocks": bool(raw.get("snap_clocks")),
    }
