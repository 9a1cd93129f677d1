"""The boot-time command (nvidia_gpu.boot_cli) as tests run it: each run its own process, as
under systemd, with a config file written for the simulated GPUs of a test's machine."""

import json
import subprocess
import sys

from conftest import MODULE_UTILS

QUIET = {  # the role's quiet profile, as the role writes it into the request
    "gpus": ["all"],
    "persistence_mode": True,
    "power_limit": 200,
    "clocks": {"strategy": "auto", "graphics_mhz": 1005},
    "snap_clocks": True,
}
BOOT = {
    "persistence": 0,
    "power_limit_mw": 300000,
    "app_clocks": [877, 1312],
    "graphics_clock": 1312,
    "compute_mode": 0,
}
HELD = dict(BOOT, persistence=1, power_limit_mw=200000, graphics_clock=1005)
TOOL = (
    "import sys; sys.path.insert(0, %r); from nvidia_gpu.boot_cli import main; "
    "sys.exit(main(sys.argv[1:]))" % str(MODULE_UTILS)
)


def recorded_gpus(machine, slots=False):
    """The GPUs as the config file records them; with slots, also slot and serial (as the role
    writes them now)."""
    facts = machine.module("nvidia_gpu_facts", {"supported_clocks": False})
    return [
        dict(
            {"index": g["index"], "uuid": g["uuid"], "name": g["name"]},
            **({"slot": g["pci_bus_id"], "serial": g["serial"]} if slots else {}),
        )
        for g in facts["ansible_facts"]["nvidia_gpu"]["gpus"]
    ]


def write_config(machine, request=None, gpus=None, **extra):
    path = machine.root / "gpu-tuning.json"
    data = {
        "comment": "test",
        "format": 1,
        "profile": "quiet",
        "request": request or QUIET,
        "gpus": gpus if gpus is not None else recorded_gpus(machine),
    }
    data.update(extra)
    path.write_text(json.dumps(data))
    return path


def command(machine, *args):
    return [sys.executable, "-c", TOOL, *map(str, args)]


def run(machine, *args, env=None):
    return subprocess.run(
        command(machine, *args),
        env=dict(machine.env, **(env or {})),
        capture_output=True,
        text=True,
        timeout=60,
    )


def apply(machine, path, wait=5):
    return run(machine, "apply", "--config", path, "--wait", wait)
