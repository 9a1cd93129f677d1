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
  hosts: localhost
  connection: local
  gather_facts: false
  vars_files: [{role}/defaults/main.yml, {role}/vars/main.yml]
  tasks:
{tasks}
"""
TASK = """    - name: Render {name}
      ansible.builtin.copy:
        content: "{{{{ lookup('ansible.builtin.template', '{role}/templates/{name}.j2') }}}}"
        dest: "{out}/{name}"
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


def render(tmp_path, container, nodes=(NODE,)):
    out = tmp_path / ("container" if container else "metal")
    out.mkdir()
    tasks = "".join(TASK.format(name=name, role=ROLE, out=out) for name in TEMPLATES)
    (tmp_path / "play.yml").write_text(PLAY.format(role=ROLE, tasks=tasks))
    # Extra vars: what the role's earlier tasks would have set, over its defaults and vars.
    given = {
        "slurm_controller": "ctl",
        "slurm_controller_address": "10.0.0.1",
        "slurm_controller_hostname": {"stdout": "ctl\n"},
        "common_in_container": container,
        "nvml_runtime_python": "/opt/gpu-node/venv/bin/python",
        "slurm_cluster_nodes": {"nodes": list(nodes)},
    }
    (tmp_path / "given.json").write_text(json.dumps(given))
    proc = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            "localhost,",
            "-e",
            "@%s" % (tmp_path / "given.json"),
            str(tmp_path / "play.yml"),
        ],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        env=dict(
            os.environ,
            ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
            ANSIBLE_PYTHON_INTERPRETER=sys.executable,
            ANSIBLE_LOCALHOST_WARNING="false",
        ),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    return {name: (out / name).read_text() for name in TEMPLATES}


def settings(text):
    return dict(
        line.split("=", 1)
        for line in text.splitlines()
        if "=" in line and not line.startswith(("#", "NodeName", "PartitionName"))
    )


@pytest.mark.parametrize("container", [True, False])
def test_slurm_conf_of_a_cluster(tmp_path, container):
    files = render(tmp_path, container)
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


def test_a_cluster_without_known_nodes_has_no_partition(tmp_path):
    files = render(tmp_path, True, nodes=())
    assert "PartitionName" not in files["slurm.conf"]
    assert "NodeName" not in files["gres.conf"]


def test_slurmd_fetches_its_config_and_waits_for_the_gpu_settings(tmp_path):
    dropin = render(tmp_path, True)["slurmd.conf"]
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
