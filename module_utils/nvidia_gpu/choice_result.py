"""The one result both choices return (nvidia_driver_select, then nvidia_cuda_select): the
driver, kernel modules, CUDA and fabric manager, each with its part of the node's reason line."""

from __future__ import annotations

from .choice_pins import PolicyError
from .debian_version import upstream
from .gpu_limits import summary

# The order of the parts in the reason line.
PARTS = ("driver", "kernel_modules", "cuda", "fabric_manager")


def assemble(limits, driver, cuda):
    """The result for the GPUs of limits (a GpuLimits), a driver choice (the dict choose_driver
    builds, or reused_driver of an earlier result) and a CUDA choice."""
    parts = {
        "driver": driver["driver_text"],
        "kernel_modules": driver["modules_text"],
        "cuda": cuda["text"],
        "fabric_manager": driver["fabric_text"],
    }
    reason = "%s: %s" % (summary(limits.gpus), ", ".join(parts[key] for key in PARTS))
    notes = driver["notes"] + cuda["notes"]
    if notes:
        reason += " [%s]" % "; ".join(notes)
    return {
        "branch": driver["branch"],
        "version": driver["version"],
        "upstream_version": upstream(driver["version"]) if driver["version"] else "",
        "action": driver["action"],
        "kernel_modules": driver["kernel_modules"],
        "cuda_version": cuda["wanted"],
        "cuda_install": cuda["install"],
        "cuda_fallback": cuda["fallback"],
        "fabric_manager": driver["fabric_manager"],
        "architectures": limits.architectures,
        "allowed_branches": {"min": limits.min_branch, "max": limits.max_branch},
        "allowed_kernel_modules": limits.allowed_flavours,
        "parts": parts,
        "driver_notes": driver["notes"],
        "reason": reason,
        "notes": notes,
    }


def reused_driver(selection):
    """The driver choice of an earlier result (this play's fact, or the node's local fact), so
    that the CUDA choice speaks the same line."""
    try:
        parts = selection["parts"]
        return {
            "branch": int(selection["branch"]),
            "version": selection.get("version") or "",
            "action": selection.get("action") or "keep",
            "kernel_modules": selection["kernel_modules"],
            "fabric_manager": bool(selection["fabric_manager"]),
            "driver_text": parts["driver"],
            "modules_text": parts["kernel_modules"],
            "fabric_text": parts["fabric_manager"],
            "notes": list(selection.get("driver_notes") or []),
        }
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise PolicyError(
            "driver_selection is not a result of nvidia_driver_select (missing or bad %s)" % error
        ) from error
