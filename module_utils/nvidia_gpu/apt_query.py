"""What an apt package source offers and what dpkg has installed, asked of the tools themselves.

The functions that ask take `run`: a callable(argv) -> (rc, stdout, stderr), which is
AnsibleModule.run_command on a node. The parse_* functions read the tools' text, so recorded real
outputs test them directly.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from .choice_pins import PolicyError
from .debian_version import newest_first

# One line per package: name, version and dpkg's two-letter status ('ii ' = installed).
DPKG_SHOWFORMAT = "${Package} | ${Version} | ${db:Status-Abbrev}\n"


class NothingOffered(PolicyError):
    """The source offers no package a probe matches: it is not configured on the node yet, or
    apt's package lists are stale."""

    def __init__(self, source, what, pattern):
        self.source, self.what, self.pattern = source, what, pattern
        super().__init__(
            "%s offers no %s (apt-cache search --names-only '%s' finds none): configure the "
            "source and update apt's package lists first" % (source, what, pattern)
        )

    @property
    def check_mode_msg(self):
        """What check mode says on a fresh node, where only a real run configures the source."""
        return (
            "Check mode: %s offers no %s on this node yet (a real run configures the source "
            "first), so none is chosen" % (self.source, self.what)
        )


def _output(run, argv, ok_rcs=(0,)):
    rc, out, err = run(argv)
    if rc not in ok_rcs:
        command = " ".join(shlex.quote(arg) for arg in argv).replace("\n", "\\n")
        raise PolicyError(
            "%s failed (rc %d): %s" % (command, rc, (err or out or "no output").strip())
        )
    return out or ""


# ---- reading the tools' text ----


def parse_search(text, pattern):
    """`apt-cache search --names-only` lines 'name - description' -> the names the pattern
    matches (apt also lists packages that only provide a matching name), sorted."""
    names = {line.split(" - ", 1)[0].strip() for line in (text or "").splitlines()}
    return sorted(name for name in names if name and re.search(pattern, name))


def parse_madison(text):
    """`apt-cache madison` output -> {package: [versions, newest first, no duplicates]}."""
    offered = {}
    for line in (text or "").splitlines():
        fields = [part.strip() for part in line.split("|")]
        if len(fields) < 3 or not fields[0] or not fields[1]:
            continue
        offered.setdefault(fields[0], []).append(fields[1])
    return {package: newest_first(versions) for package, versions in offered.items()}


def versions_by_flavour(packages, probes):
    """{package: versions} -> {flavour: versions newest first}: probes maps a kernel module
    flavour to a regex of the package names whose versions tell what is offered for it."""
    offered = {}
    for flavour, pattern in (probes or {}).items():
        versions = []
        for name, package_versions in sorted(packages.items()):
            if re.match(pattern, name):
                versions.extend(package_versions)
        offered[flavour] = newest_first(versions)
    return offered


def installed_from_listing(text, probes):
    """(version, flavour) of the installed driver from `dpkg-query --show` lines
    'package | version | status' (DPKG_SHOWFORMAT), the first installed ('ii') package a probe
    matches; ('', '') when none is."""
    for flavour, pattern in (probes or {}).items():
        for line in (text or "").splitlines():
            fields = [part.strip() for part in line.split("|")]
            if len(fields) >= 3 and fields[2].startswith("ii") and re.match(pattern, fields[0]):
                return fields[1], flavour
    return "", ""


# ---- asking the tools ----


def search(run, pattern):
    """Names of the packages apt knows whose name matches the pattern."""
    return parse_search(_output(run, ["apt-cache", "search", "--names-only", pattern]), pattern)


def madison(run, names):
    """{package: versions newest first} of what the configured sources offer of these names."""
    if not names:
        return {}
    return parse_madison(_output(run, ["apt-cache", "madison", *names]))


def dpkg_listing(run, patterns):
    """`dpkg-query --show` lines of the installed packages matching the glob patterns."""
    # rc 1: some pattern matches no package dpkg knows, which is no error here.
    argv = ["dpkg-query", "--show", "--showformat=" + DPKG_SHOWFORMAT, *patterns]
    return _output(run, argv, ok_rcs=(0, 1))


@dataclass
class DriverOffer:
    """What the driver source offers, per kernel module flavour, and the driver installed now."""

    versions: dict = field(default_factory=dict)
    installed_version: str = ""
    installed_kernel_modules: str = ""


def driver_offer(run, probes, installed_patterns, source):
    """Ask apt and dpkg: probes maps a flavour to a regex of the package names that tell what the
    source offers for it; installed_patterns are dpkg-query globs of the driver packages.
    Raises NothingOffered when no package matches a probe."""
    pattern = "|".join(probes.values())
    names = search(run, pattern)
    if not names:
        raise NothingOffered(source, "driver package", pattern)
    versions = versions_by_flavour(madison(run, names), probes)
    installed = installed_from_listing(dpkg_listing(run, installed_patterns), probes)
    return DriverOffer(versions, *installed)


def cuda_offer(run, probe, offered_by, source):
    """What the CUDA source offers: with offered_by 'version', the versions of the packages the
    probe matches (nvidia-cuda-toolkit 11.8.89~11.8.0-5~deb12u1); with 'name', their names
    (cuda-toolkit-12-8). Raises NothingOffered when no package matches."""
    names = search(run, probe)
    if not names:
        raise NothingOffered(source, "CUDA toolkit", probe)
    if offered_by == "name":
        return names
    return [version for versions in madison(run, names).values() for version in versions]
