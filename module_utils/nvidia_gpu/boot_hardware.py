"""The GPUs present at boot against the ones a config file recorded: which card sits where now.

A config file records each GPU's slot (PCI address) beside its index and UUID. At boot the
answering GPUs are matched to it: the same card (its UUID), a card that replaced the recorded one
in its slot (another UUID at the recorded address), or a card in a slot the file does not know.
The PCI tree tells a slot that is empty (the card was pulled) from a card that is there but does
not answer NVML yet: only the second is worth waiting for.

Settings for a new card come from the same request, read again with the card in its slot (the
replaced card's index, its own model and UUID), so `gpus: [all]` or a model pattern covers it
and an override written for a UUID that is gone does not.

Standard library and the nvidia_gpu package only, Python 3.8+.
"""

from __future__ import annotations

from . import pci
from .device import Gpu
from .identity import NOT_AN_IDENTITY, UNKNOWN, gpu_label
from .settings_plan import settings_per_gpu

# Indices given to cards in slots the file does not know while the request is read again: past
# every index a file can hold (boot_config.MAX_GPU_INDEX), so no index selector names them.
ADDED_INDEX_BASE = 1 << 20

SAME = "same"  # the card the file recorded
REPLACED = "replaced"  # another card in a slot the file recorded
ADDED = "added"  # a card in a slot the file does not know


def gpu_slots(sysfs_root):
    """The addresses of the NVIDIA GPUs the PCI tree shows, or None when it shows none.

    None (an unreadable tree, or one without any NVIDIA GPU: not this machine's GPUs, a
    container) means nothing may be concluded from it: every GPU of the file is waited for.
    """
    try:
        return set(pci.gpu_addresses(sysfs_root)) or None
    except OSError:
        return None


def _slot(gpu):
    slot = getattr(gpu, "pci_bus_id", None)
    return slot if slot and slot != UNKNOWN else None


class Layout:
    """The answering GPUs matched to a file's recorded GPUs, and the recorded slots now empty.

    recorded: device.Gpu of the file (pci_bus_id, serial when the file has them). gpus: the GPUs
    NVML enumerates now. slots: gpu_slots() of the PCI tree, or None.
    """

    def __init__(self, recorded, gpus, slots=None):
        self.recorded = recorded
        self.answering = [gpu for gpu in gpus if not gpu.lost]
        self.any_lost = len(self.answering) < len(gpus)
        by_uuid = {gpu.uuid.lower(): gpu for gpu in recorded}
        by_slot = {_slot(gpu): gpu for gpu in recorded if _slot(gpu)}
        present = {gpu.uuid.lower() for gpu in self.answering}
        # {uuid now: (kind, recorded Gpu or None)}
        self.cards = {}
        for gpu in self.answering:
            if gpu.uuid.lower() in by_uuid:
                self.cards[gpu.uuid] = (SAME, by_uuid[gpu.uuid.lower()])
                continue
            old = by_slot.get(_slot(gpu))
            if old is not None and old.uuid.lower() not in present:
                self.cards[gpu.uuid] = (REPLACED, old)
            else:
                self.cards[gpu.uuid] = (ADDED, None)
        taken = {old.uuid.lower() for _, old in self.cards.values() if old is not None}
        # Recorded GPUs whose slot the PCI tree shows empty: gone, never waited for.
        self.empty = [
            gpu
            for gpu in recorded
            if slots is not None
            and _slot(gpu)
            and _slot(gpu) not in slots
            and gpu.uuid.lower() not in taken
        ]
        # Recorded GPUs neither answering nor replaced nor in an empty slot: worth waiting for.
        empty = {gpu.uuid.lower() for gpu in self.empty}
        self.awaited = [gpu for gpu in recorded if gpu.uuid.lower() not in taken | empty]

    def new_cards(self):
        """[(present Gpu, kind, recorded Gpu or None)] of the cards the file does not know."""
        by_uuid = {gpu.uuid: gpu for gpu in self.answering}
        return [
            (by_uuid[uuid], kind, old) for uuid, (kind, old) in self.cards.items() if kind != SAME
        ]

    def unchanged(self):
        """True when the file's GPUs all answer at their recorded index, none is lost and
        nothing is new."""
        return (
            not self.any_lost
            and all(kind == SAME for kind, _ in self.cards.values())
            and {(gpu.index, gpu.uuid.lower()) for gpu in self.answering}
            == {(gpu.index, gpu.uuid.lower()) for gpu in self.recorded}
        )

    def settings(self, request):
        """{uuid now: merged settings} of the answering cards the request covers.

        The request (settings_spec-normalised) is read with each card where the file knew a card:
        a replacement takes the old card's index, a card in a new slot an index no selector
        names. Recorded GPUs that are gone stay in the list, so selectors mean what they meant
        when the file was written.
        """
        stand_ins, added = [], 0
        replaced_by = {old.uuid.lower(): uuid for uuid, (kind, old) in self.cards.items() if old}
        by_uuid = {gpu.uuid: gpu for gpu in self.answering}
        for old in self.recorded:
            uuid = replaced_by.get(old.uuid.lower())
            stand_ins.append(_stand_in(old.index, by_uuid[uuid]) if uuid else old)
        for uuid, (kind, _) in self.cards.items():
            if kind == ADDED:
                stand_ins.append(_stand_in(ADDED_INDEX_BASE + added, by_uuid[uuid]))
                added += 1
        return {
            gpu.uuid: settings
            for gpu, settings in settings_per_gpu(stand_ins, request, tolerant=True)
            if gpu.uuid in self.cards
        }


def _stand_in(index, gpu):
    """A present card as the request sees it: at index, with its own UUID and model."""
    stand_in = Gpu(index)
    stand_in.uuid, stand_in.name = gpu.uuid, gpu.name
    return stand_in


def describe_card(gpu, serial=None):
    """'Tesla V100-SXM2-16GB, serial 0323..., GPU-...' of a card (present or recorded)."""
    parts = [part for part in (gpu.name, _serial_text(serial)) if part and part != UNKNOWN]
    return ", ".join([*parts, gpu.uuid])


def _serial_text(serial):
    return "serial %s" % serial if serial not in NOT_AN_IDENTITY else None


def new_card_line(gpu, kind, old, covered):
    """One journal line naming a card the file does not know, and what the command does."""
    head = "%s in slot %s is a new card (%s)" % (
        gpu_label(gpu.index, gpu.uuid),
        _slot(gpu) or "unknown",
        describe_card(gpu, getattr(gpu, "serial", None)),
    )
    if kind == REPLACED:
        head += ": it replaces %s" % describe_card(old, getattr(old, "serial", None))
    else:
        head += "; the file recorded no card in this slot"
    if covered:
        return head + "; the file's settings cover it (run the gpu_tuning role to record it)"
    return (
        head + "; the file's selection does not cover it: left unchanged (run the gpu_tuning role)"
    )
