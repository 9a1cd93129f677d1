# Copyright: the gpu-node project contributors
# SPDX-License-Identifier: Apache-2.0
"""Callback: at the end of a run, each node's GPU hardware changes and what the run then changed.

The gpu_inventory role prints the changes where it finds them, in the middle of a long run; this
repeats them at the end, beside the tasks that changed something on that node from the inventory
on (the roles re-doing what the new hardware needs), so that a swap reads as one paragraph.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: gpu_hardware_changes
type: aggregate
short_description: Each node's GPU hardware changes, and the tasks the run changed after them
description:
  - Collects the drift lines of the C(nvidia_gpu_inventory) module (a GPU replaced, another
    model, a slot empty) and, for every node that has any, the tasks and handlers that reported
    a change on it from that task on.
  - Prints them after the play recap, one block per node. Prints nothing when no GPU changed.
requirements:
  - enabled in ansible.cfg (C(callbacks_enabled)), as the project's is
"""

from ansible.plugins.callback import CallbackBase  # noqa: E402 (after DOCUMENTATION)

INVENTORY_MODULES = ("nvidia_gpu_inventory",)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "gpu_hardware_changes"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._drift = {}  # host: drift lines of its latest inventory run
        self._changed = {}  # host: names of the tasks that changed something since then

    def _task_name(self, task):
        role = task._role.get_name() if getattr(task, "_role", None) else None
        name = task.get_name().strip()
        return "%s : %s" % (role, name) if role and not name.startswith(role) else name

    def v2_runner_on_ok(self, result):
        host = result._host.get_name()
        task = result._task
        outcome = result._result
        if task.action.rsplit(".", 1)[-1] in INVENTORY_MODULES:
            self._drift[host] = list(outcome.get("drift") or [])
            self._changed[host] = []
        if outcome.get("changed") and host in self._changed:
            self._changed[host].append(self._task_name(task))

    def v2_playbook_on_stats(self, stats):
        hosts = sorted(host for host, lines in self._drift.items() if lines)
        if not hosts:
            return
        self._display.banner("GPU HARDWARE CHANGES")
        for host in hosts:
            for line in self._drift[host]:
                self._display.display("%s: %s" % (host, line))
            changed = self._changed.get(host, [])
            self._display.display(
                "%s: then changed (%d): %s"
                % (host, len(changed), "; ".join(changed) if changed else "nothing")
            )
