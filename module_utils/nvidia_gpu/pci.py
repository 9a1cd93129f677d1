"""NVIDIA GPUs and NVSwitches as the PCI bus shows them, before any driver is installed.

Reads sysfs (/sys/bus/pci/devices/*/{vendor,device,class,subsystem_vendor,subsystem_device}) and
names what it finds from this project's own table (models.py), falling back to the system's
pci.ids database. Standard library only, and no NVML: this runs on a machine that has no NVIDIA
driver yet, to decide which driver it gets.
"""

from __future__ import annotations

import os
import re

from . import models

SYSFS_PCI_DEVICES = "/sys/bus/pci/devices"
# A PCI address as sysfs spells it (device.normalise_bus_id): domain:bus:device.function.
SLOT = re.compile(r"[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]\Z")
# Where distributions keep pci.ids (pciutils / hwdata / pci.ids packages).
PCI_IDS_PATHS = (
    "/usr/share/misc/pci.ids",
    "/usr/share/hwdata/pci.ids",
    "/usr/share/pci.ids",
    "/usr/share/pciutils/pci.ids",
)
# PCI class codes (class register >> 8): display controllers a GPU presents itself as.
GPU_CLASSES = {0x0300: "vga", 0x0302: "3d"}
NVSWITCH_CLASS = 0x0680  # bridge, other: how NVSwitch chips present themselves

_PCI_IDS_DEVICE = re.compile(r"^\t([0-9a-fA-F]{4})\s+(.*)$")
_CHIP_AND_NAME = re.compile(r"^(\S+)\s+\[(.+)\]$")


