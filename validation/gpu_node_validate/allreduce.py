"""All-reduce across the node's GPUs (NCCL) or two CPU processes (gloo): a sweep of message sizes,
algbw = bytes / t, busbw = algbw * 2 (n - 1) / n (what each GPU's links carry in a ring), and an
exactness check: integer-valued fp32 data whose sum is exact, so any difference is corruption."""

import time

from .checks import judge, not_applicable, pct, section_error
from .distributed import WorkerFailure, launch

EXACT_LIMIT = 1 << 24  # every integer up to 2^24 is exact in fp32


def pattern_modulus(world_size):
    """Largest m <= 1021 such that m * (1 + 2 + ... + n) stays exactly representable in fp32."""
    return max(1, min(1021, EXACT_LIMIT // (world_size * (world_size + 1) // 2)))


def _base(torch, count, world_size, device):
    index_type = torch.int32 if count < 2**31 else torch.int64
    return torch.arange(count, device=device, dtype=index_type) % pattern_modulus(world_size) + 1


def rank_pattern(torch, count, rank, world_size, device):
    """What rank r contributes: (r + 1) * (1 + i mod m), all integers."""
    return (_base(torch, count, world_size, device) * (rank + 1)).to(torch.float32)


def expected_sum(torch, count, world_size, device):
    """The exact sum over ranks: (1 + i mod m) * n (n + 1) / 2."""
    total = world_size * (world_size + 1) // 2
    return (_base(torch, count, world_size, device) * total).to(torch.float32)


def bandwidths_gbs(size_bytes, seconds, world_size):
    """(algbw, busbw) in GB/s (1e9 bytes) of one all-reduce of size_bytes taking seconds."""
    algbw = size_bytes / seconds / 1e9
    return algbw, algbw * 2.0 * (world_size - 1) / world_size


def worker(rank, spec):
    """One rank: for each size, an exactness round then the timed all-reduces."""
    import torch
    import torch.distributed as dist

    cuda = spec["device_type"] == "cuda"
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    world_size = spec["world_size"]
    results = []
    for size in spec["sizes_bytes"]:
        count = size // 4
        data = rank_pattern(torch, count, rank, world_size, device)
        dist.all_reduce(data)
        mismatches = int((data != expected_sum(torch, count, world_size, device)).sum().item())
        # timed on zeros: values stay bounded over any number of iterations
        data.zero_()
        for _ in range(spec["warmup"]):
            dist.all_reduce(data)
        if cuda:
            torch.cuda.synchronize(device)
        dist.barrier()
        start = time.perf_counter()
        for _ in range(spec["iterations"]):
            dist.all_reduce(data)
        if cuda:
            torch.cuda.synchronize(device)
        seconds = (time.perf_counter() - start) / spec["iterations"]
        results.append({"size_bytes": size, "seconds": seconds, "mismatches": mismatches})
        del data
    return results


def judge_busbw(ctx, busbw_gbs):
    """The busbw check at the largest size against expectations.allreduce_busbw_gbs."""
    name = "allreduce.busbw_gbs"
    reason = ctx.expectations.speed_na_reason()
    expected = ctx.config["expectations"]["allreduce_busbw_gbs"]
    if reason is None and expected is None:
        reason = "expectations.allreduce_busbw_gbs is not set for this node"
    if reason:
        return not_applicable(name, busbw_gbs, "GB/s", reason)
    topology = expected["topology"]
    nvlink = "nv" in topology.lower()
    return judge(
        name,
        busbw_gbs,
        "GB/s",
        ">=",
        expected["min_fraction"] * expected["expected"],
        "%s of the %g GB/s expected over %s"
        % (pct(expected["min_fraction"], 1), expected["expected"], topology),
        "allreduce_slow_nvlink" if nvlink else "allreduce_slow_pcie",
    )


def run(ctx):
    settings = ctx.config["allreduce"]
    world_size = settings["world_size"]
    if world_size < 2:
        reason = "one GPU: there is nothing to all-reduce across"
        return {
            "measurements": {"world_size": world_size, "results": []},
            "checks": [
                not_applicable("allreduce.exact", None, None, reason),
                not_applicable("allreduce.busbw_gbs", None, "GB/s", reason),
            ],
        }
    backend = "nccl" if ctx.cuda else "gloo"
    ctx.say(
        "allreduce",
        "%d processes (%s), %d sizes" % (world_size, backend, len(settings["sizes_bytes"])),
    )
    spec = {key: settings[key] for key in ("sizes_bytes", "warmup", "iterations")}
    try:
        ranks = launch(ctx, worker, world_size, spec, "allreduce")
    except WorkerFailure as err:
        return {
            "measurements": {"world_size": world_size, "results": []},
            "checks": [section_error("allreduce", str(err))],
        }
    results, mismatches = [], 0
    for i, size in enumerate(settings["sizes_bytes"]):
        seconds = max(
            rank[i]["seconds"] for rank in ranks
        )  # the collective ends with its slowest rank
        size_mismatches = sum(rank[i]["mismatches"] for rank in ranks)
        mismatches += size_mismatches
        algbw, busbw = bandwidths_gbs(size, seconds, world_size)
        results.append(
            {
                "size_bytes": size,
                "seconds_per_op_s": seconds,
                "algbw_gbs": algbw,
                "busbw_gbs": busbw,
                "mismatched_elements": size_mismatches,
            }
        )
        ctx.say(
            "allreduce",
            "%d bytes ... algbw %.3g GB/s, busbw %.3g GB/s, %s"
            % (
                size,
                algbw,
                busbw,
                "exact" if not size_mismatches else "%d WRONG" % size_mismatches,
            ),
        )
    largest = max(results, key=lambda r: r["size_bytes"])
    checks = [
        judge(
            "allreduce.exact",
            mismatches,
            "mismatched elements",
            "<=",
            0,
            "integer-valued fp32 sums over %d ranks, every rank, every size" % world_size,
            "allreduce_wrong",
        ),
        judge_busbw(ctx, largest["busbw_gbs"]),
    ]
    measurements = {"world_size": world_size, "backend": backend, "results": results}
    return {"measurements": measurements, "checks": checks}
