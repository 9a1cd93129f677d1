"""module_utils/nvidia_gpu/ib_ports: InfiniBand ports read back from ib-sim's trees equal the
profiles, each simulated fault gives exactly one finding that names the HCA, the port and the
cause, and the parsers and checks never raise on what a broken or older kernel may show."""

import importlib.util
import os
import sys
import tempfile
from importlib.machinery import SourceFileLoader
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

PROJECT = Path(__file__).resolve().parent.parent
IB_SIM = PROJECT / "tests" / "ib_sim" / "ib-sim"
PROFILES = PROJECT / "tests" / "ib_sim" / "profiles"

sys.path.insert(0, str(PROJECT / "module_utils"))

from nvidia_gpu import ib_ports  # noqa: E402

loader = SourceFileLoader("ib_sim_tool", str(IB_SIM))
ib_sim = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
loader.exec_module(ib_sim)

# The kernel's rate_show() table (0.1 Gb/s a lane) and its state names, written out here
# independently of both the simulator and the parser.
KERNEL_LANE = {"SDR": 25, "DDR": 50, "QDR": 100, "FDR10": 100, "FDR": 140, "EDR": 250}
KERNEL_LANE |= {"HDR": 500, "NDR": 1000, "XDR": 2000}
KERNEL_WIDTHS = (1, 2, 4, 8, 12)
STATES = ("NOP", "DOWN", "INIT", "ARMED", "ACTIVE", "ACTIVE_DEFER", "UNKNOWN")
PHYS_STATES = ("<unknown>", "Sleep", "Polling", "Disabled", "PortConfigurationTraining", "LinkUp")
PHYS_STATES += ("LinkErrorRecovery", "Phy Test")


def profile_hcas(name):
    """[(hca name, {key: value})] and the system keys, read from the profile text here."""
    system, hcas = {}, []
    for line in (PROFILES / f"{name}.conf").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("[hca "):
            hcas.append((line[5:-1], {}))
        elif line:
            key, value = line.split(None, 1)
            (hcas[-1][1] if hcas else system)[key] = value
    return system, hcas


def expected_from(name):
    """What a cluster inventory would say the node has: one entry per HCA port."""
    return [
        {
            "hca": hca,
            "port": 1,
            "pci_address": keys["bus_id"],
            "width": keys["link"].split()[0],
            "rate_gbps": KERNEL_LANE[keys["link"].split()[1]] * int(keys["link"][0]) // 10,
            "link_layer": "InfiniBand",
            "fw_ver": keys["fw_ver"],
        }
        for hca, keys in profile_hcas(name)[1]
    ]


@pytest.fixture
def node(tmp_path, monkeypatch):
    """node(profile) builds a node's root with the profile's healthy HCAs."""
    monkeypatch.setenv("IB_SIM_PROFILE_DIR", str(PROFILES))

    def build(profile="t180-g20", index=5):
        args = ["sysfs", str(tmp_path), "--profile", profile, "--node-index", str(index)]
        assert ib_sim.main([*args, "--hostname", "node"]) == 0
        return tmp_path

    return build


def fault(root, *args):
    assert ib_sim.main(["fault", str(root), *args]) == 0


@pytest.mark.parametrize("profile", ["t180-g20", "dual-port"])
def test_tree_read_back_equals_the_profile(node, profile):
    root = node(profile, index=5)
    system, hcas = profile_hcas(profile)
    ports = ib_ports.read_ports(str(root))
    assert [(p["hca"], p["port"]) for p in ports] == [(hca, 1) for hca, _ in hcas]
    for ordinal, (port, (name, keys)) in enumerate(zip(ports, hcas, strict=True)):
        width, speed = keys["link"].split()
        assert port["pci_address"] == keys["bus_id"]
        assert port["fw_ver"] == keys["fw_ver"] and port["board_id"] == keys["board_id"]
        assert port["hca_type"] == "MT%d" % int(keys["device"], 16)
        assert (port["width"], port["speed"]) == (width, speed)
        assert port["rate_gbps"] == KERNEL_LANE[speed] * int(width[:-1]) // 10
        assert (port["state"], port["phys_state"]) == ("ACTIVE", "LinkUp")
        assert port["link_layer"] == "InfiniBand" and port["node_type"] == "CA"
        assert port["lid"] == int(system["lid_base"], 0) + 16 * 5 + ordinal
        assert port["sm_lid"] == int(system["sm_lid"], 0)
        assert port["node_guid"].startswith("0x%06x0300" % int(system["guid_oui"], 16))
        assert port["port_guid"] == port["node_guid"]  # mlx5: one port, the node's GUID
        assert port["gid0"] == "fe80:0000:0000:0000:" + ":".join(
            port["node_guid"][i : i + 4] for i in range(2, 18, 4)
        )
        assert port["node_desc"] == "node " + name
        assert all(port["counters"][n] == 0 for n in ib_ports.ERROR_COUNTERS)
    if profile == "dual-port":
        assert ports[0]["sys_image_guid"] == ports[1]["sys_image_guid"] == ports[0]["node_guid"]


