"""Memory bandwidth: a large device-to-device copy; every byte is read once and written once, so
bandwidth = 2 * size / t. The copy must also be exact (random bits in, the same bits out)."""

from .checks import judge, measurement_failed, not_applicable, pct
from .timing import seconds_per_call


def measure(ctx, index, settings):
    """(seconds per copy, copies timed, words that differ from their source) on one device."""
    torch = ctx.torch
    device = ctx.device(index)
    count = settings["size_bytes"] // 4
    generator = torch.Generator(device=device).manual_seed(ctx.config["seed"] + 17 * index)
    source = torch.randint(
        -(2**31), 2**31 - 1, (count,), dtype=torch.int32, device=device, generator=generator
    )
    target = torch.empty_like(source)
    seconds, calls = seconds_per_call(
        torch, device, lambda: target.copy_(source), settings["warmup"], settings["iterations"]
    )
    mismatches = int((target != source).sum().item())
    return seconds, calls, mismatches


def run(ctx):
    settings = ctx.config["membw"]
    size = settings["size_bytes"] // 4 * 4
    fraction = ctx.config["expectations"]["min_fraction_of_peak"]["membw"]
    results, checks = [], []
    for info in ctx.devices:
        index, label = info["index"], ctx.label(info["index"])
        prefix = "membw.%s" % label
        try:
            seconds, calls, mismatches = measure(ctx, index, settings)
        except (RuntimeError, MemoryError) as err:
            checks.append(
                measurement_failed(
                    prefix + ".completed", err, "membw.size_bytes", "the GPU fails: see the message"
                )
            )
            continue
        finally:
            if ctx.cuda:
                ctx.torch.cuda.empty_cache()
        bandwidth_gbs = 2.0 * size / seconds / 1e9
        results.append(
            {
                "device": label,
                "device_name": info["name"],
                "size_bytes": size,
                "moved_per_copy_bytes": 2 * size,
                "seconds_per_copy_s": seconds,
                "copies_timed": calls,
                "bandwidth_gbs": bandwidth_gbs,
                "mismatched_words": mismatches,
            }
        )
        checks.append(
            judge(
                prefix + ".copy_exact",
                mismatches,
                "mismatched 32-bit words",
                "<=",
                0,
                "every copied word equals its source (random bits)",
                "membw_wrong",
            )
        )
        peak, reason = ctx.expectations.peak(info["name"], "memory_bandwidth_gbs")
        if peak is None:
            checks.append(not_applicable(prefix + ".bandwidth_gbs", bandwidth_gbs, "GB/s", reason))
            share = ""
        else:
            checks.append(
                judge(
                    prefix + ".bandwidth_gbs",
                    bandwidth_gbs,
                    "GB/s",
                    ">=",
                    fraction * peak,
                    "%s of the %g GB/s memory bandwidth of %s"
                    % (pct(fraction, 1), peak, info["name"]),
                    "membw_slow",
                )
            )
            share = " (%s of %g)" % (pct(bandwidth_gbs, peak), peak)
        ctx.say(
            "membw",
            "%s copy of %d MiB ... %.4g GB/s%s, %s"
            % (
                label,
                size >> 20,
                bandwidth_gbs,
                share,
                "exact" if not mismatches else "%d words WRONG" % mismatches,
            ),
        )
    return {"measurements": {"results": results}, "checks": checks}
