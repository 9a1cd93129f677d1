"""The modules through Ansible itself: ansible-doc renders them, a play run with --check --diff,
then for real, then again behaves as users expect (changed=0 on the re-run), and the gpu_health
role prints its report before it fails on findings."""

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


def ansible_playbook(machine, playbook, *args, **env):
    """ansible-playbook on localhost against the machine's GPUs, JSON output; the process."""
    env = dict(
        machine.env,
        ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_LOCALHOST_WARNING="false",
        PATH=str(BIN) + os.pathsep + os.environ["PATH"],
        **env,
    )
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", str(playbook), *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
    )


def run_play(machine, tmp_path, *flags):
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY)
    proc = ansible_playbook(machine, playbook, *flags)
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


ROLE_PLAY = """
- name: The gpu_health role on the simulated machine
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - gpu_health
"""


def run_gpu_health_role(machine, tmp_path, **role_vars):
    """The gpu_health role's tasks, with this Python as the GPU runtime (nvml_runtime stubbed).
    Returns the play's exit status and {task name: this host's result}."""
    stub_tasks = tmp_path / "roles" / "nvml_runtime" / "tasks"
    stub_tasks.mkdir(parents=True)
    (stub_tasks / "main.yml").write_text("---\n[]\n")
    playbook = tmp_path / "health.yml"
    playbook.write_text(ROLE_PLAY)
    role_vars = dict(nvml_runtime_python=sys.executable, gpu_health_kernel_log="none", **role_vars)
    proc = ansible_playbook(
        machine,
        playbook,
        "-e",
        json.dumps(role_vars),
        ANSIBLE_ROLES_PATH="%s:%s" % (tmp_path / "roles", PROJECT / "roles"),
    )
    tasks = json.loads(proc.stdout)["plays"][0]["tasks"]
    # Task names without their role ("gpu_health : ", "common : ").
    by_name = {t["task"]["name"].split(" : ", 1)[-1]: t["hosts"] for t in tasks}
    return proc.returncode, {name: hosts["localhost"] for name, hosts in by_name.items()}


def test_gpu_health_role_reports_then_fails_on_a_lost_gpu(machine, tmp_path):
    machine.cli("fault", 2, "lost")
    status, tasks = run_gpu_health_role(machine, tmp_path, gpu_health_expected_count=4)
    assert status != 0
    assert not tasks["Check the GPUs against this host's hardware"].get("failed")
    report = tasks["Show the node's GPUs"]["msg"]
    assert any(line.startswith("2   (fallen off the bus)") for line in report)
    assert any(line.startswith("CRITICAL: GPU 2 does not answer") for line in report)
    failure = tasks["Fail on findings at or above critical"]
    assert failure["failed"]
    assert failure["msg"].startswith("GPU health check failed: GPU 2 does not answer")
    assert "persistence mode" not in failure["msg"]  # warnings do not reach fail_on=critical


def test_gpu_health_role_passes_warnings_below_fail_on(machine, tmp_path):
    status, tasks = run_gpu_health_role(machine, tmp_path)  # persistence off: warnings only
    assert status == 0
    assert tasks["Fail on findings at or above critical"]["msg"] == (
        "GPU health: findings below critical"
    )
