"""Read everything worth knowing about the GPUs in one pass, as plain data."""

from __future__ import annotations

from . import clock_events
from .device import normalise_bus_id, open_all
from .nvml import (
    UNSUPPORTED,
    GpuError,
    Nvml,
    compute_mode_name,
    explain,
    is_error,
    pynvml,
    query,
    text,
)

# nvidia-smi topo -m spelling of NVML's common-ancestor levels.
TOPOLOGY_LEVELS = {0: "X", 10: "PIX", 20: "PXB", 30: "PHB", 40: "NODE", 50: "SYS"}
NVLINK_COUNTERS = {"replay": 0, "recovery": 1, "crc_flit": 2, "crc_data": 3}
NVLINK_SWITCH = 2  # NVML_NVLINK_DEVICE_TYPE_SWITCH


def milliwatts_to_watts(value):
    return value if value == UNSUPPORTED else round(value / 1000.0, 1)


def _clocks(handle):
    p = pynvml
    clocks = {
        "graphics_mhz": query(p.nvmlDeviceGetClockInfo, handle, p.NVML_CLOCK_GRAPHICS),
        "sm_mhz": query(p.nvmlDeviceGetClockInfo, handle, p.NVML_CLOCK_SM),
        "memory_mhz": query(p.nvmlDeviceGetClockInfo, handle, p.NVML_CLOCK_MEM),
        "max_graphics_mhz": query(p.nvmlDeviceGetMaxClockInfo, handle, p.NVML_CLOCK_GRAPHICS),
        "max_memory_mhz": query(p.nvmlDeviceGetMaxClockInfo, handle, p.NVML_CLOCK_MEM),
        "applications_graphics_mhz": query(
            p.nvmlDeviceGetApplicationsClock, handle, p.NVML_CLOCK_GRAPHICS
        ),
        "applications_memory_mhz": query(
            p.nvmlDeviceGetApplicationsClock, handle, p.NVML_CLOCK_MEM
        ),
        "default_applications_graphics_mhz": query(
            p.nvmlDeviceGetDefaultApplicationsClock, handle, p.NVML_CLOCK_GRAPHICS
        ),
        "default_applications_memory_mhz": query(
            p.nvmlDeviceGetDefaultApplicationsClock, handle, p.NVML_CLOCK_MEM
        ),
    }
    return clocks


def supported_clocks(handle):
    """{memory MHz: [graphics MHz, ...]} as the GPU lists them (highest first)."""
    memory = query(pynvml.nvmlDeviceGetSupportedMemoryClocks, handle)
    if memory == UNSUPPORTED:
        return UNSUPPORTED
    return {
        int(mem): sorted(query(pynvml.nvmlDeviceGetSupportedGraphicsClocks, handle, mem) or [])[
            ::-1
        ]
        for mem in memory
    }


def _power(handle):
    p = pynvml
    constraints = query(p.nvmlDeviceGetPowerManagementLimitConstraints, handle)
    if constraints == UNSUPPORTED:
        low = high = UNSUPPORTED
    else:
        low, high = (milliwatts_to_watts(v) for v in constraints)
    return {
        "usage_w": milliwatts_to_watts(query(p.nvmlDeviceGetPowerUsage, handle)),
        "limit_w": milliwatts_to_watts(query(p.nvmlDeviceGetPowerManagementLimit, handle)),
        "default_limit_w": milliwatts_to_watts(
            query(p.nvmlDeviceGetPowerManagementDefaultLimit, handle)
        ),
        "min_limit_w": low,
        "max_limit_w": high,
        "enforced_limit_w": milliwatts_to_watts(query(p.nvmlDeviceGetEnforcedPowerLimit, handle)),
    }


def _temperature(handle):
    p = pynvml
    return {
        "gpu_c": query(p.nvmlDeviceGetTemperature, handle, p.NVML_TEMPERATURE_GPU),
        "slowdown_c": query(
            p.nvmlDeviceGetTemperatureThreshold, handle, p.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN
        ),
        "shutdown_c": query(
            p.nvmlDeviceGetTemperatureThreshold, handle, p.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN
        ),
        "max_operating_c": query(
            p.nvmlDeviceGetTemperatureThreshold, handle, p.NVML_TEMPERATURE_THRESHOLD_GPU_MAX
        ),
    }


