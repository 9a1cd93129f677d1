"""The multi-node DDP job: `gpu-node-validate train` under torchrun, started by the training_stack
role's gpu-ddp.sbatch as Slurm would start it. The script and gpu-torchrun are rendered with
Ansible's templating into a scratch directory (the venv is this one); srun and scontrol are
stand-ins that run every "node" on this machine, so two torchruns (--nnodes=2, 2 processes each,
static rendezvous on 127.0.0.1) train the real model with gloo."""

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
from test_apt_sources_render import Play, debian12
from validation_tool import VALIDATION, run_cli

# srun for tests: skips its options, runs the command once per node (SLURM_NODEID 0..N-1) side
# by side on this machine, and exits with the highest exit code, as srun does.
FAKE_SRUN = """#!/bin/bash
while [ "${1#-}" != "$1" ]; do shift; done
pids=()
for ((node = 0; node < SLURM_NNODES; node++)); do
  SLURM_NODEID=$node "$@" &
  pids+=("$!")
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || { code=$?; [ "$code" -gt "$rc" ] && rc=$code; }; done
exit "$rc"
"""
# scontrol show hostnames A,B: one name a line (the test's node lists have no ranges).
FAKE_SCONTROL = """#!/bin/sh
printf '%s\\n' "$3" | tr , '\\n'
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def render(name, **inventory):
    play = Play(debian12(), roles=("training_stack",), **inventory)
    return play.template("training_stack", name)


def write(path, text, mode=0o644):
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scratch node: the rendered sbatch script, gpu-torchrun and env.sh under it, this venv as
    the training venv, and the Slurm stand-ins on PATH."""
    root = tmp_path_factory.mktemp("cluster")
    inventory = {"training_stack_dir": str(root / "training"), "training_stack_bin_dir": str(root)}
    (root / "training").mkdir()
    (root / "training" / "venv").symlink_to(sys.prefix)
    write(root / "training" / "env.sh", render("env.sh.j2", **inventory))
    write(root / "gpu-torchrun", render("gpu-torchrun.j2", **inventory), 0o755)
    write(root / "srun", FAKE_SRUN, 0o755)
    write(root / "scontrol", FAKE_SCONTROL, 0o755)
    script = write(root / "gpu-ddp.sbatch", render("gpu-ddp.sbatch.j2", **inventory))
    return root, script


def submit(cluster, job_id, nodes, procs, *args):
    """The script run as Slurm's batch step, as `sbatch --nodes=NODES
    --export=ALL,GPU_NODE_PROCS=PROCS gpu-ddp.sbatch ARGS` would: (process, summary or None)."""
    root, script = cluster
    workdir = root / ("job%d" % job_id)
    workdir.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("GLOO_SOCKET_IFNAME", "OMP_NUM_THREADS", "MASTER_PORT")
    }
    env.update(
        PATH="%s:%s" % (root, env["PATH"]),
        PYTHONPATH=str(VALIDATION),
        SLURM_JOB_ID=str(job_id),
        SLURM_JOB_NODELIST=",".join(["localhost"] * nodes),
        SLURM_NNODES=str(nodes),
        SLURM_CPUS_ON_NODE=str(os.cpu_count()),
        GPU_NODE_PROCS=str(procs),
        MASTER_PORT=str(free_port()),
    )
    proc = subprocess.run(
        ["bash", str(script), *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    summary = workdir / ("gpu-ddp-%d.json" % job_id)
    return proc, json.loads(summary.read_text()) if summary.exists() else None


def test_two_nodes_of_two_processes_train_and_rank0_writes_the_summary(cluster):
    proc, summary = submit(cluster, 101, 2, 2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary is not None, proc.stderr
    assert summary["result"] == "pass"
    assert summary["world_size"] == 4
    assert summary["node_ranks"] == [0, 0, 1, 1]  # static rendezvous: node rank = SLURM_NODEID
    assert summary["hostnames"] == [socket.gethostname()] * 4 and summary["nodes"] == 1
    assert (summary["backend"], summary["device"]) == ("gloo", "cpu")
    assert summary["steps"] == 60 and summary["global_batch"] % 4 == 0
    assert summary["last_loss"] < summary["first_loss"]
    assert summary["loss_drop"] >= summary["min_loss_drop"] == 0.3
    assert 0 < summary["seconds_s"] < 60
    assert "gpu-ddp: node 1 (" in proc.stdout and "gloo interface lo" in proc.stdout
    assert "[train] step 60/60: loss " in proc.stderr
    assert "[train] PASS: loss " in proc.stderr
    assert "world size 4 on 1 node(s) (gloo, cpu), 60 steps" in proc.stderr


def test_a_loss_that_does_not_fall_enough_fails_the_job_naming_it(cluster):
    # one node of one process: the cheapest job that runs the whole path
    proc, summary = submit(cluster, 102, 1, 1, "--steps", "3", "--min-loss-drop", "0.9")
    assert proc.returncode != 0
    assert "gpu-node-validate train: FAIL: the loss fell by " in proc.stderr
    assert "below --min-loss-drop 0.9; world size 1 on 1 node(s)" in proc.stderr
    assert summary["result"] == "fail" and summary["loss_drop"] < 0.9
    assert summary["steps"] == 3 and len(summary["losses"]) == 3


def test_outside_torchrun_it_says_how_to_start_it():
    proc = run_cli("train", "--output", "x.json")
    assert proc.returncode == 3
    assert proc.stderr.startswith("gpu-node-validate train: environment problem: RANK, ")
    assert "run it under torchrun" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "1"], "--steps 1: allowed: 2 to 100000"),
        (["--min-loss-drop", "1.5"], "--min-loss-drop 1.5: allowed: 0 to 1"),
        (["--timeout-s", "0"], "--timeout-s 0: allowed: a number of seconds above 0"),
    ],
)
def test_bad_arguments_are_refused_with_what_is_allowed(args, message):
    proc = run_cli("train", "--output", "x.json", *args)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_sbatch_script_is_valid_shell_with_slurm_defaults(cluster):
    _, script = cluster
    text = script.read_text()
    assert text.startswith("#!/bin/bash\n#\n# Ansible managed\n#\n")
    directives = [line for line in text.splitlines() if line.startswith("#SBATCH ")]
    assert directives == [
        "#SBATCH --job-name=gpu-ddp",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --exclusive",
        "#SBATCH --time=00:30:00",
        "#SBATCH --output=gpu-ddp-%j.out",
    ]
    # sbatch reads directives only up to the first command
    first_command = next(
        n for n, line in enumerate(text.splitlines()) if line and not line.startswith("#")
    )
    assert first_command > max(text.splitlines().index(line) for line in directives)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    if shutil.which("shellcheck"):
        proc = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout
