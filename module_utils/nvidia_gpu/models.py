"""What this project knows about NVIDIA GPUs: models by PCI device id, and their architectures.

Pure data and lookups, standard library only: GPU discovery uses it before any driver (or
pynvml) exists on the machine, and the driver policy takes every limit it applies from here.
"""

from __future__ import annotations

NVIDIA_VENDOR_ID = "10de"

# Architectures, oldest first: the one table of them. Their order (ARCH_ORDER) is also what
# "Volta and newer" means on the NVML side (device.py).
#   nvml_id         what nvmlDeviceGetArchitecture returns for it (NVML_DEVICE_ARCH_*)
#   compute_capabilities  of its discrete GPUs, the ones found on PCI ("5.x": any minor)
#   tegra_compute_capabilities  of its Jetson SoCs, which NVML may report but PCI never shows
#   chip_prefix     how pci.ids names the chips (GV100GL, GA102, AD104, ...): the fallback for
#                   devices missing from MODELS
#   max_branch      last driver branch that supports the architecture (None: still supported)
#   min_branch      first production branch that supports it (None: older than any offered)
#   kernel_modules  module flavours that can drive it; the open modules need the GSP that
#                   Turing introduced, and Blackwell is supported by the open modules only
#   cuda_min        oldest CUDA toolkit that can build for it
#   cuda_max_major  last CUDA major release that supports it (None: the newest does)
ARCHITECTURES = {
    "kepler": {
        "nvml_id": 2,
        "compute_capabilities": ("3.x",),
        "chip_prefix": "GK",
        "max_branch": 470,
        "min_branch": None,
        "kernel_modules": ("proprietary",),
        "cuda_min": "5.0",
        "cuda_max_major": 11,
        "why_max": "R470 is the last driver branch for Kepler",
        "why_cuda": "CUDA 12 dropped Kepler",
    },
    "maxwell": {
        "nvml_id": 3,
        "compute_capabilities": ("5.x",),
        "chip_prefix": "GM",
        "max_branch": 580,
        "min_branch": None,
        "kernel_modules": ("proprietary",),
        "cuda_min": "6.5",
        "cuda_max_major": 12,
        "why_max": "R580 is the last driver branch for Maxwell, Pascal and Volta",
        "why_cuda": "CUDA 13 dropped compute capability below 7.5",
    },
    "pascal": {
        "nvml_id": 4,
        "compute_capabilities": ("6.x",),
        "chip_prefix": "GP",
        "max_branch": 580,
        "min_branch": None,
        "kernel_modules": ("proprietary",),
        "cuda_min": "8.0",
        "cuda_max_major": 12,
        "why_max": "R580 is the last driver branch for Maxwell, Pascal and Volta",
        "why_cuda": "CUDA 13 dropped compute capability below 7.5",
    },
    "volta": {
        "nvml_id": 5,
        "compute_capabilities": ("7.0",),
        "tegra_compute_capabilities": ("7.2",),
        "chip_prefix": "GV",
        "max_branch": 580,
        "min_branch": None,
        "kernel_modules": ("proprietary",),
        "cuda_min": "9.0",
        "cuda_max_major": 12,
        "why_max": "R580 is the last driver branch for Maxwell, Pascal and Volta",
        "why_cuda": "CUDA 13 dropped compute capability below 7.5",
    },
    "turing": {
        "nvml_id": 6,
        "compute_capabilities": ("7.5",),
        "chip_prefix": "TU",
        "max_branch": None,
        "min_branch": 410,
        "kernel_modules": ("open", "proprietary"),
        "cuda_min": "10.0",
        "cuda_max_major": None,
    },
    "ampere": {
        "nvml_id": 7,
        "compute_capabilities": ("8.0", "8.6"),
        "tegra_compute_capabilities": ("8.7",),
        "chip_prefix": "GA",
        "max_branch": None,
        "min_branch": 450,
        "kernel_modules": ("open", "proprietary"),
        "cuda_min": "11.0",
        "cuda_max_major": None,
    },
    "ada": {
        "nvml_id": 8,
        "compute_capabilities": ("8.9",),
        "chip_prefix": "AD",
        "max_branch": None,
        "min_branch": 525,
        "kernel_modules": ("open", "proprietary"),
        "cuda_min": "11.8",
        "cuda_max_major": None,
    },
    "hopper": {
        "nvml_id": 9,
        "compute_capabilities": ("9.0",),
        "chip_prefix": "GH",
        "max_branch": None,
        "min_branch": 525,
        "kernel_modules": ("open", "proprietary"),
        "cuda_min": "11.8",
        "cuda_max_major": None,
    },
    "blackwell": {
        "nvml_id": 10,
        "compute_capabilities": ("10.x", "12.x"),
        "chip_prefix": "GB",
        "max_branch": None,
        "min_branch": 570,
        "kernel_modules": ("open",),
        "cuda_min": "12.8",
        "cuda_max_major": None,
    },
}
ARCH_ORDER = list(ARCHITECTURES)
# Lookups derived from the table. NVML's architecture number -> name:
ARCH_BY_NVML_ID = {arch["nvml_id"]: name for name, arch in ARCHITECTURES.items()}
# Compute capability ("7.5", or "5.x" for a whole major) -> name, Jetson SoCs included:
ARCH_BY_COMPUTE_CAPABILITY = {
    capability: name
    for name, arch in ARCHITECTURES.items()
    for capability in arch["compute_capabilities"] + arch.get("tegra_compute_capabilities", ())
}
# A discrete chip's compute capability where the architecture alone tells it (the fallback from
# pci.ids, which names the chip but not its compute capability):
CC_BY_ARCH = {
    name: arch["compute_capabilities"][0]
    for name, arch in ARCHITECTURES.items()
    if len(arch["compute_capabilities"]) == 1 and not arch["compute_capabilities"][0].endswith("x")
}

