"""The burn-in's parameters: one JSON object (a file, read strictly), every value checked before
anything starts. Keys left out take their DEFAULTS; a wrong value raises BurnInConfigError naming
the key, the value and what is allowed.

    {"cycles": 10, "high_s": 10, "low_s": 10, "sustained_s": 600, "sample_interval_s": 1,
     "progress_interval_s": 10, "worker_start_s": 120, "stop_on_lost_gpu": false,
     "load_command": ["gpu-node-validate", "load", "--device", "cuda:{index}"],
     "gpus": "all", "kernel_log": "journal",
     "bmc": {"access": {...bmc.py...}, "rails_12v": ["P_12V"], "timeout_s": 10},
     "limits": {"min_rail_v": 11.7, "max_temperature_c": null, "max_nvlink_error_increase": 0,
                "max_pcie_replay_increase": 10, "forbidden_clock_event_reasons": [...],
                "power_cap_expected": true}}

Standard library and the nvidia_gpu package only, Python 3.8+.
"""

from __future__ import annotations

import os
import string

from . import bmc, clock_events, selection
from .boot_config import one_line
from .health_options import DEFAULT_FORBIDDEN_REASONS
from .nvml import GpuError
from .strict_json import FileRefused, parse, read, shown

CONFIG_FORMAT = 1
# The validation package's GEMM worker; {index} is the NVML index, which CUDA follows because
# the driver starts workers with CUDA_DEVICE_ORDER=PCI_BUS_ID.
DEFAULT_LOAD_COMMAND = ["gpu-node-validate", "load", "--device", "cuda:{index}"]
PLACEHOLDERS = ("index", "uuid")
MAX_ARGV = 64
# Number keys: (default, lowest, highest, whole number).
NUMBERS = {
    "cycles": (10, 0, 100000, True),
    # A hold of more than an hour is a sustained phase, not a transient.
    "high_s": (10, 0.1, 3600, False),
    "low_s": (10, 0.1, 3600, False),
    "sustained_s": (600, 0, 7 * 86400, False),
    "sample_interval_s": (1, 0.05, 60, False),
    "progress_interval_s": (10, 0.1, 3600, False),
    # torch and a CUDA context on every GPU take a while; a worker that prints "ready" ends it.
    "worker_start_s": (120, 0.1, 3600, False),
}
OTHERS = {
    "format": CONFIG_FORMAT,
    "comment": None,
    # Going on after a GPU fell off the bus shows whether more follow and lets the BMC read the
    # rail under load; true ends the load at once (a long run that already failed).
    "stop_on_lost_gpu": False,
    "load_command": DEFAULT_LOAD_COMMAND,
    "gpus": "all",
    "kernel_log": "journal",
    "bmc": None,
    "limits": None,
}
BMC_RAILS_12V = ["P_12V"]
LIMITS = {
    # ATX allows 11.4 V (12 V - 5 %), and the seed machine's GPUs fell off the bus at about
    # 11.4 V; once its supply was fixed it held 11.85 V and up under load. 11.7 V is the
    # hardware profile's lower_warning for P_12V: a rail below it under load fails.
    "min_rail_v": (11.7, 1.0, 13.0, False),
    "max_temperature_c": (None, 1, 120, True),  # None: each GPU's slowdown - 5 C, as health
    "max_nvlink_error_increase": (0, 0, 10**9, True),
    "max_pcie_replay_increase": (10, 0, 10**9, True),
}
LIMIT_OTHERS = {
    "forbidden_clock_event_reasons": list(DEFAULT_FORBIDDEN_REASONS),
    # Full load runs a GPU into its power limit: sw_power_cap is then what should happen.
    "power_cap_expected": True,
}
KERNEL_LOGS = ("journal", "dmesg", "none")


class BurnInConfigError(GpuError):
    """The parameters cannot be used; nothing was started."""


def number(key, value, lowest, highest, whole):
    """value if it is a JSON number (an int where whole) in [lowest, highest]."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if whole and isinstance(value, float):
        is_number = value.is_integer()
    if not is_number or not lowest <= value <= highest:
        raise BurnInConfigError(
            "%s %s is not valid; allowed: %s from %s to %s"
            % (key, shown(value), "a whole number" if whole else "a number", lowest, highest)
        )
    return int(value) if whole else value


def _given(data, key, default):
    """data[key]; null (as a role writes an unset variable) or absent: the default."""
    value = data.get(key)
    return default if value is None else value


def _unknown(where, data, allowed):
    unknown = sorted(str(key) for key in set(data) - set(allowed))
    if unknown:
        raise BurnInConfigError(
            "%sunknown key(s) %s; allowed: %s"
            % (where, ", ".join(unknown), ", ".join(sorted(allowed)))
        )


def load_command(value):
    """The worker's argv template: strings whose only fields are {index} and {uuid}."""
    allowed = (
        "a list of 1 to %d non-empty strings, the program first, with {index} and/or {uuid} "
        "(the only fields; {{ and }} for braces)" % MAX_ARGV
    )
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= MAX_ARGV
        or not all(isinstance(part, str) and part for part in value)
    ):
        raise BurnInConfigError(
            "load_command %s is not valid; allowed: %s" % (shown(value), allowed)
        )
    used = set()
    for part in value:
        try:
            fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(part)]
        except ValueError as error:
            raise BurnInConfigError(
                "load_command %s: %s; allowed: %s" % (shown(part), error, allowed)
            ) from error
        for name, spec, conversion in fields:
            if name is None:
                continue
            if name not in PLACEHOLDERS or spec or conversion:
                raise BurnInConfigError(
                    "load_command %s has the field {%s}; allowed: %s" % (shown(part), name, allowed)
                )
            used.add(name)
    if not used:  # every worker would load the same GPU
        raise BurnInConfigError(
            "load_command %s names no GPU; allowed: %s" % (shown(value), allowed)
        )
    return list(value)


