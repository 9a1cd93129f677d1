"""The node after the whole site.yml: every phase left its mark, and the GPUs hold the quiet
profile of the sandbox inventory, read back through NVML on the node."""

import json

from node_gpus import read_back


def test_gpus_hold_the_quiet_profile(host):
    gpus = read_back(host)
    assert len(gpus) == 4
    assert [g["persistence"] for g in gpus] == [1] * 4
    assert [g["power_limit_mw"] for g in gpus] == [200000] * 4
    assert [g["graphics_clock"] for g in gpus] == [1005] * 4  # locked at 135-1005 MHz


def test_boot_unit_holds_the_same_request(host):
    unit = host.service("gpu-tuning.service")
    assert unit.is_enabled and unit.is_running
    config = json.loads(host.file("/etc/gpu-node/gpu-tuning.json").content_string)
    assert config["profile"] == "quiet"
    assert config["request"]["power_limit"] == 200
    assert sorted(g["uuid"] for g in config["gpus"]) == sorted(g["uuid"] for g in read_back(host))


def test_each_phase_left_its_state(host):
    assert host.file("/etc/security/limits.d/90-memlock.conf").contains("memlock")  # base
    assert "nvidia-kernel-dkms" in host.check_output("apt-mark showhold")  # nvidia_driver
    assert host.file("/etc/modprobe.d/gpu-node-blacklist-nouveau.conf").contains("nouveau")
    assert host.file("/etc/nccl.conf").contains("NCCL_IB_DISABLE=1")  # nccl, single node
    assert host.run("bash -lc 'command -v nvcc'").rc == 0  # cuda on PATH in login shells


def test_node_reports_healthy(host):
    # The same check the play ended with, run again on the node as a user would.
    result = host.run(
        "/opt/gpu-node/venv/bin/python -c 'import json; from nvidia_gpu import facts, health; "
        'print(json.dumps(health.evaluate(facts.collect(False), {"expected_count": 4, '
        '"nvlink_links_per_gpu": 6, "nvlink_pair_links": 2, "kernel_log": "none"})))\''
    )
    assert result.rc == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["healthy"] is True, report["findings"]


def test_systemd_is_healthy(host):
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state == "running", host.run("systemctl --failed --no-legend").stdout
