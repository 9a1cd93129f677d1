"""State the base role must leave on a sandbox node (a container: no kernel, no cpufreq)."""

import pytest

BASE_PACKAGES = [
    "pciutils",
    "build-essential",
    "dkms",
    "numactl",
    "hwloc",
    "ipmitool",
    "lshw",
    "chrony",
    "linux-cpupower",
]


@pytest.mark.parametrize("name", BASE_PACKAGES)
def test_package_installed(host, name):
    assert host.package(name).is_installed


def test_pci_ids_database_present(host):
    # GPU discovery falls back to it for models our own table does not know.
    assert host.file("/usr/share/misc/pci.ids").contains("10de  NVIDIA Corporation")


def test_memlock_unlimited_for_logins(host):
    limits = host.file("/etc/security/limits.d/90-memlock.conf")
    assert limits.mode == 0o644
    lines = [line.split() for line in limits.content_string.splitlines() if line and line[0] != "#"]
    assert ["*", "soft", "memlock", "unlimited"] in lines
    assert ["*", "hard", "memlock", "unlimited"] in lines


def test_container_skips_what_needs_a_real_kernel(host):
    # A container may not raise limits or change CPU frequency: these stay untouched.
    assert not host.file("/etc/systemd/system.conf.d/90-memlock.conf").exists
    assert not host.file("/etc/systemd/system/cpu-governor.service").exists
    running_kernel = host.run("uname -r").stdout.strip()
    assert not host.package(f"linux-headers-{running_kernel}").is_installed


def test_chrony_sources(host):
    sources = host.file("/etc/chrony/sources.d/gpu-node.sources")
    assert "pool 2.debian.pool.ntp.org iburst" in sources.content_string
    assert host.service("chrony").is_enabled


def test_journal_is_persistent(host):
    conf = host.file("/etc/systemd/journald.conf.d/90-persistent.conf").content_string
    assert "Storage=persistent" in conf
    assert "SystemMaxUse=2G" in conf
    machine_id = host.file("/etc/machine-id").content_string.strip()
    # journald creates the on-disk journal only once it runs with Storage=persistent.
    assert host.file(f"/var/log/journal/{machine_id}").is_directory


def test_systemd_is_healthy(host):
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state == "running", host.run("systemctl --failed --no-legend").stdout
