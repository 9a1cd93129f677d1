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

    @classmethod
    def open(cls, index):
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except pynvml.NVMLError as error:
            if is_error(error, "GPU_IS_LOST"):
                return cls(index, error=explain(error))
            raise failed_call("GPU %d" % index, pynvml.nvmlDeviceGetHandleByIndex, error) from error
        gpu = cls(index, handle)
        try:
            gpu._read_identity()
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

    def _read_identity(self):
        # Until the identity is read, messages can name this GPU by its index only.
        self.uuid = text(self.call(pynvml.nvmlDeviceGetUUID))
        self.name = text(self.call(pynvml.nvmlDeviceGetName))
        pci = self.call(pynvml.nvmlDeviceGetPciInfo)
        self.pci_bus_id = normalise_bus_id(text(pci.busId))
        self.pci_device_id = "%04x:%04x" % (pci.pciDeviceId & 0xFFFF, pci.pciDeviceId >> 16)
        major, minor = self.call(pynvml.nvmlDeviceGetCudaComputeCapability)
        self.compute_capability = "%d.%d" % (major, minor)
        arch = self.query(pynvml.nvmlDeviceGetArchitecture)
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


def normalise_bus_id(bus_id):
    """NVML spells bus ids 00000000:1A:00.0; sysfs and nvidia-smi use 0000:1a:00.0."""
    domain, _, rest = bus_id.partition(":")
    return ("%04x:%s" % (int(domain, 16), rest)).lower()


def open_all():
    """Every GPU NVML enumerates, lost ones included."""
    return [Gpu.open(index) for index in range(pynvml.nvmlDeviceGetCount())]
