"""Re-apply a config file's GPU settings at boot: wait for its GPUs, then settings.ensure.

At boot the driver may still be loading and GPUs may answer late, or never. This waits, with a
bound and a backoff, until NVML initialises and every GPU the file gives settings to answers (or
was replaced by another card in its slot; a slot the PCI tree shows empty is not waited for),
then calls settings.ensure - the code the nvidia_gpu_settings module runs - so a boot and a play
can never disagree about what a setting means. When the wait runs out the GPUs that answer still
get their settings; the others are returned as a Failure saying why and of which kind (the GPU
did not answer, its settings do not fit it, or NVML failed a call), for the command to report
(boot_cli.py prints the lines and chooses the exit status).

Standard library and the nvidia_gpu package only, Python 3.8+.
"""

from __future__ import annotations

import math
import time

from .boot_config import one_line
from .device import open_all
from .identity import label_of
from .nvml import (
    UNSUPPORTED,
    GpuError,
    Nvml,
    NvmlCallError,
    NvmlUnavailable,
    explain,
    pynvml,
    text,
)
from .settings import ensure
from .settings_apply import ApplyFailed

# Backoff between looks at the GPUs while waiting: first delay, growth, longest delay (seconds).
FIRST_DELAY_S = 0.25
LONGEST_DELAY_S = 5.0

NVML_ERRORS = (pynvml.NVMLError,) if pynvml is not None else ()

# Why a GPU of the file does not hold its settings.
MISSING = "missing"  # it did not answer within the wait
NOT_VALID = "not valid"  # its settings do not fit it (range, supported clocks)
NVML_FAILED = "nvml failed"  # the driver failed a call while reading or setting it


class Failure:
    """Why one GPU of the file does not hold its settings: a one-line reason and its kind."""

    def __init__(self, reason, kind):
        self.reason = reason
        self.kind = kind

    def __str__(self):
        return self.reason

    def __repr__(self):
        return "Failure(%r, %r)" % (self.reason, self.kind)


def _nvml_call(error):
    """(whether an NVML call failure caused error, the NVML function's name if known).

    Follows the explicit causes (`raise ... from error`, as NVML failures are re-raised on the
    way up); ApplyFailed is raised while handling the failed call, so its context counts too.
    """
    nvml_failed, call, seen = False, None, set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (NvmlCallError, ApplyFailed, *NVML_ERRORS)):
            nvml_failed = True
        if isinstance(error, NvmlCallError) and call is None:
            call = error.call
        cause = error.__cause__
        if cause is None and isinstance(error, ApplyFailed):
            cause = error.__context__
        error = cause
    return nvml_failed, call


def failure_of(error):
    """A Failure for an error settings.ensure raised (a GpuError or a raw NVMLError)."""
    nvml_failed, call = _nvml_call(error)
    if isinstance(error, NVML_ERRORS):
        reason = "NVML failed: %s" % explain(error)
    else:
        reason = one_line(error)
    if call and call not in reason:
        reason += " (NVML call %s)" % call
    return Failure(reason, NVML_FAILED if nvml_failed else NOT_VALID)


def _read_serials(gpus):
    """Each answering GPU's board serial, to name new cards by (unknown when NVML cannot say)."""
    for gpu in gpus:
        if gpu.lost:
            continue
        try:
            serial = gpu.query(pynvml.nvmlDeviceGetSerial)
        except NvmlCallError:
            continue
        if serial != UNSUPPORTED:
            gpu.serial = text(serial)


def scan():
    """(every GPU NVML enumerates now, or [], and why NVML cannot be used, or None)."""
    try:
        with Nvml():
            gpus = open_all()
            _read_serials(gpus)
            return gpus, None
    except NvmlUnavailable as error:
        return [], one_line(error)
    except NVML_ERRORS as error:  # e.g. the device count itself fails
        return [], "NVML failed: %s" % explain(error)


def missing_reason(config, uuid, gpus, nvml_error):
    """Why a GPU of the file does not answer, from what NVML shows now."""
    if nvml_error:
        return nvml_error
    recorded = config.recorded_gpu(uuid)
    at_index = [gpu for gpu in gpus if gpu.index == recorded.index]
    if at_index and at_index[0].lost:
        return "NVML index %d does not answer: %s" % (recorded.index, at_index[0].error)
    return "not enumerated by the driver (%d GPU(s) present)" % len(gpus)


def empty_slot_line(gpu, path):
    """The journal line for a GPU of the file whose slot the PCI tree shows empty."""
    return (
        "%s of %s: slot %s is empty (no device at this address in the PCI tree): the card was "
        "removed; not waited for (run the gpu_tuning role to record the GPUs present)"
        % (label_of(gpu, with_name=True), path, gpu.pci_bus_id)
    )


