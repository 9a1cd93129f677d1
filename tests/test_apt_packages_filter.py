"""filter_plugins/apt_packages.py: which apt specs a dpkg-query listing satisfies, read from this
machine's real dpkg database and from generated listings (hypothesis)."""

import importlib.util
import subprocess
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from hypothesis import given, settings
from hypothesis import strategies as st

PLUGIN = Path(__file__).resolve().parent.parent / "filter_plugins" / "apt_packages.py"
spec = importlib.util.spec_from_file_location("apt_packages", PLUGIN)
apt_packages = importlib.util.module_from_spec(spec)
spec.loader.exec_module(apt_packages)
apt_missing = apt_packages.apt_missing
dpkg_held = apt_packages.dpkg_held


def dpkg_listing(*names):
    # The command the roles run (roles/common/tasks/packages.yml, nvidia_driver/tasks/packages.yml).
    result = subprocess.run(
        apt_packages.dpkg_listing_argv(names), capture_output=True, text=True, check=False
    )
    assert result.returncode in (0, 1), result.stderr
    return result.stdout.splitlines()


def dpkg_version(name):
    return subprocess.run(
        ["dpkg-query", "--show", "--showformat=${Version}", name],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_the_real_dpkg_listing_satisfies_installed_names_and_their_versions():
    version = dpkg_version("dpkg")
    listing = dpkg_listing()
    assert apt_missing(["dpkg", "bash"], listing) == []
    assert apt_missing(["dpkg=" + version], listing) == []
    assert apt_missing(["dpkg=" + version.split("-")[0] + "*"], listing) == []
    assert apt_missing(["dpkg:amd64"], listing) == []


def test_the_real_listing_names_what_apt_still_has_to_do():
    listing = dpkg_listing()
    wanted = ["dpkg=0.0.1-1", "dpkg=0.0*", "no-such-package-here", "bash"]
    assert apt_missing(wanted, listing) == wanted[:3]


def test_a_listing_of_named_packages_with_one_unknown_still_answers():
    # dpkg-query exits 1 and lists only those it knows, as the roles' reads do.
    listing = dpkg_listing("bash", "no-such-package-here")
    assert apt_missing(["bash", "no-such-package-here"], listing) == ["no-such-package-here"]


def test_removed_packages_with_config_files_left_are_missing():
    listing = ["rc  nvidia-smi 535.261.03-1", "ii  libcuda1 535.261.03-1"]
    assert apt_missing(["nvidia-smi", "libcuda1"], listing) == ["nvidia-smi"]


def test_held_packages_count_as_installed_and_are_named_held():
    listing = ["hi  nvidia-kernel-dkms 535.309.01-0+deb12u1", "ii  libcuda1 535.309.01-0+deb12u1"]
    assert apt_missing(["nvidia-kernel-dkms=535.309.01*", "libcuda1=535.309.01*"], listing) == []
    assert apt_missing(["nvidia-kernel-dkms=535.261.03*"], listing) == [
        "nvidia-kernel-dkms=535.261.03*"
    ]
    assert dpkg_held(listing) == ["nvidia-kernel-dkms"]
    assert dpkg_held("\n".join(listing)) == ["nvidia-kernel-dkms"]


def test_specs_that_are_not_a_list_of_strings_are_refused_by_name():
    with pytest.raises(AnsibleFilterError, match="expected a list of package specs, got 'bash'"):
        apt_missing("bash", [])


NAMES = st.from_regex(r"[a-z0-9][a-z0-9+.-]{0,20}", fullmatch=True)
VERSIONS = st.from_regex(r"([0-9]:)?[0-9][0-9a-z.+~]{0,10}(-[0-9a-z.+~]{1,6})?", fullmatch=True)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(
    installed=st.dictionaries(NAMES, st.tuples(VERSIONS, st.sampled_from("ih"))),
    absent=st.lists(NAMES, max_size=5),
)
def test_generated_listings_installed_specs_are_satisfied_and_absent_ones_missing(
    installed, absent
):
    listing = ["%si  %s %s" % (want, name, version) for name, (version, want) in installed.items()]
    exact = ["%s=%s" % (name, version) for name, (version, _) in installed.items()]
    prefix = [
        "%s=%s*" % (name, version[: len(version) // 2]) for name, (version, _) in installed.items()
    ]
    assert apt_missing(list(installed) + exact + prefix, listing) == []
    unknown = [name for name in absent if name not in installed]
    assert apt_missing(unknown, listing) == unknown
    assert sorted(dpkg_held(listing)) == sorted(n for n, (_, w) in installed.items() if w == "h")
