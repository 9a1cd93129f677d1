"""Three-body section: many configurations integrated in fp64 and fp32 on every device at once
(one thread per GPU), configuration-steps per second per device and for all devices together,
and the relative energy drift checked (a correctness check: it applies on the CPU too)."""

import concurrent.futures
import contextlib
import time

from .checks import check, judge, not_applicable, pct
from .gemm import tf32_matmul
from .threebody_sim import ThreeBody, drift_summary, random_configurations

# The seed machine's figures (see README): fp64 on one V100, fp32 on four V100s, both for
# 1M configurations x 50k steps with a hand-written CUDA kernel.
SEED_REFERENCE = {
    "fp64": {"configurations": 1_000_000, "steps": 50_000, "seconds": 59.0, "gpus": 1},
    "fp32": {"configurations": 1_000_000, "steps": 50_000, "seconds": 7.04, "gpus": 4},
}
TORCH_DTYPE = {"fp64": "float64", "fp32": "float32"}


def seed_rate_per_gpu(dtype):
    ref = SEED_REFERENCE[dtype]
    return ref["configurations"] * ref["steps"] / ref["seconds"] / ref["gpus"]


def integrate_on(ctx, index, dtype, settings):
    """One device: (seconds, E_0, E_end, smallest distances) for its own configurations."""
    torch = ctx.torch
    device = ctx.device(index)
    dtype_t = getattr(torch, TORCH_DTYPE[dtype])
    guard = torch.cuda.device(index) if ctx.cuda else contextlib.nullcontext()
    with guard:
        system = ThreeBody(torch, settings["masses"], dtype_t, device)
        x, v = random_configurations(
            torch,
            settings["configurations"],
            settings["masses"],
            ctx.config["seed"] + 1000 * index,
            dtype_t,
            device,
        )
        e_start = system.energy(x, v)
        if ctx.cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        min_distance = system.integrate(x, v, settings["dt"], settings["steps"])
        if ctx.cuda:
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        return seconds, e_start.cpu(), system.energy(x, v).cpu(), min_distance.cpu()


def run_dtype(ctx, dtype, settings):
    """All devices together: per-device seconds, the wall time, the drift summary."""
    torch = ctx.torch
    indices = [info["index"] for info in ctx.devices]
    start = time.perf_counter()
    # fp32 differences and forces must stay fp32: no tf32 rounding in the GEMMs
    with tf32_matmul(torch, False) if ctx.cuda else contextlib.nullcontext():
        if len(indices) == 1:
            outcomes = [integrate_on(ctx, indices[0], dtype, settings)]
        else:
            with concurrent.futures.ThreadPoolExecutor(len(indices)) as pool:
                futures = [pool.submit(integrate_on, ctx, i, dtype, settings) for i in indices]
                outcomes = [future.result() for future in futures]
    wall_s = time.perf_counter() - start
    summary = drift_summary(
        torch,
        torch.cat([o[1] for o in outcomes]),
        torch.cat([o[2] for o in outcomes]),
        torch.cat([o[3] for o in outcomes]),
        settings["close_encounter_distance"],
    )
    return [o[0] for o in outcomes], wall_s, summary


def _drift_checks(ctx, dtype, summary):
    limits = ctx.config["expectations"]["threebody"]["max_energy_drift"][dtype]
    checks = []
    for stat in ("median", "max"):
        name = "threebody.%s.energy_drift_%s" % (dtype, stat)
        basis = (
            "%s relative energy drift over %d of %d configurations (%d close encounters "
            % (
                stat,
                summary["kept"],
                summary["configurations"],
                summary["close_encounters"],
            )
            + "below %g excluded)" % ctx.config["threebody"]["close_encounter_distance"]
        )
        if summary["kept"] == 0:
            checks.append(
                check(
                    name,
                    None,
                    "relative",
                    "fail",
                    basis + ": no configuration left to judge",
                    expected=limits[stat],
                    comparison="<=",
                    likely_cause="every configuration came closer than "
                    "threebody.close_encounter_distance: lower it or run fewer steps",
                )
            )
        else:
            checks.append(
                judge(name, summary[stat], "relative", "<=", limits[stat], basis, "energy_drift")
            )
    return checks


def _rate_check(ctx, info, dtype, rate, work):
    name = "threebody.%s.%s.config_steps_per_s" % (dtype, ctx.label(info["index"]))
    seed_s = work / seed_rate_per_gpu(dtype)
    seed_note = "the seed's V100 would take %.3g s for this work" % seed_s
    reference, reason = ctx.expectations.peak(info["name"], "threebody_config_steps_per_s", dtype)
    fraction = ctx.config["expectations"]["threebody"]["min_fraction_of_reference"]
    if reference is not None and fraction is None:
        reason = (
            "reported only: reference %.3g/s for %s (%s); set "
            "expectations.threebody.min_fraction_of_reference to judge it"
            % (reference, info["name"], seed_note)
        )
    if reference is None or fraction is None:
        return not_applicable(name, rate, "configuration-steps/s", "%s; %s" % (reason, seed_note))
    basis = "%s of the %.3g configuration-steps/s reference of %s (%s)" % (
        pct(fraction, 1),
        reference,
        info["name"],
        seed_note,
    )
    return judge(
        name, rate, "configuration-steps/s", ">=", fraction * reference, basis, "threebody_slow"
    )


def run(ctx):
    settings = ctx.config["threebody"]
    work = settings["configurations"] * settings["steps"]
    results, checks = [], []
    for dtype in settings["dtypes"]:
        ctx.say(
            "threebody",
            "%s: %d configurations x %d steps on %d device(s) ..."
            % (dtype, settings["configurations"], settings["steps"], len(ctx.devices)),
        )
        seconds, wall_s, summary = run_dtype(ctx, dtype, settings)
        per_device = []
        for info, device_s in zip(ctx.devices, seconds, strict=True):
            rate = work / device_s
            per_device.append(
                {
                    "device": ctx.label(info["index"]),
                    "seconds_s": device_s,
                    "config_steps_per_s": rate,
                }
            )
            checks.append(_rate_check(ctx, info, dtype, rate, work))
        total_rate = work * len(ctx.devices) / wall_s
        results.append(
            {
                "dtype": dtype,
                "configurations_per_device": settings["configurations"],
                "steps": settings["steps"],
                "dt": settings["dt"],
                "devices": per_device,
                "wall_s": wall_s,
                "all_devices_config_steps_per_s": total_rate,
                "seed_reference": dict(
                    SEED_REFERENCE[dtype], config_steps_per_s_per_gpu=seed_rate_per_gpu(dtype)
                ),
                "seed_seconds_for_this_work_s": work / seed_rate_per_gpu(dtype),
                "energy_drift": summary,
            }
        )
        checks += _drift_checks(ctx, dtype, summary)
        ctx.say(
            "threebody",
            "%s ... %.3g configuration-steps/s on all devices (%.3g s), drift median %.2g max %.2g "
            "(%d close encounters excluded)"
            % (
                dtype,
                total_rate,
                wall_s,
                summary["median"],
                summary["max"],
                summary["close_encounters"],
            ),
        )
    return {"measurements": {"results": results}, "checks": checks}
