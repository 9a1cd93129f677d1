"""What every step of the gpu_tuning scenario reads on the node: the GPUs through NVML (the
runtime's Python and pynvml, as a user would), the simulated driver's own view of the locks
(NVML cannot read locks back), the boot unit's state and its journal."""

import json

UNIT = "gpu-tuning.service"
UNIT_PATH = "/etc/systemd/system/gpu-tuning.service"
CONFIG = "/etc/gpu-node/gpu-tuning.json"
COMMAND = "/usr/local/sbin/gpu-tuning"
V100_DEFAULTS = {"power_limit_mw": 300000, "app_clocks": [877, 1312], "graphics_clock": 1312}


def gate_of(unit):
    return "/etc/systemd/system/%s.d/gpu-tuning-gate.conf" % unit


def gates(host):
    """The start gates on the node."""
    found = host.check_output("find /etc/systemd/system -name gpu-tuning-gate.conf")
    return sorted(found.split())


def column(gpus, key):
    return [gpu[key] for gpu in gpus]


def unit_properties(host, *names):
    out = host.check_output("systemctl show %s --property %s" % (UNIT, ",".join(names)))
    return dict(line.split("=", 1) for line in out.splitlines())


def journal_of_current_run(host, priority=None):
    """The unit's journal lines of its current (or last) run, without prefixes."""
    invocation = unit_properties(host, "InvocationID")["InvocationID"]
    assert invocation, "the unit has never run"
    return host.check_output(
        "journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID=%s %s"
        % (invocation, "-p %s" % priority if priority else "")
    ).splitlines()


def read_config(host):
    return json.loads(host.file(CONFIG).content_string)
