"""nvidia_pci_facts and nvidia_driver_select as Ansible runs them: their own process, arguments
from a file, JSON on stdout (run_module of conftest.py). Their docs: test_ansible_integration."""

import pytest
from conftest import run_module

MADISON = (
    "nvidia-kernel-dkms | 535.309.01-0+deb12u1 | http://deb.debian.org/debian-security "
    "bookworm-security/non-free amd64 Packages\n"
    "nvidia-kernel-dkms | 535.261.03-1 | http://deb.debian.org/debian bookworm/non-free amd64 "
    "Packages\n"
    "nvidia-open-kernel-dkms | 535.261.03-1 | http://deb.debian.org/debian bookworm/contrib amd64 "
    "Packages\n"
)
PROBES = {"proprietary": "^nvidia-kernel-dkms$", "open": "^nvidia-open-kernel-dkms$"}


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


def test_select_module_reads_madison_and_dpkg(tmp_path, t180_gpus):
    result = run_module(
        tmp_path,
        "nvidia_driver_select",
        {
            "gpus": t180_gpus,
            "driver_madison": MADISON,
            "driver_probes": PROBES,
            "installed_listing": "",
            "source": "Debian 12 non-free",
        },
        check_mode=True,
    )
    assert result["changed"] is False
    chosen = result["ansible_facts"]["nvidia_driver_selection"]
    assert (chosen["branch"], chosen["kernel_modules"], chosen["action"]) == (
        535,
        "proprietary",
        "install",
    )
    assert result["msg"] == chosen["reason"]
    assert result["msg"].startswith("4x Tesla V100-SXM2-16GB (volta): driver branch 535 ")


def test_select_module_keeps_the_installed_driver(tmp_path, t180_gpus):
    result = run_module(
        tmp_path,
        "nvidia_driver_select",
        {
            "gpus": t180_gpus,
            "driver_madison": MADISON,
            "driver_probes": PROBES,
            "installed_listing": "nvidia-kernel-dkms | 535.261.03-1 | ii \n",
        },
    )
    chosen = result["selection"]
    assert (chosen["version"], chosen["action"]) == ("535.261.03-1", "keep")


def test_select_module_refusal_is_a_failure_with_the_reason(tmp_path, t180_gpus):
    result = run_module(
        tmp_path,
        "nvidia_driver_select",
        {
            "gpus": t180_gpus,
            "driver_offered": {"proprietary": ["590.44.01-1", "580.95.05-1"]},
            "driver_branch": "590",
        },
    )
    assert result["failed"] is True
    assert "driver branch 590 cannot drive" in result["msg"]
    assert "Tesla V100-SXM2-16GB (volta)" in result["msg"]


def test_select_module_cuda_for_an_earlier_driver_choice(tmp_path, t180_gpus):
    driver = run_module(
        tmp_path,
        "nvidia_driver_select",
        {"gpus": t180_gpus, "driver_madison": MADISON, "driver_probes": PROBES},
    )["selection"]
    result = run_module(
        tmp_path,
        "nvidia_driver_select",
        {
            "gpus": t180_gpus,
            "driver_selection": driver,
            "cuda_offered": ["11.8.89~11.8.0-5~deb12u1"],
            "cuda_source": "Debian 12 (nvidia-cuda-toolkit)",
            "cuda_hint": "set cuda_source: nvidia for {line}",
            "fact_name": "cuda_selection",
        },
    )
    chosen = result["ansible_facts"]["cuda_selection"]
    assert (chosen["cuda_version"], chosen["cuda_install"]) == ("12.8", "11.8")
    assert "installing that - set cuda_source: nvidia for 12.x" in result["msg"]
