"""After a reboot with no Ansible run: the boot unit found the GPUs at their defaults and put the
quiet profile back; a GPU that does not answer fails the unit loudly, naming it."""

from gpu_tuning_node import CONFIG, UNIT, column, journal_of_current_run, unit_properties

LOST_SLOT = 2


def test_unit_reapplied_the_profile_at_boot(host):
    # The reboot reset the simulated driver: the unit changed every GPU from its defaults.
    lines = journal_of_current_run(host)
    changed = [line for line in lines if ": set persistence_mode off -> on" in line]
    assert len(changed) == 4, lines
    assert all("power_limit_w 300 W -> 200 W" in line for line in changed)
    assert all("locked_graphics_clocks unlocked -> 135-1005 MHz" in line for line in changed)
    assert "4 of 4 GPU(s) hold the settings of %s (profile quiet)" % CONFIG in lines


def test_gpus_hold_the_quiet_profile_after_reboot(gpus, locks):
    assert column(gpus, "persistence") == [1] * 4
    assert column(gpus, "power_limit_mw") == [200000] * 4
    assert column(gpus, "graphics_clock") == [1005] * 4
    assert locks == [[[135, 1005], None]] * 4


def test_unit_is_active_after_boot(host):
    assert unit_properties(host, "ActiveState", "SubState", "Result") == {
        "ActiveState": "active",
        "SubState": "exited",
        "Result": "success",
    }


def test_a_lost_gpu_fails_the_unit_with_a_journal_line_naming_it(host, gpus):
    uuid = gpus[LOST_SLOT]["uuid"]
    host.check_output("nvml-sim fault %d lost" % LOST_SLOT)
    try:
        restart = host.run("systemctl restart %s" % UNIT)
        assert restart.rc != 0
        assert unit_properties(host, "ActiveState", "Result", "ExecMainStatus") == {
            "ActiveState": "failed",
            "Result": "exit-code",
            "ExecMainStatus": "1",
        }
        errors = journal_of_current_run(host, priority="err")
        assert len(errors) == 1, errors
        assert errors[0].startswith(
            "GPU %d (%s): NOT applied: did not answer within 10 s" % (LOST_SLOT, uuid)
        )
        assert "fallen off the bus" in errors[0]
        assert "3 of 4 GPU(s) hold the settings" in " ".join(journal_of_current_run(host))
    finally:
        host.check_output("nvml-sim clear %d" % LOST_SLOT)
    assert host.run("systemctl restart %s" % UNIT).rc == 0
    assert unit_properties(host, "ActiveState", "Result") == {
        "ActiveState": "active",
        "Result": "success",
    }
