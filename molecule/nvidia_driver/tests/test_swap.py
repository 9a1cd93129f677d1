"""Last, as it changes the node's hardware: both V100s of the mixed node are swapped for A100s.
After the reboot the roles run again: the driver policy re-decides for the GPUs now on PCI
(Ampere only) and says so, and the installed, held driver stays (Debian offers that one branch),
so no package changes."""

import json

import pytest
from node_hardware import play, podman, reboot

NODE = "gpunode-nvidia_driver"


def fact(host, name):
    return json.loads(host.file(f"/etc/ansible/facts.d/{name}.fact").content_string)


def packages(host):
    """Every installed package and its version."""
    listing = host.check_output("dpkg-query --show --showformat='${Package} ${Version}\\n'")
    return dict(line.split(" ", 1) for line in listing.splitlines())


@pytest.fixture(scope="module")
def swapped(host):
    before = {name: fact(host, name) for name in ("nvidia_driver", "cuda")}
    before["packages"] = packages(host)
    for slot in (0, 1):
        podman("exec", NODE, "nvml-sim", "swap", str(slot), "--model", "a100-pcie-40gb")
    reboot(NODE)
    run = play("molecule/nvidia_driver/converge.yml")
    assert run.returncode == 0, run.stdout[-3000:]
    return before, run


def test_the_driver_policy_re_decides_for_the_gpus_now_present(host, swapped):
    before, _run = swapped
    selection = fact(host, "nvidia_driver")
    assert selection["architectures"] == ["ampere"]
    branch = before["nvidia_driver"]["branch"]
    assert selection["reason"].startswith(
        "4x NVIDIA A100-PCIE-40GB (ampere): driver branch %d" % branch
    ), selection["reason"]
    assert "volta" not in selection["reason"]
    assert (selection["branch"], selection["version"]) == (
        branch,
        before["nvidia_driver"]["version"],
    )


def test_cuda_choice_follows_the_architecture(host, swapped):
    before, _run = swapped
    assert "volta stays on 12.x" in before["cuda"]["reason"]
    now = fact(host, "cuda")
    assert "volta" not in now["reason"], now["reason"]
    assert now["installed"] == before["cuda"]["installed"]  # what Debian offers, kept


def test_no_package_changed(host, swapped):
    before, _run = swapped
    assert packages(host) == before["packages"]
    assert "nvidia-kernel-dkms" in host.check_output("apt-mark showhold")
