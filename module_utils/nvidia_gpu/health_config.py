"""The gpu-health command's config file, written by the gpu_health role: what healthy means for
this node (the health module's options, from its hardware profile), where the declared GPU
settings are, how to reach the BMC, and where the status and the metrics go.

A JSON object, read strictly (strict_json) and validated in full before anything is read from
the GPUs: a wrong value raises HealthConfigError naming the key and what is allowed.

Standard library and the nvidia_gpu package only, Python 3.8+.
"""

from __future__ import annotations

import os

from . import bmc, ib_ports
from .boot_cli import DEFAULT_CONFIG as DEFAULT_SETTINGS_FILE
from .boot_config import one_line
from .health import FAIL_ON
from .health_options import normalise
from .nvml import GpuError
from .pci import SYSFS_PCI_DEVICES
from .strict_json import FileRefused, parse, read, shown

CONFIG_FORMAT = 1
DEFAULT_CONFIG = "/etc/gpu-node/gpu-health.json"
DEFAULT_STATUS_FILE = "/run/gpu-health/status.json"
# key: (required, what it may be)
KEYS = {
    "format": (True, "%d" % CONFIG_FORMAT),
    "comment": (False, "text"),
    "expectations": (True, "a mapping of health options"),
    "fail_on": (False, "one of %s" % ", ".join(FAIL_ON)),
    # Absent: gpu-tuning's own default file; null: the settings are not checked.
    "settings_file": (False, "an absolute path or null"),
    "bmc": (False, "null or a mapping with keys %s" % ", ".join(bmc.SETTINGS_KEYS)),
    "status_file": (False, "an absolute path"),
    "textfile": (False, "an absolute path ending in .prom, or null"),
    "sysfs_root": (False, "an absolute path"),
    # Absent or null: the InfiniBand ports are not checked.
    "infiniband": (
        False,
        "null or a mapping with keys %s" % ", ".join(("sysfs_root", "expected_ports")),
    ),
    # The GPU inventory by slot (gpu_inventory.py): names the slot of a missing GPU. Absent or
    # null: not read.
    "gpu_inventory": (False, "an absolute path or null"),
}


class HealthConfigError(GpuError):
    """The config file cannot be used; the message names the file and the key."""


class HealthConfig:
    """A validated config: every value checked, defaults filled in."""

    def __init__(self, path, data):
        self.path = path
        # The options as written: health.evaluate normalises them itself; checked here so that a
        # wrong one is refused before any GPU is read.
        normalise(data["expectations"])
        self.expectations = data["expectations"]
        self.fail_on = data.get("fail_on", "critical")
        self.settings_file = data.get("settings_file", DEFAULT_SETTINGS_FILE)
        self.bmc = _bmc(data.get("bmc"))
        self.status_file = data.get("status_file", DEFAULT_STATUS_FILE)
        self.textfile = data.get("textfile")
        self.sysfs_root = data.get("sysfs_root", SYSFS_PCI_DEVICES)
        self.infiniband = infiniband_section(data.get("infiniband"))
        self.gpu_inventory = gpu_inventory_file(data.get("gpu_inventory"))


def _absolute(key, value, suffix=None, optional=False):
    if value is None and optional:
        return
    if (
        not isinstance(value, str)
        or not os.path.isabs(value)
        or (suffix is not None and not value.endswith(suffix))
    ):
        raise GpuError("%s %s is not valid; allowed: %s" % (key, shown(value), KEYS[key][1]))


def _bmc(value):
    """None, or the BMC settings as bmc.check_settings checks them."""
    return None if value is None else bmc.check_settings(value)


def infiniband_section(value):
    """None, or {sysfs_root, expected_ports}: where sysfs is (the root above sys/class/infiniband)
    and the ports the node must have (ib_ports.expected_port each; null: every port found)."""
    if value is None:
        return None
    allowed = KEYS["infiniband"][1]
    if not isinstance(value, dict) or set(value) - {"sysfs_root", "expected_ports"}:
        raise GpuError("infiniband %s is not valid; allowed: %s" % (shown(value), allowed))
    root = value.get("sysfs_root", "/")
    if not isinstance(root, str) or not os.path.isabs(root):
        raise GpuError(
            "infiniband.sysfs_root %s is not valid; allowed: an absolute path" % shown(root)
        )
    expected = value.get("expected_ports")
    if expected is None:
        return {"sysfs_root": root, "expected_ports": None}
    try:
        return {"sysfs_root": root, "expected_ports": ib_ports.expected_ports(expected)}
    except ValueError as error:
        raise GpuError("infiniband.%s" % error) from None


def gpu_inventory_file(value):
    """None, or the absolute path of the GPU inventory file (gpu_inventory.py) whose slots name
    a missing GPU; the file itself is read at each run (absent or damaged: no slot names)."""
    _absolute("gpu_inventory", value, optional=True)
    return value


def check(data):
    """Raise GpuError naming the first key of data that is wrong."""
    if not isinstance(data, dict):
        raise GpuError("the file must hold a JSON object, not %s" % shown(data))
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise GpuError("unknown key(s) %s; allowed: %s" % (", ".join(unknown), ", ".join(KEYS)))
    for key, (required, allowed) in KEYS.items():
        if required and key not in data:
            raise GpuError("%s is missing; allowed: %s" % (key, allowed))
    version = data["format"]
    if isinstance(version, bool) or version != CONFIG_FORMAT:
        raise GpuError(
            "format %s is not supported; this command reads format %d"
            % (shown(version), CONFIG_FORMAT)
        )
    if not isinstance(data["expectations"], dict):
        raise GpuError(
            "expectations %s is not valid; allowed: %s"
            % (shown(data["expectations"]), KEYS["expectations"][1])
        )
    if data.get("fail_on", "critical") not in FAIL_ON:
        raise GpuError(
            "fail_on %s is not valid; allowed: %s"
            % (
                shown(data["fail_on"]),
                KEYS["fail_on"][1],
            )
        )
    if "comment" in data and not isinstance(data["comment"], str):
        raise GpuError("comment %s is not valid; allowed: text" % shown(data["comment"]))
    _absolute("settings_file", data.get("settings_file"), optional=True)
    _absolute("status_file", data.get("status_file", DEFAULT_STATUS_FILE))
    _absolute("textfile", data.get("textfile"), suffix=".prom", optional=True)
    _absolute("sysfs_root", data.get("sysfs_root", SYSFS_PCI_DEVICES))


def load(path):
    """Read and validate the file; HealthConfigError says what is wrong and where."""
    try:
        data = parse(path, read(path, "a file the gpu_health role wrote"))
    except FileRefused as error:
        raise HealthConfigError(str(error)) from error
    try:
        check(data)
        return HealthConfig(path, data)
    except (GpuError, bmc.BmcError) as error:  # the health options' and the BMC's checks
        raise HealthConfigError("%s: %s" % (path, one_line(error))) from error
