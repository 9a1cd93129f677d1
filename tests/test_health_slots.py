"""A missing GPU named by its slot: inventory_slots (the recorded slots no GPU answers for) on
hand-made records, and nvidia_gpu_health with its gpu_inventory option on a simulated T180-G20
whose inventory nvidia_gpu_inventory wrote while it was whole (tests/conftest.py)."""

import copy
import sys

import pytest
from conftest import MODULE_UTILS
from test_nvidia_gpu_inventory import Node as InventoryNode

sys.path.insert(0, str(MODULE_UTILS))
from nvidia_gpu import gpu_inventory, inventory_slots

SLOTS = ["0000:1a:00.0", "0000:1b:00.0", "0000:3d:00.0", "0000:3e:00.0"]
SERIALS = ["0323618008123", "0323618008457", "0323618009016", "0323618009382"]
T0, T1, T2 = "2025-03-01T08:00:00Z", "2025-03-09T10:12:40Z", "2025-04-02T07:30:00Z"
V100 = "Tesla V100-SXM2-16GB"
EMPTY_3D = (
    "slot 0000:3d:00.0 is empty (no device on the PCI bus; it last held Tesla V100-SXM2-16GB, "
    "serial 0323618009016)"
)
NOT_ENUMERATED_3D = (
    "slot 0000:3d:00.0: a GPU is on the PCI bus but the driver does not enumerate it "
    "(recorded: Tesla V100-SXM2-16GB, serial 0323618009016)"
)


def card(number, name=V100):
    return {
        "serial": SERIALS[number],
        "uuid": "GPU-%08d" % number,
        "name": name,
        "memory_total_mib": 16384,
        "vbios_version": "88.00.4F.00.09",
        "board_part_number": "900-2G503-0000-000",
        "first_seen": T0,
    }


def record(slots=None, history=()):
    """A record as gpu_inventory writes it (validated): the four cards unless slots says."""
    slots = {SLOTS[n]: card(n) for n in range(4)} if slots is None else slots
    made = {
        "format": 1,
        "created": T0,
        "last_changed": T0,
        "slots": slots,
        "history": list(history),
    }
    gpu_inventory.validate(made, "test record")
    return made


def missing(number, time, slot=None):
    before = dict(card(number), last_seen=time)
    slot = slot or SLOTS[number]
    line = "GPU missing from slot %s" % slot
    return {
        "time": time,
        "slot": slot,
        "kind": "missing",
        "line": line,
        "before": before,
        "after": None,
    }


def added(number, time, slot):
    line = "new GPU in slot %s" % slot
    return {
        "time": time,
        "slot": slot,
        "kind": "added",
        "line": line,
        "before": None,
        "after": card(number),
    }


def without(*numbers):
    return {SLOTS[n]: card(n) for n in range(4) if n not in numbers}


# inventory_slots on records -------------------------------------------------------------------


def test_every_slot_answering_names_nothing():
    assert inventory_slots.unanswered(record(), set(SLOTS), set(SLOTS)) == []
    # NVML's addresses may come in upper case: the same slots.
    upper = {s.upper() for s in SLOTS}
    assert inventory_slots.unanswered(record(), upper, None) == []


@pytest.mark.parametrize(
    ("on_bus", "state"),
    [
        (set(SLOTS) - {SLOTS[2]}, "empty"),
        (set(SLOTS), "not_enumerated"),
        (None, "unknown"),
    ],
)
def test_a_slot_in_slots_without_a_gpu(on_bus, state):
    enumerated = set(SLOTS) - {SLOTS[2]}
    (entry,) = inventory_slots.unanswered(record(), enumerated, on_bus)
    assert entry == {
        "slot": SLOTS[2],
        "state": state,
        "recorded": "slots",
        "since": None,
        "card": card(2),
    }


def test_a_slot_the_inventory_recorded_missing_names_the_card_it_held():
    history = [missing(2, T1)]
    (entry,) = inventory_slots.unanswered(
        record(without(2), history), set(SLOTS) - {SLOTS[2]}, set(SLOTS) - {SLOTS[2]}
    )
    assert entry["slot"] == SLOTS[2] and entry["state"] == "empty"
    assert entry["recorded"] == "history" and entry["since"] == T1
    assert entry["card"]["serial"] == SERIALS[2] and entry["card"]["last_seen"] == T1
    assert inventory_slots.describe(entry) == EMPTY_3D


