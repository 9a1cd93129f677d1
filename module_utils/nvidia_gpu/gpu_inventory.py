"""A node's GPU inventory by slot (PCI address), compared with what the node holds now.

The record (JSON, kept on the node as an Ansible local fact) is an object:

    {"format": 1, "created": "2025-03-01T08:00:00Z", "last_changed": "2025-03-09T10:12:40Z",
     "slots": {"0000:1a:00.0": {"serial": "0323618008123", "uuid": "GPU-7f8d...",
                                "name": "Tesla V100-SXM2-16GB", "memory_total_mib": 16160,
                                "vbios_version": "88.00.4F.00.09",
                                "board_part_number": "900-2G503-0000-000",
                                "first_seen": "2025-03-01T08:00:00Z"}},
     "history": [{"time": ..., "slot": ..., "kind": "replaced", "line": "slot ...: ...",
                  "before": {card..., "last_seen": ...}, "after": {card...}}]}

Timestamps (UTC, second precision, "...Z"): the record changes only when the hardware does, so
a run that finds the same cards writes nothing (a true no-op). A card in `slots` therefore
carries first_seen only (when this node first had it, kept when it moves to another slot); its
"last seen" is the time of the latest run, which the caller reports, not the file. A card that
leaves a slot goes to `history` with last_seen = the time the change was noticed. `created` is
the first inventory, `last_changed` the last change to `slots` (or a history event). `history`
is newest last and keeps at most history_max events (a lowered bound trims it: that rewrites
the file without a drift line).

reconcile() compares by slot, and gives one change (and one drift line) per slot that differs:
same card (UUID and serial agree) with another VBIOS, memory size, board part number or name
(one line naming every such field); another card of the same model (replaced); another model
(model_changed); a recorded slot the PCI tree no longer shows and NVML does not list (missing);
a new slot (added). A GPU the PCI tree shows but NVML cannot read (fallen off the bus, or not
enumerated) is no removal: its record stays and a not_answering line says so, on every run
until it answers again or leaves the tree. A value NVML fails to read ("unreadable") never
counts as a change: the recorded value stays, and a recorded "unreadable" is filled in silently
when it can be read. The first inventory (no previous record) records every card without
drift lines (not_answering and unidentified lines excepted: they describe now, not a change).

Standard library only, Python 3.8+, no NVML: the module reads the GPUs and passes them in.
"""

from __future__ import annotations

import copy
import json
import os
import re

from . import strict_json
from .identity import NOT_AN_IDENTITY
from .nvml import UNREADABLE, GpuError
from .pci import SLOT

FORMAT = 1
DEFAULT_HISTORY_MAX = 200
# What is recorded of a card, in the order lines name them.
CARD_FIELDS = (
    "serial",
    "uuid",
    "name",
    "memory_total_mib",
    "vbios_version",
    "board_part_number",
)
IDENTITY_FIELDS = ("uuid", "serial")
# Same-card fields that may change (a flashed VBIOS; ECC mode changes the usable memory of GDDR
# boards; a driver may name a model differently) and how a line names them.
DETAIL_FIELDS = (
    ("vbios_version", "VBIOS", "vbios_changed", ""),
    ("memory_total_mib", "memory", "memory_changed", " MiB"),
    ("board_part_number", "board part number", "board_part_number_changed", ""),
    ("name", "model name", "name_changed", ""),
)
# Kinds that change the record (and go to history); the others describe the present only.
RECORDED_KINDS = (
    "added",
    "missing",
    "replaced",
    "model_changed",
    "fields_changed",
    *(kind for _field, _label, kind, _unit in DETAIL_FIELDS),
)
PRESENT_ONLY_KINDS = ("not_answering", "unidentified", "unplaced")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")


class InventoryError(GpuError):
    """The inventory file cannot be used; the message names it and what is wrong. replaceable:
    its content is wrong (on_corrupt=replace may overwrite it), not its reading."""

    def __init__(self, message, replaceable=True):
        super().__init__(message)
        self.replaceable = replaceable


