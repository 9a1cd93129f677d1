"""Shared by the verify step of every molecule scenario.

Testinfra's Ansible backend runs one Ansible module per check on podman nodes; talking to the node
with `podman exec` directly gives the same answers many times faster.
"""

import pytest
import testinfra

PODMAN_CONNECTIONS = ("podman", "containers.podman.podman")


@pytest.fixture(scope="module")
def host(_testinfra_host):
    backend = _testinfra_host.backend
    if backend.NAME == "ansible":
        hostvars = backend.ansible_runner.inventory["_meta"]["hostvars"].get(backend.host, {})
        if hostvars.get("ansible_connection") in PODMAN_CONNECTIONS:
            return testinfra.get_host(f"podman://{backend.host}")
    return _testinfra_host
