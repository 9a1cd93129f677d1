"""The node after the training stack and one validation run on the CPU path: the virtualenv holds
the chosen CPU build, jobs start through gpu-torchrun, and the report proves the computations
right (every section ran, nothing failed), on the node and as fetched to the controller."""

import json
import os
from pathlib import Path

VENV_PYTHON = "/opt/gpu-node/training/venv/bin/python"
REPORT_DIR = "/var/lib/gpu-node/validation/report"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

ALL_REDUCE = """
import os
import torch, torch.distributed as dist
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
tensor = torch.arange(1024, dtype=torch.float32) * (rank + 1)
dist.all_reduce(tensor)
expected = torch.arange(1024, dtype=torch.float32) * sum(range(1, world + 1))
assert torch.equal(tensor, expected), (rank, tensor[:4])
# One write(2) per line (print writes the text and the newline apart): both ranks share
# torchrun's stdout.
os.write(1, f"rank {rank} of {world} exact\\n".encode())
dist.destroy_process_group()
# As the project's train job leaves (train_job.leave): torch 2.13's gloo threads can abort the
# interpreter's teardown (SIGABRT) after a job that passed, and torchrun then fails it.
os._exit(0)
"""


def test_the_virtualenv_holds_the_chosen_cpu_build(host):
    fact = json.loads(host.file("/etc/ansible/facts.d/training_stack.fact").content_string)
    assert fact["build"] == "cpu" and fact["requirement"] == "torch==2.13.0+cpu"
    assert "CPU build" in fact["reason"]
    out = host.check_output(
        VENV_PYTHON + " -c 'import torch, numpy, matplotlib; "
        "print(torch.__version__, torch.version.cuda, numpy.__version__, matplotlib.__version__)'"
    )
    assert out.split() == ["2.13.0+cpu", "None", "2.4.6", "3.11.2"]


def test_gpu_torchrun_starts_the_processes_asked_for(host):
    host.run_expect([0], "cat > /tmp/all_reduce.py <<'EOF'\n%sEOF" % ALL_REDUCE)
    result = host.run("gpu-torchrun --nproc-per-node 2 /tmp/all_reduce.py")
    assert result.rc == 0, result.stderr
    assert sorted(line for line in result.stdout.splitlines() if line.startswith("rank")) == [
        "rank 0 of 2 exact",
        "rank 1 of 2 exact",
    ]
    # Without --nproc-per-node: one process per GPU the driver lists, one on this GPU-less node.
    env = host.check_output(
        ". /opt/gpu-node/training/env.sh && echo $GPU_NODE_PROCS $OMP_NUM_THREADS"
    )
    procs, threads = map(int, env.split())
    assert procs == 1 and threads >= 1


def test_the_report_has_every_section_and_nothing_failed(host):
    report = json.loads(host.file(REPORT_DIR + "/report.json").content_string)
    assert set(report["sections"]) == {"gemm", "membw", "allreduce", "ddp", "threebody"}
    assert report["sections_not_run"] == []
    assert report["summary"]["result"] == "pass", report["summary"]
    statuses = {c["name"]: c["status"] for s in report["sections"].values() for c in s["checks"]}
    # On the CPU the computations are judged, the speeds are not.
    assert "fail" not in statuses.values()
    assert "pass" in statuses.values() and "not_applicable" in statuses.values()


def test_the_plots_are_pngs(host):
    for name in ("scaling.png", "busbw.png"):
        content = host.file("%s/%s" % (REPORT_DIR, name)).content
        assert content[:8] == PNG_MAGIC and len(content) > 1000, name


def test_the_controller_got_the_same_report(host):
    fetched = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "reports" / "gpunode-stacks"
    for name in ("report.json", "report.md", "scaling.png", "busbw.png"):
        assert (fetched / name).read_bytes() == host.file("%s/%s" % (REPORT_DIR, name)).content
    assert (fetched / "report.md").read_text().lstrip().startswith("#")


MPI_SUM = """
from mpi4py import MPI
import numba, numpy, scipy.linalg

@numba.njit
def dot(a, b):
    total = 0.0
    for i in range(a.size):
        total += a[i] * b[i]
    return total

comm = MPI.COMM_WORLD
x = numpy.arange(10.0) + comm.Get_rank()
total = comm.allreduce(dot(x, x))
assert abs(scipy.linalg.norm(numpy.eye(3)) - 3 ** 0.5) < 1e-12
print(f"{comm.Get_rank()} {comm.Get_size()} {total}", flush=True)
"""


def test_an_mpi_job_runs_on_the_simulation_stack(host):
    host.run_expect([0], "cat > /tmp/mpi_sum.py <<'EOF'\n%sEOF" % MPI_SUM)
    result = host.run(
        ". /opt/gpu-node/simulation/env.sh && mpirun --allow-run-as-root --oversubscribe -np 2 "
        "--mca btl_vader_single_copy_mechanism none python /tmp/mpi_sum.py"
    )
    assert result.rc == 0, result.stderr
    # sum over ranks 0 and 1 of sum((i + r)^2, i < 10): 285 + 385
    ranks = sorted(line for line in result.stdout.splitlines() if line[:4] in ("0 2 ", "1 2 "))
    assert ranks == ["0 2 670.0", "1 2 670.0"]
