# Copyright: the gpu-node project contributors
# SPDX-License-Identifier: Apache-2.0
"""dpkg's listing of installed packages, and which apt package specs it does not satisfy yet.

Lets a role skip its apt call when everything is installed (an apt call costs a module run and
loading apt's cache; a dpkg-query listing is one command). listing_argv gives the command, whose
lines read "ii  name 1.2-3": the first letter is the selection (h: held), the second the state
(i: installed). Used by the node_packages action and the apt_packages filters.
"""

from __future__ import annotations

import re

SHOWFORMAT = "${db:Status-Abbrev} ${Package} ${Version}\n"
LISTING_LINE = re.compile(r"^(?P<want>[a-z])(?P<state>[a-zA-Z]). (?P<name>\S+) ?(?P<version>\S*)$")
# What apt takes as a package spec here: name, name:arch, name=version, name=version* (Debian
# policy's package name characters; a version without blanks).
SPEC = re.compile(r"^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?(=[^\s=]+)?$")


def listing_argv(names=()):
    """dpkg-query's command for the listing: every package, or those named."""
    return ["dpkg-query", "--show", "--showformat=" + SHOWFORMAT, *names]


def listing_entries(listing):
    """The parsed lines (want, state, name, version) of a listing, as lines or as one text."""
    lines = listing.splitlines() if isinstance(listing, str) else listing
    for match in map(LISTING_LINE.match, (line.rstrip("\n") for line in lines)):
        if match:
            yield (
                match.group("want"),
                match.group("state"),
                match.group("name").split(":")[0],
                match.group("version"),
            )


def installed_versions(listing):
    """{package name: version} of the installed packages of a dpkg-query listing."""
    return {name: version for _, state, name, version in listing_entries(listing) if state == "i"}


def spec_satisfied(spec, versions):
    """Whether apt would find nothing to do for "name", "name=version" or "name=version*"."""
    name, _, wanted = spec.partition("=")
    name = name.split(":")[0]
    if name not in versions:
        return False
    if not wanted:
        return True
    if wanted.endswith("*"):
        return versions[name].startswith(wanted[:-1])
    return versions[name] == wanted


def missing_specs(specs, listing):
    """The specs, in their order, that the listing does not satisfy."""
    versions = installed_versions(listing)
    return [spec for spec in specs if not spec_satisfied(spec, versions)]


def held_names(listing):
    """Names of the packages the listing shows held (selection h)."""
    return [name for want, _, name, _ in listing_entries(listing) if want == "h"]


def bad_specs(specs):
    """The specs that are not package specs apt takes (see SPEC)."""
    return [spec for spec in specs if not isinstance(spec, str) or not SPEC.match(spec)]
