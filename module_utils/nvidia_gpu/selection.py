"""Which GPUs a request means: all, indices, UUIDs or model names (shell-style patterns)."""

from __future__ import annotations

import fnmatch

from .identity import fields
from .nvml import GpuError


def parse_selector(selector):
    """Normalise a selector to a list of strings; None, 'all' and ['all'] mean every GPU."""
    if selector is None or selector == "all":
        return ["all"]
    if not isinstance(selector, (list, tuple)):
        selector = [selector]
    items = []
    for item in selector:
        if isinstance(item, bool) or not isinstance(item, (int, str)) or str(item).strip() == "":
            raise GpuError(
                "GPU selector %r is not valid; allowed: 'all', an index (0, 1, ...), a UUID "
                "(GPU-...), or a model name such as 'Tesla V100-SXM2-16GB' or '*V100*'." % (item,)
            )
        items.append(str(item).strip())
    return items


def _matches(gpu, item):
    """True when one normalised selector item names gpu (a device.Gpu or a dict)."""
    index, uuid, name, _lost = fields(gpu)
    if item == "all":
        return True
    if item.isdigit():
        return index == int(item)
    if item.upper().startswith(("GPU-", "MIG-")):
        return str(uuid).lower() == item.lower()
    return fnmatch.fnmatchcase(str(name).lower(), item.lower())


def names_a_gpu(item, gpus):
    """True when one selector item, as written, matches any of gpus (device.Gpu or dicts).

    For selectors written for many nodes (inventory-wide overrides) that a node may lack.
    """
    (normalised,) = parse_selector([item])
    return any(_matches(gpu, normalised) for gpu in gpus)


def select(gpus, selector):
    """The GPUs a selector names, in index order. Every item must match at least one GPU."""
    items = parse_selector(selector)
    chosen = []
    for item in items:
        hits = [gpu for gpu in gpus if _matches(gpu, item)]
        if not hits:
            raise GpuError(
                "GPU selector '%s' matches no GPU on this host; present: %s."
                % (item, "; ".join(_inventory(gpus)) or "no GPUs")
            )
        chosen.extend(gpu for gpu in hits if gpu not in chosen)
    return sorted(chosen, key=lambda gpu: gpu.index)


def _inventory(gpus):
    return [
        "%d %s" % (gpu.index, "(lost)" if gpu.lost else "%s %s" % (gpu.name, gpu.uuid))
        for gpu in gpus
    ]
