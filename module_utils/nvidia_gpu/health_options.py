"""The health check's options, written once: type, default and the range a value can be right
in. The module's argument_spec is derived from them, and normalise refuses any value outside
them with a message naming the option and what is allowed, before anything is evaluated."""

from __future__ import annotations

import re

from . import clock_events
from .nvml import GpuError

# NVML_NVLINK_MAX_LINKS: no GPU has more NVLinks, to one peer or in all.
NVLINK_MAX_LINKS = 18
DEFAULT_FORBIDDEN_REASONS = (
    "hw_slowdown",
    "hw_thermal_slowdown",
    "hw_power_brake_slowdown",
    "sw_thermal_slowdown",
)

# Whole-number options: default, lowest, highest (None: no upper bound).
INTEGER_OPTIONS = {
    # The driver does not load without a GPU, so a node that runs this has at least one.
    "expected_count": (None, 1, None),
    "nvlink_links_per_gpu": (None, 0, NVLINK_MAX_LINKS),
    # NV0 would mean "no NVLink", which nvlink_pair_links cannot check; leave it unset instead.
    "nvlink_pair_links": (None, 1, NVLINK_MAX_LINKS),
    "nvlink_error_threshold": (100, 0, None),
    "min_pcie_generation": (None, 1, 6),
    "min_pcie_width": (None, 1, 32),
    "pcie_replay_threshold": (100, 0, None),
    # Above ~120 C every GPU has shut itself down long before.
    "max_temperature_c": (None, 1, 120),
    "max_temperature_spread_c": (15, 0, 100),
    "max_uncorrected_ecc": (0, 0, None),
    "max_corrected_ecc": (0, 0, None),  # 0: off
    "max_retired_pages": (60, 0, None),
}
# The other options: Ansible type and default.
OTHER_OPTIONS = {
    "expected_model": ("str", None),
    "nvlink_peer_map": ("dict", None),
    "forbidden_clock_event_reasons": ("list", list(DEFAULT_FORBIDDEN_REASONS)),
    "require_persistence": ("bool", True),
    "kernel_log": ("str", "journal"),
}
OPTION_TYPES = dict(
    {name: "int" for name in INTEGER_OPTIONS},
    **{name: kind for name, (kind, _default) in OTHER_OPTIONS.items()},
)
DEFAULTS = dict(
    {name: spec[0] for name, spec in INTEGER_OPTIONS.items()},
    **{name: default for name, (_kind, default) in OTHER_OPTIONS.items()},
)
_DIGITS = re.compile(r"[0-9]+\Z")


def allowed_range(lowest, highest):
    if highest is None:
        return "a whole number from %d up" % lowest
    return "a whole number from %d to %d" % (lowest, highest)


def whole_number(what, value, lowest, highest):
    """value as an int: an int, a whole float (Jinja arithmetic gives 200.0) or, where YAML
    keys are strings, ASCII digits; anything else, or out of range, is a GpuError."""
    whole = (
        (isinstance(value, int) and not isinstance(value, bool))
        or (isinstance(value, float) and value.is_integer())
        or (isinstance(value, str) and _DIGITS.match(value) is not None)
    )
    number = int(value) if whole else None
    if number is None or number < lowest or (highest is not None and number > highest):
        raise GpuError("%s is %r; allowed: %s." % (what, value, allowed_range(lowest, highest)))
    return number


def normalise(options):
    """Expectations with defaults filled in; a value that cannot be right raises GpuError naming
    the option and what is allowed. None means "not given" (the default)."""
    if not isinstance(options, dict):
        raise GpuError("the health options must be a mapping, got %r." % (options,))
    unknown = sorted(str(name) for name in set(options) - set(DEFAULTS))
    if unknown:
        raise GpuError(
            "unknown health option(s) %s; allowed: %s."
            % (", ".join(unknown), ", ".join(sorted(DEFAULTS)))
        )
    expected = dict(DEFAULTS)
    expected.update({k: v for k, v in options.items() if v is not None})
    for name, (_default, lowest, highest) in INTEGER_OPTIONS.items():
        if expected[name] is not None:
            expected[name] = whole_number(name, expected[name], lowest, highest)
    for name in ("expected_model", "kernel_log"):
        value = expected[name]
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise GpuError("%s is %r; allowed: a non-empty string." % (name, value))
    if not isinstance(expected["require_persistence"], bool):
        raise GpuError(
            "require_persistence is %r; allowed: true or false."
            % (expected["require_persistence"],)
        )
    expected["forbidden_clock_event_reasons"] = _reasons(expected["forbidden_clock_event_reasons"])
    if expected["nvlink_pair_links"] is not None and expected["nvlink_peer_map"] is not None:
        raise GpuError("nvlink_pair_links and nvlink_peer_map are mutually exclusive.")
    expected["nvlink_peer_map"] = _peer_map(expected["nvlink_peer_map"])
    return expected


def _reasons(raw):
    if not isinstance(raw, (list, tuple)) or not all(isinstance(r, str) for r in raw):
        raise GpuError(
            "forbidden_clock_event_reasons is %r; allowed: a list of reason names (%s)."
            % (raw, ", ".join(sorted(clock_events.BITS)))
        )
    unknown = sorted(set(raw) - set(clock_events.BITS))
    if unknown:
        raise GpuError(
            "forbidden_clock_event_reasons has unknown reason(s) %s; allowed: %s."
            % (", ".join(unknown), ", ".join(sorted(clock_events.BITS)))
        )
    return list(raw)


PEER_MAP_SHAPE = (
    "expected a mapping like {0: {1: 2, 2: 2}} (GPU index -> peer index -> NVLink links)"
)


def _peer_map(raw):
    """{gpu: {peer: links}} with int keys, from YAML that may use strings."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or not all(isinstance(p, dict) for p in raw.values()):
        raise GpuError("nvlink_peer_map %r is not valid; %s." % (raw, PEER_MAP_SHAPE))
    peer_map = {}
    for gpu, peers in raw.items():
        index = whole_number("nvlink_peer_map GPU index", gpu, 0, None)
        row = peer_map.setdefault(index, {})
        for peer, links in peers.items():
            where = "nvlink_peer_map GPU %d" % index
            other = whole_number("%s peer index" % where, peer, 0, None)
            if other == index:
                raise GpuError("%s names itself as its peer; %s." % (where, PEER_MAP_SHAPE))
            row[other] = whole_number(
                "%s links to GPU %d" % (where, other), links, 1, NVLINK_MAX_LINKS
            )
    return peer_map


def check_against(expected, facts):
    """What can only be checked against the node: a peer map naming a GPU it does not have.
    A GPU the hardware profile expects but the node is missing is the inventory check's
    finding, not a wrong option, so expected_count counts as well as what NVML sees."""
    peer_map = expected["nvlink_peer_map"]
    if not peer_map:
        return
    size = max(facts["count"], expected["expected_count"] or 0)
    named = sorted({i for gpu, row in peer_map.items() for i in (gpu, *row)})
    beyond = [i for i in named if i >= size]
    if beyond:
        raise GpuError(
            "nvlink_peer_map names GPU(s) %s, this node has GPUs 0-%d; allowed: indices of "
            "GPUs the node has." % (", ".join(map(str, beyond)), size - 1)
        )
