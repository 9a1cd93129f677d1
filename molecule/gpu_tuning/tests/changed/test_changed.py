"""After quiet -> custom 250 W (GPU 3: 220 W): only the power limits moved, the file and the
unit follow."""

from gpu_tuning_node import (
    CONFIG,
    column,
    gate_of,
    gates,
    journal_of_current_run,
    read_config,
    unit_properties,
)


def test_only_the_power_limits_changed(gpus, locks):
    assert column(gpus, "power_limit_mw") == [250000, 250000, 250000, 220000]
    assert column(gpus, "persistence") == [1] * 4
    assert column(gpus, "graphics_clock") == [1005] * 4
    assert locks == [[[135, 1005], None]] * 4


def test_config_file_has_the_new_request_without_the_a100_override(host):
    written = read_config(host)
    assert written["profile"] == "custom"
    assert written["request"]["power_limit"] == 250
    assert written["request"]["overrides"] == [{"gpus": [3], "power_limit": 220}]


def test_unit_was_restarted_and_found_nothing_left_to_do(host):
    assert unit_properties(host, "ActiveState", "Result") == {
        "ActiveState": "active",
        "Result": "success",
    }
    lines = journal_of_current_run(host)
    assert sum("already as configured" in line for line in lines) == 4, lines
    assert "4 of 4 GPU(s) hold the settings of %s (profile custom)" % CONFIG in lines


def test_the_gate_follows_the_list_of_units(host):
    assert gates(host) == [gate_of("gpu-batch.service")]  # gpu-job.service's went