def test_the_latest_missing_event_of_a_slot_names_its_card():
    # The slot lost card 2, was refilled with card 0's twin, then lost that one.
    twin = dict(card(0), serial="0323618011111", uuid="GPU-twin")
    refill = dict(added(0, T1, SLOTS[2]), after=twin)
    gone = dict(missing(0, T2, SLOTS[2]), before=dict(twin, last_seen=T2))
    history = [missing(2, T0), refill, gone]
    (entry,) = inventory_slots.unanswered(
        record(without(2), history), set(SLOTS[:2]) | {SLOTS[3]}, None
    )
    assert entry["card"]["serial"] == "0323618011111" and entry["since"] == T2


def test_a_refilled_slot_is_named_by_the_card_in_slots():
    history = [missing(2, T0), added(2, T1, SLOTS[2])]
    entries = inventory_slots.unanswered(record(None, history), set(SLOTS) - {SLOTS[2]}, set())
    assert [(e["slot"], e["recorded"], e["card"]["serial"]) for e in entries] == [
        (SLOTS[2], "slots", SERIALS[2])
    ]


def test_a_card_moved_to_another_recorded_slot_leaves_no_slot_behind():
    slots = without(2)
    slots["0000:86:00.0"] = card(2)
    history = [missing(2, T1), added(2, T1, "0000:86:00.0")]
    enumerated = set(slots)
    assert inventory_slots.unanswered(record(slots, history), enumerated, enumerated) == []


def test_a_slot_answering_again_is_not_named_whatever_its_history():
    history = [missing(2, T1)]
    assert inventory_slots.unanswered(record(without(2), history), set(SLOTS), set(SLOTS)) == []


def test_only_missing_events_name_a_slot_gone_from_slots():
    # A hand-trimmed history: the slot's latest event is not a removal.
    history = [dict(missing(2, T0), kind="replaced", after=card(1))]
    made = record(without(2), history)
    assert inventory_slots.unanswered(made, set(SLOTS) - {SLOTS[2]}, None) == []


def entry(slot, recorded="slots", since=None, state="empty"):
    return {"slot": slot, "state": state, "recorded": recorded, "since": since, "card": card(0)}


def test_for_shortfall_names_slots_first_then_the_newest_history():
    current = entry(SLOTS[3])
    old = entry(SLOTS[0], "history", T0)
    new = entry(SLOTS[1], "history", T2)
    also_new = entry(SLOTS[2], "history", T2)
    assert inventory_slots.for_shortfall([old, current], 1) == [current]
    assert inventory_slots.for_shortfall([old, new], 1) == [new]
    assert inventory_slots.for_shortfall([old, new, current], 2) == [new, current]
    # Two removals noticed in the same run: both named, the count cannot tell them apart.
    assert inventory_slots.for_shortfall([also_new, old, new], 1) == [new, also_new]
    assert inventory_slots.for_shortfall([old, new], 3) == [old, new]
    assert inventory_slots.for_shortfall([], 2) == []


def test_describe_each_state_and_a_gpu_without_an_address():
    assert inventory_slots.describe(dict(entry(SLOTS[2]), card=card(2))) == EMPTY_3D
    on_bus = dict(entry(SLOTS[2], state="not_enumerated"), card=card(2))
    assert inventory_slots.describe(on_bus) == NOT_ENUMERATED_3D
    assert inventory_slots.describe(on_bus, [3]) == (
        "slot 0000:3d:00.0: a GPU is on the PCI bus but NVML lists none at this address "
        "(recorded: Tesla V100-SXM2-16GB, serial 0323618009016; GPU 3 has no known PCI address "
        "and may be this one)"
    )
    unknown = dict(entry(SLOTS[2], state="unknown"), card=dict(card(2), serial="unsupported"))
    assert inventory_slots.describe(unknown) == (
        "slot 0000:3d:00.0: no GPU answers there and the PCI tree could not be read "
        "(recorded: Tesla V100-SXM2-16GB, UUID GPU-00000002)"
    )
    both = [entry(SLOTS[0], state="not_enumerated"), entry(SLOTS[1])]
    assert inventory_slots.causes(both).startswith("A slot with no device on the PCI bus")
    assert ". A card on the PCI bus that the driver does not enumerate" in inventory_slots.causes(
        both
    )


