"""The GPU inventory's comparison by slot (module_utils/nvidia_gpu/gpu_inventory.py), no NVML.

Named cases pin the drift lines word for word; a hypothesis test generates the hardware before
and after (cards kept, flashed, replaced, swapped for another model, moved, fallen off the bus,
hidden from NVML, removed, added) and checks what must hold for any of them.
"""

import json
import sys

import pytest
from conftest import MODULE_UTILS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(MODULE_UTILS))
from nvidia_gpu import gpu_inventory as inventory

T0, T1, T2, T3 = ("2025-03-0%dT08:00:00Z" % day for day in (1, 2, 3, 4))
A, B, C, D, E = "0000:1a:00.0", "0000:1b:00.0", "0000:3d:00.0", "0000:3e:00.0", "0000:af:00.0"
V16, V32 = "Tesla V100-SXM2-16GB", "Tesla V100-SXM2-32GB"
MEMORY_MIB = {V16: 16160, V32: 32510, "NVIDIA A100-PCIE-40GB": 40536}


def gpu(slot, serial, name=V16, vbios="88.00.4F.00.09", **values):
    facts = {
        "index": 0,
        "lost": False,
        "pci_bus_id": slot,
        "serial": serial,
        "uuid": "GPU-%s" % serial,
        "name": name,
        "memory_total_mib": MEMORY_MIB[name],
        "vbios_version": vbios,
        "board_part_number": "900-2G503-0000-000",
    }
    facts.update(values)
    return facts


def lost(slot=None):
    facts = {"index": 3, "lost": True, "error": "the GPU has fallen off the bus"}
    if slot:
        facts["pci_bus_id"] = slot
    return facts


FOUR = [gpu(A, "0323618008123"), gpu(B, "0323618008457"), gpu(C, "0323618009016")]
FOUR.append(gpu(D, "0323618009382"))


def run(previous, gpus, now=T1, pci_slots=None, **options):
    """reconcile with the PCI tree showing the GPUs given (and pci_slots more)."""
    tree = {g["pci_bus_id"] for g in gpus if g.get("pci_bus_id")} | set(pci_slots or ())
    return inventory.reconcile(previous, gpus, tree, now, **options)


def first(gpus=FOUR):
    record, changes, lines = run(None, gpus, T0)
    assert (changes, lines) == ([], [])
    return record


def test_first_inventory_records_every_card_without_lines():
    record = first()
    assert record["format"] == 1 and record["created"] == T0 == record["last_changed"]
    assert record["history"] == [] and sorted(record["slots"]) == [A, B, C, D]
    assert record["slots"][A] == {
        "serial": "0323618008123",
        "uuid": "GPU-0323618008123",
        "name": V16,
        "memory_total_mib": 16160,
        "vbios_version": "88.00.4F.00.09",
        "board_part_number": "900-2G503-0000-000",
        "first_seen": T0,
    }


def test_same_hardware_changes_nothing():
    record = first()
    again, changes, lines = run(record, FOUR, T1)
    assert again == record and changes == [] and lines == []


