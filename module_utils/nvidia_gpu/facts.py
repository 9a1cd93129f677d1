"""Read everything worth knowing about the GPUs in one pass, as plain data.

Survives any single NVML failure: a value that cannot be read is UNREADABLE with an entry in the
`unreadable` list of its GPU (or of the system, for the driver versions and the link matrix), a
GPU that cannot be opened or falls off the bus is listed as lost, and the other GPUs are read
in full. facts_read.py holds the per-value reads.
"""

from __future__ import annotations

from . import pci
from .device import Gpu, unreadable_entry
from .facts_read import (
    Reader,
    clocks,
    ecc,
    general,
    identity,
    known,
    memory_health,
    nvlinks,
    pcie,
    power,
    supported_clocks,
    temperature,
)
from .nvml import (
    SYSTEM_VALUES,
    UNREADABLE,
    Nvml,
    NvmlCallError,
    explain,
    failed_call,
    pynvml,
)

__all__ = ["collect", "gpu_facts", "link_matrix", "supported_clocks"]

# nvidia-smi topo -m spelling of NVML's common-ancestor levels.
TOPOLOGY_LEVELS = {0: "X", 10: "PIX", 20: "PXB", 30: "PHB", 40: "NODE", 50: "SYS"}


def lost_facts(index, error, uuid=None, pci_bus_id=None):
    """A GPU that does not answer: its index, why, and what is known of it from before."""
    facts = {"index": index, "lost": True, "error": error}
    if uuid and uuid != "unknown":
        facts["uuid"] = uuid
    if pci_bus_id and pci_bus_id != "unknown":
        facts["pci_bus_id"] = pci_bus_id
    return facts


def gpu_facts(gpu, with_supported_clocks=True):
    """Everything about one GPU. A GPU that is lost (or gets lost while reading) says so."""
    if gpu.lost:
        return lost_facts(gpu.index, gpu.error)
    reader = Reader(gpu)
    try:
        facts = {"index": gpu.index, "lost": False}
        facts.update(identity(reader))
        facts.update(general(reader))
        facts.update(
            power=power(reader),
            clocks=clocks(reader),
            temperature=temperature(reader),
            ecc=ecc(reader),
            nvlinks=nvlinks(reader),
            pcie=pcie(reader),
        )
        facts.update(memory_health(reader))
        if with_supported_clocks:
            facts["supported_clocks"] = reader.guard("supported_clocks", supported_clocks, gpu)
    except NvmlCallError as error:  # the reader lets only GPU_IS_LOST through
        return lost_facts(gpu.index, explain(error.__cause__), gpu.uuid, gpu.pci_bus_id)
    facts["unreadable"] = reader.unreadable
    return facts


def link_matrix(gpus, per_gpu, unreadable=None):
    """nvidia-smi `topo -m` style matrix {"0": {"1": "NV2", ...}} between the GPUs that answer.

    A PCIe path NVML fails to read is UNREADABLE, with an entry in unreadable (a list).
    """
    answering = [f for f in per_gpu if not f["lost"]]
    by_bus = {f["pci_bus_id"]: f["index"] for f in answering if known(f["pci_bus_id"])}
    nvlink_peers = {}
    switch_links = {}
    for facts in answering:
        peers = nvlink_peers.setdefault(facts["index"], {})
        if not isinstance(facts["nvlinks"], list):
            continue
        for link in facts["nvlinks"]:
            if link["active"] is not True:
                continue
            if link["remote_is_switch"] is True or link["remote_pci_bus_id"] not in by_bus:
                switch_links[facts["index"]] = switch_links.get(facts["index"], 0) + 1
            else:
                peer = by_bus[link["remote_pci_bus_id"]]
                peers[peer] = peers.get(peer, 0) + 1
    opened = {gpu.index: gpu for gpu, facts in zip(gpus, per_gpu) if not facts["lost"]}
    links_unread = {f["index"] for f in answering if not isinstance(f["nvlinks"], list)}
    matrix = {}
    for a in sorted(opened):
        row = matrix.setdefault(str(a), {})
        for b in sorted(opened):
            # A direct NVLink shows at both ends: one end that reads it is enough.
            pair = max(nvlink_peers[a].get(b, 0), nvlink_peers[b].get(a, 0))
            if a == b:
                row[str(b)] = "X"
            elif pair:
                row[str(b)] = "NV%d" % pair
            elif switch_links.get(a) and switch_links.get(b):
                row[str(b)] = "NV%d" % min(switch_links[a], switch_links[b])
            elif {a, b} & links_unread and (switch_links.get(a) or switch_links.get(b)):
                # One end has NVSwitch links, the other's cannot be read: NVLink or PCIe is
                # unknown (its `nvlinks` entry says why).
                row[str(b)] = UNREADABLE
            else:
                row[str(b)] = _pcie_path(opened[a], opened[b], unreadable)
    return matrix


