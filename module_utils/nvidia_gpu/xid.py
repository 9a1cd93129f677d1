"""Xid events from the kernel log: what each code means and what usually causes it."""

from __future__ import annotations

import re
import subprocess

# code: (severity, what happened, likely cause / what to do). Grades follow DCGM's.
CATALOGUE = {
    13: (
        "info",
        "graphics engine exception",
        "usually the application (bad kernel or memory access)",
    ),
    31: (
        "warning",
        "GPU memory page fault",
        "usually the application; repeated faults may be hardware",
    ),
    32: ("warning", "invalid or corrupted push buffer", "PCIe errors: check riser/seating"),
    38: ("warning", "driver firmware error", "update the driver; reset the GPU"),
    39: ("warning", "driver firmware error", "update the driver; reset the GPU"),
    42: ("warning", "video processor exception", "driver or hardware; reset the GPU"),
    43: ("warning", "GPU stopped processing", "usually the application was killed or faulted"),
    45: ("info", "preemptive cleanup", "follows another error or a killed application"),
    48: (
        "critical",
        "double-bit ECC error",
        "uncorrectable memory error: check retired pages; RMA if it recurs",
    ),
    54: ("warning", "auxiliary power is not connected", "power cabling to the GPU"),
    56: ("warning", "display engine error", "power: check the supply and cabling"),
    57: (
        "warning",
        "error programming video memory interface",
        "power or memory: check the supply",
    ),
    58: ("warning", "unstable video memory interface", "power or memory: check the supply"),
    60: ("warning", "micro-controller error (thermal)", "check cooling and heatsink contact"),
    61: ("warning", "micro-controller breakpoint (thermal)", "check cooling and heatsink contact"),
    62: ("warning", "micro-controller halt (thermal)", "check cooling and heatsink contact"),
    63: (
        "warning",
        "ECC page retirement or row remapping recorded",
        "reboot to apply it; watch the count",
    ),
    64: (
        "critical",
        "ECC page retirement or row remapping failed",
        "memory is failing: RMA the GPU",
    ),
    74: (
        "critical",
        "NVLink error",
        "NVLink seating: SXM2 mounting screws (torque), dirty or damaged connector; "
        "NCCL hangs follow",
    ),
    79: (
        "critical",
        "GPU has fallen off the bus",
        "power transients (12 V sag, PSU capacity or loose high-current connections) or seating",
    ),
    92: (
        "warning",
        "high single-bit ECC error rate",
        "memory degrading: watch retired pages / remapped rows",
    ),
    94: ("warning", "contained ECC error", "the affected application was stopped; reset the GPU"),
    95: (
        "critical",
        "uncontained ECC error",
        "every application on the GPU was stopped: reset the GPU",
    ),
    119: ("critical", "GSP firmware timeout", "reset the GPU; update the driver if it recurs"),
    120: ("critical", "GSP firmware error", "reset the GPU; update the driver if it recurs"),
    140: ("critical", "unrecovered ECC error", "reset the GPU; RMA if it recurs"),
}
UNKNOWN = ("warning", "Xid event", "see NVIDIA's Xid catalogue")

# NVRM: Xid (PCI:0000:1a:00): 79, pid=1234, name=python, GPU has fallen off the bus.
LINE = re.compile(
    r"NVRM: Xid \(PCI:([0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2})(?:\.\d)?\): (\d+),"
)


def describe(code):
    severity, what, cause = CATALOGUE.get(code, UNKNOWN)
    return {"severity": severity, "meaning": what, "likely_cause": cause}


def parse(lines):
    """[{pci_bus_id, xid, line}] for every Xid line; bus ids as '0000:1a:00'."""
    events = []
    for line in lines:
        match = LINE.search(line)
        if match:
            events.append(
                {
                    "pci_bus_id": match.group(1).lower(),
                    "xid": int(match.group(2)),
                    "line": line.strip(),
                }
            )
    return events


def read_kernel_log(source):
    """Kernel messages of this boot: 'journal' (journalctl -k), 'dmesg', or a file path.

    Returns (lines, None) or ([], reason) when the log cannot be read.
    """
    if source in ("journal", "dmesg"):
        command = (
            ["journalctl", "-k", "-b", "--no-pager", "-o", "short-iso"]
            if source == "journal"
            else ["dmesg", "--time-format", "iso"]
        )
        try:
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError) as error:
            return [], "%s could not be read: %s" % (source, error)
        return output.splitlines(), None
    try:
        with open(source, errors="replace") as handle:
            return handle.read().splitlines(), None
    except OSError as error:
        return [], "%s could not be read: %s" % (source, error)
