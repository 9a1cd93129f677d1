"""Bad input to nvidia_gpu_settings: each case fails with a message that names the value and what
is allowed, and no GPU has changed (read back through NVML)."""

import pytest

CLOCKS_APP = {"strategy": "application"}
CASES = [
    # (id, module args, text the error must contain)
    (
        "power above range",
        {"power_limit": 350},
        "power_limit 350 W is outside the card's range 150-300 W",
    ),
    (
        "power below range",
        {"power_limit": 100},
        "power_limit 100 W is outside the card's range 150-300 W",
    ),
    (
        "power word",
        {"power_limit": "max"},
        "power_limit (watts) 'max' is not valid; allowed: a positive whole number or 'default'",
    ),
    ("power negative", {"power_limit": -5}, "power_limit (watts) -5 is not valid"),
    ("power zero", {"power_limit": 0}, "power_limit (watts) 0 is not valid"),
    ("power fraction", {"power_limit": 200.5}, "power_limit (watts) 200.5 is not valid"),
    ("power boolean", {"power_limit": True}, "power_limit (watts) True is not valid"),
    (
        "graphics clock unsupported",
        {"clocks": dict(CLOCKS_APP, graphics_mhz=1000)},
        "1000 MHz is not a supported graphics clock at memory clock 877 MHz; nearest supported: "
        "990, 997, 1005 MHz",
    ),
    (
        "memory clock unsupported",
        {"clocks": dict(CLOCKS_APP, memory_mhz=900)},
        "900 MHz is not a supported memory clock; nearest supported: 877 MHz",
    ),
    (
        "graphics clock above max",
        {"clocks": {"strategy": "locked", "graphics_mhz": 2000}},
        "2000 MHz is not a supported graphics clock; nearest supported: 1515, 1522, 1530 MHz",
    ),
    (
        "graphics clock word",
        {"clocks": {"graphics_mhz": "fast"}},
        "clocks.graphics_mhz 'fast' is not valid; allowed: a positive whole number or 'default'",
    ),
    (
        "strategy unknown",
        {"clocks": {"strategy": "turbo", "graphics_mhz": 1005}},
        "value of strategy must be one of: auto, locked, application, default, got: turbo",
    ),
    (
        "locked without graphics",
        {"clocks": {"strategy": "locked"}},
        "clocks.strategy locked needs graphics_mhz",
    ),
    (
        "auto with default graphics",
        {"clocks": {"graphics_mhz": "default"}},
        "clocks.strategy auto needs graphics_mhz",
    ),
    (
        "minimum above maximum",
        {"clocks": {"strategy": "locked", "graphics_mhz": 1005, "graphics_min_mhz": 1200}},
        "graphics_min_mhz 1200 is above graphics_mhz 1005",
    ),
    (
        "default strategy with values",
        {"clocks": {"strategy": "default", "graphics_mhz": 1005}},
        "clocks.strategy default restores the card's own clocks and takes no MHz values",
    ),
    (
        "memory lock on volta",
        {"clocks": {"strategy": "locked", "graphics_mhz": 1005, "memory_mhz": 850}},
        "memory clocks can be locked on Ampere and newer only; this volta GPU's memory clocks are "
        "877 MHz",
    ),
    (
        "minimum with application clocks",
        {"clocks": dict(CLOCKS_APP, graphics_mhz=1005, graphics_min_mhz=500)},
        "clocks.graphics_min_mhz applies only to strategy locked or auto",
    ),
    (
        "reset and clocks together",
        {"reset_clocks": True, "clocks": {"graphics_mhz": 1005}},
        "parameters are mutually exclusive: clocks|reset_clocks",
    ),
    (
        "index not present",
        {"gpus": [7], "power_limit": 200},
        "GPU selector '7' matches no GPU on this host; present: 0 Tesla V100-SXM2-16GB",
    ),
    (
        "uuid not present",
        {"gpus": ["GPU-00000000-dead-beef-0000-000000000000"], "power_limit": 200},
        "GPU selector 'GPU-00000000-dead-beef-0000-000000000000' matches no GPU",
    ),
    (
        "model not present",
        {"gpus": ["*A100*"], "power_limit": 200},
        "GPU selector '*A100*' matches no GPU",
    ),
    (
        "selector boolean",
        {"gpus": [True], "power_limit": 200},
        "GPU selector True is not valid; allowed: 'all', an index",
    ),
    (
        "compute mode unknown",
        {"compute_mode": "exclusive_thread"},
        "value of compute_mode must be one of: default, exclusive_process, prohibited, got: "
        "exclusive_thread",
    ),
    ("persistence word", {"persistence_mode": "sometimes"}, "persistence_mode"),
    (
        "nothing requested",
        {},
        "No setting requested; give at least one of persistence_mode, power_limit, clocks",
    ),
    (
        "override without gpus",
        {"overrides": [{"power_limit": 200}]},
        "missing required arguments: gpus found in overrides",
    ),
    (
        "override unknown key",
        {"overrides": [{"gpus": [0], "power": 200}]},
        "Unsupported parameters for (basic.py) module: overrides.power",
    ),
    (
        "override out of range",
        {"power_limit": 200, "overrides": [{"gpus": [3], "power_limit": 400}]},
        "GPU 3 (Tesla V100-SXM2-16GB, GPU-",
    ),
    (
        "override clocks unknown key",
        {"overrides": [{"gpus": [0], "clocks": {"graphic": 1005}}]},
        "Unsupported parameters for (basic.py) module: overrides.clocks.graphic. Supported "
        "parameters include: graphics_mhz, graphics_min_mhz, memory_mhz, strategy",
    ),
    (
        "several problems at once",
        {"power_limit": 400, "clocks": dict(CLOCKS_APP, graphics_mhz=1001)},
        "power_limit 400 W is outside",
    ),
]


@pytest.mark.parametrize(("args", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_and_nothing_changes(machine, args, message):
    before = machine.state()
    result = machine.module("nvidia_gpu_settings", args)
    assert result.get("failed"), result
    assert message in result["msg"]
    assert machine.state() == before
    assert not (machine.run_dir / "locked-clocks.json").exists()


def test_every_problem_of_every_gpu_is_listed(machine):
    result = machine.module(
        "nvidia_gpu_settings", {"power_limit": 400, "clocks": dict(CLOCKS_APP, graphics_mhz=1001)}
    )
    lines = result["msg"].splitlines()
    assert lines[0].startswith("Nothing was changed")
    assert len(lines) == 1 + 4 * 2  # one line per problem: power and clock on each of 4 GPUs


def test_lost_gpu_in_the_selection_stops_everything(machine):
    machine.cli("fault", 3, "lost")
    before = machine.state_of([0, 1, 2])
    result = machine.module("nvidia_gpu_settings", {"power_limit": 200})
    assert result["failed"]
    assert "GPU 3: the GPU has fallen off the bus (Xid 79)" in result["msg"]
    assert machine.state_of([0, 1, 2]) == before


def test_gpu_without_power_limits(machine):
    machine.cli("fault", 1, "fail", "nvmlDeviceGetPowerManagementLimitConstraints", "NOT_SUPPORTED")
    before = machine.state()
    result = machine.module("nvidia_gpu_settings", {"power_limit": 200})
    assert result["failed"] and "does not support power limits" in result["msg"]
    assert machine.state() == before
