"""State the nvidia_driver, cuda and nccl roles must leave on a simulated mixed sandbox node.

The node is a Debian 12 container whose PCI tree shows 2x Tesla V100-SXM2-16GB (10de:1db1) and
2x A100 PCIe (10de:20f1): the Volta cards decide (the last branch and the proprietary modules
that drive them). The roles install Debian's real non-free driver packages, but a container has
no kernel of its own, so nothing is loaded and nvidia-persistenced stays skipped (condition, not
failure).
"""

import json

import pytest

DRIVER_PACKAGES = [
    "nvidia-kernel-dkms",
    "nvidia-smi",
    "libnvidia-ml1",
    "libcuda1",
    "libnvidia-cfg1",
]
NCCL_VERSION = "2.27.7"
NCCL_LIB = f"/opt/nccl/{NCCL_VERSION}-cu12/nvidia/nccl/lib"


def fact(host, name):
    return json.loads(host.file(f"/etc/ansible/facts.d/{name}.fact").content_string)


def package_version(host, name):
    return host.check_output("dpkg-query --show --showformat='${Version}' %s", name)


def newest_offered_branch(host, package):
    """Branch of the newest version apt offers for package (what the policy must pick <= 580)."""
    lines = host.check_output("apt-cache madison %s", package).splitlines()
    branches = [int(line.split("|")[1].strip().split(".")[0]) for line in lines]
    return max(b for b in branches if b <= 580)


def test_selection_for_v100s_beside_a100s(host):
    selection = fact(host, "nvidia_driver")
    assert selection["source"] == "debian"
    assert selection["architectures"] == ["volta", "ampere"]
    assert selection["branch"] == newest_offered_branch(host, "nvidia-kernel-dkms")
    assert selection["branch"] <= 580
    assert selection["kernel_modules"] == "proprietary"
    assert selection["cuda_version"].startswith("12.")
    assert selection["fabric_manager"] is False
    assert selection["allowed_branches"]["max"] == 580
    assert selection["allowed_kernel_modules"] == ["proprietary"]
    reason = selection["reason"]
    branch = selection["branch"]
    assert reason.startswith(
        "2x Tesla V100-SXM2-16GB (volta) + 2x NVIDIA A100-PCIE-40GB (ampere): driver branch %d"
        % branch
    )
    assert "proprietary kernel modules" in reason
    assert "no fabric manager (no NVSwitch)" in reason


def test_cuda_choice_says_what_the_source_installs(host):
    cuda = fact(host, "cuda")
    assert cuda["wanted"] == "12.8"
    assert cuda["installed"] == "11.8"
    assert cuda["fallback"] is True
    assert cuda["source"] == "debian"
    # The one line of the node: branch, flavour, the CUDA line and what was really installed.
    assert "CUDA 12.8 wanted (volta stays on 12.x)" in cuda["reason"]
    assert "offers 11.8: installing that - set cuda_source: nvidia for 12.x" in cuda["reason"]
    assert "proprietary kernel modules" in cuda["reason"]


def test_driver_packages_at_one_version(host):
    version = fact(host, "nvidia_driver")["version"]
    for name in DRIVER_PACKAGES:
        assert package_version(host, name) == version, name
    assert host.package("nvidia-persistenced").is_installed
    # The open modules cannot drive a V100: they must not be there.
    assert not host.package("nvidia-open-kernel-dkms").is_installed


def test_driver_packages_held(host):
    held = set(host.check_output("apt-mark showhold").split())
    assert set(DRIVER_PACKAGES) | {"nvidia-persistenced"} <= held


def test_dkms_has_the_module_source(host):
    branch = fact(host, "nvidia_driver")["branch"]
    status = host.check_output("dkms status")
    # A container cannot build for its host's kernel: the source is registered, nothing built.
    assert f"nvidia-current/{branch}." in status
    assert "added" in status


def test_nouveau_blacklisted(host):
    # The role's own file: a managed-by comment, then the two lines.
    blacklist = host.file("/etc/modprobe.d/gpu-node-blacklist-nouveau.conf")
    assert blacklist.mode == 0o644
    assert (blacklist.user, blacklist.group) == ("root", "root")
    lines = [line for line in blacklist.content_string.splitlines() if not line.startswith("#")]
    assert lines == ["blacklist nouveau", "options nouveau modeset=0"]
    assert blacklist.content_string.startswith("#")
    # modprobe itself reads it so (the initramfs gets the same configuration).
    config = host.check_output("modprobe --showconfig").splitlines()
    assert "blacklist nouveau" in config
    assert "options nouveau modeset=0" in config


