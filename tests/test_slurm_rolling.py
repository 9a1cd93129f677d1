"""The slurm role's rolling entry points (rolling_batches, drain, resume) as nvidia_driver and
gpu_tuning use them, run by ansible-playbook over several local hosts against a fake Slurm that
records what it was told: batches run in order, each drained before its change and resumed
after; a failed node stops the roll for the later batches; without a controller nothing is
drained and the hosts form one batch. The real Slurm does the same in molecule/cluster."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# The shape of the roles' use (gpu_tuning's apply.yml and apply_batch.yml), with a change that
# records itself and fails on the host named by fail_on.
PLAY = """
- name: A rolling change
  hosts: gpu_nodes
  gather_facts: false
  tasks:
    - name: Note the hostname and whether the change is needed
      ansible.builtin.set_fact:
        ansible_facts: {hostname: "{{ inventory_hostname }}"}
        change_pending: "{{ inventory_hostname in pending }}"
    - name: Order the nodes into batches
      ansible.builtin.include_role:
        name: slurm
        tasks_from: rolling_batches
      vars:
        slurm_rolling_pending_fact: change_pending
    - name: One batch at a time
      ansible.builtin.include_tasks: batch.yml
      loop: "{{ slurm_rolling_batches }}"
      loop_control: {loop_var: batch, extended: true}
"""
BATCH = """
- name: The batch
  when: inventory_hostname in batch
  block:
    - name: Drain
      ansible.builtin.include_role: {name: slurm, tasks_from: drain}
      vars:
        slurm_drain_reason: test change
        slurm_rolling_done: "{{ ansible_loop.allitems[: ansible_loop.index0] | flatten }}"
    - name: The change
      ansible.builtin.shell: >-
        echo change {{ inventory_hostname }} >> {{ calls }};
        test {{ inventory_hostname }} != {{ fail_on }}
      changed_when: true
    - name: Resume
      ansible.builtin.include_role: {name: slurm, tasks_from: resume}
"""
# sinfo/squeue/scontrol over one file per node ("state|reason"); every update is logged.
SINFO = '#!/bin/sh\ncat "$SLURM_FAKE/$4"\n'
SQUEUE = "#!/bin/sh\n"
SCONTROL = """#!/bin/sh
node="${2#NodeName=}"
case "$3" in
  State=DRAIN) echo "drain $node" >> "$SLURM_FAKE/calls"
               echo "drained|${4#Reason=}" > "$SLURM_FAKE/$node";;
  State=RESUME) echo "resume $node" >> "$SLURM_FAKE/calls"
                echo "idle|none" > "$SLURM_FAKE/$node";;
esac
"""
NODES = ("dl1", "dl2", "dl3")


def _write(path, text, executable=False):
    path.write_text(text)
    if executable:
        path.chmod(path.stat().st_mode | stat.S_IXUSR)


def roll(tmp_path, pending, controller=True, fail_on="none", batch=1):
    """Run the play; (exit status, the fake Slurm's calls and the changes, in order, output)."""
    fake = tmp_path / "slurm"
    fake.mkdir(exist_ok=True)
    for name, text in (("sinfo", SINFO), ("squeue", SQUEUE), ("scontrol", SCONTROL)):
        _write(fake / name, text, executable=True)
    for node in NODES:
        _write(fake / node, "idle|none\n")
    calls = fake / "calls"
    if calls.exists():
        calls.unlink()
    host = "ansible_connection=local ansible_python_interpreter=%s" % sys.executable
    inventory = "[gpu_nodes]\n" + "".join("%s %s\n" % (node, host) for node in NODES)
    if controller:
        inventory += "[slurm_controller]\nctl %s\n" % host
    _write(tmp_path / "hosts", inventory)
    _write(tmp_path / "play.yml", PLAY)
    _write(tmp_path / "batch.yml", BATCH)
    variables = {"pending": pending, "calls": str(calls), "fail_on": fail_on}
    variables["slurm_rolling_batch"] = batch
    proc = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(tmp_path / "hosts"),
            str(tmp_path / "play.yml"),
            "-e",
            json.dumps(variables),
        ],
        cwd=PROJECT,
        env=dict(
            os.environ,
            ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
            ANSIBLE_ROLES_PATH=str(PROJECT / "roles"),
            ANSIBLE_NOCOLOR="1",
            SLURM_FAKE=str(fake),
            PATH="%s:%s:%s" % (fake, BIN, os.environ["PATH"]),
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    done = calls.read_text().splitlines() if calls.exists() else []
    return proc.returncode, done, proc.stdout + proc.stderr


def test_each_node_is_drained_changed_and_resumed_before_the_next(tmp_path):
    status, done, output = roll(tmp_path, ["dl1", "dl3"])
    assert status == 0, output[-3000:]
    assert done == [
        "drain dl1",
        "change dl1",
        "resume dl1",
        "drain dl3",
        "change dl3",
        "resume dl3",
    ], output[-3000:]


def test_a_failed_node_stops_the_roll_and_stays_drained(tmp_path):
    status, done, output = roll(tmp_path, list(NODES), fail_on="dl2")
    assert status == 2
    assert done == ["drain dl1", "change dl1", "resume dl1", "drain dl2", "change dl2"]
    assert (
        "Left unchanged and in service: the rolling change (test change) stopped after dl2"
        in output
    )
    assert (tmp_path / "slurm" / "dl2").read_text().startswith("drained|gpu-node change: ")


@pytest.mark.parametrize("controller, batch", [(False, 1), (True, "100%")])
def test_one_batch_without_a_controller_or_when_asked(tmp_path, controller, batch):
    status, done, output = roll(tmp_path, list(NODES), controller=controller, batch=batch)
    assert status == 0, output[-3000:]
    changes = ["change %s" % node for node in NODES]
    if controller:
        # One batch: all drained (in parallel), then all changed, then all resumed.
        assert sorted(done[:3]) == ["drain %s" % node for node in NODES]
        assert sorted(done[3:6]) == changes
        assert sorted(done[6:]) == ["resume %s" % node for node in NODES]
    else:
        assert sorted(done) == changes  # nothing drained


def test_a_bad_batch_size_names_the_value_before_any_change(tmp_path):
    status, done, output = roll(tmp_path, ["dl1"], batch="0%")
    assert status == 2 and done == []
    assert "rolling batch size '0%'" in output
