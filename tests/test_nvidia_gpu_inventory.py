"""nvidia_gpu_inventory against simulated machines: the file on disk, its drift lines, no-op runs.

Each test runs the module as Ansible would (tests/conftest.py) with a fake PCI tree written by
`nvml-sim sysfs`; hardware changes are other profiles (the nvml_sim ones, or one derived from
t180-g20 with a card changed) and the simulator's faults.
"""

import json
import sys

import pytest
from conftest import MODULE_UTILS, SIM_PROFILES

sys.path.insert(0, str(MODULE_UTILS))
from nvidia_gpu.gpu_inventory import dumps

SLOTS = ["0000:1a:00.0", "0000:1b:00.0", "0000:3d:00.0", "0000:3e:00.0"]
SERIALS = ["0323618008123", "0323618008457", "0323618009016", "0323618009382"]
V100_32GB = """
[model v100-sxm2-32gb]
name Tesla V100-SXM2-32GB
brand tesla
architecture volta
compute_capability 7.0
pci_device_id 0x1DB510DE
pci_subsystem_id 0x124910DE
memory_mib 32768 258
ecc on
vbios 88.00.80.00.01
board_part_number 900-2G503-0010-000
power_limit_w 150 300 300
clocks 877 1530 135 7.5
default_app_clocks 877 1312
max_video_clock 1372
temp_shutdown 90
temp_slowdown 87
temp_gpu_max 83
temp_mem_max 85
pcie 3 16
nvlinks 6

"""


class Node:
    """A simulated node with its PCI tree and the inventory file's path."""

    def __init__(self, machine):
        self.machine = machine
        self.sysfs = machine.root / "pci"
        self.path = machine.root / "facts.d" / "gpu_inventory.fact"
        self.rescan()

    def rescan(self):
        """The PCI tree as the node shows it now (an absent GPU is gone from it)."""
        self.machine.cli("sysfs", self.sysfs)

    def run(self, check_mode=False, diff=False, **args):
        args = dict({"path": str(self.path), "sysfs_root": str(self.sysfs)}, **args)
        return self.machine.module("nvidia_gpu_inventory", args, check_mode=check_mode, diff=diff)

    def ok(self, **options):
        result = self.run(**options)
        assert not result.get("failed"), result
        return result

    def on_disk(self):
        return json.loads(self.path.read_text())

    def derived_profile(self, edit):
        """A copy of t180-g20 changed by edit(text), selected as the node's hardware."""
        path = self.machine.root / "changed.conf"
        path.write_text(edit((SIM_PROFILES / "t180-g20.conf").read_text()))
        self.machine.use(str(path))
        self.rescan()


