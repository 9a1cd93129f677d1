# Copyright: the gpu-node project contributors
# SPDX-License-Identifier: Apache-2.0
"""The validation run's expectations, on the controller: every known GPU model's peaks (from
module_utils/nvidia_gpu/model_peaks.py) and the hardware profile's bars."""

from __future__ import annotations

from pathlib import Path

import ansible.module_utils
from ansible.errors import AnsibleFilterError

_MODULE_UTILS = str(Path(__file__).resolve().parents[1] / "module_utils")
if _MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_MODULE_UTILS)

from ansible.module_utils.nvidia_gpu.model_peaks import peaks_by_name  # noqa: E402


def validation_expectations(profile):
    """profile: {'allreduce_busbw_gbs': GB/s or None, 'topology': text or None,
    'ddp_min_speedup': {GPU count: speedup} or None} -> the config's `expectations` object."""
    profile = profile or {}
    expectations = {"gpu_models": peaks_by_name()}
    busbw = profile.get("allreduce_busbw_gbs")
    if busbw not in (None, ""):
        try:
            expected = float(busbw)
        except (TypeError, ValueError):
            raise AnsibleFilterError(
                "hardware_allreduce_busbw_gbs %r is not a number of GB/s" % (busbw,)
            ) from None
        expectations["allreduce_busbw_gbs"] = {
            "expected": expected,
            "topology": profile.get("topology") or "the hardware profile's topology",
        }
    speedups = profile.get("ddp_min_speedup") or {}
    try:
        expectations["ddp_min_speedup"] = {str(int(k)): float(v) for k, v in speedups.items()}
    except (AttributeError, TypeError, ValueError):
        raise AnsibleFilterError(
            "hardware_ddp_min_speedup %r is not {GPU count: speedup} such as {4: 3.7}" % (speedups,)
        ) from None
    return expectations


class FilterModule:
    def filters(self):
        return {"validation_expectations": validation_expectations}
