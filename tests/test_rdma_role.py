"""The rdma role through Ansible on this machine, in check mode with --diff, against a tree the
InfiniBand simulator writes: the files it would write (IPoIB .network files, opensm.conf, the
memlock limits) read from the diff, the ports it exposes as facts, nothing written; bad input
fails in the preflight naming the value and what is allowed, before any step that changes."""

from pathlib import Path

import pytest
from conftest import ib_sim
from test_ansible_integration import run_role_check

PLAY = """
- name: The rdma role
  hosts: localhost
  connection: local
  gather_facts: false
  roles: [rdma]
"""
# No systemd runs here, and packages are node_packages' own tests: files, facts and checks only.
SKIP = "rdma_services,rdma_packages"


@pytest.fixture
def root(tmp_path):
    tree = tmp_path / "node"
    ib_sim("sysfs", tree, "--profile", "t180-g20", "--node-index", 1)
    return tree


def run_role(tmp_path, variables, *flags):
    """The role in check mode; (exit status, {task name without role: this host's result})."""
    return run_role_check(tmp_path, PLAY, variables, "--diff", *flags)


def written(result):
    """{path: content} of the files a node_files task would write, from its diff."""
    return {
        diff["after_header"]: diff["after"]
        for diff in result["diff"]
        if diff.get("after_header") and isinstance(diff["after"], str)  # not the state dicts
    }


def lines(text):
    return [line for line in text.splitlines() if line and not line.startswith("#")]


IB0 = {"name": "ib0", "address": "10.10.0.11/24", "mode": "connected"}
IB1 = {"name": "ib1", "address": "fd00:10::11/64", "mtu_bytes": 4092}


def test_check_mode_shows_every_file_and_writes_none(tmp_path, root):
    variables = {
        "rdma_sysfs_root": str(root),
        "rdma_ipoib_interfaces": [IB0, IB1],
        "rdma_opensm": True,
        "rdma_opensm_priority": 7,
    }
    status, tasks = run_role(tmp_path, variables, "--skip-tags", SKIP)
    assert status == 0, [(n, r.get("msg")) for n, r in tasks.items() if r.get("failed")]
    facts = tasks["Read the InfiniBand HCAs and ports"]["ansible_facts"]["infiniband"]
    assert facts["active_ports"] == ["mlx5_0:1"]
    networks = written(tasks["Write the IPoIB interfaces for systemd-networkd"])
    assert sorted(networks) == [
        "/etc/systemd/network/50-ib0.network",
        "/etc/systemd/network/50-ib1.network",
    ]
    ib0 = networks["/etc/systemd/network/50-ib0.network"]
    assert ib0.startswith("#\n# Ansible managed\n#\n")
    assert lines(ib0) == [
        "[Match]",
        "Name=ib0",
        "[Link]",
        "MTUBytes=65520",  # connected mode's default
        "RequiredForOnline=no",
        "[Network]",
        "Address=10.10.0.11/24",
        "[IPoIB]",
        "Mode=connected",
    ]
    ib1 = lines(networks["/etc/systemd/network/50-ib1.network"])
    assert {"MTUBytes=4092", "Address=fd00:10::11/64", "Mode=datagram"} <= set(ib1)
    opensm = written(tasks["Write opensm's configuration"])
    assert lines(opensm["/etc/opensm/opensm.conf"]) == ["sm_priority 7"]
    limits = written(tasks["Write the locked-memory limits for logins and services"])
    assert (
        "*       hard    memlock     unlimited" in limits["/etc/security/limits.d/90-memlock.conf"]
    )
    peermem = tasks["Record whether GPUDirect RDMA is loaded"]["ansible_facts"]
    assert peermem["rdma_gpudirect_peermem"]["reason"]
    for path in [*networks, "/etc/opensm/opensm.conf"]:
        assert not Path(path).exists()


def test_without_interfaces_networkd_is_left_alone(tmp_path, root):
    status, tasks = run_role(tmp_path, {"rdma_sysfs_root": str(root)}, "--skip-tags", SKIP)
    assert status == 0
    assert tasks["Write the IPoIB interfaces for systemd-networkd"].get("skipped")
    assert tasks["Write opensm's configuration"].get("skipped")


