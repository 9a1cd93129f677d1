"""module_utils/nvidia_gpu/slurm_nodes: Slurm node definitions from `slurmd -C` and NVML facts,
their slurm.conf and gres.conf lines, and the merge that keeps unreached nodes."""

import json
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT / "module_utils"))

from nvidia_gpu import slurm_nodes  # noqa: E402

SLURMD_C = (
    "NodeName=dl1 CPUs=56 Boards=1 SocketsPerBoard=2 CoresPerSocket=14 ThreadsPerCore=2 "
    "RealMemory=257652\nUpTime=0-13:38:34\n"
)
V100 = [{"index": i, "name": "Tesla V100-SXM2-16GB"} for i in range(4)]


def expand(files):
    """The device files of a gres.conf File= value, expanded as Slurm does."""
    match = re.fullmatch(r"(.*?)(?:\[(.*)\])?", files)
    prefix, ranges = match.group(1), match.group(2)
    if ranges is None:
        return [files]
    out = []
    for part in ranges.split(","):
        low, _, high = part.partition("-")
        out += ["%s%d" % (prefix, i) for i in range(int(low), int(high or low) + 1)]
    return out


@pytest.mark.parametrize(
    "name, kind",
    [
        ("Tesla V100-SXM2-16GB", "v100"),
        ("NVIDIA A100-SXM4-80GB", "a100"),
        ("NVIDIA H100 PCIe", "h100"),
        ("NVIDIA H200", "h200"),
        ("Quadro RTX 8000", "rtx"),
    ],
)
def test_gpu_type_of_nvml_names(name, kind):
    assert slurm_nodes.gpu_type(name) == kind


def test_t180_g20_node_line_and_gres():
    hardware = slurm_nodes.parse_slurmd_hardware(SLURMD_C)
    node = slurm_nodes.definition(
        "dl1", hardware, V100, memory_reserve_mb=1024, features=["t180_g20"], address="10.0.0.11"
    )
    assert slurm_nodes.node_line(node) == (
        "NodeName=dl1 NodeAddr=10.0.0.11 CPUs=56 Boards=1 SocketsPerBoard=2 CoresPerSocket=14 "
        "ThreadsPerCore=2 RealMemory=256628 Gres=gpu:v100:4 Feature=t180_g20"
    )
    assert slurm_nodes.gres_lines(node) == ["NodeName=dl1 Name=gpu Type=v100 File=/dev/nvidia[0-3]"]


def test_mixed_gpus_get_a_line_per_type_and_a_lost_gpu_keeps_its_file():
    hardware = slurm_nodes.parse_slurmd_hardware(SLURMD_C)
    gpus = [
        {"index": 0, "name": "Tesla V100-SXM2-16GB"},
        {"index": 1, "name": "NVIDIA A100-SXM4-40GB"},
        {"index": 2, "lost": True},
        {"index": 3, "name": "Tesla V100-SXM2-16GB"},
    ]
    node = slurm_nodes.definition("dl2", hardware, gpus)
    assert slurm_nodes.node_line(node).endswith("Gres=gpu:a100:1,gpu:v100:3")
    assert slurm_nodes.gres_lines(node) == [
        "NodeName=dl2 Name=gpu Type=a100 File=/dev/nvidia1",
        "NodeName=dl2 Name=gpu Type=v100 File=/dev/nvidia[0,2-3]",
    ]


@given(st.sets(st.integers(min_value=0, max_value=40), min_size=1))
def test_gres_files_name_exactly_the_gpus(indices):
    hardware = slurm_nodes.parse_slurmd_hardware(SLURMD_C)
    gpus = [{"index": i, "name": "Tesla V100-SXM2-32GB"} for i in indices]
    (line,) = slurm_nodes.gres_lines(slurm_nodes.definition("n", hardware, gpus))
    files = line.split("File=")[1]
    assert expand(files) == ["/dev/nvidia%d" % i for i in sorted(indices)]


@pytest.mark.parametrize(
    "text, named",
    [
        ("", "expected NodeName"),
        ("NodeName=x CPUs=2\n", "Boards"),
        (SLURMD_C.replace("CPUs=56", "CPUs=many"), "not whole numbers"),
    ],
)
def test_unreadable_slurmd_output_is_named(text, named):
    with pytest.raises(slurm_nodes.SlurmNodeError, match=named):
        slurm_nodes.parse_slurmd_hardware(text)


@pytest.mark.parametrize(
    "kwargs, named",
    [
        (
            {"memory_reserve_mb": 257652},
            "slurm_memory_reserve_mb 257652 on dl1: allowed 0 to 257651",
        ),
        ({"memory_reserve_mb": -1}, "slurm_memory_reserve_mb -1"),
        ({"features": ["t180 g20"]}, "node features ['t180 g20'] of dl1"),
    ],
)
def test_bad_values_are_named(kwargs, named):
    hardware = slurm_nodes.parse_slurmd_hardware(SLURMD_C)
    with pytest.raises(slurm_nodes.SlurmNodeError, match=re.escape(named)):
        slurm_nodes.definition("dl1", hardware, V100, **kwargs)


def test_merge_keeps_unreached_nodes_drops_removed_ones_and_names_unknown():
    hardware = slurm_nodes.parse_slurmd_hardware(SLURMD_C)
    old = {name: slurm_nodes.definition(name, hardware, V100) for name in ("dl1", "dl2", "gone")}
    fresh_dl1 = slurm_nodes.definition("dl1", hardware, V100[:3])
    merged = slurm_nodes.merge(json.dumps(old), {"dl1": fresh_dl1}, ["dl1", "dl2", "dl3"])
    assert [n["name"] for n in merged["nodes"]] == ["dl1", "dl2"]
    assert merged["nodes"][0] == fresh_dl1 and merged["nodes"][1] == old["dl2"]
    assert merged["unknown"] == ["dl3"]
    assert set(json.loads(merged["state"])) == {"dl1", "dl2"}
    # The state it writes reads back to the same cluster.
    again = slurm_nodes.merge(merged["state"], {}, ["dl1", "dl2", "dl3"])
    assert again["nodes"] == merged["nodes"]


@pytest.mark.parametrize("known", ["", "not json", "[1, 2]", "null"])
def test_merge_starts_afresh_from_a_missing_or_damaged_state(known):
    hardware = slurm_nodes.parse_slurmd_hardware(SLURMD_C)
    fresh = {"dl1": slurm_nodes.definition("dl1", hardware, V100)}
    merged = slurm_nodes.merge(known, fresh, ["dl1", "dl2"])
    assert [n["name"] for n in merged["nodes"]] == ["dl1"] and merged["unknown"] == ["dl2"]
