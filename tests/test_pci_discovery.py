"""GPU discovery from PCI before any driver exists: fake sysfs trees built in tmp_path, the
project's model table, the pci.ids fallback, and the trees `make sim` builds for sandbox nodes."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "module_utils"))

from nvidia_gpu import models, pci

HARDWARE = Path(__file__).resolve().parent.parent / "build" / "hardware"

# A small pci.ids: NVIDIA's section between two other vendors, with subsystem lines.
PCI_IDS = """\
# comment
10b5  PLX Technology, Inc.
\t8747  PEX 8747 48-Lane, 5-Port PCI Express Gen 3 (8.0 GT/s) Switch
10de  NVIDIA Corporation
\t1db1  GV100GL [Tesla V100 SXM2 16GB]
\t\t10de 1212  Tesla V100 SXM2 16GB
\t2684  AD102 [GeForce RTX 4090]
\t2bb1  GB202GL [RTX PRO 6000 Blackwell Workstation Edition]
\t1e04  TU102 [GeForce RTX 2080 Ti]
\t0e0f  GK208 HDMI/DP Audio Controller
10df  Emulex Corporation
\t2684  Not an NVIDIA device
"""


def add_device(root, bus, vendor, device_id, pci_class, subsystem=("0x10de", "0x1212")):
    path = root / bus
    path.mkdir(parents=True)
    values = {
        "vendor": vendor,
        "device": device_id,
        "class": pci_class,
        "subsystem_vendor": subsystem[0],
        "subsystem_device": subsystem[1],
    }
    for name, value in values.items():
        (path / name).write_text(value + "\n")


@pytest.fixture
def pci_ids(tmp_path):
    path = tmp_path / "pci.ids"
    path.write_text(PCI_IDS)
    return [str(tmp_path / "missing.ids"), str(path)]


def test_t180_g20_tree(tmp_path, pci_ids):
    root = tmp_path / "devices"
    add_device(root, "0000:00:00.0", "0x8086", "0x6f00", "0x060000", ("0x1458", "0x1000"))
    for bus in ("0000:1a:00.0", "0000:1b:00.0", "0000:3d:00.0", "0000:3e:00.0"):
        add_device(root, bus, "0x10de", "0x1db1", "0x030200")
    found = pci.discover(str(root), pci_ids)
    assert found["count"] == 4
    assert found["models"] == {"Tesla V100-SXM2-16GB": 4}
    assert found["architectures"] == ["volta"]
    assert found["nvswitch_count"] == 0
    assert found["unknown_count"] == 0
    first = found["gpus"][0]
    assert first == {
        "pci_bus_id": "0000:1a:00.0",
        "vendor_id": "10de",
        "device_id": "1db1",
        "pci_device_id": "10de:1db1",
        "subsystem_id": "10de:1212",
        "pci_class": "0x030200",
        "display_class": "3d",
        "model": "Tesla V100-SXM2-16GB",
        "architecture": "volta",
        "compute_capability": "7.0",
        "form_factor": "sxm2",
        "memory_gib": 16,
        "min_branch": None,
        "named_by": "project table",
    }
    assert [g["pci_bus_id"] for g in found["gpus"]] == sorted(
        g["pci_bus_id"] for g in found["gpus"]
    )


def test_nvswitches_counted_and_audio_functions_ignored(tmp_path, pci_ids):
    root = tmp_path / "devices"
    for i in range(8):
        add_device(root, "0000:%02x:00.0" % (0x07 + i), "0x10de", "0x20b0", "0x030200")
    for i in range(6):
        add_device(root, "0000:c%d:00.0" % (4 + i), "0x10de", "0x1af1", "0x068000")
    add_device(root, "0000:07:00.1", "0x10de", "0x0e0f", "0x040300")  # HDMI audio function
    found = pci.discover(str(root), pci_ids)
    assert found["count"] == 8
    assert found["models"] == {"NVIDIA A100-SXM4-40GB": 8}
    assert found["nvswitch_count"] == 6
    assert found["nvswitches"][0] == {
        "pci_bus_id": "0000:c4:00.0",
        "device_id": "1af1",
        "pci_device_id": "10de:1af1",
        "name": "NVSwitch (A100 generation)",
    }


def test_pci_ids_fallback_names_and_places_unknown_models(tmp_path, pci_ids):
    root = tmp_path / "devices"
    add_device(root, "0000:01:00.0", "0x10de", "0x2684", "0x030000")  # VGA class
    add_device(root, "0000:02:00.0", "0x10de", "0x2bb1", "0x030200")
    add_device(root, "0000:03:00.0", "0x10de", "0x1e04", "0x030000")
    found = pci.discover(str(root), pci_ids)
    rtx4090, blackwell, rtx2080 = found["gpus"]
    assert rtx4090["model"] == "GeForce RTX 4090"
    assert rtx4090["chip"] == "AD102"
    assert rtx4090["architecture"] == "ada"
    assert rtx4090["compute_capability"] == "8.9"
    assert rtx4090["display_class"] == "vga"
    assert rtx4090["named_by"] == "pci.ids"
    assert blackwell["architecture"] == "blackwell"
    assert blackwell["compute_capability"] == "unknown"
    assert rtx2080["architecture"] == "turing"
    assert found["architectures"] == ["turing", "ada", "blackwell"]


def test_device_known_to_nobody(tmp_path):
    root = tmp_path / "devices"
    add_device(root, "0000:01:00.0", "0x10de", "0x2fff", "0x030200")
    found = pci.discover(str(root), [str(tmp_path / "no-pci.ids")])
    assert found["gpus"][0]["model"] == "NVIDIA device 2fff"
    assert found["gpus"][0]["architecture"] == "unknown"
    assert found["unknown_count"] == 1
    assert found["architectures"] == ["unknown"]


def test_no_nvidia_devices(tmp_path):
    root = tmp_path / "devices"
    add_device(root, "0000:00:00.0", "0x8086", "0x6f00", "0x060000")
    found = pci.discover(str(root))
    assert (found["count"], found["gpus"], found["nvswitch_count"]) == (0, [], 0)


def test_missing_sysfs_is_an_error_that_names_the_path(tmp_path):
    with pytest.raises(OSError, match=r"cannot list PCI devices in .*nowhere"):
        pci.discover(str(tmp_path / "nowhere"))


def test_pci_ids_parsing_keeps_to_nvidia(pci_ids):
    devices = pci.read_pci_ids(pci_ids)
    assert devices["2684"] == "AD102 [GeForce RTX 4090]"
    assert "8747" not in devices
    assert len(devices) == 5


@pytest.mark.parametrize(
    ("device_id", "name", "arch"),
    [
        ("1db1", "Tesla V100-SXM2-16GB", "volta"),
        ("1db5", "Tesla V100-SXM2-32GB", "volta"),
        ("1db4", "Tesla V100-PCIE-16GB", "volta"),
        ("1db6", "Tesla V100-PCIE-32GB", "volta"),
        ("20b0", "NVIDIA A100-SXM4-40GB", "ampere"),
        ("20b2", "NVIDIA A100-SXM4-80GB", "ampere"),
        ("20f1", "NVIDIA A100-PCIE-40GB", "ampere"),
        ("20b5", "NVIDIA A100 80GB PCIe", "ampere"),
        ("2330", "NVIDIA H100 80GB HBM3", "hopper"),
        ("2331", "NVIDIA H100 PCIe", "hopper"),
    ],
)
def test_required_models(device_id, name, arch):
    known = models.lookup("0x" + device_id.upper())
    assert (known["name"], known["architecture"]) == (name, arch)


def test_every_model_and_nvswitch_is_consistent():
    for device_id, model in models.MODELS.items():
        assert len(device_id) == 4 and device_id == device_id.lower()
        assert model["architecture"] in models.ARCHITECTURES
        # The compute capability alone names the architecture (what NVML falls back to).
        capability = model["compute_capability"]
        assert models.architecture_of_compute_capability(capability) == model["architecture"]
    assert set(models.NVSWITCHES) == {"1af1", "22a3"}


SIM_PROFILES = {
    "t180-g20": ({"Tesla V100-SXM2-16GB": 4}, 0),
    "hgx-a100-8": ({"NVIDIA A100-SXM4-40GB": 8}, 6),
    "h100-pcie": ({"NVIDIA H100 PCIe": 1}, 0),
    "mixed-v100-a100": ({"Tesla V100-SXM2-16GB": 2, "NVIDIA A100-PCIE-40GB": 2}, 0),
}


@pytest.mark.parametrize("profile", sorted(SIM_PROFILES))
def test_simulated_hardware_of_the_sandbox(profile):
    tree = HARDWARE / profile / "pci"
    if not tree.is_dir():
        pytest.skip("run `make sim` to build %s" % tree)
    found = pci.discover(str(tree))
    gpu_models, nvswitches = SIM_PROFILES[profile]
    assert found["models"] == gpu_models
    assert found["nvswitch_count"] == nvswitches
    assert found["unknown_count"] == 0
