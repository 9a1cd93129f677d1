"""Shared helpers of the tests of the node-side validation tool (validation/): how to run its
command as the role will, tiny CPU sizes, and a run context for calling sections in-process."""

import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
VALIDATION = PROJECT / "validation"
if str(VALIDATION) not in sys.path:
    sys.path.insert(0, str(VALIDATION))

# Small enough for a 2-core machine, big enough that every check has something real to judge:
# the DDP task is learnable in 30 steps, three-body keeps configurations without close encounters.
TINY = {
    "device": "cpu",
    "gemm": {"n": 64, "warmup": 1, "iterations": 2},
    "membw": {"size_bytes": 1 << 20, "warmup": 1, "iterations": 2},
    "allreduce": {"sizes_bytes": [1024, 1 << 16], "warmup": 1, "iterations": 2},
    "ddp": {
        "world_sizes": [1, 2],
        "vocab_size": 32,
        "seq_len": 8,
        "d_model": 16,
        "layers": 1,
        "global_batch": 8,
        "steps": 30,
        "warmup_steps": 3,
    },
    "threebody": {"configurations": 64, "steps": 400},
}


def write_config(path, data):
    Path(path).write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def run_cli(*args, env=None, timeout=300):
    """The tool's command, as `python -m gpu_node_validate` from the source tree."""
    environment = dict(os.environ, PYTHONPATH=str(VALIDATION))
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "gpu_node_validate", *map(str, args)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def context(tmp_path, overrides=None, device_type="cpu"):
    """A RunContext like the command builds, for calling one section in this process."""
    import torch
    from gpu_node_validate import config, environment
    from gpu_node_validate.context import RunContext

    checked = config.validate(dict(TINY, **(overrides or {})))
    resolved = config.resolve(checked, device_type, 0)
    return RunContext(
        torch, resolved, device_type, environment.devices(torch, device_type), str(tmp_path)
    )


def checks_by_name(result):
    return {c["name"]: c for c in result["checks"]}
