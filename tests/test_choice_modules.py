"""What nvidia_driver_select and nvidia_cuda_select do alike (choice_module.exit_with_choice), run
as Ansible runs them with fake apt tools first on the PATH: a bad pin fails before apt is asked,
check mode on a fresh node (its source not configured yet) chooses nothing and says why, a real
run with nothing offered fails naming the source, and a failing apt is reported with its
message."""

import pytest
from conftest import run_module
from fake_apt import FakeApt
from test_cuda_select_module import NVIDIA_CUDA, driver_choice
from test_driver_modules import DEBIAN, DEBIAN_MADISON, t180_gpus

__all__ = ["t180_gpus"]  # the fixture, shared with test_driver_modules


def driver_args(tmp_path, gpus):
    return {"gpus": gpus, **DEBIAN}


def cuda_args(tmp_path, gpus):
    driver = driver_choice(tmp_path, gpus, DEBIAN_MADISON, DEBIAN)
    return {"gpus": gpus, "driver_selection": driver, **NVIDIA_CUDA}


# module, its arguments, a bad pin and its refusal, what the source lacks, the search pattern
MODULES = [
    pytest.param(
        "nvidia_driver_select",
        driver_args,
        ("driver_branch", "latest"),
        "nvidia_driver_branch 'latest' is not a branch number; allowed: auto or a driver branch "
        "number such as 580",
        "Debian 12 non-free offers no driver package",
        "^nvidia-kernel-dkms$|^nvidia-open-kernel-dkms$",
        id="driver",
    ),
    pytest.param(
        "nvidia_cuda_select",
        cuda_args,
        ("version", "12"),
        "cuda_version '12' is not a CUDA version; allowed: auto or a CUDA version MAJOR.MINOR "
        "such as 12.8",
        "NVIDIA's CUDA repository (ubuntu2204) offers no CUDA toolkit",
        "^cuda-toolkit-[0-9]+-[0-9]+$",
        id="cuda",
    ),
]
PARAMETERS = ("module", "make_args", "bad_pin", "refusal", "lacks", "pattern")


@pytest.mark.parametrize("check_mode", [False, True])
@pytest.mark.parametrize(PARAMETERS, MODULES)
def test_a_bad_pin_fails_before_apt_is_asked(
    tmp_path, t180_gpus, module, make_args, bad_pin, refusal, lacks, pattern, check_mode
):
    args = dict(make_args(tmp_path, t180_gpus), **dict([bad_pin]))
    apt = FakeApt(tmp_path)  # a fresh node: the source offers nothing yet
    result = run_module(tmp_path, module, args, check_mode=check_mode, env=apt.env)
    assert result["failed"] is True and result["chosen"] is False
    assert result["msg"] == refusal
    assert apt.calls() == []


@pytest.mark.parametrize(PARAMETERS, MODULES)
def test_check_mode_on_a_fresh_node_chooses_nothing_and_says_why(
    tmp_path, t180_gpus, module, make_args, bad_pin, refusal, lacks, pattern
):
    args = make_args(tmp_path, t180_gpus)
    apt = FakeApt(tmp_path)
    result = run_module(tmp_path, module, args, check_mode=True, env=apt.env)
    assert not result.get("failed"), result
    assert result["chosen"] is False and result["changed"] is False
    assert result["msg"] == (
        "Check mode: %s on this node yet (a real run configures the source first), so none is "
        "chosen" % lacks
    )
    assert "ansible_facts" not in result and "selection" not in result
    assert apt.calls() == [["apt-cache", "search", "--names-only", pattern]]


@pytest.mark.parametrize(PARAMETERS, MODULES)
def test_a_real_run_with_nothing_offered_fails_naming_the_source(
    tmp_path, t180_gpus, module, make_args, bad_pin, refusal, lacks, pattern
):
    args = make_args(tmp_path, t180_gpus)
    result = run_module(tmp_path, module, args, env=FakeApt(tmp_path).env)
    assert result["failed"] is True and result["chosen"] is False
    assert result["msg"] == (
        "%s (apt-cache search --names-only '%s' finds none): configure the source and update "
        "apt's package lists first" % (lacks, pattern)
    )


@pytest.mark.parametrize(PARAMETERS, MODULES)
def test_a_failing_apt_is_reported_with_its_message(
    tmp_path, t180_gpus, module, make_args, bad_pin, refusal, lacks, pattern
):
    args = make_args(tmp_path, t180_gpus)
    apt = FakeApt(
        tmp_path,
        madison=DEBIAN_MADISON,
        fail={"apt-cache": (100, "E: Could not open lock file /var/lib/apt/lists/lock")},
    )
    result = run_module(tmp_path, module, args, env=apt.env)
    assert result["failed"] is True
    assert result["msg"] == (
        "apt-cache search --names-only '%s' failed (rc 100): E: Could not open lock file "
        "/var/lib/apt/lists/lock" % pattern
    )