# Why a flavour cannot drive an architecture, for refusal messages.
NO_OPEN_MODULES = "the open kernel modules need the GSP that Turing introduced, which {arch} lacks"
NO_PROPRIETARY_MODULES = "{arch} is supported by the open kernel modules only"

# GPUs this project knows by PCI device id (vendor 10de). Names are spelled as NVML reports them,
# so discovery before the driver and NVML facts after it agree. min_branch, where given, is later
# than the architecture's (a chip that came after the first of its generation).
MODELS = {
    # Volta
    "1db1": {
        "name": "Tesla V100-SXM2-16GB",
        "architecture": "volta",
        "compute_capability": "7.0",
        "form_factor": "sxm2",
        "memory_gib": 16,
    },
    "1db5": {
        "name": "Tesla V100-SXM2-32GB",
        "architecture": "volta",
        "compute_capability": "7.0",
        "form_factor": "sxm2",
        "memory_gib": 32,
    },
    "1db4": {
        "name": "Tesla V100-PCIE-16GB",
        "architecture": "volta",
        "compute_capability": "7.0",
        "form_factor": "pcie",
        "memory_gib": 16,
    },
    "1db6": {
        "name": "Tesla V100-PCIE-32GB",
        "architecture": "volta",
        "compute_capability": "7.0",
        "form_factor": "pcie",
        "memory_gib": 32,
    },
    # Pascal (the seed machine owner's desktop)
    "1c03": {
        "name": "NVIDIA GeForce GTX 1060 6GB",
        "architecture": "pascal",
        "compute_capability": "6.1",
        "form_factor": "pcie",
        "memory_gib": 6,
    },
    # Turing
    "1eb8": {
        "name": "Tesla T4",
        "architecture": "turing",
        "compute_capability": "7.5",
        "form_factor": "pcie",
        "memory_gib": 16,
    },
    # Ampere
    "20b0": {
        "name": "NVIDIA A100-SXM4-40GB",
        "architecture": "ampere",
        "compute_capability": "8.0",
        "form_factor": "sxm4",
        "memory_gib": 40,
    },
    "20b2": {
        "name": "NVIDIA A100-SXM4-80GB",
        "architecture": "ampere",
        "compute_capability": "8.0",
        "form_factor": "sxm4",
        "memory_gib": 80,
    },
    "20f1": {
        "name": "NVIDIA A100-PCIE-40GB",
        "architecture": "ampere",
        "compute_capability": "8.0",
        "form_factor": "pcie",
        "memory_gib": 40,
    },
    "20b5": {
        "name": "NVIDIA A100 80GB PCIe",
        "architecture": "ampere",
        "compute_capability": "8.0",
        "form_factor": "pcie",
        "memory_gib": 80,
    },
    "2236": {
        "name": "NVIDIA A10",
        "architecture": "ampere",
        "compute_capability": "8.6",
        "form_factor": "pcie",
        "memory_gib": 24,
        "min_branch": 460,
    },
    "2204": {
        "name": "NVIDIA GeForce RTX 3090",
        "architecture": "ampere",
        "compute_capability": "8.6",
        "form_factor": "pcie",
        "memory_gib": 24,
        "min_branch": 455,
    },
    "2503": {
        "name": "NVIDIA GeForce RTX 3060",
        "architecture": "ampere",
        "compute_capability": "8.6",
        "form_factor": "pcie",
        "memory_gib": 12,
        "min_branch": 460,
    },
    "2504": {
        "name": "NVIDIA GeForce RTX 3060",
        "architecture": "ampere",
        "compute_capability": "8.6",
        "form_factor": "pcie",
        "memory_gib": 12,
        "min_branch": 460,
    },
    # Ada
    "27b8": {
        "name": "NVIDIA L4",
        "architecture": "ada",
        "compute_capability": "8.9",
        "form_factor": "pcie",
        "memory_gib": 24,
    },
    "26b9": {
        "name": "NVIDIA L40S",
        "architecture": "ada",
        "compute_capability": "8.9",
        "form_factor": "pcie",
        "memory_gib": 48,
    },
    # Hopper
    "2330": {
        "name": "NVIDIA H100 80GB HBM3",
        "architecture": "hopper",
        "compute_capability": "9.0",
        "form_factor": "sxm5",
        "memory_gib": 80,
    },
    "2331": {
        "name": "NVIDIA H100 PCIe",
        "architecture": "hopper",
        "compute_capability": "9.0",
        "form_factor": "pcie",
        "memory_gib": 80,
    },
}

