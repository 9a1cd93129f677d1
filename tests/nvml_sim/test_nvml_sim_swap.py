"""Hardware swaps: `nvml-sim swap` queues a card change, `nvml-sim reset` (a boot) installs it, and
the library (through pynvml) and the fake sysfs show it. See README.md, "Swapping hardware"."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PROFILES = HERE / "profiles"
T180_BUS_IDS = ["00000000:1A:00.0", "00000000:1B:00.0", "00000000:3D:00.0", "00000000:3E:00.0"]
T180_UUID_0 = "GPU-7f8dfc43-b80d-834d-cd41-08cb2a1a8886"
T180_UUID_1 = "GPU-950ef6fc-0126-6432-b5fc-a0e14788d264"
UUID = re.compile(r"GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MIB = 1024 * 1024

IDENTITY = """
result = []
for i in range(N.nvmlDeviceGetCount()):
    h = gpu(i)
    pci = N.nvmlDeviceGetPciInfo(h)
    result.append({
        "index": N.nvmlDeviceGetIndex(h),
        "bus_id": pci.busId,
        "name": N.nvmlDeviceGetName(h),
        "uuid": N.nvmlDeviceGetUUID(h),
        "serial": N.nvmlDeviceGetSerial(h),
        "pci_id": pci.pciDeviceId,
        "subsystem": pci.pciSubSystemId,
        "memory_mib": N.nvmlDeviceGetMemoryInfo(h).total // (1024 * 1024),
        "vbios": N.nvmlDeviceGetVbiosVersion(h),
        "part": N.nvmlDeviceGetBoardPartNumber(h),
        "by_uuid": N.nvmlDeviceGetIndex(N.nvmlDeviceGetHandleByUUID(N.nvmlDeviceGetUUID(h))),
        "links": [call(N.nvmlDeviceGetNvLinkState, h, link) for link in range(6)],
    })
