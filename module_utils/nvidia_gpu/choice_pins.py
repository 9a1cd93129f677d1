"""What a user may pin for the driver and CUDA choices, checked once, here.

The role variables nvidia_driver_branch, nvidia_driver_kernel_modules, cuda_version and
cuda_defaults reach the choosing modules as they are written in the inventory; the functions
here are the one rule for their format. A bad value raises PolicyError naming the variable, the
value and what is allowed, before anything is asked of apt.
"""

from __future__ import annotations

import re

AUTO = "auto"
FLAVOURS = ("proprietary", "open")

# A driver branch is NVIDIA's three-digit release line (R470, R535, R580).
_BRANCH = re.compile(r"[1-9][0-9]{2}")
# A CUDA release line: MAJOR.MINOR (12.8, 13.0).
_CUDA_VERSION = re.compile(r"([1-9][0-9]?)\.([0-9]{1,2})")

BRANCH_ALLOWED = "auto or a driver branch number such as 580"
FLAVOUR_ALLOWED = "auto, " + ", ".join(sorted(FLAVOURS))
CUDA_VERSION_FORMAT = "a CUDA version MAJOR.MINOR such as 12.8"


class PolicyError(Exception):
    """A choice that cannot work on this machine, or a pin that is not valid; the message says
    why and what would work."""


def _text(value):
    return "" if value is None else str(value)


def _is_auto(value):
    return value is None or _text(value) == AUTO


def branch_pin(value, variable="nvidia_driver_branch"):
    """The pinned driver branch as an int, or None for auto."""
    if _is_auto(value):
        return None
    text = _text(value)
    if not _BRANCH.fullmatch(text):
        raise PolicyError(
            "%s '%s' is not a branch number; allowed: %s" % (variable, text, BRANCH_ALLOWED)
        )
    return int(text)


def flavour_pin(value, variable="nvidia_driver_kernel_modules"):
    """The pinned kernel module flavour, or None for auto."""
    if _is_auto(value):
        return None
    if _text(value) not in FLAVOURS:
        raise PolicyError(
            "%s '%s' is not a kernel module flavour; allowed: %s"
            % (variable, _text(value), FLAVOUR_ALLOWED)
        )
    return _text(value)


def cuda_pin(value, variable="cuda_version"):
    """The pinned CUDA version as 'MAJOR.MINOR', or None for auto."""
    if _is_auto(value):
        return None
    return cuda_version(value, variable, "auto or " + CUDA_VERSION_FORMAT)


def cuda_version(value, variable, allowed=CUDA_VERSION_FORMAT):
    """A CUDA version 'MAJOR.MINOR' as written (12.8; 13.0); auto is not one."""
    match = _CUDA_VERSION.fullmatch(_text(value))
    if not match:
        raise PolicyError(
            "%s '%s' is not a CUDA version; allowed: %s" % (variable, _text(value), allowed)
        )
    return "%d.%d" % (int(match.group(1)), int(match.group(2)))


def cuda_defaults(value, variable="cuda_defaults"):
    """{major: 'MAJOR.MINOR'}: the CUDA version installed per major release when nothing is
    pinned; each version must belong to its major."""
    defaults = {}
    for major, version in (value or {}).items():
        wanted = cuda_version(version, "%s['%s']" % (variable, major))
        if wanted.split(".")[0] != _text(major):
            raise PolicyError(
                "%s['%s'] is '%s', a CUDA %s release; allowed: a %s.MINOR version such as %s.0"
                % (variable, major, version, wanted.split(".")[0], major, major)
            )
        defaults[_text(major)] = wanted
    if not defaults:
        raise PolicyError(
            "%s is empty; allowed: {major: version} such as {'12': '12.8'}" % variable
        )
    return defaults