@pytest.mark.parametrize("profile", ["t180-g20", "dual-port"])
def test_a_healthy_node_has_no_findings(node, profile):
    root = str(node(profile))
    ports = ib_ports.read_ports(root)
    pci_addresses = ib_ports.read_pci_addresses(root)
    assert ib_ports.check_ports(ports, expected_from(profile), pci_addresses) == []
    assert ib_ports.check_ports(ports) == []


@pytest.mark.parametrize(
    "args, severity, check, message",
    [
        (
            ["1", "polling"],
            "critical",
            "state",
            "state DOWN / phys_state Polling (no link: cable or switch port)",
        ),
        (["1", "down"], "critical", "state", "state DOWN / phys_state Disabled (port disabled"),
        (["1", "init"], "critical", "state", "state INIT / phys_state LinkUp (link up but not "),
        (
            ["1", "width", "1X"],
            "critical",
            "width",
            "width 1X, expected 4X (degraded link: reseat or replace the cable)",
        ),
        (["1", "rate", "56"], "critical", "rate", "rate 56 Gb/s, expected 100 (trained at 4X FDR"),
        (["1", "errors", "3"], "warning", "errors", "error counters symbol_error=3 (link errors"),
        (
            ["1", "errors", "1", "link_downed"],
            "warning",
            "errors",
            "error counters link_downed=1 (",
        ),
        (["no-driver"], "critical", "present", "not present: PCI device 0000:5e:00.1 is there"),
        (["absent"], "critical", "present", "not present: PCI device 0000:5e:00.1 absent: card"),
    ],
)
def test_each_fault_gives_exactly_its_finding(node, args, severity, check, message):
    root = node("dual-port")
    fault(root, "mlx5_1", *args)
    pci_addresses = ib_ports.read_pci_addresses(str(root))
    found = ib_ports.check_ports(
        ib_ports.read_ports(str(root)), expected_from("dual-port"), pci_addresses
    )
    assert len(found) == 1, found
    assert found[0]["message"].startswith("mlx5_1 port 1: " + message)
    assert (found[0]["severity"], found[0]["check"]) == (severity, check)
    assert (found[0]["hca"], found[0]["port"]) == ("mlx5_1", 1)


def test_a_narrower_and_slower_link_is_two_faults(node):
    root = node()
    fault(root, "mlx5_0", "1", "width", "2X")
    fault(root, "mlx5_0", "1", "rate", "28")
    found = ib_ports.check_ports(ib_ports.read_ports(str(root)), expected_from("t180-g20"))
    assert [f["check"] for f in found] == ["width", "rate"]
    assert "rate 28 Gb/s, expected 100 (trained at 2X FDR, not EDR" in found[1]["message"]


def test_without_pci_addresses_a_missing_hca_names_both_causes(node):
    root = node()
    fault(root, "mlx5_0", "no-driver")
    found = ib_ports.check_ports(ib_ports.read_ports(str(root)), expected_from("t180-g20"))
    assert [f["message"] for f in found] == [
        "mlx5_0 port 1: not present: PCI device 0000:5e:00.0 absent or driver not loaded"
    ]


def test_expected_port_missing_unexpected_port_wrong_layer_and_firmware(node):
    ports = ib_ports.read_ports(str(node("dual-port")))
    expected = [
        {"hca": "mlx5_0", "port": "2"},
        {"hca": "mlx5_1", "port": 1, "link_layer": "Ethernet", "fw_ver": "16.28.1002"},
    ]
    found = ib_ports.check_ports(ports, expected)
    assert [(f["severity"], f["message"]) for f in found] == [
        ("critical", "mlx5_0 port 2: not present: mlx5_0 has port 1 only"),
        (
            "critical",
            "mlx5_1 port 1: link_layer InfiniBand, expected Ethernet (port type set wrong in "
            "the HCA firmware: mlxconfig LINK_TYPE_P<n>)",
        ),
        (
            "warning",
            "mlx5_1 port 1: firmware 16.35.2000, expected 16.28.1002 (update it, e.g. "
            "mlxfwmanager)",
        ),
        ("info", "mlx5_0 port 1: present but not expected (ACTIVE, 100 Gb/s 4X)"),
    ]
    with pytest.raises(ValueError, match="needs hca and port"):
        ib_ports.check_ports(ports, [{"hca": "mlx5_0"}])
    with pytest.raises(ValueError, match="expected width like 4X"):
        ib_ports.check_ports(ports, [{"hca": "mlx5_0", "port": 1, "width": "wide"}])
    assert ib_ports.parse_rate("0 Gb/sec (0X SDR)") == (None, None, None)