"""


@pytest.fixture
def sim(machine):
    """A T180-G20 with its own hardware directory and a PCI tree `nvml-sim sysfs` wrote."""
    machine.hardware_dir = machine.root / "hardware"
    machine.tree = machine.root / "pci"
    machine.env.update(
        NVML_SIM_HARDWARE_DIR=str(machine.hardware_dir), NVML_SIM_SYSFS_DIR=str(machine.tree)
    )
    machine.cli("sysfs", machine.tree)
    return machine


def identity(sim):
    return sim.nvml(IDENTITY)


def swap(sim, *args):
    """Queues a swap; returns what it says the slot will hold."""
    out = sim.cli("swap", *args).stdout
    assert out.startswith(f"slot {args[0]} at the next reset: ")
    return out


def status(sim):
    return json.loads(sim.cli("status", "--json").stdout)["gpus"]


def test_same_model_swap_takes_effect_at_the_next_reset(sim):
    before = identity(sim)
    said = swap(sim, 1)
    assert identity(sim) == before  # nothing changes while the machine runs
    sim.cli("reset")
    after = identity(sim)
    new = after[1]
    assert UUID.fullmatch(new["uuid"]) and re.fullmatch(r"[0-9]{13}", new["serial"])
    assert new["uuid"] != before[1]["uuid"] and new["serial"] != before[1]["serial"]
    assert new["uuid"] in said and new["serial"] in said and "v100-sxm2-16gb" in said
    unchanged = {k: v for k, v in new.items() if k not in ("uuid", "serial")}
    assert unchanged == {k: v for k, v in before[1].items() if k not in ("uuid", "serial")}
    assert new["index"] == new["by_uuid"] == 1 and new["bus_id"] == T180_BUS_IDS[1]
    assert [after[i] for i in (0, 2, 3)] == [before[i] for i in (0, 2, 3)]
    sim.cli("reset")  # installed changes stay installed across reboots
    assert identity(sim) == after
    swap(sim, 1)  # another new card: other IDs again
    sim.cli("reset")
    assert identity(sim)[1]["uuid"] not in (before[1]["uuid"], new["uuid"])


def test_model_swap_to_the_32gb_card(sim):
    swap(sim, 2, "--model", "v100-sxm2-32gb", "--serial", "0421718004312")
    sim.cli("reset")
    gpus = identity(sim)
    card = gpus[2]
    assert (card["name"], card["memory_mib"], card["pci_id"], card["subsystem"]) == (
        "Tesla V100-SXM2-32GB",
        32768,
        0x1DB510DE,
        0x124910DE,
    )
    assert card["serial"] == "0421718004312" and card["part"] == "900-2G503-0010-000"
    assert card["vbios"] != gpus[0]["vbios"] and card["bus_id"] == T180_BUS_IDS[2]
    assert card["links"] == [1] * 6  # the slot's NVLink wiring: both cards have six links
    limits = sim.nvml(
        "h = gpu(2)\nresult = [N.nvmlDeviceGetPowerManagementLimitConstraints(h),"
        " N.nvmlDeviceGetPowerManagementDefaultLimit(h), N.nvmlDeviceGetMaxClockInfo(h, 0)]"
    )
    assert limits == [[150000, 300000], 300000, 1530]
    assert (sim.tree / "0000:3d:00.0" / "device").read_text() == "0x1db5\n"  # reset rewrote it
    out = sim.root / "other"
    sim.cli("sysfs", out)  # the sysfs command shows the installed hardware too
    assert (out / "0000:3d:00.0" / "device").read_text() == "0x1db5\n"
    assert (out / "0000:3d:00.0" / "subsystem_device").read_text() == "0x1249\n"


def test_v100_to_a100_on_the_mixed_profile(sim):
    sim.use("mixed-v100-a100")
    swap(sim, 0, "--model", "a100-pcie-40gb")
    sim.cli("reset")
    result = sim.nvml(
        """
        h = gpu(0)
        result = [N.nvmlDeviceGetName(h), N.nvmlDeviceGetArchitecture(h),
                  N.nvmlDeviceGetPciInfo(h).pciDeviceId, N.nvmlDeviceGetPciInfo(h).busId,
                  N.nvmlDeviceGetPowerManagementDefaultLimit(h),
                  call(N.nvmlDeviceGetRemappedRows, h), call(N.nvmlDeviceGetRetiredPages, h, 0),
                  N.nvmlDeviceGetName(gpu(1))]
        """
    )
    assert result == [
        "NVIDIA A100-PCIE-40GB",
        7,  # NVML_DEVICE_ARCH_AMPERE
        0x20F110DE,
        "00000000:1A:00.0",
        250000,
        [0, 0, 0, 0],
        "!NOT_SUPPORTED",
        "Tesla V100-SXM2-16GB",
    ]
    power = status(sim)
    sim.cli("load", "all", 100)  # the rail model follows the new card's limit
    assert [g["power_draw_w"] for g in status(sim)] == [250, 300, 250, 250]
    assert power[0]["name"] == "NVIDIA A100-PCIE-40GB"


def test_a_card_with_fewer_nvlinks_unwires_the_peer(sim, tmp_path):
    """A model without NVLink in an SXM2 slot: its peers' links to it are no links at all."""
    text = (PROFILES / "t180-g20.conf").read_text()
    model = text[text.index("[model v100-sxm2-16gb]") : text.index("[model v100-sxm2-32gb]")]
    pcie = model.replace("v100-sxm2-16gb]", "v100-pcie]").replace("nvlinks 6", "nvlinks 0")
    profile = tmp_path / "with space" / "t180-pcie.conf"  # the `profile` line keeps the space
    profile.parent.mkdir()
    profile.write_text(text.replace("[gpu]", pcie + "[gpu]", 1))
    sim.use(str(profile))
    swap(sim, 0, "--model", "v100-pcie")
    sim.cli("reset")
    result = sim.nvml(
        """
        result = [[call(N.nvmlDeviceGetNvLinkState, gpu(1), link) for link in range(6)],
                  call(N.nvmlDeviceGetNvLinkRemotePciInfo, gpu(1), 0),
                  call(N.nvmlDeviceGetNvLinkState, gpu(0), 0)]
        """
    )
    assert result == [[0, 0, 1, 1, 1, 1], "!NOT_SUPPORTED", "!NOT_SUPPORTED"]