def _pcie_path(gpu, peer, unreadable):
    try:
        level = gpu.query(pynvml.nvmlDeviceGetTopologyCommonAncestor, peer.handle)
    except NvmlCallError as error:  # GPU_IS_LOST included: the GPU's facts are read already
        if unreadable is not None:
            unreadable.append(
                unreadable_entry("link_matrix.%d.%d" % (gpu.index, peer.index), error)
            )
        return UNREADABLE
    return TOPOLOGY_LEVELS.get(level, str(level))


def system_values(unreadable):
    """Driver, NVML and CUDA versions; one that fails is UNREADABLE with an entry."""
    values = {}
    for name, function_name, convert in SYSTEM_VALUES:
        function = getattr(pynvml, function_name)
        try:
            values[name] = convert(function())
        except pynvml.NVMLError as error:
            unreadable.append(unreadable_entry(name, failed_call("NVML", function, error)))
            values[name] = UNREADABLE
    return values


def open_gpus():
    """Every GPU NVML enumerates. One NVML cannot open at all (its handle lookup fails) is
    listed as lost, with the call and the reason: nothing about it can be read."""
    try:
        count = pynvml.nvmlDeviceGetCount()
    except pynvml.NVMLError as error:
        raise failed_call("NVML", pynvml.nvmlDeviceGetCount, error) from error
    gpus = []
    for index in range(count):
        try:
            gpus.append(Gpu.open(index, tolerant=True))
        except NvmlCallError as error:
            entry = unreadable_entry("handle", error)
            gpus.append(Gpu(index, error="%s failed: %s" % (entry["call"], entry["error"])))
    return gpus


def place_lost(per_gpu, sysfs_root):
    """Give lost GPUs the PCI address they had, from the PCI tree: NVML numbers the GPUs the
    driver enumerates in PCI bus order, so when sysfs lists exactly as many NVIDIA GPUs and
    every GPU that answers sits at its index there, a lost GPU is the one at its index."""
    if not any(f["lost"] and "pci_bus_id" not in f for f in per_gpu):
        return
    try:
        on_bus = pci.gpu_addresses(sysfs_root)
    except OSError:
        return  # no PCI tree to go by: the Xid lines then name the address only
    if len(on_bus) != len(per_gpu):
        return
    for facts in per_gpu:
        address = facts.get("pci_bus_id", UNREADABLE)
        if not facts["lost"] and known(address) and address != on_bus[facts["index"]]:
            return  # the tree does not match NVML's order: no guessing
    for facts in per_gpu:
        if facts["lost"] and "pci_bus_id" not in facts:
            facts["pci_bus_id"] = on_bus[facts["index"]]
            facts["pci_bus_id_from"] = "sysfs"


def collect(with_supported_clocks=True, sysfs_root=pci.SYSFS_PCI_DEVICES):
    """System versions, every GPU's facts and the link matrix, in one NVML session."""
    with Nvml():
        unreadable = []
        result = system_values(unreadable)
        gpus = open_gpus()
        per_gpu = [gpu_facts(gpu, with_supported_clocks) for gpu in gpus]
        matrix = link_matrix(gpus, per_gpu, unreadable)
    place_lost(per_gpu, sysfs_root)
    result.update(
        count=len(gpus),
        lost_count=sum(1 for f in per_gpu if f["lost"]),
        gpus=per_gpu,
        link_matrix=matrix,
        unreadable=unreadable,
    )
    return result
