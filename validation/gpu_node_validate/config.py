"""The config file the Ansible role writes: its keys, their allowed values and the defaults.

Validation happens in two steps. `validate` checks the file alone (types, ranges, unknown keys)
before torch is imported; `resolve` fills the defaults, which depend on the device the run uses
(big sizes on GPUs, tiny ones on the CPU), and checks what needs both (the global batch must split
evenly over every DDP world size). Both raise ConfigError (exit 2).
"""

import copy
import math

from .errors import ConfigError
from .schema import (
    Bool,
    Choice,
    Int,
    ListOf,
    MapOf,
    Nullable,
    Num,
    Obj,
    Str,
    model_name_key,
    show,
    world_size_key,
)

SECTIONS = ("gemm", "membw", "allreduce", "ddp", "threebody")
GEMM_DTYPES = ("fp16", "bf16", "tf32", "fp32", "fp64")
THREEBODY_DTYPES = ("fp64", "fp32")
GIB = 1 << 30
MIB = 1 << 20
KIB = 1 << 10

FRACTION = Num(0.0, 1.0)
POSITIVE = Num(0.0, 1e9)

SCHEMA = Obj(
    {
        "device": Choice("auto", "cuda", "cpu"),
        "sections": ListOf(Choice(*SECTIONS), 1, len(SECTIONS)),
        "seed": Int(0, 2**31 - 1),
        "gloo_socket_ifname": Str(15, r"[A-Za-z0-9_.:-]+", "a network interface name"),
        "worker_timeout_s": Num(1.0, 86400.0),
        "gemm": Obj(
            {
                "n": Int(16, 65536),
                "dtypes": ListOf(Choice(*GEMM_DTYPES), 1, len(GEMM_DTYPES)),
                "warmup": Int(0, 1000),
                "iterations": Int(1, 100000),
                "max_time_s": Num(0.0, 3600.0),
            }
        ),
        "membw": Obj(
            {
                "size_bytes": Int(4 * KIB, 1 << 40, multiple_of=4),
                "warmup": Int(0, 1000),
                "iterations": Int(1, 100000),
            }
        ),
        "allreduce": Obj(
            {
                # fp32 elements: a size that is not a multiple of 4 bytes has no exact tensor
                "sizes_bytes": ListOf(Int(4, 1 << 36, multiple_of=4), 1, 64),
                "world_size": Int(1, 4096),
                "warmup": Int(0, 1000),
                "iterations": Int(1, 100000),
            }
        ),
        "ddp": Obj(
            {
                "world_sizes": ListOf(Int(1, 4096), 1, 64),
                "vocab_size": Int(4, 1 << 20),
                "seq_len": Int(2, 1 << 14),
                "d_model": Int(2, 1 << 16),
                "layers": Int(1, 256),
                "global_batch": Int(1, 1 << 24),
                "steps": Int(2, 1 << 24),
                "warmup_steps": Int(1, 1 << 20),
                "learning_rate": Num(0.0, 100.0),
                "pattern_period": Int(2, 1 << 20),
            }
        ),
        "threebody": Obj(
            {
                "configurations": Int(1, 1 << 30),
                "steps": Int(1, 1 << 30),
                "dt": Num(0.0, 1.0),
                "dtypes": ListOf(Choice(*THREEBODY_DTYPES), 1, 2),
                "masses": ListOf(Num(0.0, 1e6), 3, 3, unique=False),
                "close_encounter_distance": Num(0.0, 100.0),
            }
        ),
        "expectations": Obj(
            {
                "gpu_models": MapOf(
                    model_name_key,
                    Obj(
                        {
                            "gemm_tflops": Obj({dtype: POSITIVE for dtype in GEMM_DTYPES}),
                            "memory_bandwidth_gbs": POSITIVE,
                            "threebody_config_steps_per_s": Obj(
                                {dtype: Num(0.0, 1e18) for dtype in THREEBODY_DTYPES}
                            ),
                        }
                    ),
                ),
                "min_fraction_of_peak": Obj(
                    {
                        "gemm": Obj({dtype: FRACTION for dtype in GEMM_DTYPES}),
                        "membw": FRACTION,
                    }
                ),
                "allreduce_busbw_gbs": Nullable(
                    Obj(
                        {"expected": POSITIVE, "min_fraction": FRACTION, "topology": Str(200)},
                        required=("expected",),
                    )
                ),
                "ddp_min_speedup": MapOf(world_size_key, Num(0.0, 4096.0)),
                "ddp": Obj({"min_loss_drop": FRACTION, "weight_match_rel_tol": Num(0.0, 1.0)}),
                "threebody": Obj(
                    {
                        "max_energy_drift": Obj(
                            {
                                dtype: Obj({"median": Num(0.0, 1.0), "max": Num(0.0, 1e6)})
                                for dtype in THREEBODY_DTYPES
                            }
                        ),
                        "min_fraction_of_reference": Nullable(FRACTION),
                    }
                ),
                "apply_thresholds_on_cpu": Bool(),
            }
        ),
    }
)

# Thresholds that do not depend on the node. The drift figures were measured with the default
# initial conditions and dt (see README "threebody"): fp64 medians ~1e-7, fp32 ~1e-5; a broken
# integrator (or flipped bits) gives drifts of order 1.
DEFAULT_EXPECTATIONS = {
    "gpu_models": {},
    "min_fraction_of_peak": {
        "gemm": {"fp16": 0.7, "bf16": 0.7, "tf32": 0.5, "fp32": 0.5, "fp64": 0.5},
        "membw": 0.7,
    },
    "allreduce_busbw_gbs": None,
    "ddp_min_speedup": {},
    "ddp": {"min_loss_drop": 0.3, "weight_match_rel_tol": 1e-3},
    "threebody": {
        "max_energy_drift": {
            "fp64": {"median": 1e-5, "max": 1e-2},
            "fp32": {"median": 1e-3, "max": 1e-1},
        },
        "min_fraction_of_reference": None,
    },
    "apply_thresholds_on_cpu": False,
}


