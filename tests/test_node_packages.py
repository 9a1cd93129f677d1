"""node_packages through Ansible on this machine (Debian, like the nodes): a present package makes
no apt call and keeps dpkg's listing as a host fact that the next call reuses; bad input fails
naming the value before anything runs on the node. (Installs run in the molecule scenarios.)"""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml
from test_ansible_integration import PROJECT, ansible_playbook

sys.path.insert(0, str(PROJECT / "action_plugins"))
import node_packages as action

sys.path.pop(0)


def documented_options():
    source = (PROJECT / "library" / "node_packages.py").read_text()
    namespace = {}
    exec(compile(source, "node_packages.py", "exec"), namespace)
    return yaml.safe_load(namespace["DOCUMENTATION"])["options"]


def test_the_action_takes_the_documented_options():
    documented = documented_options()
    assert set(documented) == set(action.ARGUMENT_SPEC)
    for name, spec in action.ARGUMENT_SPEC.items():
        doc = documented[name]
        for key in ("type", "elements", "default", "required"):
            assert spec.get(key) == doc.get(key), (name, key)


def run_tasks(tmp_path, tasks, *flags):
    playbook = tmp_path / "play.yml"
    play = [{"name": "node_packages", "hosts": "localhost", "gather_facts": False, "tasks": tasks}]
    playbook.write_text(yaml.safe_dump(play))
    # Nothing here reads a GPU: the runner's machine is this one's environment.
    proc = ansible_playbook(SimpleNamespace(env=os.environ), playbook, "-c", "local", *flags)
    report = json.loads(proc.stdout)
    return proc.returncode, [task["hosts"]["localhost"] for task in report["plays"][0]["tasks"]]


@pytest.mark.parametrize("check", [False, True])
def test_installed_packages_cost_one_listing_per_run(tmp_path, check):
    installed = subprocess.run(
        ["dpkg-query", "--show", "--showformat=${Version}", "dpkg"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    tasks = [
        {"name": "first", "node_packages": {"names": ["dpkg", "bash"]}},
        {"name": "second", "node_packages": {"names": ["dpkg=" + installed, "dpkg:amd64"]}},
        {"name": "third", "node_packages": {"names": []}},
    ]
    status, (first, second, third) = run_tasks(tmp_path, tasks, *(["--check"] if check else []))
    assert status == 0
    for result in (first, second, third):
        assert result["changed"] is False and result["missing"] == []
    listing = first["ansible_facts"][action.LISTING_FACT]
    assert any(line.split()[1:2] == ["dpkg"] for line in listing)
    # Read once: the later calls find it in the host's facts and read nothing on the node.
    assert "ansible_facts" not in second and "ansible_facts" not in third


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"names": ["bash", "two words"]}, "'two words' is not a package spec apt takes"),
        ({"names": ["Bash"]}, "'Bash' is not a package spec"),
        ({"names": ["bash"], "cache_valid_time_s": -5}, "cache_valid_time_s: -5 is below 0"),
        ({"names": ["bash"], "install_recommends": "perhaps"}, "install_recommends"),
        ({"names": ["bash"], "upgrade": True}, "upgrade"),
        ({}, "names"),
    ],
)
def test_bad_input_fails_naming_the_value(tmp_path, args, message):
    status, (result,) = run_tasks(tmp_path, [{"name": "bad", "node_packages": args}])
    assert status != 0 and result["failed"]
    assert message in result["msg"]
    assert "ansible_facts" not in result  # nothing was read on the node
