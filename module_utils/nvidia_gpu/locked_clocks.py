"""What this project last locked each GPU's clocks to, since boot.

NVML can set and reset locked clocks but has no call that reads them back, so the values are
recorded where they share the lifetime of the setting itself: under /run, which a reboot empties,
keyed by GPU UUID and tagged with the boot id. Locks made by other tools (nvidia-smi -lgc) are
invisible to NVML readers and therefore to this record.

A record that cannot be read or does not have the record's shape is never taken for "nothing
locked": every lock it should hold is UNKNOWN, so a plan sets it again (and says why). Writing
replaces such a record with one marked incomplete (`"complete": false`): a GPU it does not list
is then UNKNOWN too, until a run sets that GPU's locks. A record that cannot be written is an
error (LockRecordError) for the caller to roll back the lock it made.
"""

from __future__ import annotations

import json
import os

from . import atomic_file
from .nvml import GpuError

RUN_DIR_ENV = "NVIDIA_GPU_RUN_DIR"
DEFAULT_RUN_DIR = "/run/nvidia-gpu"
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
DOMAINS = ("graphics", "memory")
RECORD_KEYS = ("boot_id", "complete", "gpus")
# A lock whose state the record cannot tell.
UNKNOWN = "unknown"


class LockRecordError(GpuError):
    """The record cannot be read, has the wrong shape or cannot be written; names the file."""


def path():
    return os.path.join(os.environ.get(RUN_DIR_ENV, DEFAULT_RUN_DIR), "locked-clocks.json")


def _boot_id():
    try:
        with open(BOOT_ID_PATH) as handle:
            return handle.read().strip()
    except OSError:
        return "unknown"


def _os_reason(error):
    reason = error.strerror or str(error)
    return "%s (%s)" % (reason, error.filename) if error.filename else reason


def _is_lock(value):
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(mhz, int) and not isinstance(mhz, bool) for mhz in value)
        and 0 < value[0] <= value[1]
    )


def _shape_problem(data):
    """What makes data something other than a lock record, or None."""
    if not isinstance(data, dict):
        return "the top level is %s, not an object" % type(data).__name__
    unknown = sorted(set(data) - set(RECORD_KEYS))
    if unknown:
        return "unknown key(s) %s" % ", ".join(unknown)
    if not isinstance(data.get("boot_id"), str):
        return "boot_id is %r, not a string" % (data.get("boot_id"),)
    if not isinstance(data.get("complete", True), bool):
        return "complete is %r, not true or false" % (data["complete"],)
    gpus = data.get("gpus")
    if not isinstance(gpus, dict):
        return "gpus is %r, not an object of GPU UUIDs" % (gpus,)
    for uuid, locks in gpus.items():
        if not isinstance(locks, dict) or not set(locks) <= set(DOMAINS):
            return "gpus.%s is %r, not an object with graphics and/or memory" % (uuid, locks)
        for domain, value in locks.items():
            if value is not None and not _is_lock(value):
                return "gpus.%s.%s is %r, not null or [min_mhz, max_mhz]" % (uuid, domain, value)
    return None


def load():
    """(gpus, complete) of this boot's record: gpus is {uuid: {domain: [min, max] | None}}; when
    complete is False, a GPU or domain missing from it is unknown. Raises LockRecordError."""
    where = path()
    try:
        with open(where, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return {}, True  # nothing locked since boot
    except OSError as error:
        raise LockRecordError(
            "the lock record %s cannot be read: %s" % (where, _os_reason(error))
        ) from error
    except ValueError as error:  # not UTF-8
        raise LockRecordError("the lock record %s is not text: %s" % (where, error)) from error
    try:
        data = json.loads(text)
    except ValueError as error:
        raise LockRecordError("the lock record %s is not JSON: %s" % (where, error)) from error
    problem = _shape_problem(data)
    if problem:
        raise LockRecordError("the lock record %s has the wrong shape: %s" % (where, problem))
    if data["boot_id"] != _boot_id():
        return {}, True  # written before the last reboot, which removed every lock
    return data["gpus"], data.get("complete", True)


def problem():
    """Why the record cannot be used (a sentence naming the file), or None."""
    try:
        load()
    except LockRecordError as error:
        return str(error)
    return None


def current(uuid, domain):
    """The (min, max) lock of domain ('graphics' or 'memory') on a GPU, None when unlocked, or
    UNKNOWN when the record cannot tell (unreadable, wrong shape, or incomplete)."""
    try:
        gpus, complete = load()
    except LockRecordError:
        return UNKNOWN
    locks = gpus.get(uuid, {})
    if domain not in locks:
        return None if complete else UNKNOWN
    value = locks[domain]
    return tuple(value) if value else None


def record(uuid, domain, value):
    """Remember a lock (a (min, max) pair) or its removal (None); written atomically.

    An unusable record is replaced by one marked incomplete (see the module's docstring).
    Raises LockRecordError when the record cannot be written; the file is then unchanged.
    """
    try:
        gpus, complete = load()
    except LockRecordError:
        gpus, complete = {}, False
    gpus.setdefault(uuid, {})[domain] = list(value) if value else None
    _write({"boot_id": _boot_id(), "complete": complete, "gpus": gpus})


def _write(data):
    where = path()
    try:
        atomic_file.write_text(where, json.dumps(data, indent=1, sort_keys=True))
    except OSError as error:
        raise LockRecordError(
            "the lock record %s cannot be written: %s" % (where, _os_reason(error))
        ) from error
