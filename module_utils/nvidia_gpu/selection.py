"""Which GPUs a request means: all, indices, UUIDs or model names (shell-style patterns)."""

from __future__ import annotations

import fnmatch
import re

from .identity import fields
from .nvml import GpuError

ALLOWED = (
    "allowed: 'all', an index (0, 1, ...), a UUID (GPU-...), or a model name such as "
    "'Tesla V100-SXM2-16GB' or '*V100*'"
)
# Only ASCII digits make an index: str.isdigit() also takes '²' and '٣', which int() refuses or
# reads as another number.
_INDEX = re.compile(r"[0-9]+")


def _prefix(where):
    return "%s: " % where if where else ""


def _item(item, where):
    """One selector item as text; raises GpuError for anything that cannot name a GPU."""
    text = item.strip() if isinstance(item, str) else None
    if isinstance(item, int) and not isinstance(item, bool) and item >= 0:
        text = str(item)
    if not text or (text.isdigit() and not _INDEX.fullmatch(text)):
        raise GpuError("%sGPU selector %r is not valid; %s." % (_prefix(where), item, ALLOWED))
    return text


def parse_selector(selector, where=None):
    """Normalise a selector to a list of strings; None, 'all' and ['all'] mean every GPU.

    where names the selector in messages (its key path, e.g. 'overrides[0].gpus'). An empty
    selection is refused: it would quietly change nothing.
    """
    if selector is None or selector == "all":
        return ["all"]
    if not isinstance(selector, (list, tuple)):
        selector = [selector]
    if not selector:
        raise GpuError(
            "%sthe selection is empty, so it names no GPU; %s."
            % (_prefix(where or "gpus"), ALLOWED)
        )
    return [
        _item(item, "%s[%d]" % (where, number) if where else None)
        for number, item in enumerate(selector)
    ]


def _by_model(item):
    """True when a normalised item selects by model name (a lost GPU's model is unknown)."""
    return item != "all" and not _INDEX.fullmatch(item) and not _by_uuid(item)


def _by_uuid(item):
    return item.upper().startswith(("GPU-", "MIG-"))


def _matches(gpu, item):
    """True when one normalised selector item names gpu (a device.Gpu or a dict)."""
    index, uuid, name, _lost = fields(gpu)
    if item == "all":
        return True
    if _INDEX.fullmatch(item):
        return str(index) == (item.lstrip("0") or "0")  # no int(): digits may be very many
    if _by_uuid(item):
        return str(uuid).lower() == item.lower()
    return fnmatch.fnmatchcase(str(name).lower(), item.lower())


def names_a_gpu(item, gpus):
    """True when one selector item, as written, matches any of gpus (device.Gpu or dicts).

    For selectors written for many nodes (inventory-wide overrides) that a node may lack.
    """
    (normalised,) = parse_selector([item])
    return any(_matches(gpu, normalised) for gpu in gpus)


def select(gpus, selector):
    """The GPUs a selector names, in index order. Every item must match at least one GPU.

    A GPU that fell off the bus has no readable model, so a model pattern may mean it: it is
    selected (as 'all' selects it), and the plan then refuses it instead of leaving it out.
    """
    items = parse_selector(selector)
    chosen = []
    for item in items:
        hits = [gpu for gpu in gpus if _matches(gpu, item) or (_by_model(item) and fields(gpu)[3])]
        if not hits:
            raise GpuError(
                "GPU selector '%s' matches no GPU on this host; present: %s."
                % (item, "; ".join(_inventory(gpus)) or "no GPUs")
            )
        chosen.extend(gpu for gpu in hits if gpu not in chosen)
    return sorted(chosen, key=lambda gpu: fields(gpu)[0])


def _inventory(gpus):
    inventory = []
    for gpu in gpus:
        index, uuid, name, lost = fields(gpu)
        inventory.append("%d %s" % (index, "(lost)" if lost else "%s %s" % (name, uuid)))
    return inventory