@pytest.mark.parametrize(
    ("now", "kind", "line"),
    [
        (
            gpu(A, "0324618000001"),
            "replaced",
            "slot 0000:1a:00.0: serial 0323618008123 -> 0324618000001, same model (replaced)",
        ),
        (
            gpu(A, "0325618000101", name=V32),
            "model_changed",
            "slot 0000:1a:00.0: model changed Tesla V100-SXM2-16GB -> Tesla V100-SXM2-32GB "
            "(serial 0323618008123 -> 0325618000101)",
        ),
        (
            gpu(A, "0323618008123", vbios="88.00.80.00.01"),
            "vbios_changed",
            "slot 0000:1a:00.0: VBIOS 88.00.4F.00.09 -> 88.00.80.00.01 (same card, flashed)",
        ),
        (
            gpu(A, "0323618008123", memory_total_mib=15100),
            "memory_changed",
            "slot 0000:1a:00.0: memory 16160 -> 15100 MiB (same card)",
        ),
        (
            gpu(A, "0323618008123", vbios="88.00.80.00.01", board_part_number="900-2G503-0010-000"),
            "fields_changed",
            "slot 0000:1a:00.0: VBIOS 88.00.4F.00.09 -> 88.00.80.00.01, board part number "
            "900-2G503-0000-000 -> 900-2G503-0010-000 (same card)",
        ),
    ],
    ids=["replaced", "model", "vbios", "memory", "two fields"],
)
def test_a_change_in_one_slot_is_one_line_and_one_event(now, kind, line):
    record = first()
    new, changes, lines = run(record, [now, *FOUR[1:]], T1)
    assert lines == [line] and [c["kind"] for c in changes] == [kind]
    assert new["last_changed"] == T1 and new["created"] == T0
    event = new["history"][-1]
    assert (event["slot"], event["kind"], event["line"], event["time"]) == (A, kind, line, T1)
    assert event["before"] == dict(record["slots"][A], **event["before"])
    assert new["slots"][A]["vbios_version"] == now["vbios_version"]
    if kind in ("replaced", "model_changed"):  # another card: it leaves, the new one arrives
        assert event["before"]["last_seen"] == T1 and new["slots"][A]["first_seen"] == T1
    else:  # the same card: still there since T0
        assert "last_seen" not in event["before"] and new["slots"][A]["first_seen"] == T0
    assert run(new, [now, *FOUR[1:]], T2)[0] == new


def test_missing_gpu_goes_to_history_with_first_and_last_seen():
    record = first()
    new, changes, lines = run(record, FOUR[:3], T1)
    assert lines == [
        "GPU missing from slot 0000:3e:00.0 (was Tesla V100-SXM2-16GB, serial 0323618009382)"
    ]
    assert changes[0]["kind"] == "missing" and changes[0]["after"] is None
    assert D not in new["slots"]
    assert new["history"][-1]["before"] == dict(record["slots"][D], last_seen=T1)
    assert new["history"][-1]["before"]["first_seen"] == T0


@pytest.mark.parametrize(
    "gpus",
    [[*FOUR[:3], lost(D)], [*FOUR[:3], lost()], FOUR[:3]],
    ids=["lost with its address", "lost without an address", "not enumerated"],
)
def test_gpu_in_the_pci_tree_that_does_not_answer_is_kept(gpus):
    record = first()
    new, changes, lines = run(record, gpus, T1, pci_slots=[D])
    assert lines == [
        "slot 0000:3e:00.0: GPU does not answer NVML (Tesla V100-SXM2-16GB, serial 0323618009382 "
        "recorded)"
    ]
    assert changes[0]["kind"] == "not_answering"
    assert new == record  # no event, nothing written


def test_new_gpu_and_a_card_moved_to_another_slot():
    record = first()
    gpus = [gpu(A, "0324618000001"), *FOUR[1:], gpu(E, "0323618008123")]
    new, changes, lines = run(record, gpus, T1)
    assert lines == [
        "slot 0000:1a:00.0: serial 0323618008123 -> 0324618000001, same model (replaced; old card "
        "now in slot 0000:af:00.0)",
        "new GPU in slot 0000:af:00.0: Tesla V100-SXM2-16GB, serial 0323618008123 (moved from "
        "slot 0000:1a:00.0)",
    ]
    assert [c["slot"] for c in changes] == [A, E]
    assert new["slots"][E]["first_seen"] == T0  # the card, not the slot, was seen since T0


def test_without_the_pci_tree_nothing_is_missing():
    record = first()
    new, changes, _lines = inventory.reconcile(record, FOUR[:3], None, T1)
    assert [c["kind"] for c in changes] == ["not_answering"] and new == record


def test_unreadable_values_are_no_change_and_are_filled_in_later():
    record = first([gpu(A, "0323618008123", vbios="unreadable")])
    assert record["slots"][A]["vbios_version"] == "unreadable"
    new, changes, _lines = run(record, [gpu(A, "0323618008123")], T1)
    assert changes == [] and new["slots"][A]["vbios_version"] == "88.00.4F.00.09"
    assert new["history"] == [] and new["last_changed"] == T0
    again, changes, _lines = run(new, [gpu(A, "0323618008123", vbios="unreadable")], T2)
    assert changes == [] and again == new


