"""A health run's status document as Prometheus metrics, in the text format node_exporter's
textfile collector reads (https://prometheus.io/docs/instrumenting/exposition_formats/).

Conventions: base units in names (watts, hertz, celsius, volts), `_total` on counters, one
`gpu` (NVML index) and `uuid` label per GPU series, and every series a GPU can have written for
every GPU that answers, so a dashboard sees 0 rather than nothing. A value NVML could not give
(unsupported, unreadable) leaves its series out. METRICS is the one list of names, types and
help texts; a test holds what render() writes to it.

Standard library only, Python 3.8+.
"""

from __future__ import annotations

import math

from .clock_events import REASONS

MHZ_TO_HERTZ = 1e6
STATUS_VALUES = {"ok": 0, "warning": 1, "critical": 2}
# name: (type, help)
METRICS = {
    "gpu_info": ("gauge", "A GPU NVML enumerates (value 1), with its model and identity."),
    "gpu_lost": ("gauge", "1 when the GPU does not answer (fallen off the bus, Xid 79)."),
    "gpu_health_status": ("gauge", "Worst finding of the GPU: 0 ok, 1 warning, 2 critical."),
    "gpu_power_draw_watts": ("gauge", "Power draw."),
    "gpu_power_limit_watts": ("gauge", "Power limit set (what the driver holds the GPU to)."),
    "gpu_power_default_limit_watts": ("gauge", "The GPU's default power limit."),
    "gpu_clock_hertz": ("gauge", "Current clock, by clock domain."),
    "gpu_clock_max_hertz": ("gauge", "Highest clock the GPU runs, by clock domain."),
    "gpu_applications_clock_hertz": ("gauge", "Applications clock, by clock domain."),
    "gpu_temperature_celsius": ("gauge", "GPU temperature."),
    "gpu_temperature_slowdown_celsius": ("gauge", "Temperature at which the GPU slows down."),
    "gpu_clock_event_active": (
        "gauge",
        "1 while the clock event (throttle) reason is active, by reason name.",
    ),
    "gpu_persistence_mode": ("gauge", "1 when persistence mode is on."),
    "gpu_ecc_errors_total": (
        "counter",
        "ECC errors, by type (corrected, uncorrected) and counter (volatile: since the driver "
        "loaded; aggregate: lifetime).",
    ),
    "gpu_retired_pages": ("gauge", "Retired memory pages, by cause (Volta, Turing)."),
    "gpu_retired_pages_pending": ("gauge", "1 when a page retirement waits for a reboot."),
    "gpu_remapped_rows": ("gauge", "Remapped memory rows, by type (Ampere and newer)."),
    "gpu_remapped_rows_pending": ("gauge", "1 when a row remapping waits for a GPU reset."),
    "gpu_remapped_rows_failure": ("gauge", "1 when a row remapping failed."),
    "gpu_nvlink_active": ("gauge", "1 when the NVLink link is up, by link."),
    "gpu_nvlink_errors_total": ("counter", "NVLink error counters, by link and counter."),
    "gpu_pcie_link_generation": ("gauge", "Current PCIe link generation."),
    "gpu_pcie_link_width": ("gauge", "Current PCIe link width (lanes)."),
    "gpu_pcie_replays_total": ("counter", "PCIe replays."),
    "gpu_xid_events_total": ("counter", "Xid events in the kernel log this boot, by code."),
    "gpu_settings_hold": (
        "gauge",
        "1 when the GPU holds the settings declared for it (gpu_tuning), 0 when not.",
    ),
    "gpu_node_settings_hold": ("gauge", "1 when every GPU holds its declared settings."),
    "gpu_node_health_status": ("gauge", "Worst finding of the node: 0 ok, 1 warning, 2 critical."),
    "gpu_node_health_findings": ("gauge", "Findings of the last health run, by severity."),
    "gpu_node_gpus": ("gauge", "GPUs NVML enumerates, and those lost (state)."),
    "gpu_node_health_last_run_timestamp_seconds": ("gauge", "When the last health run started."),
    "gpu_node_health_run_duration_seconds": ("gauge", "How long the last health run took."),
    "bmc_sensor_volts": ("gauge", "BMC voltage sensor reading."),
    "bmc_sensor_celsius": ("gauge", "BMC temperature sensor reading."),
    "bmc_sensor_rpm": ("gauge", "BMC fan sensor reading."),
    "bmc_sensor_watts": ("gauge", "BMC power sensor reading."),
    "bmc_sensor_amperes": ("gauge", "BMC current sensor reading."),
    "bmc_sensor_status": ("gauge", "BMC sensor state as judged: 0 ok, 1 warning, 2 critical."),
    "bmc_up": ("gauge", "1 when the BMC's sensors were read in the last health run."),
}
# ipmitool's unit spelling -> metric
BMC_UNITS = {
    "volts": "bmc_sensor_volts",
    "degrees c": "bmc_sensor_celsius",
    "rpm": "bmc_sensor_rpm",
    "watts": "bmc_sensor_watts",
    "amps": "bmc_sensor_amperes",
}


