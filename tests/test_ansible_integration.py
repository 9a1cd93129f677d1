"""The modules through Ansible itself: ansible-doc renders them, a play run with --check --diff,
then for real, then again behaves as users expect (changed=0 on the re-run), and the gpu_health
role prints its report before it fails on findings."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

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
    # The timer installs units: this host is not a node (the health scenario tests it).
    role_vars = dict(
        nvml_runtime_python=sys.executable,
        gpu_health_kernel_log="none",
        gpu_health_timer=False,
        **role_vars,
    )
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


# The roles must not depend on the caller's play: each gathers the facts it reads (common's facts
# and platform entry points), once, and only where the play has not.
COMMON_VARS = PROJECT / "roles" / "common" / "vars" / "main.yml"
FACT_READS = re.compile(r"""ansible_facts(?:\[['"](\w+)['"]\]|\.(\w+)\b(?!\())|\bansible_(\w+)""")
# ansible_* names that are Ansible's own variables, not facts.
# (ansible_job_id is the key an async task returns.)
NOT_FACTS = {
    "check_mode",
    "facts",
    "host",  # ansible_host: the inventory's address of a host
    "job_id",
    "loop",  # ansible_loop: a loop's position (loop_control extended)
    "managed",
    "parent_role_names",
    "play_hosts",  # ansible_play_hosts(_all): the hosts of the play
    "python_interpreter",
    "version",
}
# Gathered by setup's min subset too, but only where /etc/ansible/facts.d exists: the roles read
# it with a default (common's vars/main.yml says why it is not in the table). Unlike the other
# facts it keeps its prefix under ansible_facts (ansible_facts['ansible_local']); comments name
# it as the variable ansible_local.
OPTIONAL_SETUP_FACTS = {"ansible_local", "local"}


def facts_read_under_roles():
    """{fact: [files]} of every ansible_facts[...] / ansible_facts.X / ansible_X the roles read."""
    reads = {}
    for path in sorted((PROJECT / "roles").rglob("*")):
        if path.suffix not in {".yml", ".j2", ".py"}:
            continue
        for match in FACT_READS.finditer(path.read_text()):
            name = next(group for group in match.groups() if group)
            if name not in NOT_FACTS:
                reads.setdefault(name, []).append(str(path.relative_to(PROJECT)))
    return reads


def facts_our_modules_return():
    """Facts the project's modules set, as their documentation says (C(ansible_facts.X))."""
    names = set()
    for path in (PROJECT / "library").glob("*.py"):
        names.update(re.findall(r"Returns[^.]*?C\(ansible_facts\.(\w+)\)", path.read_text()))
    return names


def test_every_fact_the_roles_read_has_a_source():
    by_subset = yaml.safe_load(COMMON_VARS.read_text())["common_facts_by_subset"]
    gathered = {fact for facts in by_subset.values() for fact in facts}
    ours = facts_our_modules_return()
    assert {"nvidia_pci", "nvidia_gpu", "nvidia_driver_selection", "cuda_selection"} <= ours
    package_facts = (
        {"packages"}
        if "ansible.builtin.package_facts"
        in "".join(path.read_text() for path in (PROJECT / "roles").rglob("*.yml"))
        else set()
    )
    reads = facts_read_under_roles()
    assert {"distribution", "service_mgr", "virtualization_type", "nvidia_gpu"} <= set(reads)
    unknown = {
        fact: files
        for fact, files in reads.items()
        if fact not in gathered | ours | package_facts | OPTIONAL_SETUP_FACTS
    }
    assert not unknown, "facts read without a source: %s" % unknown


NO_FACTS_PLAY = """
- name: Every role that reads Ansible's facts, in a play that gathered {title}
  hosts: localhost
  connection: local
  gather_facts: {gather}
{subset}  roles: [base, nvidia_driver, cuda, nccl, gpu_tuning]
"""
# Each role's steps that read facts (and nothing that changes this machine: check mode).
PREFLIGHT_TAGS = (
    "base_preflight,nvidia_driver_preflight,cuda_preflight,nccl_preflight,gpu_tuning_preflight"
)
GATHER_TASK = "Gather the facts the roles read that are missing"


def run_roles_without_facts(tmp_path, gather, subset=None):
    playbook = tmp_path / "roles.yml"
    playbook.write_text(
        NO_FACTS_PLAY.format(
            title=subset or gather,
            gather=gather,
            subset="  gather_subset: %s\n" % json.dumps(subset) if subset else "",
        )
    )
    proc = ansible_playbook(
        SimpleNamespace(env=os.environ),  # nothing here reads a GPU
        playbook,
        "--check",
        "--tags",
        PREFLIGHT_TAGS,
        ANSIBLE_ROLES_PATH=str(PROJECT / "roles"),
    )
    report = json.loads(proc.stdout)
    tasks = [
        (task["task"]["name"], task["hosts"]["localhost"])
        for play in report["plays"]
        for task in play["tasks"]
        if "localhost" in task["hosts"]  # not the meta tasks that end a role
    ]
    return proc.returncode, tasks


def results(tasks, name):
    return [result for task, result in tasks if task.split(" : ", 1)[-1].startswith(name)]


@pytest.mark.parametrize(
    ("gather", "subset", "gathered"),
    [
        # min (only the collectors of the facts read) and virtual, once, by base's platform
        (
            "false",
            None,
            ["!all", "!min", "distribution", "platform", "service_mgr", "local", "virtual"],
        ),
        ("true", ["!all"], ["!all", "!min", "virtual"]),  # min there: virtual only
        ("true", None, None),  # everything there: nothing gathered again
    ],
)
def test_roles_gather_the_facts_they_read(tmp_path, gather, subset, gathered):
    status, tasks = run_roles_without_facts(tmp_path, gather, subset)
    gathers = results(tasks, GATHER_TASK)
    # base (platform: min, virtual; nvidia_driver's platform check is skipped as done), cuda,
    # nccl, gpu_tuning (min).
    assert len(gathers) == 4
    ran = [result for result in gathers if not result.get("skipped")]
    if gathered is None:
        assert ran == []
    else:
        assert len(ran) == 1 and gathers[0] is ran[0]  # the first role's, and no other
        assert ran[0]["ansible_facts"]["gather_subset"] == gathered
    # What reads the facts worked with them.
    os_vars = results(tasks, "Load OS-specific variables")
    assert len(os_vars) == 4 and not any(result.get("failed") for result in os_vars)
    # Once per host and run: base's; nvidia_driver's include is skipped.
    platform = results(tasks, "Check that the OS is one the roles support")
    assert len(platform) == 1 and not any(result.get("failed") for result in platform)
    (second,) = results(tasks, "Check the OS and whether this host is a container")[1:]
    assert second.get("skipped"), second
    assert results(tasks, "Tell whether this host is a container")[0]["ansible_facts"][
        "common_in_container"
    ] in (True, False)
    for name in (
        "Check that the driver source exists on this OS",
        "Check that the CUDA source exists on this OS",
        "Check that the NCCL source exists on this OS",
    ):
        (result,) = results(tasks, name)
        assert not result.get("failed"), result
    # gpu_tuning's check reads the gathered service manager (it used to default to systemd).
    (systemd,) = results(tasks, "Check that the node runs systemd")
    service_mgr = next(
        result["ansible_facts"]["ansible_service_mgr"]
        for result in [*ran, *results(tasks, "Gathering Facts")]
        if "ansible_service_mgr" in result.get("ansible_facts", {})
    )
    assert bool(systemd.get("failed")) == (service_mgr != "systemd")
    assert status == (0 if service_mgr == "systemd" else 2)


GPU_TUNING_PLAY = """
- name: The gpu_tuning role's argument spec and preflight
  hosts: localhost
  connection: local
  gather_facts: false
  roles: [gpu_tuning]
"""
VALUES = "Check the description of the power supply and the other loads"


def run_role_check(tmp_path, play, variables, *flags):
    """A play of roles on localhost in check mode with the variables as extra vars (nothing here
    reads a GPU): (exit status, {task name without its role: this host's result})."""
    playbook = tmp_path / "roles-check.yml"
    playbook.write_text(play)
    proc = ansible_playbook(
        SimpleNamespace(env=os.environ),
        playbook,
        "--check",
        "-e",
        json.dumps(variables),
        *flags,
        ANSIBLE_ROLES_PATH=str(PROJECT / "roles"),
    )
    report = json.loads(proc.stdout)
    tasks = {
        task["task"]["name"].split(" : ", 1)[-1]: task["hosts"]["localhost"]
        for play in report["plays"]
        for task in play["tasks"]
        if "localhost" in task["hosts"]
    }
    return proc.returncode, tasks


def run_gpu_tuning_preflight(tmp_path, variables):
    """The gpu_tuning role's argument validation and preflight checks, nothing else."""
    _, tasks = run_role_check(
        tmp_path, GPU_TUNING_PLAY, variables, "--tags", "gpu_tuning_preflight"
    )
    return tasks


def gpu_tuning_validation(tasks):
    """The result of gpu_tuning's argument validation (not its dependency nvml_runtime's)."""
    (result,) = (
        result
        for name, result in tasks.items()
        if name.startswith("Validating") and "Declared GPU power" in name
    )
    return result


def test_gpu_tuning_takes_whole_floats_from_jinja_arithmetic(tmp_path):
    tasks = run_gpu_tuning_preflight(
        tmp_path,
        {
            "gpu_tuning_profile": "custom",
            "gpu_tuning_custom": {
                "power_limit": "{{ 400 * 0.5 }}",
                "clocks": {"strategy": "locked", "graphics_min_mhz": "{{ 1005 * 1.0 }}"},
            },
            "gpu_tuning_power_supply": {"count": "{{ 6 / 2 }}", "watts": "{{ 2200 / 2 }}"},
            "gpu_tuning_other_loads_w": {"CPUs": "{{ 2 * 120.0 }}"},
            "gpu_tuning_boot_wait_s": "{{ 240 / 2 }}",
        },
    )
    validation = gpu_tuning_validation(tasks)
    assert not validation.get("failed"), validation["msg"]
    assert not tasks[VALUES].get("failed"), tasks[VALUES]


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"gpu_tuning_boot_wait_s": "{{ 241 / 2 }}"}, "argument 'gpu_tuning_boot_wait_s'"),
        (
            {"gpu_tuning_power_supply": {"count": "{{ 5 / 2 }}", "watts": 1100}},
            "argument 'count'",
        ),
    ],
)
def test_gpu_tuning_refuses_fractions_where_it_counts(tmp_path, variables, message):
    tasks = run_gpu_tuning_preflight(tmp_path, variables)
    validation = gpu_tuning_validation(tasks)
    assert validation["failed"] is True
    assert message in validation["msg"]
    assert VALUES not in tasks


