"""Apply a settings plan: change only what differs, verify by reading back, and undo this run's
changes if any step fails, so a GPU is never left half-configured."""

from __future__ import annotations

from . import locked_clocks
from .identity import gpu_label, label_of
from .nvml import COMPUTE_MODE_NUMBER_BY_NAME, GpuError, explain, pynvml
from .settings_plan import ORDER, UNLOCKED, current_state, display, shown_name


class ApplyFailed(GpuError):
    """Applying failed part-way; carries which GPU failed and what was rolled back."""

    def __init__(self, message, failed_gpu, rolled_back, not_restored):
        super().__init__(message)
        self.failed_gpu = failed_gpu
        self.rolled_back = rolled_back
        self.not_restored = not_restored


# Locked clocks per setting: the domain the record under /run keeps them as, and the NVML
# functions that set and remove the lock.
_LOCKS = {
    "locked_graphics_clocks": (
        "graphics",
        "nvmlDeviceSetGpuLockedClocks",
        "nvmlDeviceResetGpuLockedClocks",
    ),
    "locked_memory_clocks": (
        "memory",
        "nvmlDeviceSetMemoryLockedClocks",
        "nvmlDeviceResetMemoryLockedClocks",
    ),
}


def _set_lock(gpu, key, value):
    domain, set_name, reset_name = _LOCKS[key]
    if value == UNLOCKED:
        getattr(pynvml, reset_name)(gpu.handle)
    else:
        getattr(pynvml, set_name)(gpu.handle, value[0], value[1])
    locked_clocks.record(gpu.uuid, domain, None if value == UNLOCKED else value)


def _set(gpu, key, value):
    p = pynvml
    handle = gpu.handle
    if key == "persistence_mode":
        p.nvmlDeviceSetPersistenceMode(handle, 1 if value else 0)
    elif key == "power_limit_mw":
        p.nvmlDeviceSetPowerManagementLimit(handle, value)
    elif key == "applications_clocks":
        p.nvmlDeviceSetApplicationsClocks(handle, value[0], value[1])
    elif key in _LOCKS:
        _set_lock(gpu, key, value)
    elif key == "compute_mode":
        p.nvmlDeviceSetComputeMode(handle, COMPUTE_MODE_NUMBER_BY_NAME[value])
    else:
        raise ValueError(key)


def changes(before, after):
    """The settings whose target differs from the present value, in application order."""
    return [key for key in ORDER if key in after and before.get(key) != after[key]]


def _gpu_id(gpu):
    return {"index": gpu.index, "uuid": gpu.uuid}


def _rollback(done):
    rolled_back, not_restored = [], []
    for gpu, key, old in reversed(done):
        entry = dict(_gpu_id(gpu), setting=shown_name(key), value=display(key, old))
        try:
            _set(gpu, key, old)
            rolled_back.append(entry)
        except pynvml.NVMLError as error:
            entry["error"] = explain(error)
            not_restored.append(entry)
    return rolled_back, not_restored


def _fail(gpu, key, reason, done):
    rolled_back, not_restored = _rollback(done)
    message = "Applying %s to %s failed: %s." % (shown_name(key), gpu.label, reason)
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


def apply(planned):
    """Change what differs on every GPU of the plan, then check each value by reading it back."""
    done = []
    for gpu, before, after in planned:
        for key in changes(before, after):
            try:
                _set(gpu, key, after[key])
            except pynvml.NVMLError as error:
                _fail(gpu, key, explain(error), done)
            done.append((gpu, key, before[key]))
    for gpu, _before, after in planned:
        try:
            readback = current_state(gpu, after)
        except GpuError as error:
            _fail(gpu, "the read-back check", str(error), done)
        for key in changes(readback, after):
            _fail(
                gpu,
                key,
                "the GPU reports %s after it was set to %s"
                % (display(key, readback[key]), display(key, after[key])),
                done,
            )


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
