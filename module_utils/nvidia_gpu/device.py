"""One GPU as NVML sees it: its handle and the identity read once when it is opened."""

from __future__ import annotations

from . import models
from .identity import label_of
from .nvml import UNSUPPORTED, NvmlCallError, explain, failed_call, is_error, pynvml, text


def arch_at_least(arch, oldest):
    return models.arch_index(arch) >= models.arch_index(oldest) >= 0


class Gpu:
    """A GPU by index. A GPU that fell off the bus is still listed, with `lost` set."""

    def __init__(self, index, handle=None, error=None):
        self.index = index
        self.handle = handle
        self.lost = error is not None
        self.error = error
        self.uuid = "unknown"
        self.name = "unknown"
        self.pci_bus_id = "unknown"
        self.pci_device_id = "unknown"
        self.architecture = "unknown"
        self.compute_capability = "unknown"
        self.serial = "unknown"  # read by those that name cards by it (boot_apply), not by open
        # Identity values a tolerant open could not read: unreadable_entry dicts.
        self.unreadable = []

    @classmethod
    def open(cls, index, tolerant=False):
        """The GPU at index; lost when NVML says so (GPU_IS_LOST) at the handle or identity.

        Any other failure raises NvmlCallError naming the GPU and the call, unless tolerant:
        then an identity value NVML fails to read stays "unknown" and is listed in
        `unreadable` (facts read what they can; settings must know which GPU they change).
        """
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except pynvml.NVMLError as error:
            if is_error(error, "GPU_IS_LOST"):
                return cls(index, error=explain(error))
            raise failed_call("GPU %d" % index, pynvml.nvmlDeviceGetHandleByIndex, error) from error
        gpu = cls(index, handle)
        try:
            gpu._read_identity(tolerant)
        except NvmlCallError as error:
            if is_error(error, "GPU_IS_LOST"):
                return cls(index, error=explain(error))
            raise
        return gpu

    def call(self, function, *args):
        """function(handle, *args); an NVML error becomes NvmlCallError naming this GPU and the
        call (GPU_IS_LOST included: is_error(error, "GPU_IS_LOST") tells it apart)."""
        try:
            return function(self.handle, *args)
        except pynvml.NVMLError as error:
            raise failed_call(self.label, function, error) from error

    def query(self, function, *args):
        """Like call, but a value the GPU or driver does not support comes back as UNSUPPORTED."""
        try:
            return function(self.handle, *args)
        except pynvml.NVMLError as error:
            if is_error(error, "NOT_SUPPORTED") or is_error(error, "FUNCTION_NOT_FOUND"):
                return UNSUPPORTED
            raise failed_call(self.label, function, error) from error

    def _identity(self, fields, tolerant, function):
        """The result of function for identity fields; None when tolerant and it failed."""
        try:
            return self.call(function)
        except NvmlCallError as error:
            if not tolerant or is_error(error, "GPU_IS_LOST"):
                raise
            self.unreadable.extend(unreadable_entry(field, error) for field in fields)
            return None

    def _read_identity(self, tolerant=False):
        # Until the identity is read, messages can name this GPU by its index only.
        p = pynvml
        uuid = self._identity(("uuid",), tolerant, p.nvmlDeviceGetUUID)
        if uuid is not None:
            self.uuid = text(uuid)
        name = self._identity(("name",), tolerant, p.nvmlDeviceGetName)
        if name is not None:
            self.name = text(name)
        pci = self._identity(("pci_bus_id", "pci_device_id"), tolerant, p.nvmlDeviceGetPciInfo)
        if pci is not None:
            self.pci_bus_id = normalise_bus_id(text(pci.busId))
            self.pci_device_id = "%04x:%04x" % (pci.pciDeviceId & 0xFFFF, pci.pciDeviceId >> 16)
        capability = self._identity(
            ("compute_capability",), tolerant, p.nvmlDeviceGetCudaComputeCapability
        )
        if capability is not None:
            self.compute_capability = "%d.%d" % tuple(capability)
        try:
            arch = self.query(p.nvmlDeviceGetArchitecture)
        except NvmlCallError as error:
            if not tolerant or is_error(error, "GPU_IS_LOST"):
                raise
            arch = UNSUPPORTED  # the compute capability tells it below, if it was read
        # Older drivers cannot name the architecture; the full compute capability tells it
        # (7.0 is Volta, 7.5 Turing).
        self.architecture = (
            (models.ARCH_BY_NVML_ID.get(arch) if arch != UNSUPPORTED else None)
            or models.architecture_of_compute_capability(self.compute_capability)
            or "unknown"
        )

    @property
    def label(self):
        """How messages name a GPU: index, model and UUID (index only when lost)."""
        return label_of(self, with_name=True)

    @property
    def supports_locked_clocks(self):
        return arch_at_least(self.architecture, "volta")

    @property
    def supports_memory_locked_clocks(self):
        return arch_at_least(self.architecture, "ampere")


def unreadable_entry(field, error):
    """How facts list a value NVML failed to read: the field (its path in the GPU's facts), the
    NVML call and what its error means (NvmlCallError keeps the NVMLError as its cause)."""
    cause = error.__cause__ if error.__cause__ is not None else error
    return {"field": field, "call": error.call, "error": explain(cause)}


def normalise_bus_id(bus_id):
    """NVML spells bus ids 00000000:1A:00.0; sysfs and nvidia-smi use 0000:1a:00.0."""
    domain, _, rest = bus_id.partition(":")
    return ("%04x:%s" % (int(domain, 16), rest)).lower()


def open_all():
    """Every GPU NVML enumerates. One NVML cannot name (lost, or its handle or identity
    unreadable) is listed with `lost` and the reason in `error`: nothing may change a GPU it
    cannot name, and the GPUs it can name stay usable."""
    gpus = []
    for index in range(pynvml.nvmlDeviceGetCount()):
        try:
            gpus.append(Gpu.open(index))
        except NvmlCallError as error:
            cause = error.__cause__ if error.__cause__ is not None else error
            reason = "NVML cannot name it: %s failed: %s" % (error.call, explain(cause))
            gpus.append(Gpu(index, error=reason))
    return gpus