@pytest.mark.parametrize(
    ("supply", "loads", "message"),
    [
        ({"count": 3, "watts": "inf"}, {}, "gpu_tuning_power_supply.watts 'inf' is not valid"),
        ({"count": 3, "watts": 1100, "redundant": 3}, {}, "gpu_tuning_power_supply.redundant 3"),
        ({"count": 3, "watts": 1100, "derating": 1.5}, {}, "gpu_tuning_power_supply.derating"),
        ({}, {"fans": -150}, "gpu_tuning_other_loads_w.fans -150 is not valid"),
        ({}, {"fans": "150 W"}, "gpu_tuning_other_loads_w.fans '150 W' is not valid"),
    ],
)
def test_gpu_tuning_preflight_names_a_bad_supply_value(tmp_path, supply, loads, message):
    tasks = run_gpu_tuning_preflight(
        tmp_path, {"gpu_tuning_power_supply": supply, "gpu_tuning_other_loads_w": loads}
    )
    failure = tasks[VALUES]
    assert failure["failed"] is True
    assert message in failure["msg"]
    assert "allowed: " in failure["msg"] and "Traceback" not in failure["msg"]


def test_gpu_health_role_warns_on_corrected_ecc_above_the_profile(machine, tmp_path):
    # The T180-G20 profile's threshold reaches the module through gpu_health_max_corrected_ecc.
    limit = yaml.safe_load((PROJECT / "playbooks/group_vars/hw_t180_g20.yml").read_text())[
        "hardware_max_corrected_ecc"
    ]
    assert limit > 0
    machine.cli("fault", 1, "ecc", "volatile", "corrected", limit + 1)
    machine.cli("fault", 2, "ecc", "volatile", "corrected", limit)  # at the limit: fine
    status, tasks = run_gpu_health_role(
        machine, tmp_path, hardware_max_corrected_ecc=limit, gpu_health_fail_on="warning"
    )
    assert status != 0
    result = tasks["Check the GPUs against this host's hardware"]
    assert result["invocation"]["module_args"]["max_corrected_ecc"] == limit
    corrected = [f for f in result["findings"] if f["check"] == "ecc_corrected"]
    assert [(f["gpu"], f["severity"]) for f in corrected] == [(1, "warning")]
    assert any(line.startswith("WARNING: GPU 1") for line in tasks["Show the node's GPUs"]["msg"])


def test_gpu_health_role_leaves_corrected_ecc_alone_by_default(machine, tmp_path):
    machine.cli("fault", 1, "ecc", "volatile", "corrected", 100000)
    _status, tasks = run_gpu_health_role(machine, tmp_path)
    result = tasks["Check the GPUs against this host's hardware"]
    assert result["invocation"]["module_args"]["max_corrected_ecc"] == 0
    assert not [f for f in result["findings"] if f["check"] == "ecc_corrected"]