def card_of(gpu):
    """The recorded part of a GPU as facts list it (a value facts lack is UNREADABLE)."""
    return {field: gpu.get(field, UNREADABLE) for field in CARD_FIELDS}


def same_card(old, new):
    """True/False by the identity values both sides know; None when none can be compared."""
    compared = [
        old.get(f) == new.get(f)
        for f in IDENTITY_FIELDS
        if old.get(f) not in NOT_AN_IDENTITY and new.get(f) not in NOT_AN_IDENTITY
    ]
    return all(compared) if compared else None


def card_id(card):
    """How a line names a card: by serial, or by UUID where it has no serial."""
    if card.get("serial") not in NOT_AN_IDENTITY:
        return "serial %s" % card["serial"]
    return "UUID %s" % card.get("uuid", UNREADABLE)


def id_change(old, new):
    """'serial A -> B' (or by UUID when the serials do not tell the cards apart)."""
    if (
        old.get("serial") not in NOT_AN_IDENTITY
        and new.get("serial") not in NOT_AN_IDENTITY
        and old["serial"] != new["serial"]
    ):
        return "serial %s -> %s" % (old["serial"], new["serial"])
    return "UUID %s -> %s" % (old.get("uuid"), new.get("uuid"))


def _change(slot, kind, line, before, after, **extra):
    change = {"slot": slot, "kind": kind, "line": line, "before": before, "after": after}
    change.update(extra)
    return change


def _details(slot, old, new):
    """(merged card, change or None) for the same card read again."""
    merged = dict(old)
    changed = []
    for field, label, _kind, unit in (*DETAIL_FIELDS, ("serial", "", "", "")):
        value = new.get(field, UNREADABLE)
        if value == UNREADABLE or value == old.get(field):
            continue  # a failed read is no change: the recorded value stays
        merged[field] = value
        if old.get(field) != UNREADABLE and label:
            changed.append((field, label, unit))
    if merged.get("uuid") == UNREADABLE and new.get("uuid") not in NOT_AN_IDENTITY:
        merged["uuid"] = new["uuid"]
    if not changed:
        return merged, None
    parts = ["%s %s -> %s%s" % (label, old[f], merged[f], unit) for f, label, unit in changed]
    only_vbios = [f for f, _l, _u in changed] == ["vbios_version"]
    line = "slot %s: %s (same card%s)" % (slot, ", ".join(parts), ", flashed" if only_vbios else "")
    kinds = {field: kind for field, _label, kind, _unit in DETAIL_FIELDS}
    kind = kinds[changed[0][0]] if len(changed) == 1 else "fields_changed"
    fields = [f for f, _l, _u in changed]
    return merged, _change(slot, kind, line, old, merged, fields=fields)


def identified(card):
    """Whether a card has a UUID or serial to tell it by later."""
    return any(card.get(field) not in NOT_AN_IDENTITY for field in IDENTITY_FIELDS)


def _compare(slot, old, new, on_bus, now_at, was_at):
    """(card to record there or None, change or None) for one slot. now_at and was_at: the
    slot of each card (by UUID) now and in the record, to name a card that moved."""
    if new is None and old is None:
        line = "slot %s: GPU on the PCI bus does not answer NVML (not in the inventory yet)" % slot
        return None, _change(slot, "not_answering", line, None, None)
    if new is None and on_bus:
        line = "slot %s: GPU does not answer NVML (%s, %s recorded)"
        return old, _change(
            slot, "not_answering", line % (slot, old["name"], card_id(old)), old, None
        )
    if new is None:
        line = "GPU missing from slot %s (was %s, %s%s)" % (
            slot,
            old["name"],
            card_id(old),
            _moved(", now in slot %s", now_at, old, slot),
        )
        return None, _change(slot, "missing", line, old, None)
    if not identified(new):
        if old is None:
            line = "slot %s: new GPU whose UUID and serial cannot be read (%s): not recorded yet"
            return None, _change(slot, "unidentified", line % (slot, new["name"]), None, None)
        line = "slot %s: GPU answers NVML but its UUID and serial cannot be read (%s, %s recorded)"
        return old, _change(
            slot, "unidentified", line % (slot, old["name"], card_id(old)), old, None
        )
    if old is not None and same_card(old, new) is not False:
        return _details(slot, old, new)
    origin = _moved(" (moved from slot %s)", was_at, new, slot)
    if old is None:
        line = "new GPU in slot %s: %s, %s%s" % (slot, new["name"], card_id(new), origin)
        return new, _change(slot, "added", line, None, new)
    # Where the two cards came from and went: part of the one line of this slot.
    whereabouts = _moved("new card moved from slot %s", was_at, new, slot)
    gone = _moved("old card now in slot %s", now_at, old, slot)
    notes = "".join("; " + note for note in (whereabouts, gone) if note)
    if old["name"] == new["name"] or UNREADABLE in (old["name"], new["name"]):
        line = "slot %s: %s, same model (replaced%s)" % (slot, id_change(old, new), notes)
        return new, _change(slot, "replaced", line, old, new)
    line = "slot %s: model changed %s -> %s (%s%s)" % (
        slot,
        old["name"],
        new["name"],
        id_change(old, new),
        notes,
    )
    return new, _change(slot, "model_changed", line, old, new)