def test_missing_tree_and_files_read_as_none(node, tmp_path):
    assert ib_ports.read_ports(str(tmp_path / "nothing")) == []
    root = node()
    hca = root / "sys/class/infiniband/mlx5_0"
    for name in ("device", "fw_ver", "ports/1/rate", "ports/1/state", "ports/1/gids/0"):
        (hca / name).unlink()
    (hca / "ports/1/counters/symbol_error").write_text("N/A (no PMA)\n")
    (port,) = ib_ports.read_ports(str(root))
    assert [port[k] for k in ("pci_address", "fw_ver", "rate_gbps", "width", "state")] == [None] * 5
    assert port["gid0"] is port["port_guid"] is None
    assert port["counters"]["symbol_error"] is None
    assert port["phys_state"] == "LinkUp"
    found = ib_ports.check_ports([port], expected_from("t180-g20"))
    assert [(f["check"], f["severity"]) for f in found] == [
        ("state", "critical"),
        ("rate", "warning"),
        ("firmware", "warning"),
    ]
    assert found[2]["message"].startswith("mlx5_0 port 1: firmware unreadable, expected 16.35")


TWO_PORTS = """
[hca mlx4_0]
bus_id 0000:81:00.0
vendor 0x15b3
device 0x1007
fw_ver 2.42.5000
board_id MT_1090120019
link 4X FDR
ports 2

[hca mlx5_0]
bus_id 0000:82:00.0
vendor 0x15b3
device 0x1017
fw_ver 16.35.2000
board_id MT_0000000008
link 4X EDR
link_layer Ethernet
"""


def test_two_port_device_and_ethernet_port(tmp_path):
    """ConnectX-3 style: one device, two ports with their own GUIDs; a RoCE port has no LID."""
    profile = tmp_path / "two.conf"
    profile.write_text(TWO_PORTS)
    root = tmp_path / "root"
    assert ib_sim.main(["sysfs", str(root), "--profile", str(profile), "--node-index", "0"]) == 0
    ports = ib_ports.read_ports(str(root))
    assert [(p["hca"], p["port"], p["lid"], p["rate_gbps"]) for p in ports] == [
        ("mlx4_0", 1, 2, 56),
        ("mlx4_0", 2, 3, 56),
        ("mlx5_0", 1, 0, 100),
    ]
    node_guid = int(ports[0]["node_guid"], 16)
    assert [int(p["port_guid"], 16) - node_guid for p in ports[:2]] == [1, 2]
    assert ports[2]["link_layer"] == "Ethernet" and ports[2]["hca_type"] == "MT4119"
    assert ib_ports.check_ports(ports) == []
    assert ib_sim.main(["fault", str(root), "mlx4_0", "2", "polling"]) == 0
    found = ib_ports.check_ports(ib_ports.read_ports(str(root)))
    assert [(f["hca"], f["port"], f["check"]) for f in found] == [("mlx4_0", 2, "state")]


def test_hcas_and_ports_in_natural_order(tmp_path):
    top = tmp_path / "sys/class/infiniband"
    for hca, port in (("mlx5_10", "1"), ("mlx5_2", "1"), ("mlx4_0", "2"), ("mlx4_0", "10")):
        (top / hca / "ports" / port).mkdir(parents=True)
    (top / "mlx5_2" / "ports" / "lost+found").mkdir()
    ports = ib_ports.read_ports(str(tmp_path))
    assert [(p["hca"], p["port"]) for p in ports] == [
        ("mlx4_0", 2),
        ("mlx4_0", 10),
        ("mlx5_2", 1),
        ("mlx5_10", 1),
    ]