def _number(value):
    """A float for a real number; None for what NVML could not give (or a bool-less text)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def _escape(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format(value):
    return "%d" % value if value.is_integer() and abs(value) < 1e15 else repr(value)


class Series:
    """The samples of one render, grouped by metric name in METRICS' order."""

    def __init__(self):
        self.samples = {name: [] for name in METRICS}

    def add(self, name, labels, value):
        number = _number(value)
        if number is not None:
            self.samples[name].append((labels, number))

    def text(self):
        lines = []
        for name, samples in self.samples.items():
            if not samples:
                continue
            kind, help_text = METRICS[name]
            lines.append("# HELP %s %s" % (name, help_text))
            lines.append("# TYPE %s %s" % (name, kind))
            for labels, value in samples:
                pairs = ",".join('%s="%s"' % (k, _escape(v)) for k, v in labels)
                lines.append(
                    "%s{%s} %s" % (name, pairs, _format(value))
                    if pairs
                    else "%s %s" % (name, _format(value))
                )
        return "\n".join(lines) + "\n"


def _gpu(series, gpu, status_by_index):
    ids = (("gpu", str(gpu["index"])), ("uuid", gpu.get("uuid", "unknown")))
    series.add("gpu_lost", ids, bool(gpu["lost"]))
    series.add("gpu_health_status", ids, STATUS_VALUES[status_by_index.get(gpu["index"], "ok")])
    if gpu["lost"]:
        return
    info = ids + tuple(
        (key, gpu.get(key, "unknown")) for key in ("name", "pci_bus_id", "serial", "vbios_version")
    )
    series.add("gpu_info", info, 1)
    power = gpu.get("power") or {}
    if isinstance(power, dict):
        series.add("gpu_power_draw_watts", ids, power.get("usage_w"))
        series.add("gpu_power_limit_watts", ids, power.get("limit_w"))
        series.add("gpu_power_default_limit_watts", ids, power.get("default_limit_w"))
    clocks = gpu.get("clocks") or {}
    if isinstance(clocks, dict):
        for domain in ("graphics", "sm", "memory"):
            for metric, key in (
                ("gpu_clock_hertz", "%s_mhz"),
                ("gpu_clock_max_hertz", "max_%s_mhz"),
                ("gpu_applications_clock_hertz", "applications_%s_mhz"),
            ):
                mhz = _number(clocks.get(key % domain))
                if mhz is not None:
                    series.add(metric, (*ids, ("clock", domain)), mhz * MHZ_TO_HERTZ)
    temperature = gpu.get("temperature") or {}
    if isinstance(temperature, dict):
        series.add("gpu_temperature_celsius", ids, temperature.get("gpu_c"))
        series.add("gpu_temperature_slowdown_celsius", ids, temperature.get("slowdown_c"))
    reasons = gpu.get("clock_event_reasons")
    if isinstance(reasons, list):
        for name in REASONS.values():
            series.add("gpu_clock_event_active", (*ids, ("reason", name)), name in reasons)
    series.add("gpu_persistence_mode", ids, gpu.get("persistence_mode"))
    _memory(series, ids, gpu)
    _links(series, ids, gpu)


