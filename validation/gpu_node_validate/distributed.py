"""Running a function in world_size processes joined by torch.distributed (NCCL on GPUs, one
process per GPU; gloo on the CPU), with a deadline, and collecting each rank's result.

Processes start from a forkserver that has imported torch once: a child then starts in
milliseconds instead of re-importing torch (seconds), and, unlike a plain fork, it never inherits
a CUDA context or an OpenMP pool from the parent (which has already run GEMMs).
"""

import datetime
import json
import multiprocessing
import os
import socket
import time

from .files import write_atomic

PRELOAD = ["torch", "torch.distributed", "torch.nn", "gpu_node_validate.distributed"]


class WorkerFailure(Exception):
    """A worker raised, died or hung: the message says which rank and what happened."""


def free_port():
    """A TCP port on the loopback nobody listens on now (the rendezvous of one launch)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _entry(rank, worker, spec):
    """What each process runs: join the group, run worker(rank, spec), write its result."""
    import torch
    import torch.distributed as dist

    os.environ["GLOO_SOCKET_IFNAME"] = spec["gloo_socket_ifname"]
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(spec["port"])
    kwargs = {}
    if spec["device_type"] == "cuda":
        torch.cuda.set_device(rank)
        kwargs["device_id"] = torch.device("cuda", rank)
    else:
        # the ranks share the cores: one rank's threads must not starve the others
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // spec["world_size"]))
    dist.init_process_group(
        "nccl" if spec["device_type"] == "cuda" else "gloo",
        init_method="tcp://127.0.0.1:%d" % spec["port"],
        rank=rank,
        world_size=spec["world_size"],
        timeout=datetime.timedelta(seconds=spec["timeout_s"]),
        **kwargs,
    )
    try:
        result = worker(rank, spec)
    finally:
        dist.destroy_process_group()
    write_atomic(os.path.join(spec["result_dir"], "rank%d.json" % rank), json.dumps(result))


def _last_line(text):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no message"


def launch(ctx, worker, world_size, spec, name):
    """Each rank's result (a list indexed by rank) of worker(rank, spec) in world_size processes.
    name labels the launch (scratch directory, messages). WorkerFailure when any rank fails or
    the run passes worker_timeout_s."""
    import torch.multiprocessing as torch_mp

    result_dir = os.path.join(ctx.workdir, name)
    os.makedirs(result_dir, exist_ok=True)
    for old in os.listdir(result_dir):
        os.unlink(os.path.join(result_dir, old))
    timeout_s = ctx.config["worker_timeout_s"]
    spec = dict(
        spec,
        world_size=world_size,
        device_type=ctx.device_type,
        gloo_socket_ifname=ctx.config["gloo_socket_ifname"],
        port=free_port(),
        result_dir=result_dir,
        timeout_s=timeout_s,
    )
    multiprocessing.get_context("forkserver").set_forkserver_preload(PRELOAD)
    processes = torch_mp.start_processes(
        _entry, args=(worker, spec), nprocs=world_size, join=False, start_method="forkserver"
    )
    deadline = time.monotonic() + timeout_s
    try:
        while not processes.join(timeout=1.0):
            if time.monotonic() > deadline:
                raise WorkerFailure(
                    "%s: the %d processes did not finish within worker_timeout_s = %g s "
                    "(a collective waiting on a GPU or link that does not answer?)"
                    % (name, world_size, timeout_s)
                )
    except torch_mp.ProcessRaisedException as err:
        raise WorkerFailure(
            "%s: rank %d raised %s" % (name, err.error_index, _last_line(str(err)))
        ) from None
    except torch_mp.ProcessExitedException as err:
        raise WorkerFailure(
            "%s: rank %d exited with %s %s"
            % (
                name,
                err.error_index,
                "signal" if err.signal_name else "code",
                err.signal_name or err.exit_code,
            )
        ) from None
    finally:
        for process in processes.processes:
            if process.is_alive():
                process.kill()
                process.join(5)
    results = []
    for rank in range(world_size):
        with open(os.path.join(result_dir, "rank%d.json" % rank)) as handle:
            results.append(json.load(handle))
    return results
