"""The modules through Ansible itself: ansible-doc renders them, and a play run with --check
--diff, then for real, then again behaves as users expect (changed=0 on the re-run)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PLAY = """
- name: GPU settings of the seed machine
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Persistence, 200 W, application clocks 877/1005 MHz
      nvidia_gpu_settings:
        persistence_mode: true
        power_limit: 200
        clocks: {strategy: application, memory_mhz: 877, graphics_mhz: 1005}
"""


@pytest.mark.parametrize("name", sorted(path.stem for path in (PROJECT / "library").glob("*.py")))
def test_ansible_doc_renders(name):
    proc = subprocess.run(
        [str(BIN / "ansible-doc"), "-M", "library", "--json", name],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=True,
    )
    doc = json.loads(proc.stdout)[name]
    assert doc["doc"]["module"] == name
    assert doc["examples"].strip() and doc["return"]
    assert doc["doc"]["attributes"]["check_mode"]["support"] == "full"


def run_play(machine, tmp_path, *flags):
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY)
    env = dict(
        machine.env,
        ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_LOCALHOST_WARNING="false",
        PATH=str(BIN) + os.pathsep + os.environ["PATH"],
    )
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", str(playbook), *flags],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    report = json.loads(proc.stdout)
    task = report["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return report["stats"]["localhost"], task


def test_check_diff_then_apply_then_rerun(machine, tmp_path):
    before = machine.state()
    stats, task = run_play(machine, tmp_path, "--check", "--diff")
    assert stats["changed"] == 1
    assert task["diff"]["after"]
    assert machine.state() == before
    stats, _ = run_play(machine, tmp_path)
    assert stats["changed"] == 1
    assert {g["power_limit_mw"] for g in machine.state()} == {200000}
    stats, task = run_play(machine, tmp_path)
    assert stats["changed"] == 0 and task["changed"] is False