def _ecc(handle):
    p = pynvml
    mode = query(p.nvmlDeviceGetEccMode, handle)
    if mode == UNSUPPORTED:
        return {"enabled": UNSUPPORTED, "pending_enabled": UNSUPPORTED}
    counts = {}
    for counter, counter_type in (
        ("volatile", p.NVML_VOLATILE_ECC),
        ("aggregate", p.NVML_AGGREGATE_ECC),
    ):
        for kind, error_type in (
            ("corrected", p.NVML_MEMORY_ERROR_TYPE_CORRECTED),
            ("uncorrected", p.NVML_MEMORY_ERROR_TYPE_UNCORRECTED),
        ):
            counts["%s_%s" % (counter, kind)] = query(
                p.nvmlDeviceGetTotalEccErrors, handle, error_type, counter_type
            )
    return dict(enabled=bool(mode[0]), pending_enabled=bool(mode[1]), **counts)


def _memory_health(gpu):
    """Retired pages (up to Volta/Turing) or remapped rows (Ampere and newer)."""
    p = pynvml
    handle = gpu.handle
    if gpu.supports_memory_locked_clocks:  # Ampere+: row remapping replaced page retirement
        rows = query(p.nvmlDeviceGetRemappedRows, handle)
        if rows == UNSUPPORTED:
            return {"remapped_rows": UNSUPPORTED}
        corrected, uncorrected, pending, failure = rows
        return {
            "remapped_rows": {
                "corrected": corrected,
                "uncorrected": uncorrected,
                "pending": bool(pending),
                "failure": bool(failure),
            }
        }
    sbe = query(
        p.nvmlDeviceGetRetiredPages,
        handle,
        p.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS,
    )
    dbe = query(
        p.nvmlDeviceGetRetiredPages, handle, p.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR
    )
    pending = query(p.nvmlDeviceGetRetiredPagesPendingStatus, handle)
    return {
        "retired_pages": {
            "single_bit_ecc": sbe if sbe == UNSUPPORTED else len(sbe),
            "double_bit_ecc": dbe if dbe == UNSUPPORTED else len(dbe),
            "pending": pending if pending == UNSUPPORTED else bool(pending),
        }
    }


def _nvlinks(handle):
    p = pynvml
    links = []
    for link in range(p.NVML_NVLINK_MAX_LINKS):
        try:
            active = p.nvmlDeviceGetNvLinkState(handle, link)
        except p.NVMLError as error:
            if is_error(error, "NOT_SUPPORTED") or is_error(error, "INVALID_ARGUMENT"):
                continue  # this GPU has no such link
            raise
        remote = query(p.nvmlDeviceGetNvLinkRemotePciInfo, handle, link)
        remote_type = query(p.nvmlDeviceGetNvLinkRemoteDeviceType, handle, link)
        links.append(
            {
                "link": link,
                "active": bool(active),
                "remote_pci_bus_id": remote
                if remote == UNSUPPORTED
                else normalise_bus_id(text(remote.busId)),
                "remote_is_switch": remote_type == NVLINK_SWITCH,
                "errors": {
                    name: query(p.nvmlDeviceGetNvLinkErrorCounter, handle, link, counter)
                    for name, counter in NVLINK_COUNTERS.items()
                },
            }
        )
    return links


def _pcie(handle):
    p = pynvml
    return {
        "generation": query(p.nvmlDeviceGetCurrPcieLinkGeneration, handle),
        "max_generation": query(p.nvmlDeviceGetMaxPcieLinkGeneration, handle),
        "width": query(p.nvmlDeviceGetCurrPcieLinkWidth, handle),
        "max_width": query(p.nvmlDeviceGetMaxPcieLinkWidth, handle),
        "replay_counter": query(p.nvmlDeviceGetPcieReplayCounter, handle),
    }


