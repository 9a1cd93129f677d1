"""ib-sim, the simulated InfiniBand HCAs: the sysfs tree in the kernel's formats, per-node
addresses, PCI devices that merge with nvml-sim's tree, faults and clear, and the input it refuses.
tests/test_ib_ports.py reads the same trees with the project's code."""

import importlib.util
import os
import subprocess
import sys
from importlib.machinery import SourceFileLoader
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

PROJECT = Path(__file__).resolve().parent.parent
IB_SIM = PROJECT / "tests" / "ib_sim" / "ib-sim"
PROFILES = PROJECT / "tests" / "ib_sim" / "profiles"
NVML_SIM = PROJECT / "tests" / "nvml_sim" / "nvml-sim"

sys.path.insert(0, str(PROJECT / "module_utils"))

from nvidia_gpu import pci  # noqa: E402


def load_tool():
    """The tool as a module (it has no .py suffix): main() runs in-process, fast."""
    loader = SourceFileLoader("ib_sim_tool", str(IB_SIM))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


ib_sim = load_tool()


@pytest.fixture(autouse=True)
def profiles(monkeypatch):
    monkeypatch.setenv("IB_SIM_PROFILE_DIR", str(PROFILES))
    for name in ("IB_SIM_PROFILE", "IB_SIM_PROFILE_FILE", "IB_SIM_NODE_INDEX"):
        monkeypatch.delenv(name, raising=False)


def run(*args):
    assert ib_sim.main([str(a) for a in args]) == 0


def sysfs(root, profile="t180-g20", *options):
    run("sysfs", root, "--profile", profile, "--hostname", "sandbox-gpu1", *options)


def tree(top):
    """Every file (content) and symlink (-> target) under top, by relative path."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in filenames + [d for d in dirnames if Path(dirpath, d).is_symlink()]:
            path = Path(dirpath, name)
            key = str(path.relative_to(top))
            found[key] = "-> " + os.readlink(path) if path.is_symlink() else path.read_text()
    return found


def test_healthy_tree_has_the_kernels_formats(tmp_path):
    sysfs(tmp_path)
    hca = tmp_path / "sys/class/infiniband/mlx5_0"
    port = hca / "ports/1"
    expected = {
        hca / "node_type": "1: CA\n",
        hca / "node_guid": "9803:9b03:0000:0100\n",
        hca / "sys_image_guid": "9803:9b03:0000:0100\n",
        hca / "fw_ver": "16.35.2000\n",
        hca / "hca_type": "MT4119\n",
        hca / "board_id": "MT_0000000010\n",
        hca / "node_desc": "sandbox-gpu1 mlx5_0\n",
        port / "state": "4: ACTIVE\n",
        port / "phys_state": "5: LinkUp\n",
        port / "rate": "100 Gb/sec (4X EDR)\n",
        port / "lid": "0x12\n",  # lid_base 2 + 16 x node 1
        port / "sm_lid": "0x1\n",
        port / "lid_mask_count": "0\n",
        port / "cap_mask": "0x2651e848\n",
        port / "link_layer": "InfiniBand\n",
        port / "gids/0": "fe80:0000:0000:0000:9803:9b03:0000:0100\n",
        port / "gids/7": "0000:0000:0000:0000:0000:0000:0000:0000\n",
        port / "counters/symbol_error": "0\n",
        port / "counters/port_rcv_data": "52200\n",
    }
    assert {path: path.read_text() for path in expected} == expected
    assert len(list((port / "counters").iterdir())) == len(ib_sim.COUNTERS)
    assert os.readlink(hca / "device") == "../../../bus/pci/devices/0000:5e:00.0"
    assert (hca / "device").resolve() == tmp_path / "sys/bus/pci/devices/0000:5e:00.0"


@given(st.sampled_from(sorted(ib_sim.LANE_DECI_GBPS)), st.sampled_from(ib_sim.WIDTHS))
def test_rate_text_is_the_kernels_printf(speed, width):
    gbps = {"SDR": 2.5, "DDR": 5, "QDR": 10, "FDR10": 10, "FDR": 14, "EDR": 25, "HDR": 50}
    gbps |= {"NDR": 100, "XDR": 200}
    rate = gbps[speed] * width
    number = f"{rate:g}" if rate != int(rate) else str(int(rate))
    assert ib_sim.rate_text(width, speed) == f"{number} Gb/sec ({width}X {speed})"


def test_pci_devices_merge_with_nvml_sims_tree(tmp_path):
    """One directory: nvml-sim's devices first, then the HCAs; GPU discovery ignores the HCA."""
    devices = tmp_path / "pci"
    env = dict(
        os.environ,
        NVML_SIM_PROFILE_DIR=str(PROJECT / "tests/nvml_sim/profiles"),
        NVML_SIM_PROFILE="t180-g20",
        NVML_SIM_STATE_DIR=str(tmp_path / "state"),
    )
    cmd = [sys.executable, str(NVML_SIM), "sysfs", str(devices)]
    subprocess.run(cmd, env=env, check=True)
    gpu_files = tree(devices / "0000:1a:00.0")
    run("pci", devices, "--profile", "t180-g20")
    hca = tree(devices / "0000:5e:00.0")
    assert sorted(hca) == sorted(gpu_files)  # the same files, one value and a newline each
    assert hca == {
        "vendor": "0x15b3\n",
        "device": "0x1017\n",
        "class": "0x020700\n",
        "subsystem_vendor": "0x15b3\n",
        "subsystem_device": "0x0008\n",
    }
    assert len(list(devices.glob("0000:*"))) == 6  # host bridge, 4 GPUs, the HCA
    assert pci.discover(str(devices), [])["count"] == 4
    run("pci", devices, "--profile", "dual-port")  # its own stale devices go, nvml-sim's stay
    assert sorted(p.name for p in devices.iterdir())[-2:] == ["0000:5e:00.0", "0000:5e:00.1"]
    assert len(list(devices.glob("0000:*"))) == 7


