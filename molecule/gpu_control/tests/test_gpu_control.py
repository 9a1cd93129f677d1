"""What the GPU modules left on the sandbox node, read back through NVML on the node itself."""

import hashlib
import json
from pathlib import Path

from node_gpus import PYTHON, read_back

PROJECT_PACKAGE = Path(__file__).resolve().parents[3] / "module_utils" / "nvidia_gpu"
NODE_PACKAGE = "/opt/gpu-node/lib/nvidia_gpu"


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
    assert host.file("/opt/gpu-node/lib/nvidia_gpu/settings.py").exists
    assert host.run("%s -c 'import nvidia_gpu.health'" % PYTHON).rc == 0


def test_node_package_is_exactly_the_projects_after_drift(host):
    """side_effect.yml edited, deleted and added files on the node, then re-ran nvml_runtime."""
    project = {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in PROJECT_PACKAGE.glob("*.py")
    }
    names = host.check_output("cd %s && ls *.py" % NODE_PACKAGE).split()
    node = {name: host.file("%s/%s" % (NODE_PACKAGE, name)).sha256sum for name in names}
    assert node == project
