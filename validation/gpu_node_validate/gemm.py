"""GEMM: dense n x n matrix products per device and dtype, TFLOPS = 2 n^3 / t, and the result
checked against a float64 reference computed from the same (rounded) inputs."""

import contextlib

from .checks import judge, measurement_failed, not_applicable, pct
from .timing import seconds_per_call

TORCH_DTYPE = {
    "fp16": "float16",
    "bf16": "bfloat16",
    "tf32": "float32",
    "fp32": "float32",
    "fp64": "float64",
}

# Largest relative error (max |C - C_ref| / max |C_ref|) a correct product shows. The output's
# rounding dominates: unit roundoff fp16 4.9e-4, bf16 3.9e-3; tf32 rounds the inputs to 10
# mantissa bits (4.9e-4 each); fp32 accumulates ~sqrt(n) * 6e-8. Ten times that or more as margin;
# a wrong product (flipped bits, a bad kernel) is off by order 1.
TOLERANCE = {"fp16": 1e-2, "bf16": 5e-2, "tf32": 1e-2, "fp32": 1e-4, "fp64": 1e-10}
NEEDS_AMPERE = ("bf16", "tf32")
CPU_DTYPES = ("fp32", "fp64")
FULL_CHECK_MAX_N = 1024
SAMPLED_ROWS = 64


@contextlib.contextmanager
def tf32_matmul(torch, enabled):
    """fp32 matmuls on tensor cores (tf32) or not, restored afterwards."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def check_rows(n):
    """Rows compared with the reference: all of a small product, an even sample of a big one."""
    if n <= FULL_CHECK_MAX_N:
        return list(range(n))
    return [round(i * (n - 1) / (SAMPLED_ROWS - 1)) for i in range(SAMPLED_ROWS)]


def relative_error(torch, c, a, b, rows):
    """max |C - A B| / max |A B| over the given rows, A B computed in float64."""
    index = torch.tensor(rows, device=a.device)
    reference = a.index_select(0, index).double() @ b.double()
    got = c.index_select(0, index).double()
    if not bool(torch.isfinite(got).all()):
        return float("inf")
    scale = reference.abs().max().item()
    return (got - reference).abs().max().item() / max(scale, 1e-300)


def correctness_check(name, error, dtype):
    return judge(
        name,
        error,
        "relative error",
        "<=",
        TOLERANCE[dtype],
        "%s product vs a float64 reference from the same inputs" % dtype,
        "gemm_wrong",
    )


def _skip_reason(ctx, index, dtype):
    if not ctx.cuda:
        return None if dtype in CPU_DTYPES else "the CPU path runs fp32 and fp64 only"
    info = ctx.devices[index]
    major = int(info["compute_capability"].split(".")[0])
    if dtype in NEEDS_AMPERE and major < 8:
        return "compute capability %s has no %s tensor cores (needs 8.0+)" % (
            info["compute_capability"],
            dtype,
        )
    return None


def measure(ctx, index, dtype, n, settings):
    """One device and dtype: (seconds per product, products timed, relative error)."""
    torch = ctx.torch
    device = ctx.device(index)
    generator = torch.Generator(device=device).manual_seed(ctx.config["seed"] + index)
    dtype_t = getattr(torch, TORCH_DTYPE[dtype])
    # uniform in [-1, 1): sums of n products stay far from fp16's range limit
    a = (torch.rand(n, n, device=device, generator=generator) * 2 - 1).to(dtype_t)
    b = (torch.rand(n, n, device=device, generator=generator) * 2 - 1).to(dtype_t)
    c = torch.empty(n, n, device=device, dtype=dtype_t)
    with tf32_matmul(torch, dtype == "tf32") if ctx.cuda else contextlib.nullcontext():
        seconds, calls = seconds_per_call(
            torch,
            device,
            lambda: torch.matmul(a, b, out=c),
            settings["warmup"],
            settings["iterations"],
            settings["max_time_s"],
        )
        error = relative_error(torch, c, a, b, check_rows(n))
    return seconds, calls, error


def run(ctx):
    settings = ctx.config["gemm"]
    n = settings["n"]
    fractions = ctx.config["expectations"]["min_fraction_of_peak"]["gemm"]
    results, checks = [], []
    for info in ctx.devices:
        index, label = info["index"], ctx.label(info["index"])
        for dtype in settings["dtypes"]:
            prefix = "gemm.%s.%s" % (label, dtype)
            skip = _skip_reason(ctx, index, dtype)
            if skip:
                checks.append(not_applicable(prefix + ".tflops", None, "TFLOPS", skip))
                continue
            try:
                seconds, calls, error = measure(ctx, index, dtype, n, settings)
            except (RuntimeError, MemoryError) as err:
                checks.append(
                    measurement_failed(
                        prefix + ".completed",
                        err,
                        "gemm.n",
                        "the GPU or its CUDA libraries fail: see the message",
                    )
                )
                continue
            finally:
                if ctx.cuda:
                    ctx.torch.cuda.empty_cache()
            tflops = 2.0 * n**3 / seconds / 1e12
            results.append(
                {
                    "device": label,
                    "device_name": info["name"],
                    "dtype": dtype,
                    "n": n,
                    "seconds_per_product_s": seconds,
                    "products_timed": calls,
                    "tflops": tflops,
                    "max_rel_error": error,
                }
            )
            checks.append(correctness_check(prefix + ".max_rel_error", error, dtype))
            peak, reason = ctx.expectations.peak(info["name"], "gemm_tflops", dtype)
            if peak is None:
                checks.append(not_applicable(prefix + ".tflops", tflops, "TFLOPS", reason))
                share = ""
            else:
                fraction = fractions[dtype]
                checks.append(
                    judge(
                        prefix + ".tflops",
                        tflops,
                        "TFLOPS",
                        ">=",
                        fraction * peak,
                        "%s of the %g TFLOPS %s peak of %s"
                        % (pct(fraction, 1), peak, dtype, info["name"]),
                        "gemm_slow",
                    )
                )
                share = " (%s of %g)" % (pct(tflops, peak), peak)
            ctx.say(
                "gemm",
                "%s %s n=%d ... %.4g TFLOPS%s, error %.1e"
                % (label, dtype, n, tflops, share, error),
            )
    return {"measurements": {"n": n, "results": results}, "checks": checks}