def _moved(text, where, card, slot):
    """text % the other slot where the card is (or was), or "" when it is not elsewhere."""
    other = where.get(card.get("uuid"))
    return text % other if other is not None and other != slot else ""


def reconcile(previous, gpus, pci_slots, now, history_max=DEFAULT_HISTORY_MAX):
    """(new record, changes, drift lines) from the previous record (None: first inventory), the
    GPUs as facts list them now (lost ones with lost=true), the slots the PCI tree shows holding
    an NVIDIA GPU (None when the tree could not be read: then no recorded GPU counts as missing)
    and the time of this run. Each change is {slot, kind, line, before, after} (+ fields for a
    same-card change); previous is not modified."""
    first = previous is None
    recorded = {} if first else previous["slots"]
    answering, lost_at, changes = {}, set(), []
    for gpu in gpus:
        address = gpu.get("pci_bus_id")
        if gpu.get("lost"):
            if address not in NOT_AN_IDENTITY:
                lost_at.add(address)
        elif address in NOT_AN_IDENTITY:
            line = "GPU %s (%s) answers NVML but its PCI address cannot be read: not inventoried"
            changes.append(
                _change(None, "unplaced", line % (gpu.get("index"), gpu.get("uuid")), None, None)
            )
        else:
            answering.setdefault(address, card_of(gpu))
    # Where each card (by UUID) is now and was before, to name moves between slots.
    now_at = {c["uuid"]: s for s, c in answering.items() if c["uuid"] not in NOT_AN_IDENTITY}
    was_at = {c["uuid"]: s for s, c in recorded.items() if c["uuid"] not in NOT_AN_IDENTITY}
    slots, events = {}, []
    for slot in sorted(set(recorded) | set(answering) | lost_at | set(pci_slots or ())):
        old, new = recorded.get(slot), answering.get(slot)
        on_bus = pci_slots is None or slot in pci_slots or slot in lost_at
        card, change = _compare(slot, old, new, on_bus, now_at, was_at)
        if card is not None:
            card = dict(card)
            if change and change["kind"] in ("added", "replaced", "model_changed"):
                other = was_at.get(card["uuid"])  # a card moved here keeps its first_seen
                card["first_seen"] = (
                    recorded[other]["first_seen"] if other not in (None, slot) else now
                )
            card.setdefault("first_seen", now)
            slots[slot] = card
            if change and change["after"] is not None:
                change["after"] = card  # as recorded, first_seen included
        if change is None:
            continue
        if change["kind"] in RECORDED_KINDS:
            if first:
                continue  # the first inventory records without drift lines
            events.append(_event(change, now))
        changes.append(change)
    history = [] if first else list(previous["history"]) + events
    history = history[-history_max:] if history_max > 0 else []
    record = {
        "format": FORMAT,
        "created": now if first else previous["created"],
        "last_changed": now if first or events else previous["last_changed"],
        "slots": slots,
        "history": history,
    }
    return record, changes, [change["line"] for change in changes]


