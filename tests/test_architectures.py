"""The one table of architectures (models.ARCHITECTURES) and what is derived from it: NVML's
architecture numbers, compute capability -> architecture (NVML's fallback), and the compute
capability pci.ids discovery assumes. Through the simulator: a GPU whose driver does not report
its architecture is named by its full compute capability, so a Turing card (7.5) is Turing."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "module_utils"))

from conftest import SIM_PROFILES
from nvidia_gpu import models


def test_nvml_numbers_follow_the_order_of_the_table():
    # NVML_DEVICE_ARCH_KEPLER = 2 ... NVML_DEVICE_ARCH_BLACKWELL = 10, oldest first like ours.
    assert dict(enumerate(models.ARCH_ORDER, start=2)) == models.ARCH_BY_NVML_ID


@pytest.mark.parametrize(
    ("capability", "architecture"),
    [
        ("3.0", "kepler"),
        ("3.7", "kepler"),
        ("5.2", "maxwell"),
        ("6.0", "pascal"),
        ("6.1", "pascal"),
        ("7.0", "volta"),
        ("7.2", "volta"),  # Jetson Xavier
        ("7.5", "turing"),
        ("8.0", "ampere"),
        ("8.6", "ampere"),
        ("8.7", "ampere"),  # Jetson Orin
        ("8.9", "ada"),
        ("9.0", "hopper"),
        ("10.0", "blackwell"),
        ("12.0", "blackwell"),
        ("7.1", None),
        ("4.0", None),
        ("unknown", None),
    ],
)
def test_architecture_of_compute_capability(capability, architecture):
    assert models.architecture_of_compute_capability(capability) == architecture


def test_pci_ids_discovery_assumes_a_compute_capability_only_where_it_is_unique():
    assert models.CC_BY_ARCH == {"volta": "7.0", "turing": "7.5", "ada": "8.9", "hopper": "9.0"}


def test_every_compute_capability_belongs_to_one_architecture():
    seen = {}
    for name, arch in models.ARCHITECTURES.items():
        for capability in arch["compute_capabilities"] + arch.get("tegra_compute_capabilities", ()):
            assert capability not in seen, (capability, name, seen.get(capability))
            seen[capability] = name


def turing_without_its_architecture(machine, tmp_path):
    """An H100 PCIe profile turned into a Tesla T4 (compute capability 7.5) whose driver does not
    report the architecture (NVML_ERROR_NOT_SUPPORTED, as older drivers answer)."""
    profile = (SIM_PROFILES / "h100-pcie.conf").read_text()
    for old, new in [
        ("name NVIDIA H100 PCIe", "name Tesla T4"),
        ("compute_capability 9.0", "compute_capability 7.5"),
        ("pci_device_id 0x233110DE", "pci_device_id 0x1EB810DE"),
    ]:
        assert old in profile
        profile = profile.replace(old, new)
    path = tmp_path / "tesla-t4.conf"
    path.write_text(profile)
    machine.use(str(path))
    machine.cli("fault", 0, "fail", "nvmlDeviceGetArchitecture", "NOT_SUPPORTED")


def test_turing_is_named_by_its_compute_capability(machine, tmp_path):
    turing_without_its_architecture(machine, tmp_path)
    result = machine.module("nvidia_gpu_facts")
    assert not result.get("failed"), result
    gpu = result["ansible_facts"]["nvidia_gpu"]["gpus"][0]
    assert (gpu["name"], gpu["compute_capability"]) == ("Tesla T4", "7.5")
    assert gpu["architecture"] == "turing"


def test_the_architecture_nvml_reports_wins(machine):
    machine.use("h100-pcie")
    gpu = machine.module("nvidia_gpu_facts")["ansible_facts"]["nvidia_gpu"]["gpus"][0]
    assert (gpu["architecture"], gpu["compute_capability"]) == ("hopper", "9.0")