def label(config, uuid, gpus=()):
    """A GPU as messages name it: a GPU of the file by its index when the file was written and
    its UUID; a new card by its index now."""
    if uuid in config.targets:
        return label_of(config.recorded_gpu(uuid))
    return next((label_of(gpu) for gpu in gpus if gpu.uuid == uuid), uuid)


class Scan:
    """What the wait ended with: the GPUs NVML enumerates (device.Gpu), why NVML cannot be used
    (or None), their layout against the file (boot_hardware.Layout), and the UUIDs of the file's
    GPUs that did not answer although the PCI tree does not show their slot empty."""

    def __init__(self, config, slots):
        self.config = config
        self.gpus, self.nvml_error = scan()
        self.layout = config.layout(self.gpus, slots)
        awaited = {gpu.uuid for gpu in self.layout.awaited}
        self.missing = [uuid for uuid in config.targets if uuid in awaited]

    def missing_reasons(self):
        """{uuid: why it does not answer} of the missing GPUs, in the file's order."""
        return {
            uuid: missing_reason(self.config, uuid, self.gpus, self.nvml_error)
            for uuid in self.missing
        }


def wait_for_gpus(config, wait_s, say, slots=None, clock=time.monotonic, sleep=time.sleep):
    """Look at the GPUs until every GPU of the file answers (or was replaced in its slot, or its
    slot is empty) or wait_s has passed. slots: boot_hardware.gpu_slots of the PCI tree.

    say(line) tells what is awaited, once, and when the wait ended. Returns the last Scan.
    """
    if not (isinstance(wait_s, (int, float)) and math.isfinite(wait_s) and wait_s >= 0):
        raise ValueError("wait_s must be a finite number of seconds, not %r" % (wait_s,))
    start = clock()
    deadline = start + wait_s
    delay = FIRST_DELAY_S
    announced = False
    while True:
        found = Scan(config, slots)
        now = clock()
        if not found.missing or now >= deadline:
            break
        if not announced:
            reasons = [
                "%s: %s" % (label(config, uuid), reason)
                for uuid, reason in found.missing_reasons().items()
            ]
            say("waiting up to %g s for %s" % (wait_s, "; ".join(reasons)))
            announced = True
        sleep(min(delay, deadline - now))
        delay = min(delay * 2, LONGEST_DELAY_S)
    if announced and not found.missing:
        say("every GPU of the file answers after %.1f s" % (clock() - start))
    return found


def apply_settings(config, layout, settings, warn):
    """Bring every answering GPU the file covers to its settings (settings: config.settings_now
    of the GPUs' layout); returns (results, {uuid: Failure}, the UUIDs given settings).

    When the GPUs cannot all be set at once, each is tried on its own (warn(line) says so), so
    one failing GPU does not keep the others from their settings.
    """
    request, uuids = config.request_for(layout, settings)
    if not uuids:
        return [], {}, uuids
    try:
        return ensure(request)[1], {}, uuids
    except (GpuError, *NVML_ERRORS) as error:
        failure = failure_of(error)
        if len(uuids) == 1:
            return [], {uuids[0]: failure}, uuids
        warn("applying to all GPUs at once failed (%s); trying GPU by GPU" % failure)
    results, failures = [], {}
    for uuid in uuids:
        try:
            results.extend(ensure(config.narrowed({uuid: settings[uuid]}))[1])
        except (GpuError, *NVML_ERRORS) as error:
            failures[uuid] = failure_of(error)
    return results, failures, uuids


def missing_failures(found, wait_s):
    """{uuid: Failure} of the file's GPUs that did not answer within wait_s (a Scan's missing)."""
    return {
        uuid: Failure("did not answer within %g s: %s" % (wait_s, reason), MISSING)
        for uuid, reason in found.missing_reasons().items()
    }


def plan_file(config, slots=None):
    """Check the file against the GPUs here in check mode, changing nothing.

    Returns (the Scan, {uuid: why it does not answer}, the UUIDs the file covers now (as
    apply_settings gives them), the check-mode results of those GPUs or None when none answers,
    the Failure saying why the settings cannot be planned for them (they do not fit, or NVML
    failed a call) or None).
    """
    found = Scan(config, slots)
    request, uuids = config.request_for(found.layout, config.settings_now(found.layout))
    missing = found.missing_reasons()
    if not uuids:
        return found, missing, uuids, None, None
    try:
        return found, missing, uuids, ensure(request, check_mode=True)[1], None
    except (GpuError, *NVML_ERRORS) as error:
        return found, missing, uuids, None, failure_of(error)
