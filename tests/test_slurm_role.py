"""The slurm role's files as Ansible renders them (slurm.conf, gres.conf, cgroup.conf, slurmd's
drop-in), its variable contract against its defaults, and its tie to gpu_tuning's unit."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from test_ansible_integration import BIN, PROJECT

ROLE = PROJECT / "roles" / "slurm"
TEMPLATES = ("slurm.conf", "gres.conf", "cgroup.conf", "slurmd.conf")
PLAY = """
- name: Render the slurm role's templates
  hosts: all
  connection: local
  gather_facts: false
  vars_files: [{role}/defaults/main.yml, {role}/vars/main.yml]
  tasks:
{tasks}
"""
TASK = """    - name: Render {name}
      ansible.builtin.copy:
        content: "{{{{ lookup('ansible.builtin.template', '{role}/templates/{name}.j2') }}}}"
        dest: "{out}/{{{{ inventory_hostname }}}}/{name}"
        mode: "0644"
"""
NODE = {
    "name": "dl1",
    "address": "",
    "hardware": {
        "cpus": 56,
        "boards": 1,
        "sockets_per_board": 2,
        "cores_per_socket": 14,
        "threads_per_core": 2,
        "memory_mb": 256628,
    },
    "gpus": [{"type": "v100", "indices": [0, 1, 2, 3]}],
    "features": ["t180_g20"],
}
# One inventory host per case, all rendered by one ansible-playbook run: in a container or on
# metal, and a cluster with no known node.
CASES = {
    "container": {"common_in_container": True, "slurm_cluster_nodes": {"nodes": [NODE]}},
    "metal": {"common_in_container": False, "slurm_cluster_nodes": {"nodes": [NODE]}},
    "empty": {"common_in_container": True, "slurm_cluster_nodes": {"nodes": []}},
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """{case: {template: text}}, as Ansible renders the role's templates."""
    out = tmp_path_factory.mktemp("slurm-role")
    for case in CASES:
        (out / case).mkdir()
    tasks = "".join(TASK.format(name=name, role=ROLE, out=out) for name in TEMPLATES)
    (out / "play.yml").write_text(PLAY.format(role=ROLE, tasks=tasks))
    # What the role's earlier tasks would have set: per case in the inventory, and as extra vars
    # what must win over the role's defaults and vars (the play loads them as vars_files).
    shared = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "slurm_controller_hostname": {"stdout": "ctl\n"},
        "nvml_runtime_python": "/opt/gpu-node/venv/bin/python",
    }
    inventory = {"all": {"hosts": CASES, "vars": shared}}
    (out / "inventory.json").write_text(json.dumps(inventory))
    given = {"slurm_controller": "ctl", "slurm_controller_address": "10.0.0.1"}
    proc = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(out / "inventory.json"),
            "-e",
            json.dumps(given),
            str(out / "play.yml"),
        ],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        env=dict(
            os.environ,
            ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
            ANSIBLE_LOCALHOST_WARNING="false",
        ),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    return {case: {name: (out / case / name).read_text() for name in TEMPLATES} for case in CASES}


def settings(text):
    return dict(
        line.split("=", 1)
        for line in text.splitlines()
        if "=" in line and not line.startswith(("#", "NodeName", "PartitionName"))
    )


@pytest.mark.parametrize("case", ["container", "metal"])
def test_slurm_conf_of_a_cluster(rendered, case):
    files = rendered[case]
    container = CASES[case]["common_in_container"]
    conf = settings(files["slurm.conf"])
    assert conf["SlurmctldHost"] == "ctl(10.0.0.1)"
    assert conf["SlurmctldParameters"] == "enable_configless"
    assert conf["HealthCheckProgram"] == "/usr/local/sbin/gpu-health-slurm"
    assert conf["GresTypes"] == "gpu"
    lines = files["slurm.conf"].splitlines()
    assert (
        "NodeName=dl1 CPUs=56 Boards=1 SocketsPerBoard=2 CoresPerSocket=14 ThreadsPerCore=2 "
        "RealMemory=256628 Gres=gpu:v100:4 Feature=t180_g20"
    ) in lines
    assert "PartitionName=gpu Nodes=dl1 Default=YES MaxTime=INFINITE State=UP" in lines
    assert "NodeName=dl1 Name=gpu Type=v100 File=/dev/nvidia[0-3]" in files["gres.conf"]
    cgroup = settings(files["cgroup.conf"])
    if container:
        assert conf["ProctrackType"] == "proctrack/linuxproc"
        assert "ConstrainDevices" not in cgroup
    else:
        assert conf["ProctrackType"] == "proctrack/cgroup"
        assert conf["TaskPlugin"] == "task/cgroup,task/affinity"
        assert cgroup["ConstrainDevices"] == "yes"


def test_a_cluster_without_known_nodes_has_no_partition(rendered):
    files = rendered["empty"]
    assert "PartitionName" not in files["slurm.conf"]
    assert "NodeName" not in files["gres.conf"]


def test_slurmd_fetches_its_config_and_waits_for_the_gpu_settings(rendered, tmp_path):
    dropin = rendered["container"]["slurmd.conf"]
    assert "\nConditionPathExists=\n" in dropin
    assert "Requires=gpu-tuning.service\nAfter=gpu-tuning.service\n" in dropin
    assert "Environment=SLURMD_OPTIONS=--conf-server=10.0.0.1:6817\n" in dropin
    verify = subprocess.run(["systemd-analyze", "--version"], capture_output=True, check=False)
    if verify.returncode == 0:
        unit = tmp_path / "slurmd.service"
        unit.write_text("[Service]\nExecStart=/bin/true\n" + dropin.split("[Service]")[1])
        # The [Service] part of the drop-in is valid unit syntax (the [Unit] part needs the
        # package's unit, which this machine does not have).
        result = subprocess.run(
            ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
        )
        assert "slurmd.service" not in result.stderr, result.stderr


def test_requires_the_unit_gpu_tuning_installs():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    tuning = yaml.safe_load((PROJECT / "roles" / "gpu_tuning" / "vars" / "main.yml").read_text())
    assert defaults["slurm_slurmd_requires_units"] == [tuning["gpu_tuning_unit"]]


def test_every_default_is_in_the_argument_spec_with_the_same_value():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    options = spec["argument_specs"]["main"]["options"]
    assert set(defaults) == set(options)
    for name, value in defaults.items():
        if "{{" not in str(value):
            assert options[name].get("default") == value, name
