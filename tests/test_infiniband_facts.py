"""infiniband_facts run as Ansible runs it, against trees the InfiniBand simulator writes: the
HCA on PCI, its port and the NCCL-style active list read back; a fault is a finding naming the
HCA and port; bad input fails naming the entry, without a traceback."""

import pytest
from conftest import ib_sim, run_module

PORT = {"hca": "mlx5_0", "port": 1, "rate_gbps": 100, "width": "4X", "link_layer": "InfiniBand"}


@pytest.fixture
def root(tmp_path):
    tree = tmp_path / "node"
    ib_sim("sysfs", tree, "--profile", "t180-g20", "--node-index", 2)
    return tree


def facts(tmp_path, root, **args):
    result = run_module(tmp_path, "infiniband_facts", dict(args, sysfs_root=str(root)))
    assert not result.get("failed"), result
    assert result["changed"] is False
    return result["ansible_facts"]["infiniband"]


def test_a_healthy_node(tmp_path, root):
    found = facts(tmp_path, root, expected_ports=[PORT])
    assert found["hcas_on_pci"] == [
        {"pci_address": "0000:5e:00.0", "device_id": "1017", "link": "infiniband"}
    ]
    (port,) = found["ports"]
    assert (port["hca"], port["port"], port["state"], port["phys_state"]) == (
        "mlx5_0",
        1,
        "ACTIVE",
        "LinkUp",
    )
    assert (port["rate_gbps"], port["width"], port["link_layer"]) == (100, "4X", "InfiniBand")
    assert port["pci_address"] == "0000:5e:00.0"
    assert found["active_ports"] == ["mlx5_0:1"]
    assert found["findings"] == [] and found["status"] == "ok"


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (["polling"], "mlx5_0 port 1: state DOWN / phys_state Polling"),
        (["width", "1X"], "mlx5_0 port 1: width 1X, expected 4X"),
        (["rate", "56"], "mlx5_0 port 1: rate 56 Gb/s, expected 100"),
    ],
)
def test_a_port_fault_is_critical_and_named(tmp_path, root, fault, message):
    ib_sim("fault", root, "mlx5_0", 1, *fault)
    found = facts(tmp_path, root, expected_ports=[PORT])
    assert found["status"] == "critical"
    (finding,) = found["findings"]
    assert finding["message"].startswith(message)
    assert (finding["hca"], finding["port"]) == ("mlx5_0", 1)
    assert found["active_ports"] == ([] if fault == ["polling"] else ["mlx5_0:1"])


def test_an_hca_without_its_driver_is_on_pci_but_has_no_ports(tmp_path, root):
    ib_sim("fault", root, "mlx5_0", "no-driver")
    found = facts(tmp_path, root, expected_ports=[PORT])
    assert [hca["pci_address"] for hca in found["hcas_on_pci"]] == ["0000:5e:00.0"]
    assert found["ports"] == [] and found["active_ports"] == []
    (finding,) = found["findings"]
    assert "driver not loaded" in finding["message"]


def test_no_hcas_no_findings(tmp_path):
    found = facts(tmp_path, tmp_path / "empty")
    assert found == {
        "hcas_on_pci": [],
        "ports": [],
        "active_ports": [],
        "findings": [],
        "status": "ok",
    }


@pytest.mark.parametrize(
    "entry", [{"hca": "mlx5_0"}, dict(PORT, width="wide"), dict(PORT, rate_gbps="fast")]
)
def test_a_bad_expected_port_is_named(tmp_path, root, entry):
    result = run_module(
        tmp_path, "infiniband_facts", {"sysfs_root": str(root), "expected_ports": [PORT, entry]}
    )
    assert result["failed"]
    assert result["msg"].startswith("expected_ports[1]: ")
    assert "Traceback" not in result["msg"]