def test_a_card_without_serial_is_named_by_uuid():
    record = first([gpu(A, "unsupported", uuid="GPU-aaaa")])
    _new, _changes, lines = run(record, [gpu(A, "unsupported", uuid="GPU-bbbb")], T1)
    assert lines == ["slot 0000:1a:00.0: UUID GPU-aaaa -> GPU-bbbb, same model (replaced)"]


def test_first_run_still_names_gpus_that_do_not_answer():
    record, changes, lines = run(None, [*FOUR[:3], lost(D)], T0)
    assert [c["kind"] for c in changes] == ["not_answering"] and D not in record["slots"]
    assert lines == [
        "slot 0000:3e:00.0: GPU on the PCI bus does not answer NVML (not in the inventory yet)"
    ]


def test_history_is_bounded_newest_last():
    record = first()
    for step in range(5):
        record, _changes, _lines = run(
            record, [gpu(A, "03246180%05d" % step), *FOUR[1:]], T1, history_max=3
        )
    assert [e["after"]["serial"] for e in record["history"]] == [
        "0324618000002",
        "0324618000003",
        "0324618000004",
    ]
    assert run(record, [gpu(A, "x"), *FOUR[1:]], T2, history_max=0)[0]["history"] == []


def test_previous_record_is_not_modified():
    record = first()
    copy = json.loads(json.dumps(record))
    run(record, [gpu(A, "0324618000001", name=V32)], T1)
    assert record == copy


# --- the file ---


def test_load_round_trip_and_absent_file(tmp_path):
    path = tmp_path / "gpu_inventory.fact"
    assert inventory.load(str(path)) is None
    record, _changes, _lines = run(first(), FOUR[1:], T1)
    path.write_text(inventory.dumps(record))
    assert inventory.load(str(path)) == record


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "the top level: [1, 2] is not an object"),
        ('{"ansible": "facts"}', "the top level: lacks format, created"),
        ("FORMAT2", "format: 2 is not format 1"),
        ("BADSLOT", 'slots["1a:00"]: "1a:00" is not a string like'),
        ("BADMEMORY", 'slots["0000:1a:00.0"].memory_total_mib: true is not a size in MiB'),
        ("BADKIND", 'history[0].kind: "exploded" is not a kind of change'),
        ("EXTRA", 'slots["0000:1a:00.0"]: unknown key(s) "colour"'),
    ],
)
def test_a_damaged_or_foreign_file_is_refused_naming_file_and_value(tmp_path, content, message):
    record, _changes, _lines = run(first(), [gpu(A, "0324618000001"), *FOUR[1:]], T1)
    if content == "FORMAT2":
        record["format"] = 2
    elif content == "BADSLOT":
        record["slots"]["1a:00"] = record["slots"].pop(A)
    elif content == "BADMEMORY":
        record["slots"][A]["memory_total_mib"] = True
    elif content == "BADKIND":
        record["history"][0]["kind"] = "exploded"
    elif content == "EXTRA":
        record["slots"][A]["colour"] = "green"
    path = tmp_path / "gpu_inventory.fact"
    path.write_text(inventory.dumps(record) if content.isupper() else content)
    with pytest.raises(inventory.InventoryError) as refused:
        inventory.load(str(path))
    assert str(refused.value).startswith(str(path)) and message in str(refused.value)
    assert refused.value.replaceable


def test_a_directory_is_not_replaceable(tmp_path):
    with pytest.raises(inventory.InventoryError, match="not a regular file") as refused:
        inventory.load(str(tmp_path))
    assert not refused.value.replaceable


# --- generated hardware ---

SLOTS = ["0000:%02x:00.0" % bus for bus in (0x1A, 0x1B, 0x3D, 0x3E, 0x86, 0xAF)]
MODELS = sorted(MEMORY_MIB)
# A card: (its number, which tells its serial and its model; VBIOS 0 or 1). A slot's state now:
# a card, "lost" (NVML lists it lost, with or without address), "hidden" (in the PCI tree,
# not in NVML) or None (empty).
cards = st.tuples(st.integers(0, 11), st.integers(0, 1))
states = st.one_of(st.none(), st.sampled_from(["lost", "lost_unplaced", "hidden"]), cards)