def test_placed_tells_the_gpus_without_an_address():
    gpus = [
        {"index": 0, "pci_bus_id": "0000:1A:00.0"},
        {"index": 1, "pci_bus_id": "unreadable"},
        {"index": 2, "lost": True},
        {"index": 3, "lost": True, "pci_bus_id": "0000:3e:00.0"},
    ]
    assert inventory_slots.placed(gpus) == ({"0000:1a:00.0", "0000:3e:00.0"}, [1, 2])


def test_the_record_is_not_changed():
    made = record(without(2), [missing(2, T1)])
    kept = copy.deepcopy(made)
    inventory_slots.unanswered(made, set(), None)
    assert made == kept


# nvidia_gpu_health with gpu_inventory, on the simulator ---------------------------------------


class Node(InventoryNode):
    """The inventory test's node (machine, PCI tree, inventory file) with health runs."""

    @property
    def inventory(self):
        return self.path

    def take_inventory(self):
        return self.ok()

    def health(self, **options):
        args = {
            "expected_count": 4,
            "expected_model": V100,
            "kernel_log": "none",
            "require_persistence": False,
            "fail_on": "never",
            "sysfs_root": str(self.sysfs),
            "gpu_inventory": str(self.inventory),
        }
        args.update(options)
        result = self.machine.module(
            "nvidia_gpu_health", {k: v for k, v in args.items() if v is not None}
        )
        assert "findings" in result, result
        return result


def of(result, check):
    return [f for f in result["findings"] if f["check"] == check]


@pytest.fixture
def node(machine):
    made = Node(machine)
    made.take_inventory()  # while all four GPUs answer
    return made


def test_a_pulled_card_is_named_by_its_slot_and_serial(node):
    node.machine.cli("fault", 2, "absent")
    node.rescan()
    result = node.health(fail_on="critical")
    (count,) = of(result, "gpu_count")
    assert count["severity"] == "critical" and count["value"] == 3 and count["expected"] == 4
    assert count["message"].startswith("Only 3 of 4 GPUs are visible to the driver: " + EMPTY_3D)
    assert "seating in the socket" in count["message"]
    assert result["failed"] and EMPTY_3D in result["msg"]
    (slot,) = result["gpu_inventory"]["unanswered"]
    assert (slot["slot"], slot["state"], slot["recorded"]) == (SLOTS[2], "empty", "slots")
    assert not of(result, "gpu_slot")  # the count finding names it: not twice


def test_after_the_inventory_recorded_it_missing_the_slot_is_still_named(node):
    node.machine.cli("fault", 2, "absent")
    node.rescan()
    assert node.take_inventory()["drift"][0].startswith("GPU missing from slot 0000:3d:00.0")
    result = node.health()
    (count,) = of(result, "gpu_count")
    assert count["message"].startswith("Only 3 of 4 GPUs are visible to the driver: " + EMPTY_3D)
    (slot,) = result["gpu_inventory"]["unanswered"]
    assert slot["recorded"] == "history" and slot["since"]
    # The count right again (the profile now says 3): a slot the inventory let go is no finding.
    assert not of(node.health(expected_count=3), "gpu_slot")


def test_a_gpu_on_the_bus_that_the_driver_does_not_enumerate(node):
    node.machine.cli("fault", 2, "absent")  # the PCI tree written before still shows it
    result = node.health()
    (count,) = of(result, "gpu_count")
    assert count["message"].startswith(
        "Only 3 of 4 GPUs are visible to the driver: " + NOT_ENUMERATED_3D
    )
    assert "RmInitAdapter" in count["message"] and "seating" not in count["message"]
    assert result["gpu_inventory"]["unanswered"][0]["state"] == "not_enumerated"


def test_two_slots_named_in_one_finding(node):
    node.machine.cli("fault", 1, "absent")
    node.machine.cli("fault", 2, "absent")
    (count,) = of(node.health(), "gpu_count")
    assert count["message"].startswith(
        "Only 2 of 4 GPUs are visible to the driver: slot 0000:1b:00.0: a GPU is on the PCI bus "
        "but the driver does not enumerate it (recorded: Tesla V100-SXM2-16GB, serial "
        "0323618008457); " + NOT_ENUMERATED_3D + ". "
    )


