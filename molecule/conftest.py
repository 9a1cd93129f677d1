"""Shared by the verify step of every molecule scenario.

Ansible reaches the nodes over SSH; the checks read a node's state with `podman exec` on its
container instead of Testinfra's Ansible backend, which runs one Ansible module per check: the
same answers, many times faster.
"""

import shutil
import subprocess

import pytest
import testinfra


def _is_container(name):
    podman = shutil.which("podman")
    return (
        bool(podman)
        and subprocess.run([podman, "container", "exists", name], check=False).returncode == 0
    )


@pytest.fixture(scope="module")
def host(_testinfra_host):
    backend = _testinfra_host.backend
    if backend.NAME == "ansible" and _is_container(backend.host):
        return testinfra.get_host(f"podman://{backend.host}")
    return _testinfra_host
