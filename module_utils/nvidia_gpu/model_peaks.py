"""What a GPU model can do at most: dense matrix-multiply TFLOPS per data type and memory
bandwidth, by the PCI device ids of models.MODELS (a test holds the two tables together). The
validation run measures against these (as % of peak); figures are NVIDIA's datasheet values at
boost clock, without sparsity. A model missing here gets no throughput threshold.
"""

from __future__ import annotations

from .models import MODELS

_V100_SXM2 = {
    "gemm_tflops": {"fp16": 125.0, "fp32": 15.7, "fp64": 7.8},
    "memory_bandwidth_gbs": 900.0,
}
_V100_PCIE = {
    "gemm_tflops": {"fp16": 112.0, "fp32": 14.0, "fp64": 7.0},
    "memory_bandwidth_gbs": 900.0,
}
# Ampere and Hopper: fp64 through the tensor cores (what cuBLAS DGEMM uses), tf32 and bf16 too.
_A100 = {"fp16": 312.0, "bf16": 312.0, "tf32": 156.0, "fp32": 19.5, "fp64": 19.5}
_H100_SXM = {"fp16": 989.0, "bf16": 989.0, "tf32": 495.0, "fp32": 67.0, "fp64": 67.0}
_H100_PCIE = {"fp16": 756.0, "bf16": 756.0, "tf32": 378.0, "fp32": 51.0, "fp64": 51.0}

PEAKS = {
    "1db1": _V100_SXM2,
    "1db5": _V100_SXM2,
    "1db4": _V100_PCIE,
    "1db6": _V100_PCIE,
    "20b0": {"gemm_tflops": _A100, "memory_bandwidth_gbs": 1555.0},
    "20b2": {"gemm_tflops": _A100, "memory_bandwidth_gbs": 2039.0},
    "20f1": {"gemm_tflops": _A100, "memory_bandwidth_gbs": 1555.0},
    "20b5": {"gemm_tflops": _A100, "memory_bandwidth_gbs": 1935.0},
    "2330": {"gemm_tflops": _H100_SXM, "memory_bandwidth_gbs": 3350.0},
    "2331": {"gemm_tflops": _H100_PCIE, "memory_bandwidth_gbs": 2000.0},
}

# The seed machine's three-body integration (a hand-written CUDA kernel, fp64: 1M configurations
# x 50k steps in 59 s on one V100; fp32: 7.04 s on four), as configuration-steps per second per GPU.
THREEBODY_REFERENCE = {
    "1db1": {"fp64": 1e6 * 50e3 / 59.0, "fp32": 1e6 * 50e3 / 7.04 / 4},
}


def peaks_by_name():
    """{model name as NVML and torch report it: peaks (and the three-body reference)}."""
    table = {}
    for device_id, peaks in PEAKS.items():
        entry = {
            "gemm_tflops": dict(peaks["gemm_tflops"]),
            "memory_bandwidth_gbs": peaks["memory_bandwidth_gbs"],
        }
        if device_id in THREEBODY_REFERENCE:
            entry["threebody_config_steps_per_s"] = dict(THREEBODY_REFERENCE[device_id])
        table[MODELS[device_id]["name"]] = entry
    return table