def _memory(series, ids, gpu):
    ecc = gpu.get("ecc") or {}
    if isinstance(ecc, dict) and ecc.get("enabled") is True:
        for counter in ("volatile", "aggregate"):
            for kind in ("corrected", "uncorrected"):
                series.add(
                    "gpu_ecc_errors_total",
                    (*ids, ("type", kind), ("counter", counter)),
                    ecc.get("%s_%s" % (counter, kind)),
                )
    retired = gpu.get("retired_pages")
    if isinstance(retired, dict):
        for cause in ("single_bit_ecc", "double_bit_ecc"):
            series.add("gpu_retired_pages", (*ids, ("cause", cause)), retired.get(cause))
        series.add("gpu_retired_pages_pending", ids, retired.get("pending"))
    rows = gpu.get("remapped_rows")
    if isinstance(rows, dict):
        for kind in ("corrected", "uncorrected"):
            series.add("gpu_remapped_rows", (*ids, ("type", kind)), rows.get(kind))
        series.add("gpu_remapped_rows_pending", ids, rows.get("pending"))
        series.add("gpu_remapped_rows_failure", ids, rows.get("failure"))


def _links(series, ids, gpu):
    links = gpu.get("nvlinks")
    if isinstance(links, list):
        for link in links:
            which = (*ids, ("link", str(link["link"])))
            series.add("gpu_nvlink_active", which, link.get("active"))
            errors = link.get("errors")
            for counter, count in sorted(errors.items()) if isinstance(errors, dict) else ():
                series.add("gpu_nvlink_errors_total", (*which, ("counter", counter)), count)
    pcie = gpu.get("pcie") or {}
    if isinstance(pcie, dict):
        series.add("gpu_pcie_link_generation", ids, pcie.get("generation"))
        series.add("gpu_pcie_link_width", ids, pcie.get("width"))
        series.add("gpu_pcie_replays_total", ids, pcie.get("replay_counter"))


def _bmc(series, bmc):
    series.add("bmc_up", (), bmc.get("read"))
    for name, sensor in sorted((bmc.get("sensors") or {}).items()):
        metric = BMC_UNITS.get(str(sensor.get("unit", "")).lower())
        labels = (("sensor", name),)
        if metric:
            series.add(metric, labels, sensor.get("value"))
        state = sensor.get("status")
        if state in STATUS_VALUES:
            series.add("bmc_sensor_status", labels, STATUS_VALUES[state])


def render(report):
    """The status document of health_status.run as the text of a .prom file."""
    series = Series()
    facts = report["facts"]
    status_by_index = {g["index"]: g["status"] for g in report["gpus"]}
    for gpu in facts["gpus"]:
        _gpu(series, gpu, status_by_index)
    for row in report["xid_counts"]:
        labels = (
            ("gpu", "" if row["gpu"] is None else str(row["gpu"])),
            ("uuid", row["uuid"] or ""),
            ("pci_bus_id", row["pci_bus_id"]),
            ("xid", str(row["xid"])),
        )
        series.add("gpu_xid_events_total", labels, row["count"])
    settings = report.get("settings")
    if settings and settings.get("hold") is not None:
        for gpu in settings["gpus"]:
            if gpu["index"] is not None:
                labels = (("gpu", str(gpu["index"])), ("uuid", gpu["uuid"] or ""))
                series.add("gpu_settings_hold", labels, gpu["holds"])
        series.add("gpu_node_settings_hold", (), settings["hold"])
    series.add("gpu_node_health_status", (), STATUS_VALUES[report["status"]])
    for severity in ("critical", "warning", "info"):
        count = sum(1 for f in report["findings"] if f["severity"] == severity)
        series.add("gpu_node_health_findings", (("severity", severity),), count)
    series.add("gpu_node_gpus", (("state", "enumerated"),), facts["count"])
    series.add("gpu_node_gpus", (("state", "lost"),), facts["lost_count"])
    series.add("gpu_node_health_last_run_timestamp_seconds", (), report["time"])
    series.add("gpu_node_health_run_duration_seconds", (), report["duration_s"])
    if report.get("bmc") is not None:
        _bmc(series, report["bmc"])
    return series.text()
