"""One health run of a node, as the gpu-health timer does it between plays: the GPUs' facts and
health findings (health.py, as the nvidia_gpu_health module), whether the settings the
gpu_tuning role declared still hold (its boot config, planned in check mode), the BMC's
sensors (bmc.py), the InfiniBand ports (ib_ports.py) and the slots of the GPU inventory that no
GPU answers for (inventory_slots.py). The result is one status document:
what the JSON status file holds and what metrics.py turns into Prometheus metrics.

Standard library and the nvidia_gpu package only, Python 3.8+.
"""

from __future__ import annotations

import json
import os
import socket
import time

from . import bmc, boot_apply, boot_hardware, gpu_inventory, health, ib_ports, inventory_slots, pci
from .boot_cli import describe
from .boot_config import ConfigError
from .boot_config import load as load_settings
from .facts import collect
from .nvml import GpuError

STATUS_FORMAT = 1


def _settings(path, facts, sysfs_root, findings):
    """{file, hold, gpus: [{index, uuid, holds, differs}]}: the declared settings read back.

    A GPU whose settings no longer hold (a driver reload, someone's nvidia-smi) is critical: on
    the seed machine an uncapped GPU is what drops the others off the bus.
    """
    if not path:
        return None
    if not os.path.exists(path):
        findings.add("info", "settings", "%s does not exist: no declared settings to check." % path)
        return {"file": path, "hold": None, "gpus": []}
    try:
        config = load_settings(path)
    except ConfigError as error:
        findings.add("warning", "settings", "declared settings not checked: %s." % error)
        return {"file": path, "hold": None, "gpus": []}
    # The PCI tree tells a pulled card (named by the inventory check) from one that is missing.
    _found, missing, _covered, results, failure = boot_apply.plan_file(
        config, boot_hardware.gpu_slots(sysfs_root)
    )
    by_uuid = {g.get("uuid"): g for g in facts["gpus"]}
    gpus = []
    for result in results or []:
        gpu = by_uuid.get(result.get("uuid"), result)
        entry = {
            "index": result["index"],
            "uuid": result.get("uuid"),
            "holds": not result["changed"],
            "differs": list(result["changed"]),
        }
        gpus.append(entry)
        if result["changed"]:
            findings.add(
                "critical",
                "settings",
                "%s; they reset at a driver reload or were changed by hand: `systemctl restart "
                "gpu-tuning` sets them again."
                % describe(result, "settings no longer as declared (now -> declared):"),
                gpu=gpu,
                value=list(result["changed"]),
                expected="as declared",
            )
    # A GPU that does not answer is its own finding (lost, or missing from the inventory check).
    for uuid, reason in missing.items():
        gpus.append({"index": None, "uuid": uuid, "holds": False, "differs": ["missing"]})
        findings.add(
            "info",
            "settings",
            "%s: settings not checked: %s." % (boot_apply.label(config, uuid), reason),
            value=uuid,
            expected="present",
        )
    if failure is not None:
        findings.add("warning", "settings", "declared settings not checked: %s." % failure)
    hold = None if failure is not None else all(g["holds"] for g in gpus)
    return {"file": path, "hold": hold, "gpus": gpus}


def _bmc(config, findings):
    """{sensors: {NAME: {value, unit, status}}} or None; a BMC that does not answer is a warning."""
    if config is None:
        return None
    try:
        readings = bmc.read_sensors(
            bmc.subprocess_runner(config["timeout_s"]), config["access"], config["timeout_s"]
        )
    except bmc.BmcError as error:
        findings.add("warning", "bmc", "BMC sensors could not be read: %s." % error)
        return {"read": False, "sensors": {}}
    sensors = bmc.evaluate(readings, config["limits"], config["rails_12v"], findings)
    return {"read": True, "sensors": sensors}


def infiniband_status(settings, findings):
    """{ports: [...]} of the InfiniBand HCAs, each port checked (ib_ports), or None."""
    if settings is None:
        return None
    ports = ib_ports.read_ports(settings["sysfs_root"])
    pci_addresses = ib_ports.read_pci_addresses(settings["sysfs_root"])
    for found in ib_ports.check_ports(ports, settings["expected_ports"], pci_addresses):
        findings.add(found["severity"], "infiniband", found["message"] + ".", value=found["check"])
    keys = ("hca", "port", "state", "phys_state", "rate_gbps", "width", "link_layer", "lid")
    return {"ports": [{key: port.get(key) for key in keys} for port in ports]}


