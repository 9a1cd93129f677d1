"""nvidia_pci_facts and nvidia_driver_select as Ansible runs them: their own process, arguments
from a file, JSON on stdout (run_module of conftest.py), with fake apt-cache and dpkg-query first
on the PATH (fake_apt.py). Their docs: test_ansible_integration."""

import pytest
from conftest import run_module
from fake_apt import FakeApt

# Recorded on Debian 12 with non-free and contrib enabled.
DEBIAN_MADISON = (
    "nvidia-kernel-dkms | 535.309.01-0+deb12u1 | http://deb.debian.org/debian-security "
    "bookworm-security/non-free amd64 Packages\n"
    "nvidia-kernel-dkms | 535.261.03-1 | http://deb.debian.org/debian bookworm/non-free amd64 "
    "Packages\n"
    "nvidia-open-kernel-dkms | 535.261.03-1 | http://deb.debian.org/debian bookworm/contrib amd64 "
    "Packages\n"
)
DEBIAN_PROBES = {"proprietary": "^nvidia-kernel-dkms$", "open": "^nvidia-open-kernel-dkms$"}
DEBIAN_PATTERNS = ["nvidia-kernel-dkms", "nvidia-open-kernel-dkms"]
DEBIAN = {
    "driver_probes": DEBIAN_PROBES,
    "installed_patterns": DEBIAN_PATTERNS,
    "source": "Debian 12 non-free",
}

# NVIDIA's CUDA repository for Ubuntu 22.04 (nvidia-headless-* packages), and a package whose
# name a probe must not take for a driver.
CUDA_REPO = "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2204/x86_64  Packages"
NVIDIA_MADISON = "".join(
    " %s | %s | %s\n" % (name, version, CUDA_REPO)
    for name, version in [
        ("nvidia-headless-590", "590.44.01-0ubuntu1"),
        ("nvidia-headless-590-open", "590.44.01-0ubuntu1"),
        ("nvidia-headless-580", "580.95.05-0ubuntu1"),
        ("nvidia-headless-580", "580.82.07-0ubuntu1"),
        ("nvidia-headless-580-open", "580.95.05-0ubuntu1"),
        ("nvidia-headless-570", "570.195.03-0ubuntu1"),
        ("nvidia-headless-no-dkms-580", "580.95.05-0ubuntu1"),
    ]
)
NVIDIA = {
    "driver_probes": {
        "proprietary": "^nvidia-headless-[0-9]+$",
        "open": "^nvidia-headless-[0-9]+-open$",
    },
    "installed_patterns": ["nvidia-headless-[0-9]*"],
    "source": "NVIDIA's CUDA repository (ubuntu2204)",
}


def fake_t180_g20(root):
    for bus, vendor, device, pci_class in [
        ("0000:00:00.0", "0x8086", "0x6f00", "0x060000"),
        ("0000:1a:00.0", "0x10de", "0x1db1", "0x030200"),
        ("0000:1b:00.0", "0x10de", "0x1db1", "0x030200"),
        ("0000:3d:00.0", "0x10de", "0x1db1", "0x030200"),
        ("0000:3e:00.0", "0x10de", "0x1db1", "0x030200"),
    ]:
        path = root / bus
        path.mkdir(parents=True)
        (path / "vendor").write_text(vendor + "\n")
        (path / "device").write_text(device + "\n")
        (path / "class").write_text(pci_class + "\n")
    return root


@pytest.fixture
def t180_gpus(tmp_path):
    root = fake_t180_g20(tmp_path / "devices")
    result = run_module(tmp_path, "nvidia_pci_facts", {"sysfs_root": str(root)})
    return result["ansible_facts"]["nvidia_pci"]["gpus"]


def select(tmp_path, apt, args, check_mode=False):
    return run_module(tmp_path, "nvidia_driver_select", args, check_mode=check_mode, env=apt.env)


def test_pci_facts_module(tmp_path):
    root = fake_t180_g20(tmp_path / "devices")
    result = run_module(tmp_path, "nvidia_pci_facts", {"sysfs_root": str(root)}, check_mode=True)
    assert result["changed"] is False
    facts = result["ansible_facts"]["nvidia_pci"]
    assert facts["count"] == 4
    assert facts["models"] == {"Tesla V100-SXM2-16GB": 4}
    assert facts["gpus"][0]["subsystem_id"] is None  # no subsystem files in this tree


def test_pci_facts_module_fails_clearly_without_sysfs(tmp_path):
    result = run_module(tmp_path, "nvidia_pci_facts", {"sysfs_root": str(tmp_path / "none")})
    assert result["failed"] is True
    assert "cannot list PCI devices" in result["msg"]


