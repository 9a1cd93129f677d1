"""Reading one GPU's values through NVML so that one failing call costs one value, not the report.

A value the GPU does not support is UNSUPPORTED; a value NVML failed to read (any other error)
is UNREADABLE and gets an entry {field, call, error} in the GPU's `unreadable` list. Only
GPU_IS_LOST goes through (as NvmlCallError): the GPU is then reported lost as a whole.
"""

from __future__ import annotations

from . import clock_events
from .device import normalise_bus_id, unreadable_entry
from .nvml import (
    UNREADABLE,
    UNSUPPORTED,
    NvmlCallError,
    compute_mode_name,
    is_error,
    pynvml,
    text,
)

NVLINK_COUNTERS = {"replay": 0, "recovery": 1, "crc_flit": 2, "crc_data": 3}
NVLINK_SWITCH = 2  # NVML_NVLINK_DEVICE_TYPE_SWITCH
# What NvLinkState answers for a link number the GPU does not have.
NO_SUCH_LINK = ("NOT_SUPPORTED", "INVALID_ARGUMENT", "FUNCTION_NOT_FOUND")


def known(value):
    """False for the markers of a value that is missing (UNSUPPORTED, UNREADABLE)."""
    return value not in (UNSUPPORTED, UNREADABLE)


def convert(value, function):
    """function(value), or the marker itself when the value is missing."""
    return function(value) if known(value) else value


def milliwatts_to_watts(value):
    return convert(value, lambda milliwatts: round(milliwatts / 1000.0, 1))


class Reader:
    """One GPU's reads; `unreadable` lists what failed (identity values first)."""

    def __init__(self, gpu):
        self.gpu = gpu
        self.unreadable = list(gpu.unreadable)

    def guard(self, fields, read, *args):
        """read(*args); a failure other than GPU_IS_LOST makes fields (a name or a tuple of
        names, when one call gives several values) UNREADABLE."""
        try:
            return read(*args)
        except NvmlCallError as error:
            if is_error(error, "GPU_IS_LOST"):
                raise
            names = (fields,) if isinstance(fields, str) else fields
            self.unreadable.extend(unreadable_entry(field, error) for field in names)
            return UNREADABLE

    def value(self, fields, function, *args):
        """function(handle, *args) as gpu.query: UNSUPPORTED, UNREADABLE or the value."""
        return self.guard(fields, self.gpu.query, function, *args)


def supported_clocks(gpu):
    """{memory MHz: [graphics MHz, ...]} as the GPU lists them (highest first), or UNSUPPORTED.

    gpu is a device.Gpu: a failing call raises NvmlCallError naming the GPU and the call.
    """
    read = gpu.query
    memory = read(pynvml.nvmlDeviceGetSupportedMemoryClocks)
    if memory == UNSUPPORTED:
        return UNSUPPORTED
    table = {}
    for mem in memory:
        graphics = read(pynvml.nvmlDeviceGetSupportedGraphicsClocks, mem)
        if graphics == UNSUPPORTED:
            # A memory clock without its graphics clocks is no table to choose from.
            return UNSUPPORTED
        table[int(mem)] = sorted(graphics or [])[::-1]
    return table


def clocks(reader):
    p = pynvml
    kinds = {"graphics": p.NVML_CLOCK_GRAPHICS, "sm": p.NVML_CLOCK_SM, "memory": p.NVML_CLOCK_MEM}
    values = {
        "%s_mhz" % kind: reader.value("clocks.%s_mhz" % kind, p.nvmlDeviceGetClockInfo, clock)
        for kind, clock in kinds.items()
    }
    for prefix, function, names in (
        ("max_", p.nvmlDeviceGetMaxClockInfo, ("graphics", "memory")),
        ("applications_", p.nvmlDeviceGetApplicationsClock, ("graphics", "memory")),
        ("default_applications_", p.nvmlDeviceGetDefaultApplicationsClock, ("graphics", "memory")),
    ):
        for kind in names:
            field = "%s%s_mhz" % (prefix, kind)
            values[field] = reader.value("clocks." + field, function, kinds[kind])
    return values


def power(reader):
    p = pynvml
    constraints = reader.value(
        ("power.min_limit_w", "power.max_limit_w"), p.nvmlDeviceGetPowerManagementLimitConstraints
    )
    if known(constraints):
        low, high = (milliwatts_to_watts(v) for v in constraints)
    else:
        low = high = constraints
    return {
        "usage_w": milliwatts_to_watts(reader.value("power.usage_w", p.nvmlDeviceGetPowerUsage)),
        "limit_w": milliwatts_to_watts(
            reader.value("power.limit_w", p.nvmlDeviceGetPowerManagementLimit)
        ),
        "default_limit_w": milliwatts_to_watts(
            reader.value("power.default_limit_w", p.nvmlDeviceGetPowerManagementDefaultLimit)
        ),
        "min_limit_w": low,
        "max_limit_w": high,
        "enforced_limit_w": milliwatts_to_watts(
            reader.value("power.enforced_limit_w", p.nvmlDeviceGetEnforcedPowerLimit)
        ),
    }


def temperature(reader):
    p = pynvml
    values = {
        "gpu_c": reader.value(
            "temperature.gpu_c", p.nvmlDeviceGetTemperature, p.NVML_TEMPERATURE_GPU
        )
    }
    for name, threshold in (
        ("slowdown_c", p.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN),
        ("shutdown_c", p.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN),
        ("max_operating_c", p.NVML_TEMPERATURE_THRESHOLD_GPU_MAX),
    ):
        values[name] = reader.value(
            "temperature." + name, p.nvmlDeviceGetTemperatureThreshold, threshold
        )
    return values