def _event(change, now):
    """A history event: the change, with last_seen on a card that left its slot."""
    before = copy.deepcopy(change["before"])
    if before is not None and change["kind"] in ("missing", "replaced", "model_changed"):
        before["last_seen"] = now
    event = {"time": now, "slot": change["slot"], "kind": change["kind"], "line": change["line"]}
    event.update(before=before, after=copy.deepcopy(change["after"]))
    return event


def dumps(record):
    """The file's text: stable key order, so equal records give equal files."""
    return json.dumps(record, indent=2, sort_keys=True) + "\n"


def load(path):
    """The record in path, validated; None when there is no file (first inventory)."""
    if not os.path.lexists(path):
        return None
    try:
        data = strict_json.read(path, "a GPU inventory this module wrote")
    except strict_json.TooLarge as error:
        raise InventoryError(str(error)) from error
    except strict_json.FileRefused as error:
        raise InventoryError(str(error), False) from error
    try:
        record = strict_json.parse(path, data)
    except strict_json.FileRefused as error:
        raise InventoryError(str(error)) from error
    validate(record, path)
    return record


def validate(record, source):
    """Raise InventoryError naming source and the key path of the first wrong value."""
    try:
        _check_record(record)
    except _Wrong as wrong:
        path, what = wrong.args
        raise InventoryError(
            "%s: %s: %s (not a GPU inventory this module wrote)"
            % (source, strict_json.path_text(path), what)
        ) from None


class _Wrong(Exception):
    """(key path, what is wrong) inside the record."""


def _keys(value, path, required, optional=()):
    if not isinstance(value, dict):
        raise _Wrong(path, "%s is not an object" % strict_json.shown(value))
    missing = [key for key in required if key not in value]
    if missing:
        raise _Wrong(path, "lacks %s" % ", ".join(missing))
    unknown = sorted(set(value) - set(required) - set(optional))
    if unknown:
        raise _Wrong(path, "unknown key(s) %s" % ", ".join(strict_json.shown(k) for k in unknown))


def _text(value, path, pattern=None):
    if not isinstance(value, str) or (pattern is not None and not pattern.match(value)):
        want = "a string" if pattern is None else "a string like %s" % pattern.pattern
        raise _Wrong(path, "%s is not %s" % (strict_json.shown(value), want))


def _check_card(card, path, departed=False):
    optional = ("last_seen",) if departed else ()
    _keys(card, path, (*CARD_FIELDS, "first_seen"), optional)
    for field in CARD_FIELDS:
        value = card[field]
        if field == "memory_total_mib" and not isinstance(value, str):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise _Wrong((*path, field), "%s is not a size in MiB" % strict_json.shown(value))
            continue
        _text(value, (*path, field))
    for field in ("first_seen", *optional):
        if field in card:
            _text(card[field], (*path, field), TIMESTAMP)


def _check_record(record):
    _keys(record, (), ("format", "created", "last_changed", "slots", "history"))
    if record["format"] != FORMAT:
        raise _Wrong(
            ("format",), "%s is not format %d" % (strict_json.shown(record["format"]), FORMAT)
        )
    for key in ("created", "last_changed"):
        _text(record[key], (key,), TIMESTAMP)
    if not isinstance(record["slots"], dict):
        raise _Wrong(("slots",), "is not an object")
    for slot, card in record["slots"].items():
        _text(slot, ("slots", slot), SLOT)
        _check_card(card, ("slots", slot))
    if not isinstance(record["history"], list):
        raise _Wrong(("history",), "is not a list")
    for number, event in enumerate(record["history"]):
        path = ("history", number)
        _keys(event, path, ("time", "slot", "kind", "line", "before", "after"))
        _text(event["time"], (*path, "time"), TIMESTAMP)
        _text(event["slot"], (*path, "slot"), SLOT)
        _text(event["line"], (*path, "line"))
        if event["kind"] not in RECORDED_KINDS:
            raise _Wrong(
                (*path, "kind"), "%s is not a kind of change" % strict_json.shown(event["kind"])
            )
        for side in ("before", "after"):
            if event[side] is not None:
                _check_card(event[side], (*path, side), departed=True)