def gpu_inventory_status(path, facts, sysfs_root, findings):
    """{file, read, error, unanswered, unplaced} or None (path None: not read): the recorded
    slots of the GPU inventory in path that no GPU answers for now (inventory_slots), which
    health.evaluate names in its count finding; unplaced: the GPUs with no known PCI address.
    No file: nothing named. A file that cannot be used is a warning; the checks go on."""
    if path is None:
        return None
    section = {"file": path, "read": False, "error": None, "unanswered": [], "unplaced": []}
    try:
        record = gpu_inventory.load(path)
    except gpu_inventory.InventoryError as error:
        section["error"] = str(error)
        findings.add(
            "warning",
            "gpu_inventory",
            "The GPU inventory cannot be used, so a missing GPU is not named by its slot: %s%s."
            % (
                error,
                " (moved away, the next gpu_inventory run starts a new one)"
                if error.replaceable
                else "",
            ),
            value=path,
            expected="a GPU inventory",
        )
        return section
    if record is None:
        return section
    enumerated, unplaced = inventory_slots.placed(facts["gpus"])
    section.update(read=True, unplaced=unplaced)
    # The PCI tree only when a recorded slot has no GPU: it tells empty from not enumerated.
    if inventory_slots.unanswered(record, enumerated, None):
        try:
            on_bus = set(pci.gpu_addresses(sysfs_root))
        except OSError:
            on_bus = None
        section["unanswered"] = inventory_slots.unanswered(record, enumerated, on_bus)
    return section


def xid_counts(facts, events):
    """[{gpu, uuid, pci_bus_id, xid, count}] for the Xid lines of this boot, per GPU and code."""
    by_bus = {str(g.get("pci_bus_id", ""))[:10]: g for g in facts["gpus"] if g.get("pci_bus_id")}
    counts = {}
    for event in events:
        key = (event["pci_bus_id"], event["xid"])
        counts[key] = counts.get(key, 0) + 1
    rows = []
    for (bus, code), count in sorted(counts.items()):
        gpu = by_bus.get(bus, {})
        rows.append(
            {
                "gpu": gpu.get("index"),
                "uuid": gpu.get("uuid"),
                "pci_bus_id": bus,
                "xid": code,
                "count": count,
            }
        )
    return rows


def previous_status(path):
    """The last run's status document, or None (first run, unreadable: nothing to go by)."""
    try:
        with open(path, encoding="utf-8") as handle:
            previous = json.load(handle)
        return previous if isinstance(previous, dict) else None
    except (OSError, ValueError):
        return None


def remember_lost(facts, previous):
    """Give a lost GPU the UUID it had in the last run, found by its PCI address, so that its
    findings and metric series keep naming the same card after it fell off the bus."""
    try:
        known_before = {
            g["pci_bus_id"]: g["uuid"]
            for g in previous["facts"]["gpus"]
            if g.get("pci_bus_id") and g.get("uuid") not in (None, "unknown")
        }
    except (TypeError, KeyError, AttributeError):
        return
    for gpu in facts["gpus"]:
        if gpu["lost"] and "uuid" not in gpu and gpu.get("pci_bus_id") in known_before:
            gpu["uuid"] = known_before[gpu["pci_bus_id"]]
            gpu["uuid_from"] = "last status"


def run(config, clock=time.time):
    """The status document of one run; NVML that cannot be read at all is a critical finding."""
    started = clock()
    findings = health.Findings()
    try:
        facts = collect(with_supported_clocks=False, sysfs_root=config.sysfs_root)
    except GpuError as error:
        findings.add("critical", "nvml", "the GPUs cannot be read: %s" % error)
        facts = {"count": 0, "lost_count": 0, "gpus": [], "link_matrix": {}, "unreadable": []}
        report = health.verdict(facts, findings.items, [])
    else:
        remember_lost(facts, previous_status(config.status_file))
        slots = gpu_inventory_status(config.gpu_inventory, facts, config.sysfs_root, findings)
        report = health.evaluate(facts, config.expectations, slots)
        findings.items.extend(report["findings"])
        settings = _settings(config.settings_file, facts, config.sysfs_root, findings)
        bmc_status = _bmc(config.bmc, findings)
        infiniband = infiniband_status(config.infiniband, findings)
        report = health.verdict(facts, findings.items, report["xid_events"])
        report["settings"] = settings
        report["bmc"] = bmc_status
        report["infiniband"] = infiniband
        report["gpu_inventory"] = slots
    blocking = health.blocking(report["findings"], config.fail_on)
    report.update(
        format=STATUS_FORMAT,
        host=socket.gethostname(),
        time=started,
        duration_s=round(clock() - started, 3),
        status=health.worst([f["severity"] for f in report["findings"]]),
        fail_on=config.fail_on,
        blocking=len(blocking),
        xid_counts=xid_counts(facts, report["xid_events"]),
        facts=facts,
    )
    report.setdefault("settings", None)
    report.setdefault("bmc", None)
    report.setdefault("infiniband", None)
    report.setdefault("gpu_inventory", None)
    return report


def status_text(report):
    return json.dumps(report, indent=1, sort_keys=True, default=str) + "\n"
