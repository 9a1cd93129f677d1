"""The sandbox cluster after site.yml, asked through Slurm: the controller sees both GPU nodes
with their GPUs, jobs run across both, the health check drains a node naming the fault and
resumes it when the fault clears, and a re-run with one node stopped finishes on the others."""

import json
import os
import subprocess
import time

import pytest
import testinfra
from node_gpus import RESET_FAULTS, read_back

CONTROLLER = "gpunode-ctl"
NODES = ("gpunode-c1", "gpunode-c2")
# inventory/sandbox-cluster/group_vars/all.yml: the health check's interval.
HEALTH_INTERVAL_S = 15
# The training stack's directory (training_stack_dir) holds the sbatch script.
DDP_SCRIPT = "/opt/gpu-node/training/gpu-ddp.sbatch"

# The checks ask Slurm on the controller; the other nodes are reached with node().
testinfra_hosts = ["podman://%s" % CONTROLLER]


def node(name):
    return testinfra.get_host("podman://%s" % name)


def slurm_state(host, name):
    """(extended state, reason) of a node as sinfo shows it on the controller."""
    line = host.check_output("sinfo --noheader --Node --nodes %s --format '%%T|%%E'" % name)
    state, _, reason = line.splitlines()[0].partition("|")
    return state.strip(), reason.strip()


def wait_for(host, name, wanted, timeout_s):
    """The node's (state, reason) once wanted(state, reason) holds; fails with the last seen."""
    deadline = time.time() + timeout_s
    seen = slurm_state(host, name)
    while not wanted(*seen) and time.time() < deadline:
        time.sleep(2)
        seen = slurm_state(host, name)
    assert wanted(*seen), "%s after %d s: %s" % (name, timeout_s, seen)
    return seen


def test_both_gpu_nodes_are_idle_with_four_v100(host):
    lines = host.check_output("sinfo --noheader --Node --format '%N %T %G'").splitlines()
    assert sorted(lines) == ["%s idle gpu:v100:4" % name for name in NODES]
    config = host.file("/etc/slurm/gres.conf").content_string
    assert "NodeName=gpunode-c1 Name=gpu Type=v100 File=/dev/nvidia[0-3]" in config


def test_nodes_run_configless_after_the_gpu_settings(host):
    for name in NODES:
        gpu_node = node(name)
        assert not gpu_node.file("/etc/slurm/slurm.conf").exists  # fetched from slurmctld
        assert gpu_node.service("slurmd").is_running
        after = gpu_node.check_output("systemctl show slurmd -p After --value").split()
        requires = gpu_node.check_output("systemctl show slurmd -p Requires --value").split()
        assert "gpu-tuning.service" in after and "gpu-tuning.service" in requires


def test_munge_key_is_one_and_private(host):
    keys = set()
    for name in (CONTROLLER, *NODES):
        key = node(name).file("/etc/munge/munge.key")
        assert (key.user, key.group, key.mode) == ("munge", "munge", 0o400)
        keys.add(key.sha256sum)
    assert len(keys) == 1


def test_srun_answers_from_both_nodes(host):
    names = host.check_output("srun --nodes=2 --ntasks-per-node=1 hostname").split()
    assert sorted(names) == list(NODES)


def test_ddp_job_trains_across_both_nodes(host):
    first = node(NODES[0])
    output = "/tmp/gpu-ddp-%d.json" % os.getpid()
    result = first.run(
        "cd /tmp && sbatch --wait --nodes=2 --export=ALL,GPU_NODE_PROCS=2 %s --output %s",
        DDP_SCRIPT,
        output,
    )
    assert result.rc == 0, result.stdout + result.stderr
    summary = json.loads(first.file(output).content_string)
    assert summary["world_size"] == 4 and summary["nodes"] == 2
    assert sorted(set(summary["hostnames"])) == list(NODES)
    assert summary["result"] == "pass" and summary["losses"][-1] < summary["losses"][0]


@pytest.fixture
def healthy():
    """Both nodes without faults at the start and the end (a reboot's worth of GPU state)."""

    def reset():
        for name in NODES:
            node(name).check_output(RESET_FAULTS)

    reset()
    yield
    reset()


def test_lost_gpu_drains_its_node_and_the_drain_clears(host, healthy):
    node(NODES[1]).check_output("nvml-sim fault 2 lost")
    _, reason = wait_for(host, NODES[1], lambda s, r: "drain" in s, timeout_s=3 * HEALTH_INTERVAL_S)
    assert reason.startswith("gpu-health: ") and "Xid 79" in reason, reason
    assert slurm_state(host, NODES[0])[0] == "idle"
    node(NODES[1]).check_output(RESET_FAULTS)
    wait_for(host, NODES[1], lambda s, r: s == "idle", timeout_s=3 * HEALTH_INTERVAL_S)


