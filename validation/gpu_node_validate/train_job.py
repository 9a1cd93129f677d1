"""gpu-node-validate train --output FILE [--steps N] [--min-loss-drop F] ...

A multi-node DDP job under torchrun (gpu-ddp.sbatch: `srun gpu-torchrun ... -m gpu_node_validate
train`), one process per GPU: the ddp section's mixer model trained on its synthetic data, one
global batch per step split over all ranks; rank 0 prints the loss every few steps and writes a
JSON summary. NCCL when every local rank has its own GPU, gloo on the CPU otherwise.

Exit codes (rank 0; the other ranks exit 0 once the job is over): 0 the loss fell by at least
--min-loss-drop; 1 it did not, or training failed; 2 bad arguments or an unusable --output;
3 not under torchrun, or no torch.
"""

import argparse
import datetime
import json
import os
import socket
import sys
import time

from . import config as config_module
from .cli import EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_FAILED, EXIT_OK
from .errors import EnvironmentProblem
from .progress import say

TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")
STEPS_RANGE = (2, 100_000)
PROGRESS_LINES = 10  # about this many loss lines, whatever --steps
# The ddp section's bar: one definition of "the loss fell".
DEFAULT_MIN_LOSS_DROP = config_module.DEFAULT_EXPECTATIONS["ddp"]["min_loss_drop"]


class BadInput(Exception):
    """An argument or --output that cannot be used (exit 2)."""


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="gpu-node-validate train",
        description="DDP training of a small mixer model across every rank torchrun started; "
        "rank 0 writes a JSON summary and fails when the loss does not fall.",
    )
    parser.add_argument("--output", required=True, help="JSON summary, written by rank 0")
    parser.add_argument("--steps", type=int, default=60, help="training steps (default 60)")
    parser.add_argument(
        "--global-batch",
        type=int,
        help="sequences per step over all ranks, a multiple of the world size (default: the "
        "least multiple of the world size >= 256 on GPUs, >= 8 on the CPU)",
    )
    parser.add_argument(
        "--min-loss-drop",
        type=float,
        default=DEFAULT_MIN_LOSS_DROP,
        help="1 - last/first loss must reach this (default %g)" % DEFAULT_MIN_LOSS_DROP,
    )
    parser.add_argument(
        "--timeout-s", type=float, default=300.0, help="collective timeout (default 300 s)"
    )
    args = parser.parse_args(argv)
    if not STEPS_RANGE[0] <= args.steps <= STEPS_RANGE[1]:
        parser.error("--steps %d: allowed: %d to %d" % (args.steps, *STEPS_RANGE))
    if not 0.0 <= args.min_loss_drop <= 1.0:
        parser.error("--min-loss-drop %g: allowed: 0 to 1" % args.min_loss_drop)
    if not args.timeout_s > 0:
        parser.error("--timeout-s %g: allowed: a number of seconds above 0" % args.timeout_s)
    return args


def torchrun_environment():
    """{RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE: int}; EnvironmentProblem when missing."""
    needed = (*TORCHRUN_VARIABLES, "MASTER_ADDR", "MASTER_PORT")
    missing = [name for name in needed if not os.environ.get(name)]
    if missing:
        raise EnvironmentProblem(
            "%s not set: run it under torchrun, e.g. gpu-torchrun -m gpu_node_validate train "
            "--output FILE (or sbatch gpu-ddp.sbatch)" % ", ".join(missing)
        )
    try:
        return {name: int(os.environ[name]) for name in TORCHRUN_VARIABLES}
    except ValueError:
        shown = ", ".join("%s=%r" % (n, os.environ[n]) for n in TORCHRUN_VARIABLES)
        raise EnvironmentProblem("torchrun's variables must be integers: %s" % shown) from None


