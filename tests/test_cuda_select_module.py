"""nvidia_cuda_select as Ansible runs it (run_module of conftest.py), with fake apt-cache first on
the PATH (fake_apt.py), after nvidia_driver_select chose the driver the same way."""

from conftest import run_module
from fake_apt import FakeApt
from test_driver_modules import DEBIAN, DEBIAN_MADISON, NVIDIA, NVIDIA_MADISON, t180_gpus

__all__ = ["t180_gpus"]  # the fixture, shared with test_driver_modules

# Recorded on Debian 12: the toolkit Debian packages itself (contrib, version = CUDA version).
DEBIAN_TOOLKIT = (
    "nvidia-cuda-toolkit | 11.8.89~11.8.0-5~deb12u1 | http://deb.debian.org/debian "
    "bookworm/non-free amd64 Packages\n"
)
DEBIAN_CUDA = {
    "probe": "^nvidia-cuda-toolkit$",
    "offered_by": "version",
    "source": "Debian 12 (nvidia-cuda-toolkit)",
    "hint": "set cuda_source: nvidia for {line}",
}
# NVIDIA's repository: one meta-package per CUDA version, the version in its name.
REPO = "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2204/x86_64  Packages"
NVIDIA_TOOLKITS = "".join(
    " cuda-toolkit-%s | %s-1 | %s\n" % (name, version, REPO)
    for name, version in [("12-6", "12.6.3"), ("12-8", "12.8.1"), ("13-0", "13.0.2")]
)
NVIDIA_CUDA = {
    "probe": "^cuda-toolkit-[0-9]+-[0-9]+$",
    "offered_by": "name",
    "source": "NVIDIA's CUDA repository (ubuntu2204)",
}


def driver_choice(tmp_path, gpus, madison, source_args):
    apt = FakeApt(tmp_path / "driver-apt", madison=madison)
    args = {"gpus": gpus, **source_args}
    return run_module(tmp_path, "nvidia_driver_select", args, env=apt.env)["selection"]


def cuda_select(tmp_path, apt, args, check_mode=False):
    return run_module(tmp_path, "nvidia_cuda_select", args, check_mode=check_mode, env=apt.env)


def test_debian_toolkit_is_the_fallback_and_says_so(tmp_path, t180_gpus):
    driver = driver_choice(tmp_path, t180_gpus, DEBIAN_MADISON, DEBIAN)
    apt = FakeApt(tmp_path, madison=DEBIAN_TOOLKIT)
    args = {"gpus": t180_gpus, "driver_selection": driver, **DEBIAN_CUDA}
    result = cuda_select(tmp_path, apt, args)
    assert result["changed"] is False and result["chosen"] is True
    chosen = result["ansible_facts"]["cuda_selection"]
    assert (chosen["cuda_version"], chosen["cuda_install"], chosen["cuda_fallback"]) == (
        "12.8",
        "11.8",
        True,
    )
    assert (chosen["branch"], chosen["version"]) == (driver["branch"], driver["version"])
    assert result["msg"] == chosen["reason"]
    assert "installing that - set cuda_source: nvidia for 12.x" in result["msg"]
    assert result["offered"] == ["11.8.89~11.8.0-5~deb12u1"]
    assert apt.calls() == [
        ["apt-cache", "search", "--names-only", "^nvidia-cuda-toolkit$"],
        ["apt-cache", "madison", "nvidia-cuda-toolkit"],
    ]


def test_nvidia_repository_offers_the_wanted_version_by_name(tmp_path, t180_gpus):
    driver = driver_choice(tmp_path, t180_gpus, NVIDIA_MADISON, NVIDIA)
    apt = FakeApt(tmp_path, madison=NVIDIA_TOOLKITS)
    args = {"gpus": t180_gpus, "driver_selection": driver, **NVIDIA_CUDA}
    result = cuda_select(tmp_path, apt, args)
    chosen = result["selection"]
    assert (chosen["branch"], chosen["cuda_version"], chosen["cuda_install"]) == (
        580,
        "12.8",
        "12.8",
    )
    assert chosen["cuda_fallback"] is False
    assert result["offered"] == ["cuda-toolkit-12-6", "cuda-toolkit-12-8", "cuda-toolkit-13-0"]
    assert [call[:2] for call in apt.calls()] == [["apt-cache", "search"]]  # names suffice


def test_a_local_fact_of_the_driver_choice_is_reused(tmp_path, t180_gpus):
    driver = driver_choice(tmp_path, t180_gpus, NVIDIA_MADISON, NVIDIA)
    local_fact = dict(driver, source="nvidia")  # as /etc/ansible/facts.d/nvidia_driver.fact
    apt = FakeApt(tmp_path, madison=NVIDIA_TOOLKITS)
    args = {"gpus": t180_gpus, "driver_selection": local_fact, **NVIDIA_CUDA, "version": "12.6"}
    chosen = cuda_select(tmp_path, apt, args)["selection"]
    assert (chosen["cuda_version"], chosen["cuda_install"]) == ("12.6", "12.6")
    assert chosen["reason"].startswith(driver["reason"].split(", CUDA")[0])


def test_a_pin_the_gpus_cannot_run_is_refused(tmp_path, t180_gpus):
    driver = driver_choice(tmp_path, t180_gpus, NVIDIA_MADISON, NVIDIA)
    apt = FakeApt(tmp_path, madison=NVIDIA_TOOLKITS)
    args = {"gpus": t180_gpus, "driver_selection": driver, **NVIDIA_CUDA, "version": "13.0"}
    result = cuda_select(tmp_path, apt, args)
    assert result["failed"] is True
    assert "cuda_version 13.0 cannot run on" in result["msg"]
    assert "CUDA 12.x or older" in result["msg"]
    assert result["offered"] == ["cuda-toolkit-12-6", "cuda-toolkit-12-8", "cuda-toolkit-13-0"]


def test_something_else_than_a_driver_choice_is_refused(tmp_path, t180_gpus):
    apt = FakeApt(tmp_path, madison=NVIDIA_TOOLKITS)
    args = {"gpus": t180_gpus, "driver_selection": {"branch": 580}, **NVIDIA_CUDA}
    result = cuda_select(tmp_path, apt, args)
    assert result["failed"] is True
    assert result["msg"].startswith("driver_selection is not a result of nvidia_driver_select")


def test_bad_defaults_name_the_variable(tmp_path, t180_gpus):
    driver = driver_choice(tmp_path, t180_gpus, DEBIAN_MADISON, DEBIAN)
    apt = FakeApt(tmp_path, madison=DEBIAN_TOOLKIT)
    args = {"gpus": t180_gpus, "driver_selection": driver, **DEBIAN_CUDA}
    result = cuda_select(tmp_path, apt, dict(args, defaults={"12": "13.0"}))
    assert result["failed"] is True
    assert result["msg"].startswith("cuda_defaults['12'] is '13.0', a CUDA 13 release")
    assert apt.calls() == []
