"""The slots of a node's GPU inventory (gpu_inventory.py) that no GPU answers for now, what they
last held and what the PCI tree shows there: how the health check names a missing GPU by slot
instead of only counting.

A recorded slot is one in the record's `slots`, or one a `missing` event took out of `slots`
(the inventory ran after the card left) and nothing refilled since: its card is that event's
`before`. A slot answers when NVML lists a GPU at its address (a lost GPU whose address is known
answers here: the gpu_lost finding names it). A slot that does not answer is `empty` (no NVIDIA
GPU there on the PCI tree), `not_enumerated` (the tree shows one, the driver does not list it)
or `unknown` (the tree could not be read).

Standard library and the nvidia_gpu package only, Python 3.8+, no NVML.
"""

from __future__ import annotations

from .gpu_inventory import card_id, same_card
from .pci import SLOT

EMPTY = "empty"
NOT_ENUMERATED = "not_enumerated"
UNKNOWN = "unknown"
# The likely cause of each state, once per finding whatever the number of slots.
CAUSES = {
    EMPTY: "A slot with no device on the PCI bus: the card was removed, or it is unseated, "
    "unpowered or dead (check its seating in the socket and the power to the GPU board)",
    NOT_ENUMERATED: "A card on the PCI bus that the driver does not enumerate failed to "
    "initialise: look for NVRM lines about its address in the kernel log (RmInitAdapter "
    "failed: power, VBIOS or a GPU fault)",
    UNKNOWN: "The PCI tree could not be read, so whether the slot is empty is not known: look "
    "for the card with lspci",
}


def placed(gpus):
    """(addresses, unplaced) of the GPUs facts list: the PCI addresses NVML gives (or the PCI
    tree gave a lost GPU), and the indices of the GPUs whose address is not known."""
    addresses, unplaced = set(), []
    for gpu in gpus:
        address = gpu.get("pci_bus_id")
        if isinstance(address, str) and SLOT.match(address.lower()):
            addresses.add(address.lower())
        else:
            unplaced.append(gpu.get("index"))
    return addresses, unplaced


def unanswered(record, enumerated, on_bus):
    """The recorded slots no GPU answers for, in slot order: [{slot, state, recorded, since,
    card}]. record: a validated inventory (gpu_inventory.load); enumerated: the PCI addresses
    of the GPUs NVML lists now; on_bus: the addresses of the NVIDIA GPUs the PCI tree shows now
    (pci.discover(...)["gpus"]), None when it could not be read.

    recorded is "slots" (card: the one in `slots`, since: None) or "history" (card: the `before`
    of the slot's latest event, a `missing` one; since: its time). A card that left its slot
    for another recorded one (moved) leaves no history slot behind."""
    enumerated = {address.lower() for address in enumerated}
    bus = None if on_bus is None else {address.lower() for address in on_bus}
    current = record["slots"]
    latest = {}
    for event in record["history"]:
        latest[event["slot"]] = event
    found = {slot: (card, "slots", None) for slot, card in current.items()}
    for slot, event in latest.items():
        card = event["before"]
        if slot in current or event["kind"] != "missing" or card is None:
            continue
        if any(same_card(card, other) for other in current.values()):
            continue  # moved to another slot, recorded there
        found[slot] = (card, "history", event["time"])
    entries = []
    for slot in sorted(found):
        if slot in enumerated:
            continue
        card, recorded, since = found[slot]
        state = UNKNOWN if bus is None else NOT_ENUMERATED if slot in bus else EMPTY
        entries.append(
            {"slot": slot, "state": state, "recorded": recorded, "since": since, "card": card}
        )
    return entries


def for_shortfall(entries, shortfall):
    """The entries that name the GPUs missing from a count short by shortfall: every slot still
    in `slots`; history slots only where those are too few, the newest missing first (a slot
    emptied on purpose long ago stays in the history), ties kept together."""
    chosen = [e for e in entries if e["recorded"] == "slots"]
    older = sorted(
        (e for e in entries if e["recorded"] == "history"),
        key=lambda e: e["since"],
        reverse=True,
    )
    wanted = shortfall - len(chosen)
    if wanted > 0 and older:
        cutoff = older[min(wanted, len(older)) - 1]["since"]
        chosen += [e for e in older if e["since"] >= cutoff]
    return sorted(chosen, key=lambda e: e["slot"])


def describe(entry, unplaced=()):
    """One slot as a finding names it; unplaced: indices of GPUs with no known address (one of
    them may be the card on the bus that seems not enumerated)."""
    card = entry["card"]
    slot = entry["slot"]
    held = "%s, %s" % (card.get("name", "unknown model"), card_id(card))
    if entry["state"] == EMPTY:
        return "slot %s is empty (no device on the PCI bus; it last held %s)" % (slot, held)
    if entry["state"] == UNKNOWN:
        text = "slot %s: no GPU answers there and the PCI tree could not be read (recorded: %s)"
        return text % (slot, held)
    if unplaced:
        text = (
            "slot %s: a GPU is on the PCI bus but NVML lists none at this address (recorded: %s; "
            "GPU %s has no known PCI address and may be this one)"
        )
        return text % (slot, held, ", ".join(str(index) for index in unplaced))
    text = "slot %s: a GPU is on the PCI bus but the driver does not enumerate it (recorded: %s)"
    return text % (slot, held)


def causes(entries):
    """The likely causes of the states among entries, as sentences in a fixed order."""
    states = {entry["state"] for entry in entries}
    return ". ".join(CAUSES[state] for state in (EMPTY, NOT_ENUMERATED, UNKNOWN) if state in states)