def check_output(path):
    """None when rank 0 can write path, else why not."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return "--output %s: is a directory; allowed: a file path" % path
    if not os.path.isdir(directory):
        return "--output %s: the directory %s does not exist" % (path, directory)
    if not os.access(directory, os.W_OK | os.X_OK):
        return "--output %s: the directory %s is not writable" % (path, directory)
    return None


def start(torch, place, timeout_s):
    """Join the job's process group: (backend, device)."""
    import torch.distributed as dist

    local_rank, local_size = place["LOCAL_RANK"], place["LOCAL_WORLD_SIZE"]
    kwargs = {}
    if torch.cuda.is_available() and torch.cuda.device_count() >= local_size:
        backend, device = "nccl", torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        kwargs["device_id"] = device
    else:
        backend, device = "gloo", torch.device("cpu")
        # the node's ranks share its cores: one rank's threads must not starve the others
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        torch.set_num_threads(max(1, (cpus or 1) // local_size))
    dist.init_process_group(
        backend, init_method="env://", timeout=datetime.timedelta(seconds=timeout_s), **kwargs
    )
    return backend, device


def settle(args, place, device):
    """The run's settings: the ddp section's model and data for this device type."""
    ddp_defaults = config_module.defaults(device.type, 0)["ddp"]
    world_size = place["WORLD_SIZE"]
    batch = args.global_batch
    if batch is None:
        at_least = config_module.MIN_DEFAULT_GLOBAL_BATCH[device.type]
        batch = config_module.default_global_batch([world_size], at_least)
    elif batch < world_size or batch % world_size:
        raise BadInput(
            "--global-batch %d: allowed: a multiple of the world size %d" % (batch, world_size)
        )
    return dict(ddp_defaults, global_batch=batch, steps=args.steps)


def train(torch, settings, place, device, seed):
    """(losses averaged over the ranks, one per step; seconds of the training loop)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from .ddp import MODEL_KEYS, rank_batch, train_step
    from .mixer_model import MixerLM, PatternData

    torch.manual_seed(seed)
    model = MixerLM(*(settings[key] for key in MODEL_KEYS)).to(device)
    cuda = device.type == "cuda"
    ddp = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=settings["learning_rate"])
    vocab = settings["vocab_size"]
    data = PatternData(vocab, settings["seq_len"], settings["pattern_period"], seed, device)
    rank, world_size = place["RANK"], place["WORLD_SIZE"]
    losses = torch.zeros(settings["steps"], device=device)
    dist.barrier()
    start_s = time.perf_counter()
    for step in range(settings["steps"]):
        tokens = rank_batch(data, step, settings["global_batch"], rank, world_size)
        losses[step] = train_step(ddp, optimizer, tokens, vocab)
    # equal slices: the mean of the ranks' losses is the global batch's loss
    dist.all_reduce(losses)
    seconds = time.perf_counter() - start_s
    return (losses / world_size).tolist(), seconds


def summarise(args, settings, place, backend, device, losses, seconds, hosts):
    from .ddp import MODEL_KEYS, loss_drop

    drop = loss_drop(losses)
    return {
        "result": "pass" if drop >= args.min_loss_drop else "fail",
        "world_size": place["WORLD_SIZE"],
        "nodes": len({host for host, _ in hosts}),
        "hostnames": [host for host, _ in hosts],
        "node_ranks": [node for _, node in hosts],
        "backend": backend,
        "device": device.type,
        "steps": settings["steps"],
        "global_batch": settings["global_batch"],
        "model": {key: settings[key] for key in MODEL_KEYS},
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "loss_drop": drop,
        "min_loss_drop": args.min_loss_drop,
        "seconds_s": seconds,
        "losses": losses,
    }


def report(summary, output):
    """Rank 0: the loss every few steps, the JSON summary, the verdict line; the exit code."""
    from .files import write_atomic

    losses, steps = summary["losses"], summary["steps"]
    every = max(1, steps // PROGRESS_LINES)
    for step in sorted({*range(0, steps, every), steps - 1}):
        say("train", "step %d/%d: loss %.4f" % (step + 1, steps, losses[step]))
    write_atomic(output, json.dumps(summary, indent=2) + "\n")
    loss = "%(first_loss).4f -> %(last_loss).4f" % summary
    where = (
        "world size %(world_size)d on %(nodes)d node(s) (%(backend)s, %(device)s), "
        "%(steps)d steps in %(seconds_s).1f s" % summary
    )
    if summary["result"] == "fail":
        sys.stderr.write(
            "gpu-node-validate train: FAIL: the loss fell by %.3f (%s), below --min-loss-drop "
            "%g; %s; summary in %s\n"
            % (summary["loss_drop"], loss, summary["min_loss_drop"], where, output)
        )
        return EXIT_FAILED
    say(
        "train",
        "PASS: loss %s (drop %.3f); %s; summary in %s"
        % (loss, summary["loss_drop"], where, output),
    )
    return EXIT_OK


def run(args, torch, place):
    import torch.distributed as dist

    backend, device = start(torch, place, args.timeout_s)
    try:
        rank0 = place["RANK"] == 0
        # rank 0 alone writes the file: every rank learns whether it can before training
        verdict = [check_output(args.output) if rank0 else None]
        dist.broadcast_object_list(verdict, src=0)
        if verdict[0]:
            raise BadInput(verdict[0])
        settings = settle(args, place, device)
        losses, seconds = train(torch, settings, place, device, config_module.COMMON["seed"])
        hosts = [None] * place["WORLD_SIZE"]
        dist.all_gather_object(hosts, (socket.gethostname(), int(os.environ.get("GROUP_RANK", 0))))
        code = EXIT_OK
        if rank0:
            summary = summarise(args, settings, place, backend, device, losses, seconds, hosts)
            code = report(summary, args.output)
        # every rank tears down together: none closes its connections while a peer still runs
        dist.barrier()
        return code
    finally:
        dist.destroy_process_group()


def leave(code):
    """End this rank's process with code, without the interpreter's teardown.

    Even after destroy_process_group, the teardown destroys gloo's transport threads, and one
    still joinable aborts the process (SIGABRT, "terminate called without an active exception")
    after the job passed: torchrun then fails it and stops the other node's ranks. Seen about once
    in 5 jobs on a 2-core machine kept busy. Nothing is left to do at exit but flushing the output.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv=None):
    """The rank's exit code; a rank that got as far as loading torch leaves at once (leave)."""
    args = parse_args(argv)  # argparse exits 2 on bad arguments
    rank = os.environ.get("RANK", "?")
    torch = None
    try:
        from .environment import import_torch

        place = torchrun_environment()
        torch = import_torch(also=())  # no plots: matplotlib costs seconds
        code = run(args, torch, place)
    except BadInput as err:
        if rank in ("0", "?"):  # every rank finds the same: one says so
            sys.stderr.write("gpu-node-validate train: bad input: %s\n" % err)
        code = EXIT_BAD_INPUT
    except EnvironmentProblem as err:
        sys.stderr.write("gpu-node-validate train: environment problem: %s\n" % err)
        code = EXIT_ENVIRONMENT
    except Exception as err:  # a rank that fails: one line naming it, torchrun stops the rest
        text = str(err).strip().splitlines()
        sys.stderr.write(
            "gpu-node-validate train: rank %s failed: %s: %s\n"
            % (rank, type(err).__name__, text[0][:300] if text else "")
        )
        code = EXIT_FAILED
    if torch is not None:
        leave(code)
    return code
