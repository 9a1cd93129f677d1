"""The slurm role's rolling entry points (rolling_batches, drain, resume) as nvidia_driver and
gpu_tuning use them, run by ansible-playbook over several local hosts against the fake Slurm
(fake_slurm.py), which records what it was told: batches run in order, each drained before its
change and resumed after; a failed node stops the roll for the later batches; without a
controller nothing is drained and the hosts form one batch. The real Slurm does the same in
molecule/cluster."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_slurm import FakeSlurm

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
NODES = ("dl1", "dl2", "dl3")


def step(line):
    """A line of the fake Slurm's calls file as "drain dl1", "resume dl1" or the play's own
    "change dl1"."""
    words = line.split()
    if words[0] != "update":
        return line
    return "%s %s" % (words[2].split("=")[1].lower(), words[1].split("=")[1])


def roll(tmp_path, pending, controller=True, fail_on="none", batch=1):
    """Run the play; (exit status, the drains, changes and resumes in order, output)."""
    fake = FakeSlurm(tmp_path / "slurm")
    for node in NODES:
        fake.set_node(node)
    host = "ansible_connection=local ansible_python_interpreter=%s" % sys.executable
    inventory = "[gpu_nodes]\n" + "".join("%s %s\n" % (node, host) for node in NODES)
    if controller:
        inventory += "[slurm_controller]\nctl %s\n" % host
    (tmp_path / "hosts").write_text(inventory)
    (tmp_path / "play.yml").write_text(PLAY)
    (tmp_path / "batch.yml").write_text(BATCH)
    variables = {"pending": pending, "calls": str(fake.calls_path), "fail_on": fail_on}
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
            PATH="%s:%s:%s" % (fake.bin, BIN, os.environ["PATH"]),
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.returncode, [step(line) for line in fake.calls()], proc.stdout + proc.stderr


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
    assert FakeSlurm(tmp_path / "slurm").node("dl2").startswith("drained|gpu-node change: ")


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