def test_empty_slot_is_not_enumerated_and_leaves_the_tree(sim, tmp_path):
    hca = sim.tree / "0000:5e:00.0"  # ib-sim's, merged into the tree: not nvml-sim's to remove
    hca.mkdir()
    (hca / "class").write_text("0x020700\n")
    swap(sim, 1, "--empty")
    assert len(identity(sim)) == 4 and (sim.tree / "0000:1b:00.0").is_dir()
    sim.cli("reset")
    gpus = identity(sim)
    assert [g["bus_id"] for g in gpus] == [T180_BUS_IDS[i] for i in (0, 2, 3)]
    assert [g["index"] for g in gpus] == [g["by_uuid"] for g in gpus] == [0, 1, 2]
    assert gpus[0]["links"] == [0, 0, 1, 1, 1, 1]  # links 0-1 went to the pulled card
    assert not (sim.tree / "0000:1b:00.0").exists() and (sim.tree / "0000:1a:00.0").is_dir()
    assert hca.is_dir()
    # Faults and loads still address slots; the empty slot draws nothing.
    sim.cli("fault", 2, "temp", 80)
    assert sim.nvml("result = N.nvmlDeviceGetTemperature(gpu(1), 0)") == 80
    refused = sim.cli("load", 1, 50, check=False)
    assert refused.returncode == 1 and "empty" in refused.stderr
    sim.cli("load", "all", 100)
    gpus = status(sim)
    assert [g["power_draw_w"] for g in gpus] == [300, 0, 300, 300]
    assert gpus[1]["index"] is gpus[1]["uuid"] is None and gpus[1]["hardware"] == {"kind": "empty"}
    rail = json.loads(sim.cli("status", "--json").stdout)["rail_12v"]
    assert rail["voltage_v"] == round(12.10 - 0.0012 * (400 + 900) / 12, 3)
    # A directory without nvml-sim's marker (a real /sys) is never touched.
    bare = tmp_path / "bare"
    (bare / "0000:1a:00.0").mkdir(parents=True)
    sim.env["NVML_SIM_SYSFS_DIR"] = str(bare)
    swap(sim, 0, "--empty")
    sim.cli("reset")
    assert [p.name for p in bare.iterdir()] == ["0000:1a:00.0"]


def test_every_slot_empty_means_no_driver(sim):
    sim.use("h100-pcie")
    swap(sim, 0, "--empty")
    sim.cli("reset")
    assert sim.nvml("result = call(N.nvmlInit)", init=False) == "!DRIVER_NOT_LOADED"


def test_original_restores_the_profiles_card(sim):
    before = identity(sim)
    swap(sim, 0, "--model", "v100-sxm2-32gb")
    sim.cli("reset")
    said = swap(sim, 0, "--original")
    assert before[0]["uuid"] in said and "v100-sxm2-16gb" in said
    assert identity(sim)[0]["name"] == "Tesla V100-SXM2-32GB"  # until the next reset
    assert status(sim)[0]["pending"]["kind"] == "original"
    sim.cli("reset")
    assert identity(sim) == before
    assert not (sim.hardware_dir / "installed").exists()
    swap(sim, 3, "--empty")  # nothing installed: --original just drops the pending change
    swap(sim, 3, "--original")
    assert not (sim.hardware_dir / "pending").exists()