def unique_cards(hardware):
    numbers = [s[0] for s in hardware.values() if isinstance(s, tuple)]
    return len(numbers) == len(set(numbers))


machines = st.dictionaries(st.sampled_from(SLOTS), states).filter(unique_cards)
plain_machines = st.dictionaries(st.sampled_from(SLOTS), cards).filter(unique_cards)


def facts_of(hardware):
    """(GPUs as facts list them, the PCI tree's GPU slots) of generated hardware."""
    gpus, tree = [], set()
    for slot, state in sorted(hardware.items()):
        if state is None:
            continue
        tree.add(slot)
        if state == "lost":
            gpus.append(lost(slot))
        elif state == "lost_unplaced":
            gpus.append(lost())
        elif isinstance(state, tuple):
            number, vbios = state
            name = MODELS[number % len(MODELS)]
            gpus.append(gpu(slot, "1320%09d" % number, name=name, vbios="9%d.00" % vbios))
    return gpus, tree


def expected_kind(before, now):
    """The kind of change one slot must show, or None."""
    answering = isinstance(now, tuple)
    if before is None:
        return "added" if answering else ("not_answering" if now else None)
    if not answering:
        return "not_answering" if now else "missing"
    if before[0] != now[0]:
        same_model = before[0] % len(MODELS) == now[0] % len(MODELS)
        return "replaced" if same_model else "model_changed"
    return "vbios_changed" if before[1] != now[1] else None


@settings(max_examples=500, derandomize=True, suppress_health_check=list(HealthCheck))
@given(plain_machines, machines, st.integers(0, 4))
def test_generated_hardware_changes(before, now, history_max):
    record, changes, lines = inventory.reconcile(None, *facts_of(before), T0)
    assert (changes, lines) == ([], []) and sorted(record["slots"]) == sorted(before)
    new, changes, lines = inventory.reconcile(record, *facts_of(now), T1, history_max)
    # One change (and line) per slot that differs, of the right kind, naming its slot.
    want = {s: expected_kind(before.get(s), now.get(s)) for s in SLOTS}
    assert {c["slot"]: c["kind"] for c in changes} == {s: k for s, k in want.items() if k}
    assert len(changes) == len({c["slot"] for c in changes})
    assert lines == [c["line"] for c in changes]
    assert all(c["slot"] in c["line"] for c in changes)
    # Recorded: the cards answering now, and those that do not answer but were recorded.
    kept = {s for s in before if now.get(s) is not None}
    assert set(new["slots"]) == {s for s in SLOTS if isinstance(now.get(s), tuple)} | kept
    events = [c for c in changes if c["kind"] in inventory.RECORDED_KINDS]
    assert len(new["history"]) == min(len(events), history_max)
    assert new["last_changed"] == (T1 if events else T0)
    # The same hardware again changes nothing; only the GPUs that do not answer are named.
    again, changes_again, _lines = inventory.reconcile(new, *facts_of(now), T2, history_max)
    assert again == new
    assert [c for c in changes_again if c["kind"] != "not_answering"] == []
    # The record survives JSON and the file's validation.
    assert json.loads(inventory.dumps(new)) == new
    inventory.validate(json.loads(inventory.dumps(new)), "generated")


@settings(max_examples=100, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.lists(machines, min_size=1, max_size=6), st.integers(1, 3))
def test_generated_history_stays_bounded_and_ends_with_the_latest_change(steps, history_max):
    record = inventory.reconcile(None, [], set(), T0)[0]
    for number, hardware in enumerate(steps):
        now = "2025-04-%02dT00:00:00Z" % (number + 1)
        record, changes, _lines = inventory.reconcile(record, *facts_of(hardware), now, history_max)
        assert len(record["history"]) <= history_max
        events = [c for c in changes if c["kind"] in inventory.RECORDED_KINDS]
        if events:
            assert record["history"][-1]["line"] == events[-1]["line"]
            assert record["history"][-1]["time"] == now