def gpu_facts(gpu, with_supported_clocks=True):
    """Everything about one GPU. A GPU that is lost (or gets lost while reading) says so."""
    if gpu.lost:
        return {"index": gpu.index, "lost": True, "error": gpu.error}
    p = pynvml
    handle = gpu.handle
    try:
        memory = p.nvmlDeviceGetMemoryInfo(handle)
        events = query(p.nvmlDeviceGetCurrentClocksEventReasons, handle)
        persistence = query(p.nvmlDeviceGetPersistenceMode, handle)
        compute_mode = query(p.nvmlDeviceGetComputeMode, handle)
        facts = {
            "index": gpu.index,
            "lost": False,
            "uuid": gpu.uuid,
            "name": gpu.name,
            "serial": text(query(p.nvmlDeviceGetSerial, handle)),
            "board_part_number": text(query(p.nvmlDeviceGetBoardPartNumber, handle)),
            "vbios_version": text(query(p.nvmlDeviceGetVbiosVersion, handle)),
            "pci_bus_id": gpu.pci_bus_id,
            "pci_device_id": gpu.pci_device_id,
            "architecture": gpu.architecture,
            "compute_capability": gpu.compute_capability,
            "memory_total_mib": memory.total // (1024 * 1024),
            "persistence_mode": persistence if persistence == UNSUPPORTED else bool(persistence),
            "compute_mode": compute_mode_name(compute_mode),
            "performance_state": query(p.nvmlDeviceGetPerformanceState, handle),
            "power": _power(handle),
            "clocks": _clocks(handle),
            "temperature": _temperature(handle),
            "clock_event_reasons": events if events == UNSUPPORTED else clock_events.decode(events),
            "ecc": _ecc(handle),
            "nvlinks": _nvlinks(handle),
            "pcie": _pcie(handle),
        }
        facts.update(_memory_health(gpu))
        if with_supported_clocks:
            facts["supported_clocks"] = supported_clocks(handle)
    except p.NVMLError as error:
        if is_error(error, "GPU_IS_LOST"):
            return {"index": gpu.index, "lost": True, "error": explain(error), "uuid": gpu.uuid}
        raise GpuError("Reading %s failed: %s" % (gpu.label, explain(error))) from error
    return facts


def link_matrix(gpus, per_gpu):
    """nvidia-smi `topo -m` style matrix {"0": {"1": "NV2", ...}} between the GPUs that answer."""
    by_bus = {f["pci_bus_id"]: f["index"] for f in per_gpu if not f["lost"]}
    nvlink_peers = {}
    switch_links = {}
    for facts in per_gpu:
        if facts["lost"]:
            continue
        peers = nvlink_peers.setdefault(facts["index"], {})
        for link in facts["nvlinks"]:
            if not link["active"]:
                continue
            if link["remote_is_switch"] or link["remote_pci_bus_id"] not in by_bus:
                switch_links[facts["index"]] = switch_links.get(facts["index"], 0) + 1
            else:
                peer = by_bus[link["remote_pci_bus_id"]]
                peers[peer] = peers.get(peer, 0) + 1
    handles = {gpu.index: gpu.handle for gpu, facts in zip(gpus, per_gpu) if not facts["lost"]}
    matrix = {}
    for a in sorted(handles):
        row = matrix.setdefault(str(a), {})
        for b in sorted(handles):
            if a == b:
                row[str(b)] = "X"
            elif nvlink_peers[a].get(b):
                row[str(b)] = "NV%d" % nvlink_peers[a][b]
            elif switch_links.get(a) and switch_links.get(b):
                row[str(b)] = "NV%d" % min(switch_links[a], switch_links[b])
            else:
                level = query(pynvml.nvmlDeviceGetTopologyCommonAncestor, handles[a], handles[b])
                row[str(b)] = TOPOLOGY_LEVELS.get(level, str(level))
    return matrix


def collect(with_supported_clocks=True):
    """System versions, every GPU's facts and the link matrix, in one NVML session."""
    with Nvml() as nvml:
        gpus = open_all()
        per_gpu = [gpu_facts(gpu, with_supported_clocks) for gpu in gpus]
        result = nvml.system()
        result.update(
            {
                "count": len(gpus),
                "lost_count": sum(1 for f in per_gpu if f["lost"]),
                "gpus": per_gpu,
                "link_matrix": link_matrix(gpus, per_gpu),
            }
        )
    return result