def test_persistenced_enabled_and_skipped_in_a_container(host):
    assert host.service("nvidia-persistenced").is_enabled
    dropin = host.file("/etc/systemd/system/nvidia-persistenced.service.d/10-gpu-node.conf")
    assert "ConditionVirtualization=!container" in dropin.content_string
    state = host.check_output(
        "systemctl show --property=ActiveState,ConditionResult nvidia-persistenced.service"
    ).splitlines()
    assert sorted(state) == ["ActiveState=inactive", "ConditionResult=no"]
    verify = host.run("systemd-analyze verify nvidia-persistenced.service")
    assert verify.rc == 0, verify.stderr


def test_nothing_kernel_side_in_a_container(host):
    assert not host.file("/sys/module/nvidia").exists
    running_kernel = host.check_output("uname -r")
    assert not host.package(f"linux-headers-{running_kernel}").is_installed
    # The simulated NVML stays first on the library path after Debian's libnvidia-ml1.
    first = host.check_output("ldconfig -p | grep -m1 'libnvidia-ml.so.1 '")
    assert first.endswith("/opt/nvml-sim/lib/libnvidia-ml.so.1")


def test_no_extra_debian_source_needed(host):
    # The sandbox image enables contrib/non-free/non-free-firmware already.
    assert not host.file("/etc/apt/sources.list.d/gpu-node-debian-nonfree.sources").exists


def test_cuda_toolkit_on_path(host):
    profile = host.file("/etc/profile.d/cuda.sh").content_string
    assert "export CUDA_HOME=/usr" in profile
    nvcc = host.run("bash -lc 'nvcc --version && echo CUDA_HOME=$CUDA_HOME'")
    assert nvcc.rc == 0, nvcc.stderr
    assert "release 11.8" in nvcc.stdout
    assert "CUDA_HOME=/usr" in nvcc.stdout
    # Debian's libraries live in a system directory: no ld.so.conf.d entry of our own.
    assert not host.file("/etc/ld.so.conf.d/cuda.conf").exists
    assert "libcudart.so.11.0 " in host.check_output("ldconfig -p")
    assert package_version(host, "nvidia-cuda-toolkit").startswith("11.8")


def test_nccl_library_registered(host):
    conf = host.file("/etc/ld.so.conf.d/nccl.conf").content_string.splitlines()
    assert NCCL_LIB in conf
    cache = host.check_output("ldconfig -p | grep 'libnccl.so.2 '")
    assert cache.endswith(f"{NCCL_LIB}/libnccl.so.2")
    assert host.file("/opt/nccl/current").linked_to == f"/opt/nccl/{NCCL_VERSION}-cu12"
    assert host.file(f"{NCCL_LIB}/libnccl.so").linked_to == f"{NCCL_LIB}/libnccl.so.2"
    assert host.file("/opt/nccl/current/include/nccl.h").exists
    profile = host.file("/etc/profile.d/nccl.sh").content_string
    assert "export NCCL_HOME=/opt/nccl/current" in profile


def test_nccl_library_loads_and_reports_its_version(host):
    # ncclGetVersion needs no GPU: it proves the registered library is a working NCCL.
    code = (
        "import ctypes; lib = ctypes.CDLL('libnccl.so.2'); v = ctypes.c_int(); "
        "assert lib.ncclGetVersion(ctypes.byref(v)) == 0; print(v.value)"
    )
    version = host.check_output("python3 -c %s", code)
    major, minor, patch = (int(x) for x in NCCL_VERSION.split("."))
    assert int(version) == major * 10000 + minor * 100 + patch


@pytest.mark.parametrize(
    ("key", "value"),
    [("NCCL_DEBUG", "WARN"), ("NCCL_IB_DISABLE", "1")],
)
def test_nccl_conf_single_node(host, key, value):
    nccl_conf = host.file("/etc/nccl.conf")
    assert nccl_conf.mode == 0o644
    settings = dict(
        line.split("=", 1)
        for line in nccl_conf.content_string.splitlines()
        if line and not line.startswith("#")
    )
    assert settings[key] == value
    assert "NCCL_IB_HCA" not in settings


def test_systemd_is_healthy(host):
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state == "running", host.run("systemctl --failed --no-legend").stdout