def test_a_drain_set_by_people_stays(host, healthy):
    host.check_output("scontrol update NodeName=%s State=DRAIN Reason=maintenance" % NODES[0])
    try:
        time.sleep(2 * HEALTH_INTERVAL_S)
        state, reason = slurm_state(host, NODES[0])
        assert "drain" in state and reason == "maintenance"
    finally:
        host.check_output("scontrol update NodeName=%s State=RESUME" % NODES[0])


def test_ib_port_fault_is_named_and_drains(host, healthy):
    node(NODES[0]).check_output("ib-sim fault /run/ib-sim mlx5_0 1 width 1X")
    _, reason = wait_for(host, NODES[0], lambda s, r: "drain" in s, timeout_s=3 * HEALTH_INTERVAL_S)
    assert "mlx5_0 port 1" in reason and "1X" in reason, reason


def slurm_play(*args, playbook="slurm.yml"):
    """A playbook of playbooks/ against the scenario's inventory, as a person would run it."""
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    playbook = os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], "playbooks", playbook)
    return subprocess.run(
        ["ansible-playbook", "-i", inventory, *args, playbook],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1"),
    )


def test_rerun_with_a_stopped_node_finishes_on_the_others(host):
    subprocess.run(["podman", "stop", "--time", "2", NODES[1]], check=True)
    try:
        run = slurm_play()
        recap = run.stdout[run.stdout.rindex("PLAY RECAP") :]
        assert run.returncode == 4, run.stdout[-3000:]  # some host unreachable, none failed
        assert "Not configured in this run: %s" % NODES[1] in run.stdout, run.stdout[-3000:]
        for line in recap.splitlines()[1:]:
            if line.startswith(NODES[1]):
                assert "unreachable=1" in line
            elif line.strip():
                assert "unreachable=0" in line and "failed=0" in line, line
        # The stopped node keeps its definition: Slurm still knows it (down, not forgotten).
        assert "NodeName=%s " % NODES[1] in host.file("/etc/slurm/slurm.conf").content_string
    finally:
        subprocess.run(["podman", "start", NODES[1]], check=True)
    # Booted again: its GPU settings are applied, then slurmd starts and the node returns.
    wait_for(host, NODES[1], lambda s, r: s == "idle", timeout_s=120)


def test_one_node_alone_with_limit_keeps_the_others(host):
    # The controller is not in the play: its files are written by delegation, merged with the
    # definitions it knows.
    run = slurm_play("--limit", NODES[0])
    assert run.returncode == 0, run.stdout[-3000:]
    conf = host.file("/etc/slurm/slurm.conf").content_string
    assert all("NodeName=%s " % name in conf for name in NODES)
    lines = host.check_output("sinfo --noheader --Node --format '%N %T'").splitlines()
    assert sorted(lines) == ["%s idle" % name for name in NODES]


def test_new_gpu_settings_roll_through_the_nodes_after_their_jobs(host):
    # Last: the nodes keep the full profile (300 W) from here on.
    job = host.check_output(
        "sbatch --parsable --nodelist=%s --time=5 --wrap 'sleep 25'" % NODES[0]
    ).strip()
    deadline = time.time() + 30
    while host.check_output("squeue --noheader --jobs %s --format %%T" % job) != "RUNNING":
        assert time.time() < deadline, "job %s did not start" % job
        time.sleep(1)
    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    run = slurm_play("-e", "gpu_tuning_profile=full", playbook="gpu_tuning.yml")
    assert run.returncode == 0, run.stdout[-3000:]
    # The drain waited for the job: it ran to its end.
    assert "JobState=COMPLETED" in host.check_output("scontrol show job %s" % job)
    # slurmctld's own record: one node out of service at a time, the first one after its job.
    log = host.check_output("journalctl --unit slurmctld --since '%s' --output cat" % since)
    events = [
        (name, "drain" if "reason set to: gpu-node change: " in line else "resume")
        for line in log.splitlines()
        for name in NODES
        if "update_node: node %s " % name in line
        and ("reason set to: gpu-node change: " in line or "state set to IDLE" in line)
    ]
    assert events == [
        (NODES[0], "drain"),
        (NODES[0], "resume"),
        (NODES[1], "drain"),
        (NODES[1], "resume"),
    ], log
    # The first node's job ended before it was resumed.
    assert log.index("JobId=%s done" % job) < log.index("node %s state set to IDLE" % NODES[0])
    for name in NODES:
        limits = {gpu["power_limit_mw"] for gpu in read_back(node(name))}
        assert limits == {300000}, (name, limits)
    lines = host.check_output("sinfo --noheader --Node --format '%N %T'").splitlines()
    assert sorted(lines) == ["%s idle" % name for name in NODES]
