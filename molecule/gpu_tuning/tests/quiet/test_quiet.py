"""After converge with the seed's quiet profile: the GPUs hold it, the node keeps it for boot."""

from gpu_tuning_node import (
    COMMAND,
    CONFIG,
    UNIT,
    UNIT_PATH,
    column,
    gate_of,
    gates,
    journal_of_current_run,
    read_config,
    unit_properties,
)
from node_gpus import PYTHON


def test_gpus_hold_the_quiet_profile(gpus):
    assert column(gpus, "persistence") == [1] * 4
    assert column(gpus, "power_limit_mw") == [200000] * 4
    # Locked at 1005 MHz: the idle clock sits at the cap, application clocks stay the defaults.
    assert column(gpus, "graphics_clock") == [1005] * 4
    assert column(gpus, "app_clocks") == [[877, 1312]] * 4
    assert column(gpus, "compute_mode") == [0] * 4


def test_graphics_clocks_are_locked_at_1005(locks):
    assert locks == [[[135, 1005], None]] * 4


def test_config_file_holds_the_request_and_the_gpus(host, gpus):
    assert host.file(CONFIG).mode == 0o644 and host.file(CONFIG).user == "root"
    written = read_config(host)
    assert written["format"] == 1 and written["profile"] == "quiet"
    assert written["request"] == {
        "gpus": ["all"],
        "persistence_mode": True,
        "power_limit": 200,
        "clocks": {"strategy": "auto", "graphics_mhz": 1005},
        "snap_clocks": True,
    }
    assert [(g["index"], g["uuid"]) for g in written["gpus"]] == list(
        enumerate(column(gpus, "uuid"))
    )


def test_command_is_a_wrapper_of_the_runtime_and_checks_the_file(host):
    command = host.file(COMMAND)
    assert command.mode == 0o755
    assert command.content_string.startswith("#!%s -I\n" % PYTHON)
    assert "from nvidia_gpu.boot_cli import main" in command.content_string
    check = host.run("%s check" % COMMAND)
    assert check.rc == 0, check.stderr
    assert "%s: valid; settings for 4 GPU(s)" % CONFIG in check.stdout
    assert check.stdout.count("already as configured") == 4


def test_unit_is_enabled_active_and_verifies(host):
    assert host.run("systemctl is-enabled %s" % UNIT).stdout.strip() == "enabled"
    assert unit_properties(host, "ActiveState", "SubState", "Result") == {
        "ActiveState": "active",
        "SubState": "exited",
        "Result": "success",
    }
    verify = host.run("systemd-analyze verify %s" % UNIT_PATH)
    assert verify.rc == 0 and "gpu-tuning" not in verify.stderr, verify.stderr
    unit = host.file(UNIT_PATH).content_string
    assert "RemainAfterExit=yes" in unit
    assert "After=nvidia-persistenced.service systemd-modules-load.service" in unit
    assert "ExecStart=%s apply --config %s --wait 10" % (COMMAND, CONFIG) in unit


def test_unit_ran_the_command_successfully(host):
    lines = journal_of_current_run(host)
    assert "4 of 4 GPU(s) hold the settings of %s (profile quiet)" % CONFIG in lines


JOB_UNIT = "/etc/systemd/system/gpu-job.service"
# GPU 0 taken off the quiet profile's 200 W by hand, as a driver reload would reset it.
SET_GPU0_TO_250_W = (
    "%s -c 'import pynvml as n; n.nvmlInit(); "
    "n.nvmlDeviceSetPowerManagementLimit(n.nvmlDeviceGetHandleByIndex(0), 250000)'" % PYTHON
)


def test_gated_unit_starts_only_while_the_gpus_hold_the_settings(host):
    assert gates(host) == [gate_of("gpu-job.service")]
    gate = host.file(gate_of("gpu-job.service")).content_string
    assert "ExecStartPre=%s check --held %s" % (COMMAND, CONFIG) in gate
    assert "After=%s" % UNIT in gate
    host.check_output(
        "printf '[Service]\\nType=oneshot\\nExecStart=/bin/true\\n' > %s && systemctl daemon-reload"
        % JOB_UNIT
    )
    try:
        assert host.run("systemctl start gpu-job.service").rc == 0
        host.check_output(SET_GPU0_TO_250_W)
        refused = host.run("systemctl start gpu-job.service")
        assert refused.rc != 0, refused.stdout
        journal = host.check_output("journalctl --no-pager -o cat -u gpu-job.service")
        assert "1 GPU(s) do not hold the settings of %s: GPU 0" % CONFIG in journal, journal
    finally:
        host.check_output("systemctl restart %s" % UNIT)  # back to 200 W for the next steps
        host.check_output("rm -f %s && systemctl daemon-reload" % JOB_UNIT)
    assert host.run("systemctl start gpu-job.service").rc != 0  # no unit file: not started