def _read(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def _hex(value):
    if value is None:
        return None
    try:
        return int(value, 16)
    except ValueError:
        return None


def read_pci_ids(paths=PCI_IDS_PATHS):
    """{device id: description} of vendor 10de from the first pci.ids found ({} if none)."""
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                return _nvidia_devices(handle)
        except OSError:
            continue
    return {}


def _nvidia_devices(lines):
    devices = {}
    in_nvidia = False
    for line in lines:
        line = line.rstrip("\n")
        if not line or line.startswith("#"):
            continue
        if not line.startswith("\t"):
            if in_nvidia:
                break  # vendors are sorted: the next one ends NVIDIA's section
            in_nvidia = line[:4].lower() == models.NVIDIA_VENDOR_ID
            continue
        if in_nvidia:
            match = _PCI_IDS_DEVICE.match(line)
            if match:
                devices[match.group(1).lower()] = match.group(2).strip()
    return devices


def describe_from_pci_ids(description):
    """'GV100GL [Tesla V100 SXM2 16GB]' -> (model name, chip, architecture or None)."""
    match = _CHIP_AND_NAME.match(description or "")
    if match:
        chip, name = match.group(1), match.group(2)
    else:
        chip, name = (description or "").split(" ")[0], description or ""
    return name, chip, models.architecture_of_chip(chip)


def _device(root, entry):
    path = os.path.join(root, entry)
    vendor = _read(os.path.join(path, "vendor"))
    if vendor is None or vendor.lower() not in ("0x" + models.NVIDIA_VENDOR_ID,):
        return None
    pci_class = _hex(_read(os.path.join(path, "class")))
    device_id = models.normalise_device_id(_read(os.path.join(path, "device")) or "0")
    sub_vendor = _read(os.path.join(path, "subsystem_vendor"))
    sub_device = _read(os.path.join(path, "subsystem_device"))
    subsystem = None
    if sub_vendor and sub_device:
        subsystem = "%s:%s" % (
            models.normalise_device_id(sub_vendor),
            models.normalise_device_id(sub_device),
        )
    return {
        "pci_bus_id": entry.lower(),
        "vendor_id": models.NVIDIA_VENDOR_ID,
        "device_id": device_id,
        "pci_device_id": "%s:%s" % (models.NVIDIA_VENDOR_ID, device_id),
        "subsystem_id": subsystem,
        "pci_class": pci_class,
    }


def _gpu(device, pci_ids):
    known = models.lookup(device["device_id"])
    gpu = dict(device)
    gpu["pci_class"] = "0x%06x" % device["pci_class"]
    gpu["display_class"] = GPU_CLASSES[device["pci_class"] >> 8]
    if known:
        gpu.update(
            model=known["name"],
            architecture=known["architecture"],
            compute_capability=known["compute_capability"],
            form_factor=known["form_factor"],
            memory_gib=known["memory_gib"],
            min_branch=known.get("min_branch"),
            named_by="project table",
        )
        return gpu
    description = pci_ids.get(device["device_id"])
    if description:
        name, chip, arch = describe_from_pci_ids(description)
        gpu.update(
            model=name,
            chip=chip,
            architecture=arch or "unknown",
            compute_capability=models.CC_BY_ARCH.get(arch, "unknown"),
            named_by="pci.ids",
        )
    else:
        gpu.update(
            model="NVIDIA device %s" % device["device_id"],
            architecture="unknown",
            compute_capability="unknown",
            named_by="nothing (not in the project table nor in pci.ids)",
        )
    gpu.setdefault("form_factor", "unknown")
    gpu.setdefault("memory_gib", None)
    gpu.setdefault("min_branch", None)
    return gpu


def _nvswitch(device, pci_ids):
    known = models.NVSWITCHES.get(device["device_id"])
    name = known["name"] if known else pci_ids.get(device["device_id"], "NVSwitch")
    return {
        "pci_bus_id": device["pci_bus_id"],
        "device_id": device["device_id"],
        "pci_device_id": device["pci_device_id"],
        "name": name,
    }


def discover(root=SYSFS_PCI_DEVICES, pci_ids_paths=PCI_IDS_PATHS):
    """Every NVIDIA GPU and NVSwitch under root, in PCI bus order, with summary counts."""
    try:
        entries = sorted(os.listdir(root))
    except OSError as error:
        raise OSError("cannot list PCI devices in %s: %s" % (root, error.strerror)) from error
    devices = [d for d in (_device(root, entry) for entry in entries) if d is not None]
    pci_ids = None
    gpus, nvswitches = [], []
    for device in devices:
        pci_class = device["pci_class"]
        if pci_class is None:
            continue
        known = models.lookup(device["device_id"])
        if (pci_class >> 8) in GPU_CLASSES:
            if known is None and pci_ids is None:
                pci_ids = read_pci_ids(pci_ids_paths)
            gpus.append(_gpu(device, pci_ids or {}))
        elif (pci_class >> 8) == NVSWITCH_CLASS:
            if device["device_id"] not in models.NVSWITCHES and pci_ids is None:
                pci_ids = read_pci_ids(pci_ids_paths)
            nvswitches.append(_nvswitch(device, pci_ids or {}))
    models_count = {}
    for gpu in gpus:
        models_count[gpu["model"]] = models_count.get(gpu["model"], 0) + 1
    architectures = sorted({g["architecture"] for g in gpus}, key=_arch_sort_key)
    return {
        "count": len(gpus),
        "gpus": gpus,
        "models": models_count,
        "architectures": architectures,
        "nvswitch_count": len(nvswitches),
        "nvswitches": nvswitches,
        "unknown_count": sum(1 for g in gpus if g["architecture"] == "unknown"),
    }


def gpu_addresses(root=SYSFS_PCI_DEVICES):
    """The PCI addresses of the NVIDIA GPUs under root, in bus order (OSError: unreadable).

    What the boot command, the health check and the inventory ask of the tree: which slots hold
    a GPU, to tell an empty slot from a GPU the driver no longer enumerates."""
    return [gpu["pci_bus_id"] for gpu in discover(root, pci_ids_paths=())["gpus"]]


def _arch_sort_key(arch):
    index = models.arch_index(arch)
    return (index < 0, index, arch)
