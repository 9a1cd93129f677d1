"""Apply a settings plan: change only what differs, verify by reading back, and undo this run's
changes if any step fails, so a GPU is never left half-configured."""

from __future__ import annotations

from . import locked_clocks
from .identity import gpu_label, label_of
from .nvml import COMPUTE_MODE_NUMBER_BY_NAME, GpuError, pynvml
from .settings_plan import (
    LOCK_DOMAINS,
    ORDER,
    UNKNOWN_LOCK,
    UNLOCKED,
    current_state,
    display,
    shown_name,
    without_label,
)


class ApplyFailed(GpuError):
    """Applying failed part-way; carries which GPU failed and what was rolled back."""

    def __init__(self, message, failed_gpu, rolled_back, not_restored):
        super().__init__(message)
        self.failed_gpu = failed_gpu
        self.rolled_back = rolled_back
        self.not_restored = not_restored


# The NVML functions that set and remove a lock (NVML cannot read one back: see locked_clocks).
_LOCK_CALLS = {
    "locked_graphics_clocks": ("nvmlDeviceSetGpuLockedClocks", "nvmlDeviceResetGpuLockedClocks"),
    "locked_memory_clocks": (
        "nvmlDeviceSetMemoryLockedClocks",
        "nvmlDeviceResetMemoryLockedClocks",
    ),
}


def _set(gpu, key, value):
    """Set one setting through NVML; an NVML failure is an NvmlCallError naming GPU and call."""
    p = pynvml
    if key == "persistence_mode":
        gpu.call(p.nvmlDeviceSetPersistenceMode, 1 if value else 0)
    elif key == "power_limit_mw":
        gpu.call(p.nvmlDeviceSetPowerManagementLimit, value)
    elif key == "applications_clocks":
        gpu.call(p.nvmlDeviceSetApplicationsClocks, value[0], value[1])
    elif key in _LOCK_CALLS:
        set_name, reset_name = _LOCK_CALLS[key]
        if value == UNLOCKED:
            gpu.call(getattr(p, reset_name))
        else:
            gpu.call(getattr(p, set_name), value[0], value[1])
    elif key == "compute_mode":
        gpu.call(p.nvmlDeviceSetComputeMode, COMPUTE_MODE_NUMBER_BY_NAME[value])
    else:
        raise ValueError(key)


def _record(gpu, key, value):
    """Write a lock just set (or removed) to the record under /run; LockRecordError if not."""
    locked_clocks.record(gpu.uuid, LOCK_DOMAINS[key], None if value == UNLOCKED else value)


def _recorded(gpu, key):
    value = locked_clocks.current(gpu.uuid, LOCK_DOMAINS[key])
    return UNLOCKED if value is None else value


def changes(before, after):
    """The settings whose target differs from the present value, in application order."""
    return [key for key in ORDER if key in after and before.get(key) != after[key]]


def _gpu_id(gpu):
    return {"index": gpu.index, "uuid": gpu.uuid}


def _restore(gpu, key, old):
    """Put one setting back; raises GpuError saying what could not be restored."""
    if key in LOCK_DOMAINS and old == UNKNOWN_LOCK:
        # What the lock was before cannot be known; leave the GPU unlocked, and recorded so.
        _set(gpu, key, UNLOCKED)
        why = (
            "its lock before this run is unknown (the lock record could not tell it), so the "
            "lock was removed instead"
        )
        try:
            _record(gpu, key, UNLOCKED)
        except locked_clocks.LockRecordError as error:
            why += "; %s" % error
        raise GpuError(why)
    _set(gpu, key, old)
    if key in LOCK_DOMAINS:
        try:
            _record(gpu, key, old)
        except locked_clocks.LockRecordError:
            # Fine when the record still holds the old lock: the failed write changed nothing.
            if _recorded(gpu, key) != old:
                raise


def _rollback(done):
    rolled_back, not_restored = [], []
    for gpu, key, old in reversed(done):
        entry = dict(_gpu_id(gpu), setting=shown_name(key), value=display(key, old))
        try:
            _restore(gpu, key, old)
            rolled_back.append(entry)
        except GpuError as error:
            entry["error"] = without_label(gpu, error)
            not_restored.append(entry)
    return rolled_back, not_restored


def _fail(gpu, key, reason, done):
    rolled_back, not_restored = _rollback(done)
    message = "Applying %s to %s failed: %s." % (shown_name(key), gpu.label, reason.rstrip("."))
    if rolled_back:
        message += " Rolled back this run's changes: %s." % "; ".join(
            "%s %s" % (gpu_label(e["index"]), e["setting"]) for e in rolled_back
        )
    if not_restored:
        message += " NOT restored: %s." % "; ".join(
            "%s %s: %s" % (gpu_label(e["index"], e["uuid"]), e["setting"], e["error"])
            for e in not_restored
        )
    raise ApplyFailed(message, _gpu_id(gpu), rolled_back, not_restored)


def _read_back_problem(gpu, key, readback, after):
    if key in LOCK_DOMAINS and readback[key] == UNKNOWN_LOCK:
        return "its lock cannot be read back: %s" % (
            locked_clocks.problem() or "the lock record does not list it"
        )
    return "the GPU reports %s after it was set to %s" % (
        display(key, readback[key]),
        display(key, after[key]),
    )


def apply(planned):
    """Change what differs on every GPU of the plan, then check each value by reading it back.

    A lock is recorded under /run right after it is made; when the record cannot be written, the
    lock is undone with the rest, so no lock stays that a later run cannot see.
    """
    done = []
    for gpu, before, after in planned:
        for key in changes(before, after):
            try:
                _set(gpu, key, after[key])
            except GpuError as error:
                _fail(gpu, key, without_label(gpu, error), done)
            done.append((gpu, key, before[key]))
            if key in LOCK_DOMAINS:
                try:
                    _record(gpu, key, after[key])
                except GpuError as error:
                    _fail(gpu, key, str(error), done)
    for gpu, _before, after in planned:
        try:
            readback = current_state(gpu, after)
        except GpuError as error:
            _fail(gpu, "the read-back check", without_label(gpu, error), done)
        for key in changes(readback, after):
            _fail(gpu, key, _read_back_problem(gpu, key, readback, after), done)


def report(planned):
    """Per-GPU results and an Ansible diff, in the names and units people read."""
    results, diff_before, diff_after = [], {}, {}
    for gpu, before, after in planned:
        changed = [shown_name(key) for key in changes(before, after)]
        shown_before = {shown_name(key): display(key, before[key]) for key in after}
        shown_after = {shown_name(key): display(key, after[key]) for key in after}
        results.append(
            dict(
                _gpu_id(gpu),
                name=gpu.name,
                changed=changed,
                before=shown_before,
                after=shown_after,
            )
        )
        if changed:
            label = label_of(gpu)
            diff_before[label] = {key: shown_before[key] for key in changed}
            diff_after[label] = {key: shown_after[key] for key in changed}
    return results, {"before": diff_before, "after": diff_after}
