"""Bring GPUs to a desired state: validate everything, then change only what differs."""

from __future__ import annotations

import os

from .device import open_all
from .identity import gpu_label
from .nvml import GpuError, Nvml, failed_call, pynvml
from .settings_apply import apply, report
from .settings_plan import plan, unknown_locks
from .settings_spec import normalise


def _gpus():
    """Every GPU (device.open_all); an NVML failure to count them names the call."""
    try:
        return open_all()
    except pynvml.NVMLError as error:  # nvmlDeviceGetCount: Gpu.open names its own calls
        raise failed_call("this host", pynvml.nvmlDeviceGetCount, error) from error


def ensure(raw_request, check_mode=False, warn=None):
    """Validate raw_request (module options or a config file) and apply it unless check_mode.

    Returns (changed, per-GPU results, diff). Raises GpuError before any change when the request
    is invalid for any selected GPU, and ApplyFailed (after rolling back) when a change fails.
    warn(message), when given, hears what the caller should know although nothing failed (locks
    set again because the record under /run could not tell them).
    """
    request = normalise(raw_request)
    with Nvml():
        planned = plan(_gpus(), request)
        results, diff = report(planned)
        changed = any(result["changed"] for result in results)
        warning = unknown_locks(planned)
        if warning and warn is not None:
            warn(warning)
        if changed and not check_mode:
            if os.geteuid() != 0:
                raise GpuError(
                    "Changing GPU settings needs root (use become: true); nothing was changed. "
                    "Pending changes: %s."
                    % "; ".join(
                        "%s %s" % (gpu_label(r["index"]), ", ".join(r["changed"]))
                        for r in results
                        if r["changed"]
                    )
                )
            apply(planned)
    return changed, results, diff