def test_select_module_asks_apt_and_dpkg(tmp_path, t180_gpus):
    apt = FakeApt(tmp_path, madison=DEBIAN_MADISON)
    result = select(tmp_path, apt, {"gpus": t180_gpus, **DEBIAN}, check_mode=True)
    assert result["changed"] is False and result["chosen"] is True
    chosen = result["ansible_facts"]["nvidia_driver_selection"]
    assert (chosen["branch"], chosen["kernel_modules"], chosen["action"]) == (
        535,
        "proprietary",
        "install",
    )
    assert chosen["version"] == "535.309.01-0+deb12u1"
    assert result["msg"] == chosen["reason"]
    assert result["msg"].startswith("4x Tesla V100-SXM2-16GB (volta): driver branch 535 ")
    assert result["offered"] == {
        "versions": {
            "proprietary": ["535.309.01-0+deb12u1", "535.261.03-1"],
            "open": ["535.261.03-1"],
        },
        "installed_version": "",
        "installed_kernel_modules": "",
    }
    assert apt.calls() == [
        ["apt-cache", "search", "--names-only", "^nvidia-kernel-dkms$|^nvidia-open-kernel-dkms$"],
        ["apt-cache", "madison", "nvidia-kernel-dkms", "nvidia-open-kernel-dkms"],
        [
            "dpkg-query",
            "--show",
            "--showformat=${Package} | ${Version} | ${db:Status-Abbrev}\n",
            *DEBIAN_PATTERNS,
        ],
    ]


def test_select_module_keeps_the_installed_driver(tmp_path, t180_gpus):
    apt = FakeApt(
        tmp_path,
        madison=DEBIAN_MADISON,
        installed="nvidia-kernel-dkms | 535.261.03-1 | ii \n",
    )
    chosen = select(tmp_path, apt, {"gpus": t180_gpus, **DEBIAN})["selection"]
    assert (chosen["version"], chosen["action"]) == ("535.261.03-1", "keep")


def test_select_module_ignores_removed_packages(tmp_path, t180_gpus):
    apt = FakeApt(
        tmp_path,
        madison=DEBIAN_MADISON,
        installed="nvidia-open-kernel-dkms | 535.261.03-1 | rc \n",
    )
    chosen = select(tmp_path, apt, {"gpus": t180_gpus, **DEBIAN})["selection"]
    assert (chosen["kernel_modules"], chosen["action"]) == ("proprietary", "install")


def test_select_module_reads_versioned_package_names(tmp_path, t180_gpus):
    apt = FakeApt(tmp_path, madison=NVIDIA_MADISON)
    result = select(tmp_path, apt, {"gpus": t180_gpus, **NVIDIA})
    chosen = result["selection"]
    assert (chosen["branch"], chosen["version"]) == (580, "580.95.05-0ubuntu1")
    assert result["offered"]["versions"]["proprietary"] == [
        "590.44.01-0ubuntu1",
        "580.95.05-0ubuntu1",
        "580.82.07-0ubuntu1",
        "570.195.03-0ubuntu1",
    ]
    madison = [call for call in apt.calls() if call[:2] == ["apt-cache", "madison"]]
    assert madison == [
        [
            "apt-cache",
            "madison",
            "nvidia-headless-570",
            "nvidia-headless-580",
            "nvidia-headless-580-open",
            "nvidia-headless-590",
            "nvidia-headless-590-open",
        ]
    ]


def test_select_module_refusal_is_a_failure_with_the_reason(tmp_path, t180_gpus):
    apt = FakeApt(tmp_path, madison=NVIDIA_MADISON)
    result = select(tmp_path, apt, {"gpus": t180_gpus, **NVIDIA, "driver_branch": "590"})
    assert result["failed"] is True and result["chosen"] is False
    assert "driver branch 590 cannot drive" in result["msg"]
    assert "Tesla V100-SXM2-16GB (volta)" in result["msg"]
    assert "ansible_facts" not in result


def test_both_probes_are_required(tmp_path, t180_gpus):
    apt = FakeApt(tmp_path, madison=DEBIAN_MADISON)
    args = {**DEBIAN, "gpus": t180_gpus, "driver_probes": {"proprietary": "^nvidia-kernel-dkms$"}}
    result = select(tmp_path, apt, args)
    assert result["failed"] is True
    assert "open" in result["msg"] and "driver_probes" in result["msg"]
    assert apt.calls() == []
