"""InfiniBand HCA ports from /sys/class/infiniband, checked against what a node should have.

read_ports() returns one dict per HCA port; a missing or unreadable attribute is None, never an
exception, since a half-loaded driver or an older kernel leaves files out. check_ports() turns the
ports and the expected list into findings that name the HCA, the port and the likely cause.
Attribute formats are the kernel's (drivers/infiniband/core/sysfs.c).
"""

from __future__ import annotations

import os
import re

CLASS_DIR = os.path.join("sys", "class", "infiniband")
PCI_DIR = os.path.join("sys", "bus", "pci", "devices")

# "100 Gb/sec (4X EDR)", "2.5 Gb/sec (1X SDR)"; older kernels leave SDR unnamed: "(4X)".
_RATE = re.compile(r"^(\d+(?:\.\d+)?) Gb/sec \((\d+)X(?: (\w+))?\)$")
_NUMBERED = re.compile(r"^(\d+): (.+)$")  # "4: ACTIVE", "5: LinkUp", "1: CA"
_GUID = re.compile(r"^([0-9a-fA-F]{4}):([0-9a-fA-F]{4}):([0-9a-fA-F]{4}):([0-9a-fA-F]{4})$")
_DIGITS = re.compile(r"(\d+)")

# Lane rate in Gb/s per speed name: to name the speed a rate implies (the kernel's table).
LANE_GBPS = {"SDR": 2.5, "DDR": 5, "QDR": 10, "FDR10": 10, "FDR": 14, "EDR": 25, "HDR": 50}
LANE_GBPS.update(NDR=100, XDR=200)
# The counters the ABI documentation files under errors, and link_downed. Data, packet, discard
# and wait counters measure traffic and congestion, so they are not judged here.
ERROR_COUNTERS = (
    *("symbol_error", "link_error_recovery", "link_downed", "port_rcv_errors"),
    *("port_rcv_remote_physical_errors", "port_rcv_switch_relay_errors"),
    *("port_xmit_constraint_errors", "port_rcv_constraint_errors"),
    *("local_link_integrity_errors", "excessive_buffer_overrun_errors"),
)
# Why a port is not ACTIVE / LinkUp, by physical state (then by logical state when LinkUp).
_LINK_CAUSES = {
    "Polling": "no link: cable or switch port",
    "Disabled": "port disabled on the HCA: enable it, or check the port type",
    "Sleep": "port asleep: no link",
    "PortConfigurationTraining": "link still training: flapping link, reseat or replace the cable",
    "LinkErrorRecovery": "link recovering from errors: reseat or replace the cable",
}
_ERRORS_CAUSE = "link errors since boot: reseat or replace the cable if they grow"
_LINKUP_CAUSES = {
    "INIT": "link up but not activated: no subnet manager on the fabric",
    "ARMED": "the subnet manager has not finished activating the port: check its log",
}


