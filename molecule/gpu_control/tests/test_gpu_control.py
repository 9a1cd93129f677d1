"""What the GPU modules left on the sandbox node, read back through NVML on the node itself."""

import hashlib
import importlib.util
import json
from pathlib import Path

from node_gpus import PYTHON, read_back

PROJECT = Path(__file__).resolve().parents[3]
PROJECT_PACKAGE = PROJECT / "module_utils" / "nvidia_gpu"
BUILDER = PROJECT / "lookup_plugins" / "project_wheel.py"
spec = importlib.util.spec_from_file_location("project_wheel", BUILDER)
wheel_builder = importlib.util.module_from_spec(spec)
spec.loader.exec_module(wheel_builder)

# The installed distribution as the boot-time command sees it (-I): its version, where the
# package is imported from, and each installed file's SHA-256 computed on the node.
INSTALLED = """
import hashlib, importlib.metadata as m, json, os, sys, sysconfig, nvidia_gpu
package_dir = os.path.dirname(nvidia_gpu.__file__)
print(json.dumps({
    "version": m.version(sys.argv[1]),
    "package_dir": package_dir,
    "site_packages": sysconfig.get_paths()["purelib"],
    "files": {name: hashlib.sha256(open(os.path.join(package_dir, name), "rb").read()).hexdigest()
              for name in os.listdir(package_dir) if name.endswith(".py")},
}))
"""


def installed(host):
    command = "%s -I -c '%s' %s" % (PYTHON, INSTALLED, wheel_builder.DIST_NAME)
    return json.loads(host.check_output(command))


def test_settings_read_back_through_nvml(host):
    gpus = read_back(host)
    assert [g["persistence"] for g in gpus] == [1, 1, 1, 1]
    assert [g["power_limit_mw"] for g in gpus] == [200000] * 4
    # GPUs 0-2 keep application clocks 877/1005; GPU 3 was moved to a lock, which resets them.
    assert [g["app_clocks"] for g in gpus] == [[877, 1005]] * 3 + [[877, 1312]]
    assert [g["graphics_clock"] for g in gpus] == [1005] * 4


def test_locked_clocks_are_recorded_under_run(host):
    record = json.loads(host.file("/run/nvidia-gpu/locked-clocks.json").content_string)
    assert [lock["graphics"] for lock in record["gpus"].values()] == [[135, 1005]]


def test_runtime_has_the_pinned_pynvml_and_the_package(host):
    version = host.check_output(
        "%s -c 'import importlib.metadata as m; print(m.version(\"nvidia-ml-py\"))'" % PYTHON
    )
    assert version == "13.615.71"
    assert host.run("%s -I -c 'import nvidia_gpu.health'" % PYTHON).rc == 0


def test_node_package_is_exactly_the_projects_after_an_older_version(host):
    """side_effect.yml installed an older version (an extra module, a different xid.py) and the
    layout of earlier role versions, re-ran nvml_runtime, edited an installed file by hand and
    re-ran it again."""
    node = installed(host)
    assert node["version"] == wheel_builder.version_of(wheel_builder.package_files(PROJECT_PACKAGE))
    assert node["package_dir"] == node["site_packages"] + "/nvidia_gpu"
    project = {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in PROJECT_PACKAGE.glob("*.py")
    }
    assert node["files"] == project
    assert "old_module.py" not in node["files"]


def test_earlier_layouts_and_wheels_are_gone(host):
    node = installed(host)
    assert not host.file("/opt/gpu-node/lib").exists
    assert not host.file(node["site_packages"] + "/gpu-node.pth").exists
    wheel = "gpu_node_nvidia_gpu-%s-py3-none-any.whl" % node["version"]
    assert host.check_output("ls /opt/gpu-node/wheels").split() == [wheel]