# NVSwitch chips (PCI class 0x0680, "bridge, other"). A system with any of them needs the fabric
# manager of its driver branch before CUDA can use the GPUs.
NVSWITCHES = {
    "1af1": {"name": "NVSwitch (A100 generation)", "architecture": "ampere", "systems": "HGX A100"},
    "22a3": {"name": "NVSwitch (H100 generation)", "architecture": "hopper", "systems": "HGX H100"},
}


def normalise_device_id(device_id):
    """'0x1DB1', '1db1', '10de:1db1' -> '1db1'."""
    text = str(device_id).strip().lower()
    if ":" in text:
        text = text.rsplit(":", 1)[1]
    if text.startswith("0x"):
        text = text[2:]
    return text.zfill(4)


def lookup(device_id):
    """The model entry of a GPU device id, or None when this table does not know it."""
    return MODELS.get(normalise_device_id(device_id))


def architecture_of_chip(chip):
    """Architecture from a pci.ids chip name ('GV100GL' -> 'volta'), or None."""
    chip = (chip or "").strip().upper()
    for name, arch in ARCHITECTURES.items():
        if chip.startswith(arch["chip_prefix"]):
            return name
    return None


def architecture_of_compute_capability(capability):
    """Architecture of a compute capability ('7.5' -> 'turing', '5.2' -> 'maxwell'), or None."""
    major, _, _ = str(capability).partition(".")
    return ARCH_BY_COMPUTE_CAPABILITY.get(str(capability)) or ARCH_BY_COMPUTE_CAPABILITY.get(
        major + ".x"
    )


def arch_index(arch):
    """Position of an architecture in ARCH_ORDER; -1 when unknown."""
    return ARCH_ORDER.index(arch) if arch in ARCHITECTURES else -1
