"""The nccl role with the rdma role's facts: NCCL_IB_HCA and the infiniband topology from the
node's ACTIVE InfiniBand ports where nccl_ib_hcas is empty (one definition in nccl's vars), the
inventory's list and an explicit single_node still winning; and the role reading the ports itself
when no earlier role has."""

import pytest
from conftest import ib_sim
from test_ansible_integration import run_role_check
from test_apt_sources_render import Play, content, debian12, selection


def nccl_conf(**inventory):
    ports = inventory.pop("active_ports", None)
    extra = {} if ports is None else {"infiniband": {"active_ports": ports}}
    play = Play(debian12(cuda_selection=selection(), **extra), **inventory)
    text = play.template("nccl", "nccl.conf.j2")
    return play.var("nccl_topology_resolved"), dict(line.split("=", 1) for line in content(text))


def test_active_ports_make_an_infiniband_setup():
    topology, settings = nccl_conf(active_ports=["mlx5_0:1", "mlx5_1:1"])
    assert topology == "infiniband"
    assert settings == {
        "NCCL_DEBUG": "WARN",
        "NCCL_IB_DISABLE": "0",
        "NCCL_IB_HCA": "mlx5_0:1,mlx5_1:1",
    }


@pytest.mark.parametrize("ports", [None, []])
def test_without_active_ports_a_node_stays_single(ports):
    assert nccl_conf(active_ports=ports) == (
        "single_node",
        {"NCCL_DEBUG": "WARN", "NCCL_IB_DISABLE": "1"},
    )


def test_the_inventory_list_wins_over_the_ports_found():
    topology, settings = nccl_conf(active_ports=["mlx5_0:1"], nccl_ib_hcas=["=mlx5_1"])
    assert (topology, settings["NCCL_IB_HCA"]) == ("infiniband", "=mlx5_1")


def test_explicit_single_node_ignores_the_ports():
    topology, settings = nccl_conf(active_ports=["mlx5_0:1"], nccl_topology="single_node")
    assert topology == "single_node" and "NCCL_IB_HCA" not in settings


PLAY = """
- name: The nccl role's preflight and config
  hosts: localhost
  connection: local
  gather_facts: false
  roles: [nccl]
"""


def run_nccl(tmp_path, variables):
    return run_role_check(
        tmp_path,
        PLAY,
        dict(variables, nccl_cuda_major="12"),
        "--diff",
        "--tags",
        "nccl_preflight,nccl_config",
    )


def test_the_role_reads_the_ports_itself_without_the_rdma_role(tmp_path):
    root = tmp_path / "node"
    ib_sim("sysfs", root, "--profile", "t180-g20", "--node-index", 3)
    status, tasks = run_nccl(tmp_path, {"rdma_sysfs_root": str(root)})
    assert status == 0, [r.get("msg") for r in tasks.values() if r.get("failed")]
    read = tasks["Read the InfiniBand ports NCCL could use"]
    assert read["invocation"]["module_args"]["sysfs_root"] == str(root)
    (conf,) = [
        d["after"] for d in tasks["Write /etc/nccl.conf"]["diff"] if isinstance(d["after"], str)
    ]
    assert "NCCL_IB_HCA=mlx5_0:1" in conf.splitlines()
    assert "infiniband setup" in tasks["Say which NCCL this node gets"]["msg"]


def test_the_role_does_not_read_ports_it_is_given(tmp_path):
    status, tasks = run_nccl(tmp_path, {"nccl_ib_hcas": ["mlx5_0:1"]})
    assert status == 0
    assert tasks["Read the InfiniBand ports NCCL could use"].get("skipped")


def test_infiniband_without_hcas_or_ports_fails_naming_where_it_looked(tmp_path):
    empty = tmp_path / "no-hca"
    empty.mkdir()
    status, tasks = run_nccl(
        tmp_path, {"nccl_topology": "infiniband", "nccl_infiniband_sysfs_root": str(empty)}
    )
    assert status != 0
    failure = tasks["Check that an InfiniBand setup names its HCAs"]
    assert failure["msg"] == (
        "nccl_topology infiniband needs nccl_ib_hcas (NCCL_IB_HCA entries such as mlx5_0:1) or "
        "an ACTIVE InfiniBand port; localhost has none under %s/sys/class/infiniband." % empty
    )
