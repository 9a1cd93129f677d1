"""Debian package versions: their order (as `dpkg --compare-versions` has it) and their parts.

Standard library only; nothing here reads the machine.
"""

from __future__ import annotations

import re


def split_epoch(version):
    """'1:535.1-1' -> (1, '535.1-1'); no epoch is epoch 0."""
    version = str(version).strip()
    if re.match(r"^\d+:", version):
        epoch, version = version.split(":", 1)
        return int(epoch), version
    return 0, version


def upstream(version):
    """'1:535.309.01-0+deb12u1' -> '535.309.01' (no epoch, no Debian revision)."""
    _, version = split_epoch(version)
    return version.rsplit("-", 1)[0] if "-" in version else version


def branch_of(version):
    """Driver branch of a driver version or branch number: '535.309.01-0+deb12u1' -> 535.
    None when the text does not start with a number."""
    match = re.match(r"^\s*(?:\d+:)?(\d+)", str(version))
    return int(match.group(1)) if match else None


def _order(char):
    if char == "~":
        return -1
    if char.isdigit():
        return 0
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _compare_part(a, b):
    """dpkg's comparison of one upstream or revision string."""
    a, b = list(a), list(b)
    while a or b:
        first_diff = 0
        while (a and not a[0].isdigit()) or (b and not b[0].isdigit()):
            ac = _order(a[0]) if a and not a[0].isdigit() else 0
            bc = _order(b[0]) if b and not b[0].isdigit() else 0
            if ac != bc:
                return ac - bc
            if a and not a[0].isdigit():
                a.pop(0)
            if b and not b[0].isdigit():
                b.pop(0)
        while a and a[0] == "0":
            a.pop(0)
        while b and b[0] == "0":
            b.pop(0)
        while a and a[0].isdigit() and b and b[0].isdigit():
            if not first_diff:
                first_diff = int(a[0]) - int(b[0])
            a.pop(0)
            b.pop(0)
        if a and a[0].isdigit():
            return 1
        if b and b[0].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def compare_versions(a, b):
    """Debian version order (as `dpkg --compare-versions`): negative, 0 or positive."""
    epoch_a, rest_a = split_epoch(a)
    epoch_b, rest_b = split_epoch(b)
    if epoch_a != epoch_b:
        return epoch_a - epoch_b
    up_a, _, rev_a = rest_a.rpartition("-") if "-" in rest_a else (rest_a, "", "")
    up_b, _, rev_b = rest_b.rpartition("-") if "-" in rest_b else (rest_b, "", "")
    return _compare_part(up_a, up_b) or _compare_part(rev_a, rev_b)


class _VersionKey:
    def __init__(self, version):
        self.version = version

    def __lt__(self, other):
        return compare_versions(self.version, other.version) < 0


def newest_first(versions):
    """The versions without duplicates, newest first."""
    unique = []
    for version in versions:
        if version not in unique:
            unique.append(version)
    return sorted(unique, key=_VersionKey, reverse=True)


def newest(versions):
    """The newest of the versions; None when there is none."""
    ordered = newest_first(versions)
    return ordered[0] if ordered else None
