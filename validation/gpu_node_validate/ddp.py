"""DDP training of the mixer model for each world size: the same global work (global batch x
steps) split over N processes, wall time T_N, speedup T_1 / T_N, efficiency T_1 / (N T_N).

Correctness, on GPUs and CPUs alike: the loss falls, and after the warm-up steps every world size
holds the same weights as world size 1 (plain SGD, the same global batch: DDP's average of the
ranks' mean gradients is the mean gradient of the global batch)."""

import os
import time

from .checks import judge, not_applicable, section_error
from .distributed import WorkerFailure, launch

MODEL_KEYS = ("vocab_size", "seq_len", "d_model", "layers")


def weights_path(spec, world_size):
    return os.path.join(spec["weights_dir"], "weights-ws%d.pt" % world_size)


def rank_batch(data, step, global_batch, rank, world_size):
    """This rank's equal slice of step's global batch (every rank draws the same one)."""
    local = global_batch // world_size
    return data.global_batch(step, global_batch)[rank * local : (rank + 1) * local]


def train_step(model, optimizer, tokens, vocab_size):
    """One optimizer step on next-token prediction over tokens (batch, seq_len + 1); the loss,
    detached (a tensor on the model's device: no synchronisation here)."""
    import torch.nn.functional as F

    logits = model(tokens[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, vocab_size), tokens[:, 1:].reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def worker(rank, spec):
    """One rank of one world size: warm-up steps, weights saved, timed steps."""
    import torch
    from torch.nn.parallel import DistributedDataParallel

    from .mixer_model import MixerLM, PatternData, parameter_count

    cuda = spec["device_type"] == "cuda"
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 products, comparable across sizes
    world_size, vocab = spec["world_size"], spec["vocab_size"]
    torch.manual_seed(spec["seed"])
    model = MixerLM(*(spec[key] for key in MODEL_KEYS)).to(device)
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ddp = DistributedDataParallel(model, device_ids=[rank] if cuda else None)
    # plain SGD: the update is linear in the averaged gradient, so world sizes agree exactly
    # up to rounding (momentum or Adam would too, but would add nothing to the check)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=spec["learning_rate"])
    data = PatternData(vocab, spec["seq_len"], spec["pattern_period"], spec["seed"], device)
    losses = torch.zeros(spec["steps"], device=device)

    def one_step(step):
        tokens = rank_batch(data, step, spec["global_batch"], rank, world_size)
        losses[step] = train_step(ddp, optimizer, tokens, vocab)

    for step in range(spec["warmup_steps"]):
        one_step(step)
    moved = max((model.state_dict()[k] - v).abs().max().item() for k, v in initial.items())
    if rank == 0:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save(state, weights_path(spec, world_size))
    if cuda:
        torch.cuda.synchronize(device)
    torch.distributed.barrier()
    start = time.perf_counter()
    for step in range(spec["warmup_steps"], spec["steps"]):
        one_step(step)
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "losses": losses.tolist(),
        "moved": moved,
        "parameters": parameter_count(model),
    }


def max_weight_difference(torch, path_a, path_b):
    """max |a - b| over every parameter of two saved state dicts."""
    a = torch.load(path_a, map_location="cpu", weights_only=True)
    b = torch.load(path_b, map_location="cpu", weights_only=True)
    return max((a[k] - b[k]).abs().max().item() for k in a)


