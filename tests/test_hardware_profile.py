"""The hardware profile's one spec (roles/common, entry point hardware_profile) run by Ansible on
localhost: the shipped profiles pass it, a wrong type and a misspelt hardware_* name fail with a
message naming the variable, and the gpu_health role stops there before it reads the profile
(its own expectations are typed by its argument spec)."""

import json
import os
from types import SimpleNamespace

import pytest
import yaml
from test_ansible_integration import PROJECT, ansible_playbook, run_gpu_health_role

SPEC = PROJECT / "roles" / "common" / "meta" / "argument_specs.yml"
PROFILES = sorted((PROJECT / "playbooks" / "group_vars").glob("hw_*.yml"))
CHECK_NAMES = "Check that every hardware_* variable of this host is one the profile knows"
NO_GPUS = SimpleNamespace(env=os.environ)  # nothing here reads a GPU

PROFILE_PLAY = """
- name: Hardware profile
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Check the profile
      ansible.builtin.include_role:
        name: common
        tasks_from: hardware_profile
"""


def known_names():
    return sorted(yaml.safe_load(SPEC.read_text())["argument_specs"]["hardware_profile"]["options"])


def run(tmp_path, play, variables):
    """The play on localhost with these variables; the exit status and {task name: result}."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(play)
    proc = ansible_playbook(
        NO_GPUS,
        playbook,
        "-e",
        json.dumps(variables),
        ANSIBLE_ROLES_PATH=str(PROJECT / "roles"),
    )
    tasks = json.loads(proc.stdout)["plays"][0]["tasks"]
    by_name = {t["task"]["name"].split(" : ", 1)[-1]: t["hosts"]["localhost"] for t in tasks}
    return proc.returncode, by_name


def profile(path):
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("path", PROFILES, ids=[path.stem for path in PROFILES])
def test_shipped_profiles_pass(tmp_path, path):
    status, tasks = run(tmp_path, PROFILE_PLAY, profile(path))
    assert status == 0, tasks
    assert tasks[CHECK_NAMES].get("failed") is not True


def test_misspelt_name_fails_naming_it_and_the_known_ones(tmp_path):
    variables = dict(profile(PROJECT / "playbooks/group_vars/hw_t180_g20.yml"))
    variables["hardware_nvlink_pair_link"] = variables.pop("hardware_nvlink_pair_links")
    status, tasks = run(tmp_path, PROFILE_PLAY, variables)
    assert status != 0
    failure = tasks[CHECK_NAMES]
    assert failure["failed"] is True
    assert "hardware_nvlink_pair_link;" in failure["msg"]
    # The known names are the spec's options, listed in full.
    assert failure["msg"].split("known: ", 1)[1].startswith(", ".join(known_names()) + " ")


@pytest.mark.parametrize(
    ("name", "value"), [("hardware_gpu_count", "four"), ("hardware_pcie_width", [16])]
)
def test_wrong_type_fails_naming_the_variable(tmp_path, name, value):
    status, tasks = run(tmp_path, PROFILE_PLAY, {name: value})
    assert status != 0
    validation = next(r for task, r in tasks.items() if task.startswith("Validating"))
    assert validation["failed"] is True
    assert "argument '%s'" % name in validation["msg"]
    assert CHECK_NAMES not in tasks


def run_gpu_health(tmp_path, variables):
    """The gpu_health role with its GPU runtime stubbed: what is checked here fails before any
    GPU is read."""
    return run_gpu_health_role(NO_GPUS, tmp_path, **variables)


def test_gpu_health_stops_before_reading_a_misspelt_profile(tmp_path):
    variables = dict(profile(PROJECT / "playbooks/group_vars/hw_t181_g20.yml"), hardware_gpu_cont=4)
    status, tasks = run_gpu_health(tmp_path, variables)
    assert status != 0
    assert "hardware_gpu_cont" in tasks[CHECK_NAMES]["msg"]
    assert "Look for the GPU runtime" not in tasks


def test_gpu_health_refuses_a_wrongly_typed_expectation(tmp_path):
    status, tasks = run_gpu_health(tmp_path, {"gpu_health_expected_count": "four"})
    assert status != 0
    validation = next(r for task, r in tasks.items() if task.startswith("Validating"))
    assert "argument 'gpu_health_expected_count'" in validation["msg"]
    assert CHECK_NAMES not in tasks
