"""Checks: one record per judged measurement, the judging rule, and what a failure usually means.

A check is a plain dict (it goes into report.json as is):
{name, value, unit, expected, comparison, status, reason, likely_cause}
status is "pass", "fail" or "not_applicable"; reason says where the expectation comes from (or
why there is none); likely_cause is set on failures only.
"""

PASS, FAIL, NOT_APPLICABLE = "pass", "fail", "not_applicable"

CPU_REASON = (
    "CPU run: it proves the computation is right; speed thresholds apply to GPUs "
    "(expectations.apply_thresholds_on_cpu makes them apply here, for tests)"
)

LIKELY_CAUSES = {
    "gemm_slow": "power or clock caps (an applied power limit or application/locked clocks), "
    "thermal throttling (a hot GPU: heatsink torque, airflow) or another process on the GPU; "
    "check nvidia-smi -q -d PERFORMANCE,CLOCK for the clock event reasons",
    "gemm_wrong": "the GPU computes wrong results: memory errors (ECC, Xid 48/63/94/95), an "
    "unstable clock or power supply (voltage sag), or a broken CUDA/cuBLAS install",
    "membw_slow": "memory clock capped, HBM thermal throttling, or another process using the "
    "GPU's memory bandwidth; check nvidia-smi -q -d CLOCK,TEMPERATURE",
    "membw_wrong": "device memory returns wrong data: ECC errors or retired pages pending "
    "(nvidia-smi -q -d ECC,PAGE_RETIREMENT), or an unstable memory clock",
    "allreduce_slow_nvlink": "a link down or an SXM2 module not seated (check nvidia-smi nvlink -s "
    "/ NVLink error counters), or NCCL not using NVLink (NCCL_P2P_DISABLE set, NCCL_DEBUG=INFO "
    "shows the transport)",
    "allreduce_slow_pcie": "a PCIe link trained below its generation/width (nvidia-smi -q -d "
    "PCIE), peer-to-peer disabled by ACS/IOMMU, or NCCL falling back to shared memory/sockets",
    "allreduce_wrong": "data corrupted between GPUs: NVLink/PCIe errors (Xid 74, replay "
    "counters), a GPU memory fault, or mismatched NCCL builds",
    "ddp_speedup": "the interconnect (links down, P2P disabled: see the all-reduce section) or "
    "the CPU side (too few cores per GPU, CPU frequency governor, data loading) limits scaling",
    "ddp_loss": "training does not learn: wrong numerics on the device (ECC errors, a bad "
    "cuBLAS/cuDNN install) or a learning rate unsuited to the configured model",
    "ddp_weights": "gradients are not averaged correctly across ranks (a broken NCCL/gloo "
    "install, corrupted transfers between GPUs) or the ranks computed different things",
    "energy_drift": "numerics: a GPU returning wrong results (ECC errors, Xid 48/94/95, unstable "
    "clocks or power), or threebody.dt too large for the configured initial conditions",
    "threebody_slow": "power or clock caps, thermal throttling, or fp64 units slower than the "
    "reference GPU's (consumer GPUs have a fraction of a V100's fp64 rate)",
    "section_error": "see the message: a worker process failed or a GPU call raised",
}


def check(name, value, unit, status, reason, expected=None, comparison=None, likely_cause=None):
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "expected": expected,
        "comparison": comparison,
        "status": status,
        "reason": reason,
        "likely_cause": likely_cause if status == FAIL else None,
    }


def not_applicable(name, value, unit, reason):
    return check(name, value, unit, NOT_APPLICABLE, reason)


def judge(name, value, unit, comparison, threshold, basis, cause):
    """pass/fail of value against threshold; comparison is ">=" or "<="; cause is a key of
    LIKELY_CAUSES or a sentence. A missing value (the measurement did not happen) fails."""
    if value is None:
        ok = False
    elif comparison == ">=":
        ok = value >= threshold
    elif comparison == "<=":
        ok = value <= threshold
    else:
        raise ValueError("unknown comparison %r" % comparison)
    return check(
        name,
        value,
        unit,
        PASS if ok else FAIL,
        basis,
        expected=threshold,
        comparison=comparison,
        likely_cause=LIKELY_CAUSES.get(cause, cause),
    )


def section_error(section, message):
    """A section that could not finish: a failed check, so the run exits 1 and says why."""
    return check(
        "%s.completed" % section,
        None,
        None,
        FAIL,
        message,
        expected="the section runs to its end",
        comparison="==",
        likely_cause=LIKELY_CAUSES["section_error"],
    )


class Expectations:
    """The config's expectations as the sections ask for them: a threshold or the reason why
    there is none (not_applicable)."""

    def __init__(self, config):
        self.data = config["expectations"]
        self.cpu = config["device"] == "cpu"

    def speed_na_reason(self):
        """Why speed thresholds do not apply to this run, or None when they do."""
        if self.cpu and not self.data["apply_thresholds_on_cpu"]:
            return CPU_REASON
        return None

    def model(self, device_name):
        """(entry, None) for a GPU model in expectations.gpu_models, else (None, reason).
        Names match exactly, then ignoring case and a leading "NVIDIA "."""
        models = self.data["gpu_models"]
        if device_name in models:
            return models[device_name], None

        def plain(name):
            name = name.strip().lower()
            return name[len("nvidia ") :] if name.startswith("nvidia ") else name

        for name, entry in models.items():
            if plain(name) == plain(device_name):
                return entry, None
        known = ", ".join(sorted(models)) or "none"
        return None, "no expectations for GPU model %r in expectations.gpu_models (known: %s)" % (
            device_name,
            known,
        )

    def peak(self, device_name, key, dtype=None):
        """(peak, None) or (None, reason) for gemm_tflops[dtype], memory_bandwidth_gbs, ..."""
        reason = self.speed_na_reason()
        if reason:
            return None, reason
        entry, reason = self.model(device_name)
        if entry is None:
            return None, reason
        value = entry.get(key)
        if dtype is not None and value is not None:
            value = value.get(dtype)
        if value is None:
            label = "%s.%s" % (key, dtype) if dtype else key
            return None, "expectations.gpu_models[%r] has no %s" % (device_name, label)
        return value, None


def pct(value, whole):
    return "%.0f%%" % (100.0 * value / whole) if whole else "n/a"


def measurement_failed(name, error, size_key, otherwise):
    """A failed check for a measurement that raised (out of memory names the size to lower)."""
    text = str(error)
    return check(
        name,
        None,
        None,
        FAIL,
        "%s: %s" % (type(error).__name__, (text.splitlines() or [""])[0][:300]),
        likely_cause="out of memory: lower %s" % size_key if "out of memory" in text else otherwise,
    )
