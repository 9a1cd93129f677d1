"""What this project last locked each GPU's clocks to, since boot.

NVML can set and reset locked clocks but has no call that reads them back, so the values are
recorded where they share the lifetime of the setting itself: under /run, which a reboot empties,
keyed by GPU UUID and tagged with the boot id. Locks made by other tools (nvidia-smi -lgc) are
invisible to NVML readers and therefore to this record.
"""

from __future__ import annotations

import json
import os
import tempfile

RUN_DIR_ENV = "NVIDIA_GPU_RUN_DIR"
DEFAULT_RUN_DIR = "/run/nvidia-gpu"
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


def _path():
    return os.path.join(os.environ.get(RUN_DIR_ENV, DEFAULT_RUN_DIR), "locked-clocks.json")


def _boot_id():
    try:
        with open(BOOT_ID_PATH) as handle:
            return handle.read().strip()
    except OSError:
        return "unknown"


def load():
    """{uuid: {"graphics": [min, max] | None, "memory": [min, max] | None}} for this boot."""
    try:
        with open(_path()) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    if data.get("boot_id") != _boot_id():
        return {}
    return data.get("gpus", {})


def current(uuid, domain):
    """The (min, max) lock of domain ('graphics' or 'memory') on a GPU, or None."""
    value = load().get(uuid, {}).get(domain)
    return tuple(value) if value else None


def record(uuid, domain, value):
    """Remember a lock (a (min, max) pair) or its removal (None); written atomically."""
    gpus = load()
    gpus.setdefault(uuid, {})[domain] = list(value) if value else None
    path = _path()
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".locked-clocks.")
    with os.fdopen(fd, "w") as handle:
        json.dump({"boot_id": _boot_id(), "gpus": gpus}, handle, indent=1, sort_keys=True)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
