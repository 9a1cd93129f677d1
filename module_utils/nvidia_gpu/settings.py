"""Bring GPUs to a desired state: validate everything, then change only what differs."""

from __future__ import annotations

import os

from .device import open_all
from .identity import gpu_label
from .nvml import GpuError, Nvml
from .settings_apply import apply, report
from .settings_plan import plan
from .settings_spec import normalise


def ensure(raw_request, check_mode=False):
    """Validate raw_request (module options or a config file) and apply it unless check_mode.

    Returns (changed, per-GPU results, diff). Raises GpuError before any change when the request
    is invalid for any selected GPU, and ApplyFailed (after rolling back) when a change fails.
    """
    request = normalise(raw_request)
    with Nvml():
        planned = plan(open_all(), request)
        results, diff = report(planned)
        changed = any(result["changed"] for result in results)
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