def _read(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _int(text, base=10):
    try:
        return int(text, base)
    except (TypeError, ValueError):
        return None  # absent, or "N/A (no PMA)" from a driver without counters


def _natural(name):
    """mlx5_2 before mlx5_10."""
    return [int(part) if part.isdigit() else part for part in _DIGITS.split(name)]


def _gbps(value):
    return int(value) if float(value).is_integer() else float(value)


def parse_rate(text):
    """'100 Gb/sec (4X EDR)' -> (100, '4X', 'EDR'); anything else -> (None, None, None)."""
    match = _RATE.match(text or "")
    if not match or int(match.group(2)) == 0:  # the kernel never shows 0X
        return None, None, None
    rate_gbps, lanes, speed = _gbps(float(match.group(1))), int(match.group(2)), match.group(3)
    if speed is None and lanes and rate_gbps == 2.5 * lanes:
        speed = "SDR"
    return rate_gbps, "%dX" % lanes, speed


def parse_numbered(text):
    """'4: ACTIVE' -> 'ACTIVE', '7: Phy Test' -> 'Phy Test'; anything else -> None."""
    match = _NUMBERED.match(text or "")
    return match.group(2) if match else None


def parse_guid(text):
    """The kernel's '9803:9b03:009f:cfd6' -> '0x98039b03009fcfd6', as ibstat prints GUIDs."""
    match = _GUID.match(text or "")
    return "0x" + "".join(match.groups()).lower() if match else None


def _device_link(path):
    """The PCI address the device link names: real sysfs and the simulator differ in the path."""
    try:
        return os.path.basename(os.readlink(path).rstrip("/")) or None
    except OSError:
        return None


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


def _read_port(port_dir, hca):
    def attr(name):
        return _read(os.path.join(port_dir, name))

    rate_gbps, width, speed = parse_rate(attr("rate"))
    gid0 = attr(os.path.join("gids", "0"))
    counters_dir = os.path.join(port_dir, "counters")
    port = dict(hca)
    port.update(
        port=int(os.path.basename(port_dir)),
        state=parse_numbered(attr("state")),
        phys_state=parse_numbered(attr("phys_state")),
        rate_gbps=rate_gbps,
        width=width,
        speed=speed,
        lid=_int(attr("lid"), 16),
        sm_lid=_int(attr("sm_lid"), 16),
        lid_mask_count=_int(attr("lid_mask_count")),
        cap_mask=_int(attr("cap_mask"), 16),
        link_layer=attr("link_layer"),
        gid0=gid0,
        port_guid=parse_guid(gid0[20:]) if gid0 and len(gid0) == 39 else None,
        counters={
            name: _int(_read(os.path.join(counters_dir, name)))
            for name in sorted(_listdir(counters_dir))
        },
    )
    return port


def read_ports(sysfs_root="/"):
    """One dict per HCA port under SYSFS_ROOT/sys/class/infiniband, in HCA then port order."""
    top = os.path.join(sysfs_root, CLASS_DIR)
    ports = []
    for name in sorted(_listdir(top), key=_natural):
        hca_dir = os.path.join(top, name)
        hca = {"hca": name, "pci_address": _device_link(os.path.join(hca_dir, "device"))}
        for key in ("fw_ver", "hca_type", "board_id", "node_desc"):
            hca[key] = _read(os.path.join(hca_dir, key))
        hca["node_type"] = parse_numbered(_read(os.path.join(hca_dir, "node_type")))
        for key in ("node_guid", "sys_image_guid"):
            hca[key] = parse_guid(_read(os.path.join(hca_dir, key)))
        ports_dir = os.path.join(hca_dir, "ports")
        for number in sorted((n for n in _listdir(ports_dir) if n.isdigit()), key=int):
            ports.append(_read_port(os.path.join(ports_dir, number), hca))
    return ports


MELLANOX_VENDOR = "0x15b3"
# PCI classes (class register >> 8) a ConnectX card presents: InfiniBand, or Ethernet (RoCE).
HCA_CLASSES = {0x0207: "infiniband", 0x0200: "ethernet"}


def read_hcas_on_pci(sysfs_root="/"):
    """Mellanox HCAs on PCI, driver or not: [{pci_address, device_id, link}] in bus order."""
    top = os.path.join(sysfs_root, PCI_DIR)
    hcas = []
    for name in sorted(_listdir(top)):
        device = os.path.join(top, name)
        if (_read(os.path.join(device, "vendor")) or "").lower() != MELLANOX_VENDOR:
            continue
        pci_class = _int(_read(os.path.join(device, "class")), 16)
        if pci_class is None or (pci_class >> 8) not in HCA_CLASSES:
            continue
        device_id = (_read(os.path.join(device, "device")) or "").lower().replace("0x", "")
        hcas.append(
            {
                "pci_address": name.lower(),
                "device_id": device_id,
                "link": HCA_CLASSES[pci_class >> 8],
            }
        )
    return hcas


def read_pci_addresses(sysfs_root="/"):
    """The PCI addresses present, lower case: tells an absent card from an unloaded driver."""
    return {name.lower() for name in _listdir(os.path.join(sysfs_root, PCI_DIR))}


def _finding(severity, check, hca, port, message):
    text = "%s port %s: %s" % (hca, port, message)
    return {"severity": severity, "check": check, "hca": hca, "port": port, "message": text}


def expected_port(entry):
    """One expected port, normalised; a broken entry is a configuration error (ValueError)."""
    try:
        want = dict(entry, hca=str(entry["hca"]), port=int(entry["port"]))
    except (KeyError, TypeError, ValueError):
        raise ValueError("an expected port needs hca and port, got %r" % (entry,)) from None
    try:
        if want.get("width") is not None:
            want["width"] = "%dX" % int(str(want["width"]).upper().rstrip("X"))
        if want.get("rate_gbps") is not None:
            want["rate_gbps"] = _gbps(float(want["rate_gbps"]))
    except ValueError:
        raise ValueError("expected width like 4X and rate_gbps a number: %r" % (entry,)) from None
    return want


def expected_ports(entries):
    """Every expected port normalised (expected_port); ValueError names the first broken entry
    by its place, "expected_ports[N]: ..."."""
    if not isinstance(entries, list):
        raise ValueError(
            "expected_ports must be a list of {hca, port, rate_gbps, width, link_layer, fw_ver, "
            "pci_address}, got %r" % (entries,)
        )
    ports = []
    for number, entry in enumerate(entries):
        try:
            ports.append(expected_port(entry))
        except ValueError as error:
            raise ValueError("expected_ports[%d]: %s" % (number, error)) from None
    return ports


def _absent(want, ports, pci_addresses):
    hca, address = want["hca"], want.get("pci_address")
    present = sorted(p["port"] for p in ports if p["hca"] == hca)
    if present:
        cause = "%s has port %s only" % (hca, ", ".join(str(n) for n in present))
    elif address and pci_addresses is not None and address.lower() in pci_addresses:
        cause = "PCI device %s is there but has no RDMA device: driver not loaded" % address
    elif address and pci_addresses is not None:
        cause = "PCI device %s absent: card not seated, dead or disabled in the BIOS" % address
    else:
        cause = "PCI device %s absent or driver not loaded" % (address or "of the HCA")
    return _finding("critical", "present", hca, want["port"], "not present: " + cause)


def _lanes(width):
    return int(width.rstrip("X"))


def _link_findings(port, want):
    """Width, then rate: a narrower link lowers the rate too, which is not a second fault."""
    found = []
    hca, number, width, rate_gbps = port["hca"], port["port"], port["width"], port["rate_gbps"]
    if rate_gbps is None or width is None:
        if want.get("width") or want.get("rate_gbps"):
            message = "rate unreadable, cannot check width and rate"
            found.append(_finding("warning", "rate", hca, number, message))
        return found
    expected_width = want.get("width")
    if expected_width and width != expected_width:
        narrower = _lanes(width) < _lanes(expected_width)
        cause = "degraded link: reseat or replace the cable" if narrower else "wider than expected"
        message = "width %s, expected %s (%s)" % (width, expected_width, cause)
        found.append(_finding("critical" if narrower else "info", "width", hca, number, message))
    expected_gbps = want.get("rate_gbps")
    if expected_gbps is None:
        return found
    lanes = _lanes(expected_width) if expected_width else _lanes(width)
    lane_gbps, expected_lane_gbps = rate_gbps / _lanes(width), expected_gbps / lanes
    if lane_gbps == expected_lane_gbps:
        return found
    names = [name for name, gbps in LANE_GBPS.items() if gbps == expected_lane_gbps]
    if lane_gbps < expected_lane_gbps:
        cause = "trained at %s %s, not %s: cable or switch port not rated for it" % (
            width,
            port["speed"] or "an unknown speed",
            "/".join(names) or "%g Gb/s a lane" % expected_lane_gbps,
        )
        severity = "critical"
    else:
        cause, severity = "faster than expected", "info"
    message = "rate %g Gb/s, expected %g (%s)" % (rate_gbps, expected_gbps, cause)
    return [*found, _finding(severity, "rate", hca, number, message)]


def _check_port(port, want):
    hca, number = port["hca"], port["port"]
    found = []
    state, phys_state = port["state"], port["phys_state"]
    if state != "ACTIVE" or phys_state != "LinkUp":
        if phys_state == "LinkUp":
            cause = _LINKUP_CAUSES.get(state, "expected ACTIVE / LinkUp")
        else:
            cause = _LINK_CAUSES.get(phys_state, "expected ACTIVE / LinkUp")
        message = "state %s / phys_state %s (%s)" % (state, phys_state, cause)
        found.append(_finding("critical", "state", hca, number, message))
    if phys_state == "LinkUp":  # a link that is not up has no meaningful width or rate
        found.extend(_link_findings(port, want))
    expected_layer = want.get("link_layer")
    if expected_layer and port["link_layer"] != expected_layer:
        cause = "port type set wrong in the HCA firmware: mlxconfig LINK_TYPE_P<n>"
        message = "link_layer %s, expected %s (%s)" % (port["link_layer"], expected_layer, cause)
        found.append(_finding("critical", "link_layer", hca, number, message))
    if want.get("fw_ver") and port["fw_ver"] != want["fw_ver"]:
        message = "firmware %s, expected %s (update it, e.g. mlxfwmanager)" % (
            port["fw_ver"] or "unreadable",
            want["fw_ver"],
        )
        found.append(_finding("warning", "firmware", hca, number, message))
    counters = port.get("counters") or {}
    errors = ["%s=%d" % (n, counters[n]) for n in ERROR_COUNTERS if counters.get(n)]
    if errors:
        message = "error counters %s (%s)" % (", ".join(errors), _ERRORS_CAUSE)
        found.append(_finding("warning", "errors", hca, number, message))
    return found


def check_ports(ports, expected=None, pci_addresses=None):
    """Findings {severity, check, hca, port, message} about PORTS (from read_ports).

    EXPECTED lists the ports a node must have, each {hca, port} plus any of rate_gbps, width,
    link_layer, fw_ver and pci_address; None checks every port found for state and errors only.
    PCI_ADDRESSES (read_pci_addresses) lets a missing HCA say whether the card or its driver is
    missing. Every port must be ACTIVE / LinkUp; error counters above zero are warnings.
    """
    by_key = {(p["hca"], p["port"]): p for p in ports}
    if expected is None:
        wanted = [{"hca": p["hca"], "port": p["port"]} for p in ports]
    else:
        wanted = [expected_port(entry) for entry in expected]
    findings = []
    for want in wanted:
        port = by_key.get((want["hca"], want["port"]))
        if port is None:
            findings.append(_absent(want, ports, pci_addresses))
        else:
            findings.extend(_check_port(port, want))
    listed = {(w["hca"], w["port"]) for w in wanted}
    for port in ports:
        if (port["hca"], port["port"]) not in listed:
            message = "present but not expected (%s, %s Gb/s %s)" % (
                port["state"],
                port["rate_gbps"],
                port["width"],
            )
            findings.append(_finding("info", "unexpected", port["hca"], port["port"], message))
    return findings