def test_addresses_differ_per_node_and_cards_share_the_system_guid(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    run("sysfs", first, "--profile", "dual-port", "--node-index", "1")
    run("sysfs", second, "--profile", "dual-port", "--hostname", "gpu-node-02")
    values = {}
    for root in (first, second):
        for hca in ("mlx5_0", "mlx5_1"):
            base = root / "sys/class/infiniband" / hca
            values[root.name, hca] = [
                (base / name).read_text() for name in ("node_guid", "ports/1/lid", "ports/1/gids/0")
            ]
            values[root.name, hca, "sys"] = (base / "sys_image_guid").read_text()
    addresses = [tuple(v) for k, v in values.items() if len(k) == 2]
    for column in range(3):
        assert len({a[column] for a in addresses}) == 4  # every GUID, LID and GID unique
    assert values["a", "mlx5_0", "sys"] == values["a", "mlx5_1", "sys"]  # one card
    assert values["b", "mlx5_1"][1] == "0x23\n"  # node 2 from the hostname: 2 + 32 + port 1


def test_node_index_from_option_environment_hostname(monkeypatch):
    assert ib_sim.node_index("7", "anything") == 7
    monkeypatch.setenv("IB_SIM_NODE_INDEX", "12")
    assert ib_sim.node_index(None, "sandbox-gpu1") == 12
    monkeypatch.delenv("IB_SIM_NODE_INDEX")
    assert ib_sim.node_index(None, "sandbox-gpu3.example.org") == 3
    hashed = ib_sim.node_index(None, "login")
    assert hashed == ib_sim.node_index(None, "login") and 0 <= hashed <= ib_sim.MAX_NODE_INDEX
    with pytest.raises(ib_sim.SimError, match="must be 0 to 3000"):
        ib_sim.node_index("3001", "x")


def changed(before, after):
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


PORT = "mlx5_0/ports/1/"


@pytest.mark.parametrize(
    "fault, files",
    [
        (["1", "polling"], {"state": "1: DOWN", "phys_state": "2: Polling"}),
        (["1", "down"], {"state": "1: DOWN", "phys_state": "3: Disabled"}),
        (["1", "init"], {"state": "2: INIT", "phys_state": "5: LinkUp", "lid": "0x0"}),
        (["1", "width", "1X"], {"rate": "25 Gb/sec (1X EDR)"}),
        (["1", "rate", "56"], {"rate": "56 Gb/sec (4X FDR)"}),
        (["1", "errors", "9"], {"counters/symbol_error": "9"}),
        (["1", "errors", "2", "link_downed"], {"counters/link_downed": "2"}),
    ],
)
def test_port_faults_edit_the_tree_in_place_and_clear_restores_it(tmp_path, fault, files):
    sysfs(tmp_path)
    top = tmp_path / "sys/class/infiniband"
    healthy, inode = tree(top), top.stat().st_ino
    run("fault", tmp_path, "mlx5_0", *fault)
    faulty = tree(top)
    for name, value in files.items():
        assert faulty[PORT + name] == value + "\n"
    assert changed(healthy, faulty)
    assert all(path.startswith(PORT) for path in changed(healthy, faulty))  # that port only
    run("clear", tmp_path)
    assert tree(top) == healthy
    assert top.stat().st_ino == inode  # still the directory a node has bind-mounted


def test_link_down_looks_like_a_port_without_link(tmp_path):
    sysfs(tmp_path)
    run("fault", tmp_path, "mlx5_0", "1", "polling")
    port = tmp_path / "sys/class/infiniband" / PORT
    assert (port / "rate").read_text() == "10 Gb/sec (4X SDR)\n"
    assert (port / "lid").read_text() == (port / "sm_lid").read_text() == "0x0\n"
    assert (port / "counters/port_xmit_data").read_text() == "0\n"


def test_hca_faults_remove_the_rdma_device_then_the_pci_device(tmp_path):
    sysfs(tmp_path, "dual-port")
    classes, devices = tmp_path / "sys/class/infiniband", tmp_path / "sys/bus/pci/devices"
    run("fault", tmp_path, "mlx5_1", "no-driver")
    assert sorted(p.name for p in classes.iterdir()) == ["mlx5_0"]
    assert len(list(devices.iterdir())) == 2
    run("fault", tmp_path, "mlx5_1", "absent")
    assert sorted(p.name for p in devices.iterdir()) == ["0000:5e:00.0"]
    run("clear", tmp_path, "mlx5_0")  # another HCA's faults: nothing changes
    assert len(list(devices.iterdir())) == 1
    run("clear", tmp_path, "mlx5_1")
    assert len(list(classes.iterdir())) == len(list(devices.iterdir())) == 2


def test_absent_removes_an_hca_in_ethernet_mode_too(tmp_path):
    """Its PCI class is not InfiniBand's, but the model knows the device is the simulator's."""
    profile = tmp_path / "eth.conf"
    text = (
        (PROFILES / "t180-g20.conf")
        .read_text()
        .replace("link 4X EDR", "link 4X EDR\nclass 0x020000")
    )
    profile.write_text(text)
    run("sysfs", tmp_path / "root", "--profile", profile)
    run("fault", tmp_path / "root", "mlx5_0", "absent")
    assert list((tmp_path / "root/sys/bus/pci/devices").iterdir()) == []


def test_faults_compose_and_healthy_values_undo_them(tmp_path):
    sysfs(tmp_path)
    rate = tmp_path / "sys/class/infiniband" / PORT / "rate"
    run("fault", tmp_path, "mlx5_0", "1", "width", "2X")
    run("fault", tmp_path, "mlx5_0", "1", "rate", "28")
    assert rate.read_text() == "28 Gb/sec (2X FDR)\n"
    run("fault", tmp_path, "mlx5_0", "1", "width", "4X")
    run("fault", tmp_path, "mlx5_0", "1", "rate", "100")
    assert rate.read_text() == "100 Gb/sec (4X EDR)\n"
    assert (tmp_path / ".ib-sim/faults.json").read_text() == "{}\n"


def test_sysfs_again_follows_a_new_profile_and_drops_faults(tmp_path):
    sysfs(tmp_path, "dual-port")
    run("fault", tmp_path, "mlx5_0", "1", "polling")
    sysfs(tmp_path, "t180-g20", "--no-pci")
    assert [p.name for p in (tmp_path / "sys/class/infiniband").iterdir()] == ["mlx5_0"]
    assert (tmp_path / "sys/class/infiniband" / PORT / "state").read_text() == "4: ACTIVE\n"


@pytest.mark.parametrize(
    "args, says",
    [
        (["fault", "{root}", "mlx5_9", "1", "down"], "no HCA 'mlx5_9'; simulated: mlx5_0"),
        (["fault", "{root}", "mlx5_0", "2", "down"], "mlx5_0 has no port 2; ports: [1]"),
        (["fault", "{root}", "mlx5_0", "1", "rate", "25"], "it gives 10, 20, 40, 56, 100,"),
        (["fault", "{root}", "mlx5_0", "1", "width", "3X"], "width takes one of 1X, 2X, 4X"),
        (["fault", "{root}", "mlx5_0", "1", "errors", "1", "x"], "no counter 'x'; counters:"),
        (["fault", "{root}", "mlx5_0", "1", "flap"], "fault ROOT HCA PORT down|polling"),
        (["fault", "{root}/elsewhere", "mlx5_0", "1", "down"], "run 'ib-sim sysfs"),
        (["sysfs", "{root}"], "no profile: give --profile"),
        (["sysfs", "{root}", "--profile", "nope"], "cannot read profile"),
    ],
)
def test_refuses_bad_input(tmp_path, capsys, args, says):
    sysfs(tmp_path)
    assert ib_sim.main([a.format(root=tmp_path) for a in args]) == 1
    assert says in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, says",
    [
        ("[hca mlx5_0]\nbus_id 0000:5e:00.0\n", ".conf:1: [hca mlx5_0] lacks vendor, device"),
        ("sm_lid 1\nspeed EDR\n", ".conf:2: unknown key 'speed'"),
        ("[gpu x]\n", ".conf:1: expected a section [hca NAME]"),
        ("lid_base 0x2\n", "no [hca NAME] section"),
    ],
)
def test_refuses_bad_profiles(tmp_path, capsys, text, says):
    profile = tmp_path / "bad.conf"
    profile.write_text(text)
    assert ib_sim.main(["sysfs", str(tmp_path / "root"), "--profile", str(profile)]) == 1
    assert says in capsys.readouterr().err


def test_absent_needs_the_pci_devices_under_root(tmp_path, capsys):
    sysfs(tmp_path, "t180-g20", "--no-pci")
    assert ib_sim.main(["fault", str(tmp_path), "mlx5_0", "absent"]) == 1
    assert "not under ROOT" in capsys.readouterr().err


def test_the_command_line_tool(tmp_path):
    """As a node runs it: the script itself, profile from the environment."""
    env = dict(os.environ, IB_SIM_PROFILE_DIR=str(PROFILES), IB_SIM_PROFILE="t180-g20")
    for args in (["sysfs", tmp_path], ["fault", tmp_path, "mlx5_0", "1", "polling"]):
        subprocess.run([IB_SIM, *args], env=env, check=True)
    shown = subprocess.run([IB_SIM, "status", tmp_path], capture_output=True, text=True)
    assert "mlx5_0 port 1: lid 0x" in shown.stdout and "polling" in shown.stdout
    listed = subprocess.run([IB_SIM, "profiles"], env=env, capture_output=True, text=True)
    assert listed.stdout.split() == ["dual-port", "t180-g20"]
