"""How a GPU is named: by its index, UUID and model, in messages and in selectors.

Works on a device.Gpu and on the plain dicts of facts, module results and config files, so every
message names a GPU the same way, whichever of them it starts from.
"""

from __future__ import annotations

from .nvml import UNREADABLE, UNSUPPORTED

# What device.Gpu holds for an identity it could not read.
UNKNOWN = "unknown"
# Values that identify nothing: a serial a GeForce does not have, a read that failed.
NOT_AN_IDENTITY = (UNSUPPORTED, UNREADABLE, UNKNOWN, "", None)


def fields(gpu):
    """(index, uuid, name, lost) of a device.Gpu or of a dict with those keys."""
    if isinstance(gpu, dict):
        return gpu.get("index"), gpu.get("uuid"), gpu.get("name"), bool(gpu.get("lost"))
    return gpu.index, gpu.uuid, gpu.name, gpu.lost


def gpu_label(index, uuid=None, name=None):
    """'GPU 0', 'GPU 0 (GPU-...)' or 'GPU 0 (Tesla V100-SXM2-16GB, GPU-...)'."""
    known = [part for part in (name, uuid) if part not in NOT_AN_IDENTITY]
    return "GPU %d (%s)" % (index, ", ".join(known)) if known else "GPU %d" % index


def label_of(gpu, with_name=False):
    """gpu_label of a device.Gpu or a dict; a lost GPU has only its index to go by."""
    index, uuid, name, lost = fields(gpu)
    if lost:
        return gpu_label(index)
    return gpu_label(index, uuid, name if with_name else None)