def test_a_shortfall_beyond_the_inventory_says_how_many_more(node):
    node.machine.cli("fault", 2, "absent")
    node.rescan()
    (count,) = of(node.health(expected_count=5), "gpu_count")
    assert count["message"].startswith("Only 3 of 5 GPUs are visible to the driver: " + EMPTY_3D)
    assert "; 1 more GPU(s) the GPU inventory does not name (look with lspci)." in count["message"]


def test_a_recorded_slot_without_a_gpu_while_the_count_is_right(node):
    node.machine.cli("fault", 2, "absent")
    node.rescan()
    for options in ({"expected_count": 3}, {"expected_count": None}):
        result = node.health(fail_on="critical", **options)
        assert not of(result, "gpu_count")
        (slot,) = of(result, "gpu_slot")
        assert slot["severity"] == "critical" and slot["value"] == SLOTS[2]
        assert slot["expected"] == "serial 0323618009016"
        assert EMPTY_3D in slot["message"] and "next gpu_inventory run" in slot["message"]
        assert result["failed"]


def test_no_inventory_file_keeps_the_count_message(node):
    node.inventory.unlink()
    node.machine.cli("fault", 2, "absent")
    result = node.health()
    (count,) = of(result, "gpu_count")
    assert count["message"] == (
        "Only 3 of 4 GPUs are visible to the driver: a GPU is not detected (seating in its "
        "socket, power to the GPU board, or a dead GPU; look for it with lspci)."
    )
    assert result["gpu_inventory"] == {
        "file": str(node.inventory),
        "read": False,
        "error": None,
        "unanswered": [],
        "unplaced": [],
    }
    assert not of(result, "gpu_inventory")
    # Without the option nothing is read.
    assert node.health(gpu_inventory=None)["gpu_inventory"] is None


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("not json\n", "is not valid JSON"),
        ('{"format": 7}\n', "lacks created"),
        ("", ""),
    ],
)
def test_a_damaged_inventory_is_a_warning_and_the_checks_go_on(node, content, why):
    node.inventory.write_text(content)
    node.machine.cli("fault", 2, "absent")
    node.machine.cli("fault", 0, "temp", 62)  # another check still runs
    result = node.health(fail_on="critical")
    (warning,) = of(result, "gpu_inventory")
    assert warning["severity"] == "warning" and warning["value"] == str(node.inventory)
    assert str(node.inventory) in warning["message"] and why in warning["message"]
    assert "not named by its slot" in warning["message"]
    (count,) = of(result, "gpu_count")
    assert "a GPU is not detected" in count["message"]
    assert of(result, "temperature_spread") and result["failed"]
    assert result["gpu_inventory"]["read"] is False
    assert str(node.inventory) in result["gpu_inventory"]["error"]


def test_an_unreadable_pci_tree_leaves_the_state_unknown(node):
    node.machine.cli("fault", 2, "absent")
    result = node.health(sysfs_root=str(node.machine.root / "no-such-tree"))
    (count,) = of(result, "gpu_count")
    assert count["message"].startswith(
        "Only 3 of 4 GPUs are visible to the driver: slot 0000:3d:00.0: no GPU answers there and "
        "the PCI tree could not be read (recorded: Tesla V100-SXM2-16GB, serial 0323618009016)"
    )
    assert "lspci" in count["message"]


def test_a_lost_gpu_is_named_by_gpu_lost_not_by_its_slot(node):
    node.machine.cli("fault", 2, "lost")
    result = node.health()
    assert of(result, "gpu_lost") and not of(result, "gpu_slot") and not of(result, "gpu_count")
    assert result["gpu_inventory"]["unanswered"] == []


def test_a_relative_inventory_path_is_refused(node):
    result = node.health(gpu_inventory="facts.d/gpu_inventory.fact")
    assert result["failed"] and result["findings"] == []
    assert 'gpu_inventory "facts.d/gpu_inventory.fact" is not valid' in result["msg"]
    assert "an absolute path" in result["msg"]
