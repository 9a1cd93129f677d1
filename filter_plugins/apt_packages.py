# Copyright: the gpu-node project contributors
# SPDX-License-Identifier: Apache-2.0
"""Filters over dpkg's listing (module_utils/nvidia_gpu/dpkg_listing.py): apt_missing (the specs
it does not satisfy), dpkg_held (held names) and dpkg_listing_argv (the command that lists)."""

from __future__ import annotations

from pathlib import Path

import ansible.module_utils
from ansible.errors import AnsibleFilterError

_MODULE_UTILS = str(Path(__file__).resolve().parents[1] / "module_utils")
if _MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_MODULE_UTILS)

from ansible.module_utils.nvidia_gpu import dpkg_listing  # noqa: E402

dpkg_listing_argv = dpkg_listing.listing_argv
dpkg_held = dpkg_listing.held_names


def apt_missing(specs, listing):
    """The specs, in their order, that the listing does not satisfy."""
    if not isinstance(specs, (list, tuple)) or not all(isinstance(s, str) for s in specs):
        raise AnsibleFilterError("apt_missing: expected a list of package specs, got %r" % (specs,))
    return dpkg_listing.missing_specs(specs, listing)


class FilterModule:
    def filters(self):
        return {
            "apt_missing": apt_missing,
            "dpkg_held": dpkg_held,
            "dpkg_listing_argv": dpkg_listing_argv,
        }
