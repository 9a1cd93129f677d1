"""Reading a sandbox node's GPUs back through NVML, as a user would: the node's GPU runtime
(nvml_runtime's Python and pynvml). Shared by the verify steps of every scenario; molecule/ is on
sys.path once pytest has loaded molecule/conftest.py."""

import json

PYTHON = "/opt/gpu-node/venv/bin/python"
# A reboot's worth of simulated hardware state: GPU and IB port faults and the kernel log gone,
# the GPU settings applied again as the boot unit does.
RESET_FAULTS = "nvml-sim reset && ib-sim clear /run/ib-sim && systemctl restart gpu-tuning.service"
READ_BACK = """
import json, pynvml as N
N.nvmlInit()
gpus = []
for i in range(N.nvmlDeviceGetCount()):
    h = N.nvmlDeviceGetHandleByIndex(i)
    gpus.append({
        "uuid": N.nvmlDeviceGetUUID(h),
        "persistence": N.nvmlDeviceGetPersistenceMode(h),
        "power_limit_mw": N.nvmlDeviceGetPowerManagementLimit(h),
        "app_clocks": [N.nvmlDeviceGetApplicationsClock(h, N.NVML_CLOCK_MEM),
                       N.nvmlDeviceGetApplicationsClock(h, N.NVML_CLOCK_GRAPHICS)],
        "graphics_clock": N.nvmlDeviceGetClockInfo(h, N.NVML_CLOCK_GRAPHICS),
        "compute_mode": N.nvmlDeviceGetComputeMode(h),
        "power_mw": N.nvmlDeviceGetPowerUsage(h),
        "temperature_c": N.nvmlDeviceGetTemperature(h, N.NVML_TEMPERATURE_GPU),
    })
print(json.dumps(gpus))
"""


def read_back(host):
    """Every GPU's settings, power draw and temperature as NVML on the node reports them."""
    return json.loads(host.check_output("%s -c '%s'" % (PYTHON, READ_BACK)))