def warnings(result):
    """The module's warnings as text (ansible-core 2.19 returns each as a structured event)."""
    return [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings", [])]


@pytest.fixture
def node(machine):
    return Node(machine)


def test_first_run_records_every_gpu_and_a_second_run_writes_nothing(node):
    result = node.ok()
    assert result["changed"] and result["first_inventory"] and result["drift"] == []
    assert result["gpus_present"] == 4
    assert node.path.read_text() == dumps(result["inventory"])
    assert node.path.stat().st_mode & 0o777 == 0o644
    record = node.on_disk()
    assert sorted(record["slots"]) == SLOTS
    assert [record["slots"][s]["serial"] for s in SLOTS] == SERIALS
    card = record["slots"][SLOTS[0]]
    assert card["name"] == "Tesla V100-SXM2-16GB" and card["memory_total_mib"] == 16384
    assert card["vbios_version"] == "88.00.4F.00.09"
    assert card["board_part_number"] == "900-2G503-0000-000"
    assert card["uuid"] == "GPU-7f8dfc43-b80d-834d-cd41-08cb2a1a8886"
    assert card["first_seen"] == record["created"] == result["checked_at"]
    before = node.path.stat()
    again = node.ok(diff=True)
    assert not again["changed"] and not again["first_inventory"] and again["drift"] == []
    assert again["inventory"] == record
    assert again["diff"]["before"] == again["diff"]["after"]
    after = node.path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_check_mode_writes_nothing_and_diff_shows_the_file(node):
    result = node.ok(check_mode=True, diff=True)
    assert result["changed"] and not node.path.exists()
    assert result["diff"]["before"] == "" and result["diff"]["after"] == dumps(result["inventory"])
    assert result["diff"]["after_header"] == str(node.path)
    node.ok()
    text = node.path.read_text()
    node.machine.use("mixed-v100-a100")
    node.rescan()
    checked = node.ok(check_mode=True, diff=True)
    assert checked["changed"] and len(checked["drift"]) == 6
    assert node.path.read_text() == text
    assert checked["diff"]["before"] == text
    assert json.loads(checked["diff"]["after"]) == checked["inventory"]


def test_other_hardware_gives_one_line_per_changed_slot(node):
    node.ok()
    node.machine.use("mixed-v100-a100")
    node.rescan()
    result = node.ok()
    assert result["changed"] and not result["first_inventory"]
    assert result["drift"] == [
        "slot 0000:1a:00.0: serial 0323618008123 -> 0323618010034, same model (replaced)",
        "slot 0000:1b:00.0: serial 0323618008457 -> 0323618010078, same model (replaced)",
        "GPU missing from slot 0000:3d:00.0 (was Tesla V100-SXM2-16GB, serial 0323618009016)",
        "GPU missing from slot 0000:3e:00.0 (was Tesla V100-SXM2-16GB, serial 0323618009382)",
        "new GPU in slot 0000:86:00.0: NVIDIA A100-PCIE-40GB, serial 1320921005521",
        "new GPU in slot 0000:af:00.0: NVIDIA A100-PCIE-40GB, serial 1320921005609",
    ]
    kinds = [c["kind"] for c in result["changes"]]
    assert kinds == ["replaced", "replaced", "missing", "missing", "added", "added"]
    record = node.on_disk()
    assert sorted(record["slots"]) == [
        "0000:1a:00.0",
        "0000:1b:00.0",
        "0000:86:00.0",
        "0000:af:00.0",
    ]
    assert [e["line"] for e in record["history"]] == result["drift"]
    gone = record["history"][2]["before"]
    assert gone["serial"] == SERIALS[2] and gone["last_seen"] == result["checked_at"]
    assert gone["first_seen"] <= gone["last_seen"]
    assert node.ok()["changed"] is False


def test_a_model_changed_in_a_slot(node):
    node.ok()

    # Slot 0 gets a 32 GB card; its model is defined before the first [gpu] section uses it
    # (unless the profile defines it already).
    def fit_32gb(text):
        model = "" if "[model v100-sxm2-32gb]" in text else V100_32GB
        first_gpu = "[gpu]\nmodel v100-sxm2-16gb"
        text = text.replace(first_gpu, model + "[gpu]\nmodel v100-sxm2-32gb", 1)
        return text.replace("0323618008123", "0325618000101").replace(
            "GPU-7f8dfc43", "GPU-7f8dfc44"
        )

    node.derived_profile(fit_32gb)
    result = node.ok()
    assert result["drift"] == [
        "slot 0000:1a:00.0: model changed Tesla V100-SXM2-16GB -> Tesla V100-SXM2-32GB "
        "(serial 0323618008123 -> 0325618000101)"
    ]
    assert node.on_disk()["slots"][SLOTS[0]]["memory_total_mib"] == 32768


def test_a_flashed_vbios_on_the_same_cards(node):
    node.ok()
    node.derived_profile(lambda text: text.replace("vbios 88.00.4F.00.09", "vbios 88.00.80.00.01"))
    result = node.ok()
    assert result["drift"] == [
        "slot %s: VBIOS 88.00.4F.00.09 -> 88.00.80.00.01 (same card, flashed)" % slot
        for slot in SLOTS
    ]
    assert {c["kind"] for c in result["changes"]} == {"vbios_changed"}
    record = node.on_disk()
    assert {card["first_seen"] for card in record["slots"].values()} == {record["created"]}


def test_a_lost_gpu_is_not_removed(node):
    first = node.ok()["inventory"]
    node.machine.cli("fault", 2, "lost")
    result = node.ok()
    assert not result["changed"] and result["inventory"] == first == node.on_disk()
    assert result["drift"] == [
        "slot 0000:3d:00.0: GPU does not answer NVML (Tesla V100-SXM2-16GB, serial 0323618009016 "
        "recorded)"
    ]
    assert result["changes"][0]["kind"] == "not_answering" and result["gpus_present"] == 4


def test_a_gpu_nvml_does_not_list_but_the_pci_tree_shows_is_not_removed(node):
    node.ok()
    node.machine.cli("fault", 1, "absent")  # the tree written before still shows it
    result = node.ok()
    assert not result["changed"]
    assert [c["kind"] for c in result["changes"]] == ["not_answering"]
    assert result["changes"][0]["slot"] == SLOTS[1]


def test_a_gpu_gone_from_the_pci_tree_is_missing(node):
    node.ok()
    node.machine.cli("fault", 1, "absent")
    node.rescan()
    result = node.ok()
    assert result["changed"] and result["gpus_present"] == 3
    assert result["drift"] == [
        "GPU missing from slot 0000:1b:00.0 (was Tesla V100-SXM2-16GB, serial 0323618008457)"
    ]
    assert SLOTS[1] not in node.on_disk()["slots"]
    assert node.on_disk()["history"][-1]["kind"] == "missing"


def test_without_a_pci_tree_a_warning_and_nothing_missing(node):
    node.ok()
    node.machine.cli("fault", 1, "absent")
    result = node.ok(sysfs_root=str(node.machine.root / "no-such-tree"))
    assert not result["changed"] and "cannot list PCI devices" in warnings(result)[0]
    assert [c["kind"] for c in result["changes"]] == ["not_answering"]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("not json\n", "is not valid JSON"),
        ('{"format": 7}\n', "the top level: lacks created"),
        ('{"format": 2, "created": "", "last_changed": "", "slots": {}, "history": []}\n', ""),
    ],
)
def test_a_damaged_file_is_refused_unless_replace(node, content, why):
    node.path.parent.mkdir()
    node.path.write_text(content)
    refused = node.run()
    assert refused["failed"] and refused["msg"].startswith(str(node.path))
    assert why in refused["msg"] and "mv %s %s.bad" % (node.path, node.path) in refused["msg"]
    assert node.path.read_text() == content
    replaced = node.ok(on_corrupt="replace", diff=True)
    assert replaced["changed"] and replaced["first_inventory"]
    assert warnings(replaced)[0].startswith(str(node.path))
    assert replaced["diff"]["before"] == content
    assert node.on_disk() == replaced["inventory"]


def test_without_nvml_nothing_is_written(node):
    node.ok()
    text = node.path.read_text()
    node.machine.use(None)
    result = node.run()
    assert result["failed"] and "NVIDIA kernel driver is not loaded" in result["msg"]
    assert str(node.path) in result["msg"] and node.path.read_text() == text
    node.path.unlink()
    assert node.run()["failed"] and not node.path.exists()


def test_history_max_bounds_the_file(node):
    node.ok()
    node.machine.use("mixed-v100-a100")
    node.rescan()
    result = node.ok(history_max=2)
    assert len(result["drift"]) == 6
    assert [e["line"] for e in node.on_disk()["history"]] == result["drift"][-2:]
    assert node.run(history_max=-1)["failed"]
