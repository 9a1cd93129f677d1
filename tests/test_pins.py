"""Python dependencies are pinned exactly, and the node's pynvml is the controller's."""

import re

import yaml
from conftest import PROJECT

PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([0-9][0-9A-Za-z.\-+]*)$")


def requirement_lines(name):
    lines = (PROJECT / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_every_requirement_is_pinned_exactly():
    for name in ("requirements.txt", "constraints.txt"):
        for line in requirement_lines(name):
            assert PIN.match(line), "%s: %r is not pinned with ==" % (name, line)


def test_node_pynvml_matches_the_controllers():
    pins = dict(PIN.match(line).groups() for line in requirement_lines("requirements.txt"))
    defaults = yaml.safe_load((PROJECT / "roles/nvml_runtime/defaults/main.yml").read_text())
    assert defaults["nvml_runtime_nvidia_ml_py_version"] == pins["nvidia-ml-py"]
