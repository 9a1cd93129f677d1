# Copyright: the gpu-node project contributors
# SPDX-License-Identifier: Apache-2.0
"""Action node_packages (documented in library/node_packages.py): apt only for what is missing.

On the controller: a role's package step costs no call on the node when the run's dpkg listing
(read once, kept as a host fact) already satisfies every spec. Only an install refreshes stale
package lists, runs apt, and reads the listing again.
"""

from __future__ import annotations

from pathlib import Path

import ansible.module_utils
from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

_MODULE_UTILS = str(Path(__file__).resolve().parents[1] / "module_utils")
if _MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_MODULE_UTILS)

from ansible.module_utils.nvidia_gpu import dpkg_listing  # noqa: E402

LISTING_FACT = "node_packages_dpkg_listing"
# The options of library/node_packages.py (tests/test_node_packages.py holds them equal).
ARGUMENT_SPEC = {
    "names": {"type": "list", "elements": "str", "required": True},
    "install_recommends": {"type": "bool", "default": True},
    "cache_valid_time_s": {"type": "int", "default": 3600},
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        bad = dpkg_listing.bad_specs(args["names"])
        if bad:
            return dict(
                result,
                failed=True,
                msg="names: %s %s not a package spec apt takes (name, name:arch, name=version, "
                "name=version*)" % (", ".join(map(repr, bad)), "is" if len(bad) == 1 else "are"),
            )
        if args["cache_valid_time_s"] < 0:
            return dict(
                result,
                failed=True,
                msg="cache_valid_time_s: %d is below 0; allowed: seconds, 0 or more"
                % args["cache_valid_time_s"],
            )
        try:
            return self._ensure(result, args, task_vars)
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)

    def _ensure(self, result, args, task_vars):
        learned = {}
        listing = (task_vars.get("ansible_facts") or {}).get(LISTING_FACT)
        if listing is None:
            listing = learned[LISTING_FACT] = self._read_listing(task_vars)
        missing = dpkg_listing.missing_specs(args["names"], listing)
        result.update(changed=False, missing=missing)
        if missing:
            # Current lists also in check mode: apt cannot tell what it would install without.
            refresh = self._module(
                "ansible.builtin.apt",
                {"update_cache": True, "cache_valid_time": args["cache_valid_time_s"]},
                task_vars,
                check_mode=False,
            )
            if refresh.get("failed"):
                return dict(
                    result,
                    failed=True,
                    msg="apt could not refresh its package lists: %s" % refresh.get("msg"),
                )
            apt = self._module(
                "ansible.builtin.apt",
                {
                    "name": missing,
                    "state": "present",
                    "install_recommends": args["install_recommends"],
                },
                task_vars,
            )
            for key in ("diff", "stdout", "stderr"):
                if key in apt:
                    result[key] = apt[key]
            if apt.get("failed"):
                return dict(
                    result,
                    failed=True,
                    msg="apt could not install %s: %s" % (", ".join(missing), apt.get("msg")),
                )
            result["changed"] = bool(apt.get("changed"))
            if result["changed"] and not self._task.check_mode:
                learned[LISTING_FACT] = self._read_listing(task_vars)
        if learned:
            result["ansible_facts"] = learned
        return result

    def _read_listing(self, task_vars):
        listed = self._module(
            "ansible.builtin.command",
            {"argv": dpkg_listing.listing_argv()},
            task_vars,
            check_mode=False,
        )
        if listed.get("failed") or listed.get("rc"):
            raise AnsibleActionFail(
                "dpkg-query could not list the installed packages: %s"
                % (listed.get("msg") or listed.get("stderr"))
            )
        return listed.get("stdout_lines", [])

    def _module(self, name, module_args, task_vars, check_mode=None):
        """Run a module on the node; check_mode False also runs it in a --check run (reads)."""
        saved = self._task.check_mode
        if check_mode is not None:
            self._task.check_mode = check_mode
        try:
            return self._execute_module(
                module_name=name, module_args=module_args, task_vars=task_vars
            )
        finally:
            self._task.check_mode = saved