def ecc(reader):
    p = pynvml
    mode = reader.value(("ecc.enabled", "ecc.pending_enabled"), p.nvmlDeviceGetEccMode)
    if mode == UNSUPPORTED:  # no ECC on this GPU: no counts either
        return {"enabled": UNSUPPORTED, "pending_enabled": UNSUPPORTED}
    # An unreadable mode does not mean the counts cannot be read: they are what health checks.
    values = {
        "enabled": convert(mode, lambda m: bool(m[0])),
        "pending_enabled": convert(mode, lambda m: bool(m[1])),
    }
    for counter, counter_type in (
        ("volatile", p.NVML_VOLATILE_ECC),
        ("aggregate", p.NVML_AGGREGATE_ECC),
    ):
        for kind, error_type in (
            ("corrected", p.NVML_MEMORY_ERROR_TYPE_CORRECTED),
            ("uncorrected", p.NVML_MEMORY_ERROR_TYPE_UNCORRECTED),
        ):
            name = "%s_%s" % (counter, kind)
            values[name] = reader.value(
                "ecc." + name, p.nvmlDeviceGetTotalEccErrors, error_type, counter_type
            )
    return values


def memory_health(reader):
    """Retired pages (up to Volta/Turing) or remapped rows (Ampere and newer)."""
    p = pynvml
    if reader.gpu.supports_memory_locked_clocks:  # Ampere+: row remapping replaced retirement
        rows = reader.value("remapped_rows", p.nvmlDeviceGetRemappedRows)
        if not known(rows):
            return {"remapped_rows": rows}
        corrected, uncorrected, pending, failure = rows
        return {
            "remapped_rows": {
                "corrected": corrected,
                "uncorrected": uncorrected,
                "pending": bool(pending),
                "failure": bool(failure),
            }
        }
    retired = {}
    for name, cause in (
        ("single_bit_ecc", p.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS),
        ("double_bit_ecc", p.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR),
    ):
        pages = reader.value("retired_pages." + name, p.nvmlDeviceGetRetiredPages, cause)
        retired[name] = convert(pages, len)
    pending = reader.value("retired_pages.pending", p.nvmlDeviceGetRetiredPagesPendingStatus)
    retired["pending"] = convert(pending, bool)
    return {"retired_pages": retired}


def nvlinks(reader):
    """Per link: state, remote end and error counters; UNREADABLE when the states cannot be
    read (a driver that fails one link's state fails them all, and which links exist is then
    unknown)."""
    p = pynvml
    links = []
    for link in range(p.NVML_NVLINK_MAX_LINKS):
        try:
            active = reader.gpu.call(p.nvmlDeviceGetNvLinkState, link)
        except NvmlCallError as error:
            if any(is_error(error, name) for name in NO_SUCH_LINK):
                continue
            if is_error(error, "GPU_IS_LOST"):
                raise
            reader.unreadable.append(unreadable_entry("nvlinks", error))
            return UNREADABLE
        field = "nvlinks[%d]." % len(links)
        remote = reader.value(field + "remote_pci_bus_id", p.nvmlDeviceGetNvLinkRemotePciInfo, link)
        remote_type = reader.value(
            field + "remote_is_switch", p.nvmlDeviceGetNvLinkRemoteDeviceType, link
        )
        links.append(
            {
                "link": link,
                "active": bool(active),
                "remote_pci_bus_id": convert(remote, lambda r: normalise_bus_id(text(r.busId))),
                "remote_is_switch": convert(remote_type, lambda t: t == NVLINK_SWITCH),
                "errors": {
                    name: reader.value(
                        field + "errors." + name, p.nvmlDeviceGetNvLinkErrorCounter, link, counter
                    )
                    for name, counter in NVLINK_COUNTERS.items()
                },
            }
        )
    return links


def pcie(reader):
    p = pynvml
    return {
        name: reader.value("pcie." + name, function)
        for name, function in (
            ("generation", p.nvmlDeviceGetCurrPcieLinkGeneration),
            ("max_generation", p.nvmlDeviceGetMaxPcieLinkGeneration),
            ("width", p.nvmlDeviceGetCurrPcieLinkWidth),
            ("max_width", p.nvmlDeviceGetMaxPcieLinkWidth),
            ("replay_counter", p.nvmlDeviceGetPcieReplayCounter),
        )
    }


def identity(reader):
    """The identity Gpu.open read; a value it could not read is UNREADABLE."""
    gpu = reader.gpu
    missing = {entry["field"] for entry in gpu.unreadable}
    values = {
        field: UNREADABLE if field in missing else getattr(gpu, field)
        for field in ("uuid", "name", "pci_bus_id", "pci_device_id", "compute_capability")
    }
    values["architecture"] = gpu.architecture
    return values


def general(reader):
    """Board strings, memory size, modes and the clock event reasons."""
    p = pynvml
    memory = reader.value("memory_total_mib", p.nvmlDeviceGetMemoryInfo)
    events = reader.value("clock_event_reasons", p.nvmlDeviceGetCurrentClocksEventReasons)
    return {
        "serial": convert(reader.value("serial", p.nvmlDeviceGetSerial), text),
        "board_part_number": convert(
            reader.value("board_part_number", p.nvmlDeviceGetBoardPartNumber), text
        ),
        "vbios_version": convert(reader.value("vbios_version", p.nvmlDeviceGetVbiosVersion), text),
        "memory_total_mib": convert(memory, lambda m: m.total // (1024 * 1024)),
        "persistence_mode": convert(
            reader.value("persistence_mode", p.nvmlDeviceGetPersistenceMode), bool
        ),
        "compute_mode": convert(
            reader.value("compute_mode", p.nvmlDeviceGetComputeMode), compute_mode_name
        ),
        "performance_state": reader.value("performance_state", p.nvmlDeviceGetPerformanceState),
        "clock_event_reasons": convert(events, clock_events.decode),
    }