def kernel_rate(speed, width, old_sdr=False):
    """rate_show(): "%d%s Gb/sec (%dX%s)", rate in 0.1 Gb/s; old kernels left SDR unnamed."""
    rate = KERNEL_LANE[speed] * width
    name = "" if old_sdr and speed == "SDR" else " " + speed
    return "%d%s Gb/sec (%dX%s)" % (rate // 10, ".5" if rate % 10 else "", width, name)


@given(st.sampled_from(sorted(KERNEL_LANE)), st.sampled_from(KERNEL_WIDTHS), st.booleans())
def test_parse_rate_reads_every_kernel_rate(speed, width, old_sdr):
    rate_gbps, parsed_width, parsed_speed = ib_ports.parse_rate(kernel_rate(speed, width, old_sdr))
    assert rate_gbps == KERNEL_LANE[speed] * width / 10
    assert (parsed_width, parsed_speed) == ("%dX" % width, speed)
    assert ib_sim.rate_text(width, speed) == kernel_rate(speed, width)  # the sim agrees


@given(st.text(max_size=40))
def test_parse_rate_and_state_never_raise_on_garbage(text):
    rate = ib_ports.parse_rate(text)
    assert rate == (None, None, None) or text.endswith(")")
    assert ib_ports.parse_numbered(text) is None or ": " in text
    assert ib_ports.parse_guid(text) is None or text.count(":") == 3


@given(
    st.integers(0, 255),
    st.one_of(st.sampled_from(STATES + PHYS_STATES), st.text(min_size=1, max_size=20)),
)
def test_parse_numbered_round_trips_the_kernels_format(code, name):
    name = name.strip().replace("\n", " ") or "x"
    assert ib_ports.parse_numbered("%d: %s" % (code, name)) == name


port_dicts = st.fixed_dictionaries(
    {
        "hca": st.sampled_from(["mlx5_0", "mlx5_1"]),
        "port": st.integers(1, 2),
        "state": st.one_of(st.none(), st.sampled_from(STATES)),
        "phys_state": st.one_of(st.none(), st.sampled_from(PHYS_STATES)),
        "rate": st.one_of(
            st.none(),
            st.builds(
                kernel_rate, st.sampled_from(sorted(KERNEL_LANE)), st.sampled_from(KERNEL_WIDTHS)
            ),
        ),
        "link_layer": st.sampled_from([None, "InfiniBand", "Ethernet"]),
        "fw_ver": st.sampled_from([None, "16.35.2000"]),
        "counters": st.dictionaries(
            st.sampled_from((*ib_ports.ERROR_COUNTERS, "port_xmit_data")),
            st.one_of(st.none(), st.integers(0, 2**64)),
        ),
    }
)
expected_dicts = st.fixed_dictionaries(
    {"hca": st.sampled_from(["mlx5_0", "mlx5_1", "mlx5_2"]), "port": st.integers(1, 2)},
    optional={
        "rate_gbps": st.sampled_from([10, 25, 56, 100, 200, 2.5]),
        "width": st.sampled_from(["1X", "2x", 4, "12X"]),
        "link_layer": st.just("InfiniBand"),
        "pci_address": st.just("0000:5e:00.0"),
    },
)


@settings(max_examples=200, deadline=None)
@given(st.lists(port_dicts, max_size=4), st.one_of(st.none(), st.lists(expected_dicts, max_size=3)))
def test_findings_always_name_hca_and_port(raw_ports, expected):
    ports = []
    for raw in raw_ports:
        port = dict(raw)
        port["rate_gbps"], port["width"], port["speed"] = ib_ports.parse_rate(port.pop("rate"))
        ports.append(port)
    for finding in ib_ports.check_ports(ports, expected, {"0000:5e:00.0"}):
        assert finding["severity"] in ("critical", "warning", "info")
        assert finding["message"].startswith("%s port %d: " % (finding["hca"], finding["port"]))


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_read_ports_survives_any_file_gone_or_garbled(data):
    """Whatever a driver leaves out or garbles, read_ports and check_ports do not raise."""
    with tempfile.TemporaryDirectory() as root:
        profile = str(PROFILES / "dual-port.conf")  # a path: no environment to set
        assert ib_sim.main(["sysfs", root, "--profile", profile, "--node-index", "1"]) == 0
        files = sorted(
            os.path.join(d, f)
            for d, _, names in os.walk(os.path.join(root, "sys/class/infiniband"))
            for f in names
        )
        for path in data.draw(st.lists(st.sampled_from(files), max_size=8, unique=True)):
            garbage = data.draw(st.one_of(st.none(), st.binary(max_size=12)))
            if garbage is None:
                os.unlink(path)
            else:
                Path(path).write_bytes(garbage)
        ports = ib_ports.read_ports(root)
        ib_ports.check_ports(ports, expected_from("dual-port"), ib_ports.read_pci_addresses(root))