def worker_argv(template, index, uuid):
    """The argv of the worker for one GPU."""
    return [part.format(index=index, uuid=uuid) for part in template]


def _kernel_log(value):
    if value in KERNEL_LOGS or (isinstance(value, str) and os.path.isabs(value)):
        return value
    raise BurnInConfigError(
        "kernel_log %s is not valid; allowed: %s or an absolute file path"
        % (shown(value), ", ".join(KERNEL_LOGS))
    )


def _bmc(value):
    """None, or {access, rails_12v, timeout_s}: bmc.check_settings' checks, and a rail to read."""
    if value is None:
        return None
    try:
        settings = bmc.check_settings(dict({"rails_12v": BMC_RAILS_12V}, **value))
    except (bmc.BmcError, TypeError) as error:
        raise BurnInConfigError(one_line(error)) from error
    if not settings["rails_12v"]:
        raise BurnInConfigError(
            "bmc.rails_12v is empty; allowed: a non-empty list of sensor names (the rails the "
            "burn-in watches)"
        )
    return {k: settings[k] for k in ("access", "rails_12v", "timeout_s")}


def _limits(value):
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise BurnInConfigError("limits %s is not valid; allowed: a mapping" % shown(value))
    _unknown("limits: ", value, list(LIMITS) + list(LIMIT_OTHERS))
    limits = {}
    for key, (default, lowest, highest, whole) in LIMITS.items():
        given = _given(value, key, default)
        limits[key] = None if given is None else number(key, given, lowest, highest, whole)
    expected = _given(value, "power_cap_expected", True)
    if not isinstance(expected, bool):
        raise BurnInConfigError(
            "power_cap_expected %s is not valid; allowed: true or false" % shown(expected)
        )
    reasons = _given(
        value, "forbidden_clock_event_reasons", LIMIT_OTHERS["forbidden_clock_event_reasons"]
    )
    names = sorted(clock_events.BITS)
    if not isinstance(reasons, list) or not all(r in clock_events.BITS for r in reasons):
        raise BurnInConfigError(
            "forbidden_clock_event_reasons %s is not valid; allowed: a list of %s"
            % (shown(reasons), ", ".join(names))
        )
    if expected and "sw_power_cap" in reasons:
        raise BurnInConfigError(
            "forbidden_clock_event_reasons has sw_power_cap while power_cap_expected is true; "
            "allowed: one or the other"
        )
    limits.update(power_cap_expected=expected, forbidden_clock_event_reasons=list(reasons))
    return limits


def validate(data):
    """The parameters with defaults filled in; BurnInConfigError at the first wrong value."""
    if not isinstance(data, dict):
        raise BurnInConfigError("the parameters must be a JSON object, not %s" % shown(data))
    _unknown("", data, list(NUMBERS) + list(OTHERS))
    if "format" in data and (isinstance(data["format"], bool) or data["format"] != CONFIG_FORMAT):
        raise BurnInConfigError(
            "format %s is not supported; allowed: %d" % (shown(data["format"]), CONFIG_FORMAT)
        )
    if data.get("comment") is not None and not isinstance(data["comment"], str):
        raise BurnInConfigError("comment %s is not valid; allowed: text" % shown(data["comment"]))
    config = {
        key: number(key, _given(data, key, default), lowest, highest, whole)
        for key, (default, lowest, highest, whole) in NUMBERS.items()
    }
    if config["cycles"] == 0 and config["sustained_s"] == 0:
        raise BurnInConfigError(
            "cycles 0 and sustained_s 0 load nothing; allowed: at least one of them above 0"
        )
    # Every phase gets at least one sample, or what happens in it goes unseen.
    phases = [k for k in ("high_s", "low_s") if config["cycles"]]
    phases += ["sustained_s"] if config["sustained_s"] else []
    shortest = min(phases, key=lambda k: config[k])
    if config["sample_interval_s"] > config[shortest]:
        raise BurnInConfigError(
            "sample_interval_s %s is longer than %s %s: that phase would go unsampled; "
            "allowed: at most the shortest phase"
            % (shown(config["sample_interval_s"]), shortest, shown(config[shortest]))
        )
    stop = _given(data, "stop_on_lost_gpu", OTHERS["stop_on_lost_gpu"])
    if not isinstance(stop, bool):
        raise BurnInConfigError(
            "stop_on_lost_gpu %s is not valid; allowed: true or false" % shown(stop)
        )
    try:
        gpus = selection.parse_selector(_given(data, "gpus", "all"), "gpus")
    except GpuError as error:
        raise BurnInConfigError(str(error)) from error
    config.update(
        stop_on_lost_gpu=stop,
        load_command=load_command(_given(data, "load_command", DEFAULT_LOAD_COMMAND)),
        gpus=gpus,
        kernel_log=_kernel_log(_given(data, "kernel_log", "journal")),
        bmc=_bmc(data.get("bmc")),
        limits=_limits(data.get("limits")),
    )
    return config


def duration_s(config):
    """How long the load runs, start to end."""
    return config["cycles"] * (config["high_s"] + config["low_s"]) + config["sustained_s"]


def load(path):
    """Read and validate a parameter file; BurnInConfigError names the file and the key."""
    try:
        data = parse(path, read(path, "a burn-in parameter file"))
    except FileRefused as error:
        raise BurnInConfigError(str(error)) from error
    try:
        return validate(data)
    except BurnInConfigError as error:
        raise BurnInConfigError("%s: %s" % (path, error)) from error
