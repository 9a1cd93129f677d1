"""After gpu_tuning_state absent: every GPU at its own defaults, nothing left to re-apply them."""

from gpu_tuning_node import COMMAND, CONFIG, UNIT, UNIT_PATH, V100_DEFAULTS, column, gates
from node_gpus import PYTHON


def test_gpus_are_back_to_their_defaults(gpus, locks):
    for key, value in V100_DEFAULTS.items():
        assert column(gpus, key) == [value] * 4, key
    assert column(gpus, "compute_mode") == [0] * 4
    assert locks == [[None, None]] * 4


def test_persistence_is_left_to_nvidia_persistenced(gpus):
    assert column(gpus, "persistence") == [1] * 4


def test_unit_command_and_config_are_gone(host):
    for path in (UNIT_PATH, COMMAND, CONFIG):
        assert not host.file(path).exists, path
    assert gates(host) == []
    assert host.run("systemctl is-enabled %s" % UNIT).rc != 0
    assert "ActiveState=inactive" in host.check_output("systemctl show -p ActiveState %s" % UNIT)


def test_the_runtime_stays(host):
    assert host.run("%s -c 'import nvidia_gpu.boot_cli'" % PYTHON).rc == 0
