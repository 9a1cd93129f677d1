"""Opening NVML, calling it, and turning its errors into messages that name the cause."""

from __future__ import annotations

import contextlib
import os

try:
    import pynvml
except ImportError:  # the modules report this with a clear message, not a traceback
    pynvml = None

# How a value the GPU does not support is reported in facts, instead of failing.
UNSUPPORTED = "unsupported"
# How a value NVML failed to read (an error other than "not supported") is reported in facts;
# the GPU's `unreadable` list then says which call failed and why.
UNREADABLE = "unreadable"

# NVML's compute-mode numbering (nvmlComputeMode_t) and the names facts and settings use for it.
COMPUTE_MODE_NAME_BY_NUMBER = {
    0: "default",
    1: "exclusive_thread",
    2: "prohibited",
    3: "exclusive_process",
}
COMPUTE_MODE_NUMBER_BY_NAME = {name: number for number, name in COMPUTE_MODE_NAME_BY_NUMBER.items()}


def compute_mode_name(number):
    """The name of an NVML compute mode; a number NVML may add later (or UNSUPPORTED) as is."""
    return COMPUTE_MODE_NAME_BY_NUMBER.get(number, number)


PYNVML_MISSING = (
    "The Python package nvidia-ml-py (module pynvml) is not installed for the interpreter running "
    "this code; install it (the nvml_runtime role does) or set ansible_python_interpreter to a "
    "Python that has it."
)


class GpuError(Exception):
    """A failure that a user can act on; the message names the GPU and the likely cause."""


class NvmlUnavailable(GpuError):
    """NVML cannot be used at all on this machine (no library, no driver, no pynvml)."""


class NvmlCallError(GpuError):
    """One NVML call failed. The message names the GPU and the call; `call` is the function's
    name and `value` the NVML error code (as on pynvml's own errors, so is_error works on both)."""

    def __init__(self, message, call, value):
        super().__init__(message)
        self.call = call
        self.value = value


def call_name(function):
    """The NVML function's name as its documentation spells it (pynvml keeps the C names)."""
    return getattr(function, "__name__", str(function))


def failed_call(what, function, error):
    """NvmlCallError for an NVMLError that function raised; what names the GPU (its label)."""
    name = call_name(function)
    return NvmlCallError(
        "%s: %s failed: %s" % (what, name, explain(error)), name, error_code(error)
    )


def _reasons():
    codes = {}
    if pynvml is None:
        return codes
    codes[pynvml.NVML_ERROR_LIBRARY_NOT_FOUND] = (
        "libnvidia-ml.so.1 was not found: the NVIDIA driver's user-space library is not installed"
    )
    codes[pynvml.NVML_ERROR_DRIVER_NOT_LOADED] = (
        "the NVIDIA kernel driver is not loaded (is the nvidia module built for the running kernel "
        "and loaded? see `lsmod | grep nvidia` and the kernel log)"
    )
    codes[pynvml.NVML_ERROR_NO_PERMISSION] = (
        "permission denied: changing GPU settings needs root (use become: true)"
    )
    codes[pynvml.NVML_ERROR_UNKNOWN] = (
        "NVML reported an unknown error: the driver is in a bad state; look for Xid lines in the "
        "kernel log (journalctl -k | grep -i xid); a reboot usually clears it"
    )
    codes[pynvml.NVML_ERROR_GPU_IS_LOST] = (
        "the GPU has fallen off the bus (Xid 79); usual causes are power (12 V rail sagging under "
        "load transients, a weak or loose PSU connection) or seating; it needs a reboot or a reseat"
    )
    codes[pynvml.NVML_ERROR_NOT_SUPPORTED] = "not supported by this GPU or driver"
    codes[pynvml.NVML_ERROR_FUNCTION_NOT_FOUND] = (
        "the installed driver's NVML lacks this function (driver older than nvidia-ml-py expects)"
    )
    codes[pynvml.NVML_ERROR_INSUFFICIENT_POWER] = (
        "insufficient power: a GPU power cable is missing or the supply cannot deliver"
    )
    codes[pynvml.NVML_ERROR_RESET_REQUIRED] = "the GPU needs a reset (reboot) first"
    codes[pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH] = (
        "the NVIDIA library and kernel module versions differ: reboot after a driver upgrade"
    )
    codes[pynvml.NVML_ERROR_TIMEOUT] = "the GPU did not answer in time"
    return codes


_REASONS = _reasons()


def error_code(error):
    return getattr(error, "value", None)


def is_error(error, name):
    """True when error is the NVML error NVML_ERROR_<name>."""
    return pynvml is not None and error_code(error) == getattr(pynvml, "NVML_ERROR_" + name)


# NO_PERMISSION while running as root: the cause is not the user, it is the GPU or the driver.
_REFUSED_AS_ROOT = (
    "the driver answered 'no permission' although this runs as root: the GPU does not allow "
    "this here (a virtual GPU or a passthrough guest, a GPU in MIG or confidential-computing "
    "mode, or a setting the administrator restricted with nvidia-smi, e.g. -acp RESTRICTED)"
)


def explain(error):
    """A sentence for an NVMLError that says what it means for the user."""
    code = error_code(error)
    if is_error(error, "NO_PERMISSION") and os.geteuid() == 0:
        return _REFUSED_AS_ROOT
    reason = _REASONS.get(code)
    if reason:
        return reason
    return "%s (NVML error %s)" % (str(error).rstrip(".") or "unknown failure", code)


def query(function, *args):
    """Call a pynvml getter; a value the GPU does not support comes back as UNSUPPORTED."""
    try:
        return function(*args)
    except pynvml.NVMLError as error:
        if is_error(error, "NOT_SUPPORTED") or is_error(error, "FUNCTION_NOT_FOUND"):
            return UNSUPPORTED
        raise


def text(value):
    """pynvml returns bytes from older releases and str from newer ones."""
    return value.decode() if isinstance(value, bytes) else value


class Nvml:
    """An NVML session: `with Nvml() as nvml:` initialises NVML and always shuts it down."""

    def __enter__(self):
        if pynvml is None:
            raise NvmlUnavailable(PYNVML_MISSING)
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as error:
            raise NvmlUnavailable("NVML could not be initialised: " + explain(error)) from error
        return self

    def __exit__(self, *exc_info):
        # Nothing useful to do if shutdown fails; the process ends anyway.
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()
        return False

    @staticmethod
    def system():
        return {
            name: convert(getattr(pynvml, function)()) for name, function, convert in SYSTEM_VALUES
        }


def _cuda_version(encoded):
    """NVML encodes CUDA 12.8 as 12080."""
    return "%d.%d" % (encoded // 1000, (encoded % 1000) // 10)


# The system-wide values: name, pynvml function, conversion of its result (facts read each one
# on its own, so one that fails leaves the others).
SYSTEM_VALUES = (
    ("driver_version", "nvmlSystemGetDriverVersion", text),
    ("nvml_version", "nvmlSystemGetNVMLVersion", text),
    ("cuda_driver_version", "nvmlSystemGetCudaDriverVersion", _cuda_version),
)
