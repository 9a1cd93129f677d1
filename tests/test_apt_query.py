"""Reading what apt and dpkg say (recorded real outputs), asking them through a `run` callable,
and Debian's version order."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "module_utils"))

from nvidia_gpu import apt_query, debian_version
from nvidia_gpu.choice_pins import PolicyError
from nvidia_gpu.cuda_choice import cuda_version_of

DEBIAN_PROBES = {"proprietary": "^nvidia-kernel-dkms$", "open": "^nvidia-open-kernel-dkms$"}
DEBIAN_12 = {
    "proprietary": ["535.309.01-0+deb12u1", "535.261.03-1"],
    "open": ["535.261.03-1"],
}

# Recorded on Debian 12 with non-free and contrib enabled.
MADISON = """\
nvidia-kernel-dkms | 535.309.01-0+deb12u1 | http://deb.debian.org/debian-security bookworm-security/non-free amd64 Packages
nvidia-kernel-dkms | 535.261.03-1 | http://deb.debian.org/debian bookworm/non-free amd64 Packages
nvidia-open-kernel-dkms | 535.261.03-1 | http://deb.debian.org/debian bookworm/contrib amd64 Packages
"""  # noqa: E501
SEARCH = """\
nvidia-kernel-dkms - NVIDIA binary kernel module DKMS source
nvidia-open-kernel-dkms - NVIDIA GPU open kernel module DKMS source
nvidia-kernel-support - NVIDIA binary kernel module support files
"""


def test_offered_by_flavour_from_madison():
    assert (
        apt_query.versions_by_flavour(apt_query.parse_madison(MADISON), DEBIAN_PROBES) == DEBIAN_12
    )


def test_offered_branches_from_versioned_package_names():
    madison = (
        " nvidia-headless-580 | 580.95.05-0ubuntu1 | https://x/ Packages\n"
        " nvidia-headless-580-open | 580.95.05-0ubuntu1 | https://x/ Packages\n"
        " nvidia-headless-570 | 570.195.03-0ubuntu1 | https://x/ Packages\n"
    )
    offered = apt_query.versions_by_flavour(
        apt_query.parse_madison(madison),
        {"proprietary": "^nvidia-headless-[0-9]+$", "open": "^nvidia-headless-[0-9]+-open$"},
    )
    assert offered == {
        "proprietary": ["580.95.05-0ubuntu1", "570.195.03-0ubuntu1"],
        "open": ["580.95.05-0ubuntu1"],
    }


def test_search_keeps_the_names_the_pattern_matches():
    # apt-cache search --names-only also lists packages that only provide a matching name.
    pattern = "^nvidia-kernel-dkms$|^nvidia-open-kernel-dkms$"
    assert apt_query.parse_search(SEARCH, pattern) == [
        "nvidia-kernel-dkms",
        "nvidia-open-kernel-dkms",
    ]
    assert apt_query.parse_search("", pattern) == []


def test_installed_from_dpkg_listing():
    listing = (
        "nvidia-kernel-dkms | 535.309.01-0+deb12u1 | ii \n"
        "nvidia-open-kernel-dkms | 535.261.03-1 | rc \n"
    )
    assert apt_query.installed_from_listing(listing, DEBIAN_PROBES) == (
        "535.309.01-0+deb12u1",
        "proprietary",
    )
    assert apt_query.installed_from_listing("", DEBIAN_PROBES) == ("", "")


class Tools:
    """A `run` callable answering from recorded outputs, logging the argv it gets."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def __call__(self, argv):
        self.calls.append(argv)
        return self.answers[tuple(argv[:2])]


def test_driver_offer_asks_search_then_madison_then_dpkg():
    tools = Tools(
        {
            ("apt-cache", "search"): (0, SEARCH, ""),
            ("apt-cache", "madison"): (0, MADISON, ""),
            # rc 1: one pattern matches nothing installed
            ("dpkg-query", "--show"): (1, "nvidia-kernel-dkms | 535.261.03-1 | ii \n", "none"),
        }
    )
    offer = apt_query.driver_offer(
        tools, DEBIAN_PROBES, ["nvidia-kernel-dkms", "nvidia-open-kernel-dkms"], "Debian 12"
    )
    assert offer == apt_query.DriverOffer(DEBIAN_12, "535.261.03-1", "proprietary")
    assert tools.calls[1] == [
        "apt-cache",
        "madison",
        "nvidia-kernel-dkms",
        "nvidia-open-kernel-dkms",
    ]
    assert tools.calls[2][2] == "--showformat=" + apt_query.DPKG_SHOWFORMAT


def test_nothing_offered_has_a_message_for_check_mode():
    tools = Tools({("apt-cache", "search"): (0, "", "")})
    with pytest.raises(apt_query.NothingOffered) as nothing:
        apt_query.cuda_offer(tools, "^nvidia-cuda-toolkit$", "version", "Debian 12")
    assert str(nothing.value).startswith("Debian 12 offers no CUDA toolkit")
    assert nothing.value.check_mode_msg.startswith("Check mode: Debian 12 offers no CUDA toolkit")
    assert len(tools.calls) == 1


@pytest.mark.parametrize("tool", [("apt-cache", "madison"), ("dpkg-query", "--show")])
def test_a_failing_tool_is_a_policy_error_with_its_message(tool):
    answers = {
        ("apt-cache", "search"): (0, SEARCH, ""),
        ("apt-cache", "madison"): (0, MADISON, ""),
        ("dpkg-query", "--show"): (0, "", ""),
    }
    answers[tool] = (2, "", "E: broken\n")
    with pytest.raises(PolicyError, match=r"^%s .*failed \(rc 2\): E: broken$" % tool[0]):
        apt_query.driver_offer(Tools(answers), DEBIAN_PROBES, ["nvidia-*"], "Debian 12")


@pytest.mark.parametrize(
    ("a", "b", "sign"),
    [
        ("535.309.01-0+deb12u1", "535.261.03-1", 1),
        ("580.95.05-0ubuntu1", "580.95.05-1", -1),
        ("1:535.1-1", "590.1-1", 1),
        ("11.8.89~11.8.0-5~deb12u1", "11.8.89-1", -1),
        ("2.27.7-1+cuda12.9", "2.27.7-1+cuda12.9", 0),
        ("580.95.05", "580.95.5", 0),
    ],
)
def test_debian_version_order(a, b, sign):
    result = debian_version.compare_versions(a, b)
    assert (result > 0) - (result < 0) == sign


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("cuda-toolkit-12-8", "12.8"),
        ("11.8.89~11.8.0-5~deb12u1", "11.8"),
        ("12.0.140~12.0.1-4build4", "12.0"),
        ("13.0", "13.0"),
        ("nvidia-cuda-toolkit", None),
    ],
)
def test_cuda_version_of(text, version):
    assert cuda_version_of(text) == version


def test_branch_and_upstream_of_a_version():
    assert debian_version.branch_of("1:580.95.05-0ubuntu1") == 580
    assert debian_version.upstream("1:580.95.05-0ubuntu1") == "580.95.05"
    assert debian_version.upstream("535.309.01") == "535.309.01"
    assert debian_version.branch_of("unknown") is None


def test_newest_first_drops_duplicates():
    versions = ["535.261.03-1", "535.309.01-0+deb12u1", "535.261.03-1", "1:470.1-1"]
    assert debian_version.newest_first(versions) == [
        "1:470.1-1",
        "535.309.01-0+deb12u1",
        "535.261.03-1",
    ]
    assert debian_version.newest([]) is None