def validate(raw):
    """The file's content checked on its own (no defaults filled); ConfigError when wrong."""
    checked = SCHEMA("", raw)
    for key, speedup in checked.get("expectations", {}).get("ddp_min_speedup", {}).items():
        if speedup > int(key):
            raise ConfigError(
                "expectations.ddp_min_speedup.%s" % key,
                "= %s: a speedup on %s GPUs cannot exceed %s"
                % (show(raw["expectations"]["ddp_min_speedup"][key]), key, key),
            )
    ddp = checked.get("ddp", {})
    if ddp.get("warmup_steps", 0) >= ddp.get("steps", 1 << 30):
        raise ConfigError(
            "ddp.warmup_steps",
            "= %d: must be below ddp.steps (%d), the timed steps come after it"
            % (ddp["warmup_steps"], ddp["steps"]),
        )
    return checked


def default_world_sizes(gpu_count):
    """1..N; above 4 GPUs powers of two plus N, so the global batch stays divisible by all."""
    if gpu_count <= 4:
        return list(range(1, gpu_count + 1))
    sizes = [1 << k for k in range(gpu_count.bit_length()) if (1 << k) < gpu_count]
    return [*sizes, gpu_count]


# The DDP global batch by default: at least this many sequences per step.
MIN_DEFAULT_GLOBAL_BATCH = {"cuda": 256, "cpu": 8}


def default_global_batch(world_sizes, at_least):
    step = math.lcm(*world_sizes)
    return step * max(1, -(-at_least // step))


def defaults(device_type, gpu_count):
    """Every section's sizes for a run on this device type (before the file's values)."""
    if device_type == "cuda":
        return {
            "gemm": {"n": 8192, "dtypes": list(GEMM_DTYPES), "warmup": 3, "iterations": 20},
            "membw": {"size_bytes": GIB, "warmup": 3, "iterations": 20},
            "allreduce": {
                "sizes_bytes": [MIB << (2 * k) for k in range(6)],  # 1 MiB .. 1 GiB
                "world_size": gpu_count,
                "warmup": 5,
                "iterations": 20,
            },
            "ddp": {
                "world_sizes": default_world_sizes(gpu_count),
                "vocab_size": 4096,
                "seq_len": 128,
                "d_model": 512,
                "layers": 8,
                "steps": 35,
                "warmup_steps": 5,
                "learning_rate": 0.5,
                "pattern_period": 64,
            },
            "threebody": {"configurations": 1_000_000, "steps": 5000},
            "worker_timeout_s": 1800.0,
        }
    return {
        "gemm": {"n": 192, "dtypes": ["fp32", "fp64"], "warmup": 1, "iterations": 3},
        "membw": {"size_bytes": 16 * MIB, "warmup": 1, "iterations": 5},
        "allreduce": {
            "sizes_bytes": [4 * KIB, 64 * KIB, MIB],
            "world_size": 2,
            "warmup": 2,
            "iterations": 5,
        },
        "ddp": {
            "world_sizes": [1, 2],
            "vocab_size": 64,
            "seq_len": 16,
            "d_model": 32,
            "layers": 2,
            "steps": 40,
            "warmup_steps": 4,
            "learning_rate": 0.5,
            "pattern_period": 16,
        },
        "threebody": {"configurations": 512, "steps": 2000},
        "worker_timeout_s": 300.0,
    }


COMMON = {
    "sections": list(SECTIONS),
    "seed": 1234,
    "gloo_socket_ifname": "lo",
    "gemm": {"max_time_s": 20.0},
    "threebody": {
        "dt": 1e-3,
        "dtypes": list(THREEBODY_DTYPES),
        "masses": [1.0, 1.0, 1.0],
        "close_encounter_distance": 0.1,
    },
}


def _merge(base, override):
    """base with override's keys on top, objects merged key by key (lists replaced)."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict) and key != "gpu_models":
            result[key] = _merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def resolve(checked, device_type, gpu_count):
    """The effective config of a run: defaults for this device, the file's values on top."""
    base = _merge(COMMON, defaults(device_type, gpu_count))
    base["expectations"] = DEFAULT_EXPECTATIONS
    config = _merge(base, checked)
    config["device"] = device_type
    ddp = config["ddp"]
    if "global_batch" not in checked.get("ddp", {}):
        ddp["global_batch"] = default_global_batch(
            ddp["world_sizes"], MIN_DEFAULT_GLOBAL_BATCH[device_type]
        )
    busbw = config["expectations"]["allreduce_busbw_gbs"]
    if busbw is not None:
        busbw.setdefault("min_fraction", 0.8)
        busbw.setdefault("topology", "the node's GPU interconnect")
    for size in ddp["world_sizes"]:
        if ddp["global_batch"] % size:
            raise ConfigError(
                "ddp.global_batch",
                "= %d: must split evenly over every world size in ddp.world_sizes %s "
                "(a multiple of %d)"
                % (ddp["global_batch"], ddp["world_sizes"], math.lcm(*ddp["world_sizes"])),
            )
    if ddp["warmup_steps"] >= ddp["steps"]:
        raise ConfigError(
            "ddp.warmup_steps",
            "= %d: must be below ddp.steps (%d)" % (ddp["warmup_steps"], ddp["steps"]),
        )
    return config