def test_other_hardware_drops_the_changes(sim):
    before = identity(sim)
    swap(sim, 0)
    sim.cli("reset")
    swap(sim, 1, "--empty")
    sim.use("mixed-v100-a100")  # another machine: this one's changes do not apply to it
    assert [g["hardware"] for g in status(sim)] == [None] * 4
    sim.use("t180-g20")
    assert status(sim)[0]["hardware"]["kind"] == "card"
    sim.cli("profile", "t180-g20")
    assert not any((sim.hardware_dir / name).exists() for name in ("installed", "pending"))
    assert identity(sim) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["4"], "no GPU slot 4: the profile has 4 GPUs; slots are 0-3"),
        (["one"], "GPU must be a slot number, got 'one'"),
        (["0", "--model", "a100-sxm4-40gb"], "no model 'a100-sxm4-40gb'"),
        (["0", "--serial", "032361800812"], "serial '032361800812' is not 13 digits"),
        (["0", "--uuid", "GPU-7F8DFC43-B80D-834D-CD41-08CB2A1A8886"], "(lowercase hex)"),
        (["0", "--uuid", "7f8dfc43-b80d-834d-cd41-08cb2a1a8886"], "is not GPU-xxxxxxxx-"),
        (["0", "--uuid", T180_UUID_1], f"uuid {T180_UUID_1} is already used by GPU slot 1"),
        (["2", "--serial", "0323618008123"], "serial 0323618008123 is already used by GPU slot 0"),
        (["0", "--empty", "--model", "v100-sxm2-32gb"], "--empty and --original take no"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(sim, args, message):
    swap(sim, 3, "--empty")
    pending = (sim.hardware_dir / "pending").read_bytes()
    proc = sim.cli("swap", *args, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert (sim.hardware_dir / "pending").read_bytes() == pending
    assert sorted(p.name for p in sim.hardware_dir.iterdir()) == ["lock", "pending"]


def test_bad_input_creates_no_hardware_directory(sim):
    assert sim.cli("swap", "0", "--model", "nope", check=False).returncode == 2
    assert not sim.hardware_dir.exists()


def test_status_shows_installed_and_pending_changes(sim):
    swap(sim, 0, "--model", "v100-sxm2-32gb", "--serial", "0421718004312")
    gpus = status(sim)
    assert gpus[0]["hardware"] is None and gpus[0]["pending"]["model"] == "v100-sxm2-32gb"
    sim.cli("reset")
    swap(sim, 2, "--empty")
    report = json.loads(sim.cli("status", "--json").stdout)
    assert report["hardware_dir"] == str(sim.hardware_dir)
    installed = report["gpus"][0]["hardware"]
    assert installed == {
        "kind": "card",
        "model": "v100-sxm2-32gb",
        "name": "Tesla V100-SXM2-32GB",
        "serial": "0421718004312",
        "uuid": report["gpus"][0]["uuid"],
    }
    assert report["gpus"][0]["pending"] is None
    assert report["gpus"][2]["pending"] == {"kind": "empty"}
    assert report["gpus"][2]["hardware"] is None and report["gpus"][2]["index"] == 2
    text = sim.cli("status").stdout
    assert "hardware changed: v100-sxm2-32gb (Tesla V100-SXM2-32GB) serial 0421718004312" in text
    assert "at next reset: empty (no card)" in text


def test_a_bad_installed_file_fails_like_a_bad_profile(sim):
    sim.hardware_dir.mkdir()
    installed = sim.hardware_dir / "installed"
    profile = PROFILES / "t180-g20.conf"
    installed.write_text(f"profile {profile}\n0 card v100-sxm2-64gb 0421718004312 {T180_UUID_1}\n")
    code = sim.script("result = call(N.nvmlInit)", init=False) + "\nprint(result)"
    proc = subprocess.run([sys.executable, "-c", code], env=sim.env, capture_output=True, text=True)
    assert proc.stdout.strip() == "!UNKNOWN"
    assert f"nvml-sim: {installed}:2: no [model v100-sxm2-64gb]" in proc.stderr
    proc = sim.cli("status", check=False)
    assert proc.returncode == 1 and f"{installed}:2:" in proc.stderr
    installed.write_text(f"profile {profile}\n1 card v100-sxm2-16gb 0421718004312 {T180_UUID_0}\n")
    proc = subprocess.run([sys.executable, "-c", code], env=sim.env, capture_output=True, text=True)
    assert proc.stdout.strip() == "!UNKNOWN" and "the same UUID" in proc.stderr