def loss_drop(losses):
    """1 - (mean of the last few losses) / (mean of the first few)."""
    k = max(1, min(3, len(losses) // 4))
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    return 1.0 - last / first if first > 0 else 0.0


def _speedup_checks(ctx, timings):
    expected = ctx.config["expectations"]["ddp_min_speedup"]
    na = ctx.expectations.speed_na_reason()
    checks = []
    base = timings.get(1)
    for size in sorted(set(timings) | {int(k) for k in expected}):
        if size == 1:
            continue
        name = "ddp.speedup.ws%d" % size
        value = base / timings[size] if base and size in timings else None
        if size not in timings:
            checks.append(not_applicable(name, None, "x", "world size %d was not measured" % size))
        elif base is None:
            checks.append(not_applicable(name, None, "x", "world size 1 was not measured"))
        elif na:
            checks.append(not_applicable(name, value, "x", na))
        elif str(size) not in expected:
            reason = "expectations.ddp_min_speedup has no entry for %d GPUs" % size
            checks.append(not_applicable(name, value, "x", reason))
        else:
            basis = (
                "%g x on %d GPUs (efficiency %.0f%%); seed machine: 3.92 x on 4 NVLinked V100"
                % (
                    expected[str(size)],
                    size,
                    100.0 * expected[str(size)] / size,
                )
            )
            checks.append(judge(name, value, "x", ">=", expected[str(size)], basis, "ddp_speedup"))
    return checks


def _equality_checks(ctx, spec, measured):
    torch = ctx.torch
    tolerance = ctx.config["expectations"]["ddp"]["weight_match_rel_tol"]
    checks = []
    for size in sorted(measured):
        if size == 1:
            continue
        name = "ddp.weights_match.ws%d" % size
        if 1 not in measured:
            checks.append(not_applicable(name, None, None, "world size 1 was not measured"))
            continue
        difference = max_weight_difference(torch, weights_path(spec, 1), weights_path(spec, size))
        moved = measured[1]["moved"]
        relative = difference / moved if moved > 0 else float("inf")
        measured[size]["max_weight_difference"] = difference
        basis = (
            "after %d SGD steps, max |w_ws%d - w_ws1| / max |w_ws1 - w_init| (weights moved %.3g): "
            "rounding gives ~1e-6, a wrong gradient average ~1"
            % (spec["warmup_steps"], size, moved)
        )
        checks.append(
            judge(name, relative, "relative difference", "<=", tolerance, basis, "ddp_weights")
        )
    return checks


def run(ctx):
    settings = ctx.config["ddp"]
    spec = dict(settings, seed=ctx.config["seed"], weights_dir=os.path.join(ctx.workdir, "ddp"))
    os.makedirs(spec["weights_dir"], exist_ok=True)
    tokens_per_step = settings["global_batch"] * settings["seq_len"]
    timed_steps = settings["steps"] - settings["warmup_steps"]
    measured, checks, runs = {}, [], []
    for size in settings["world_sizes"]:
        ctx.say(
            "ddp",
            "world size %d: global batch %d (%d per rank), %d steps ..."
            % (size, settings["global_batch"], settings["global_batch"] // size, settings["steps"]),
        )
        try:
            ranks = launch(ctx, worker, size, spec, "ddp-ws%d" % size)
        except WorkerFailure as err:
            checks.append(section_error("ddp.ws%d" % size, str(err)))
            continue
        seconds = max(rank["seconds"] for rank in ranks)
        measured[size] = dict(ranks[0], seconds=seconds)
        ctx.say(
            "ddp",
            "world size %d: %.3g s for %d timed steps, %.4g tokens/s, loss %.3f -> %.3f"
            % (
                size,
                seconds,
                timed_steps,
                tokens_per_step * timed_steps / seconds,
                ranks[0]["losses"][0],
                ranks[0]["losses"][-1],
            ),
        )
    timings = {size: m["seconds"] for size, m in measured.items()}
    base = timings.get(1)
    for size, m in sorted(measured.items()):
        runs.append(
            {
                "world_size": size,
                "seconds_s": m["seconds"],
                "tokens_per_s": tokens_per_step * timed_steps / m["seconds"],
                "speedup": base / m["seconds"] if base else None,
                "efficiency": base / (size * m["seconds"]) if base else None,
                "losses_rank0": m["losses"],
            }
        )
    if measured:
        smallest = min(measured)
        drop = loss_drop(measured[smallest]["losses"])
        minimum = ctx.config["expectations"]["ddp"]["min_loss_drop"]
        basis = (
            "loss falls by %.0f%% or more over %d steps on a learnable pattern (world size %d)"
            % (
                100 * minimum,
                settings["steps"],
                smallest,
            )
        )
        checks.append(judge("ddp.loss_drop", drop, "fraction", ">=", minimum, basis, "ddp_loss"))
        checks += _equality_checks(ctx, spec, measured)
    checks += _speedup_checks(ctx, timings)
    for run_ in runs:
        run_["max_weight_difference"] = measured[run_["world_size"]].get("max_weight_difference")
    measurements = {
        "parameters": next(iter(measured.values()))["parameters"] if measured else None,
        "global_batch": settings["global_batch"],
        "seq_len": settings["seq_len"],
        "steps": settings["steps"],
        "warmup_steps": settings["warmup_steps"],
        "tokens_per_step": tokens_per_step,
        "runs": runs,
    }
    return {"measurements": measurements, "checks": checks}