def test_datagram_mode_defaults_to_a_2k_fabric(tmp_path, root):
    variables = {
        "rdma_sysfs_root": str(root),
        "rdma_ipoib_interfaces": [{"name": "ib0", "address": "10.10.0.11/24"}],
    }
    status, tasks = run_role(tmp_path, variables, "--skip-tags", SKIP, "--tags", "rdma_ipoib")
    assert status == 0
    (network,) = written(tasks["Write the IPoIB interfaces for systemd-networkd"]).values()
    assert {"MTUBytes=2044", "Mode=datagram"} <= set(lines(network))


def interface(**changes):
    return [dict(IB0, **changes)]


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"rdma_ipoib_interfaces": interface(mode="datagram", mtu_bytes=9000)},
            "rdma_ipoib_interfaces[0] (ib0): mtu_bytes 9000 is not allowed in datagram mode; "
            "allowed: 68 to 4092 (the 4096-byte IB MTU minus the 4-byte IPoIB header",
        ),
        (
            {"rdma_ipoib_interfaces": interface(mtu_bytes=65536)},
            "mtu_bytes 65536 is not allowed in connected mode; allowed: 68 to 65520",
        ),
        (
            {"rdma_ipoib_interfaces": interface(address="10.10.0.11")},
            "rdma_ipoib_interfaces[0] (ib0): address '10.10.0.11' is not in CIDR form; allowed: "
            "an IPv4 or IPv6 address with its prefix length",
        ),
        (
            {"rdma_ipoib_interfaces": interface(address="10.10.0.300/24")},
            "address '10.10.0.300/24' is not in CIDR form",
        ),
        (
            {"rdma_ipoib_interfaces": interface(name="infiniband-port0")},
            "name 'infiniband-port0' is not an interface name; allowed: 1 to 15",
        ),
        (
            {"rdma_ipoib_interfaces": [IB0, dict(IB0, name="ib1", address="10.10.0.11/16")]},
            "rdma_ipoib_interfaces: address '10.10.0.11' is listed 2 times; allowed: once",
        ),
        # Types and choices: the argument spec, before any task of the role.
        ({"rdma_ipoib_interfaces": interface(mode="reliable")}, "reliable"),
        ({"rdma_ipoib_interfaces": [{"name": "ib0"}]}, "address"),
        ({"rdma_opensm_priority": 16}, "rdma_opensm_priority"),
    ],
)
def test_bad_input_fails_naming_the_value_before_any_change(tmp_path, root, variables, message):
    status, tasks = run_role(tmp_path, dict(variables, rdma_sysfs_root=str(root)))
    assert status != 0
    (failure,) = [result for result in tasks.values() if result.get("failed")]
    assert message in failure["msg"]
    assert "Install the RDMA packages" not in tasks
    assert "Write the IPoIB interfaces for systemd-networkd" not in tasks


def test_opensm_without_an_infiniband_port_fails_naming_it(tmp_path):
    empty = tmp_path / "no-hca"
    empty.mkdir()
    status, tasks = run_role(tmp_path, {"rdma_sysfs_root": str(empty), "rdma_opensm": True})
    assert status != 0
    failure = tasks["Check that opensm has an InfiniBand port to run on"]
    assert failure["msg"].startswith(
        "rdma_opensm is true, but localhost has no InfiniBand port under %s/sys/class/infiniband"
        " (ports: none; Mellanox cards on PCI: none)" % empty
    )
    assert "Install the RDMA packages" not in tasks


def test_opensm_with_a_port_down_still_runs(tmp_path, root):
    # A port is INIT / Polling until a subnet manager runs: that is what opensm is for.
    ib_sim("fault", root, "mlx5_0", 1, "polling")
    variables = {"rdma_sysfs_root": str(root), "rdma_opensm": True}
    status, tasks = run_role(tmp_path, variables, "--tags", "rdma_preflight")
    assert status == 0
    assert (
        tasks["Read the InfiniBand HCAs and ports"]["ansible_facts"]["infiniband"]["active_ports"]
        == []
    )
