#!/usr/bin/python
# Copyright: the gpu-node project contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: drain a Slurm node and wait for its jobs, or resume a drain of a given kind."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: slurm_node_state
short_description: Drain a Slurm node and wait for its jobs to end, or resume a drain of one kind
description:
  - Runs on a host where C(sinfo), C(squeue) and C(scontrol) reach the controller (the
    controller itself, by C(delegate_to)).
  - O(state=drained) drains the node with O(reason) unless it is drained already (by anybody,
    whose reason is then kept), then waits up to O(wait_for_jobs_s) for the jobs on it to end,
    so that a change (a driver reload, new power caps) never lands under a running job.
  - O(state=resumed) resumes the node only when it is drained with a reason starting with
    O(drained_by); a drain that people or the health check set is never touched.
  - A node Slurm does not know, or a host without Slurm's commands, is left alone and reported
    with RV(node_known=false); before the cluster has Slurm there is nothing to drain.
version_added: "1.0.0"
author: gpu-node project contributors (@gpu-node)
options:
  name:
    description: The node's Slurm name (its NodeName, the node's short hostname).
    type: str
    required: true
  state:
    description: C(drained) or C(resumed).
    type: str
    required: true
    choices: [drained, resumed]
  reason:
    description:
      - The drain reason Slurm shows (C(sinfo -R)); required with O(state=drained). Start it
        with the prefix given as O(drained_by) when resuming.
    type: str
  drained_by:
    description: With O(state=resumed), the reason prefix of the drains to resume.
    type: str
  wait_for_jobs_s:
    description:
      - With O(state=drained), how long to wait for the node's jobs to end; the module fails
        after it, naming the jobs, with the node left drained. C(0) does not wait.
    type: int
    default: 3600
  poll_interval_s:
    description: How often to ask C(squeue) while waiting.
    type: int
    default: 5
attributes:
  check_mode:
    description: Reads the node's state and says whether it would drain or resume it.
    support: full
  diff_mode:
    description: The node's state and reason before and after.
    support: full
notes:
  - Slurm's own C(scontrol update) does the change; the module adds the checks around it.
"""

EXAMPLES = r"""
- name: Drain the node before its driver is reloaded, and wait for its jobs
  slurm_node_state:
    name: "{{ ansible_facts['hostname'] }}"
    state: drained
    reason: "gpu-node change: nvidia driver 550.54.15"
    wait_for_jobs_s: 7200
  delegate_to: "{{ groups['slurm_controller'][0] }}"

- name: Resume it, only if that drain is still the one on it
  slurm_node_state:
    name: "{{ ansible_facts['hostname'] }}"
    state: resumed
    drained_by: "gpu-node change: "
  delegate_to: "{{ groups['slurm_controller'][0] }}"
"""

RETURN = r"""
node_known:
  description: Whether Slurm knows the node (false also where Slurm's commands are missing).
  returned: always
  type: bool
  sample: true
state_before:
  description: The node's extended state as C(sinfo %T) showed it first (null when unknown).
  returned: always
  type: str
  sample: mixed
reason_before:
  description: Its drain reason then ("" without one).
  returned: always
  type: str
  sample: ""
action:
  description: C(drain), C(resume), or null when nothing was (or, in check mode, would be) done.
  returned: always
  type: str
  sample: drain
jobs:
  description: The ids of the jobs on the node when the wait began.
  returned: always
  type: list
  elements: str
  sample: ["41"]
waited_s:
  description: Seconds spent waiting for them.
  returned: always
  type: float
  sample: 12.4
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.nvidia_gpu import slurm_control


def _describe(node_state):
    if node_state is None:
        return "unknown to Slurm\n"
    state, reason = node_state
    return "state: %s\nreason: %s\n" % (state, reason)


def _wait_for_jobs(module, run, squeue, name):
    """(job ids found first, seconds waited); fails after wait_for_jobs_s."""
    limit_s = module.params["wait_for_jobs_s"]
    start = time.monotonic()
    first = jobs = slurm_control.node_jobs(run, squeue, name)
    while jobs and time.monotonic() - start < limit_s:
        time.sleep(min(module.params["poll_interval_s"], limit_s))
        jobs = slurm_control.node_jobs(run, squeue, name)
    waited_s = round(time.monotonic() - start, 1)
    if jobs:
        module.fail_json(
            msg="node %s is drained but jobs %s still run on it after %s s (wait_for_jobs_s): "
            "nothing else was changed; re-run once they end, or cancel them"
            % (name, ", ".join(jobs), limit_s),
            changed=True,
            jobs=jobs,
            waited_s=waited_s,
        )
    return first, waited_s


def main():
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "required": True, "choices": ["drained", "resumed"]},
            "reason": {"type": "str"},
            "drained_by": {"type": "str"},
            "wait_for_jobs_s": {"type": "int", "default": 3600},
            "poll_interval_s": {"type": "int", "default": 5},
        },
        required_if=[("state", "drained", ["reason"]), ("state", "resumed", ["drained_by"])],
        supports_check_mode=True,
    )
    params = module.params
    name, target = params["name"], params["state"]
    for option, least in (("wait_for_jobs_s", 0), ("poll_interval_s", 1)):
        if params[option] < least:
            module.fail_json(
                msg="%s is %s: give a whole number of seconds, at least %d"
                % (option, params[option], least)
            )
    if target == "drained" and not params["reason"].strip():
        module.fail_json(msg="reason is empty: Slurm needs a reason to drain node %s" % name)
    if target == "resumed" and not params["drained_by"].strip():
        module.fail_json(msg="drained_by is empty: it would resume anybody's drain of %s" % name)

    result = {
        "changed": False,
        "node_known": False,
        "state_before": None,
        "reason_before": "",
        "action": None,
        "jobs": [],
        "waited_s": 0.0,
    }
    tools = {tool: module.get_bin_path(tool) for tool in ("sinfo", "squeue", "scontrol")}
    if not all(tools.values()):
        module.exit_json(msg="Slurm's commands are not installed here: nothing to do", **result)

    def run(argv):
        return module.run_command(argv)

    try:
        before = slurm_control.read_node(run, tools["sinfo"], name)
        if before is None:
            module.exit_json(msg="Slurm does not know node %s: nothing to do" % name, **result)
        action = slurm_control.plan(target, before[0], before[1], params["drained_by"] or "")
        after = before
        if action == "drain":
            after = ("drained", params["reason"])
        elif action == "resume":
            after = ("idle", "")
        result.update(
            node_known=True,
            state_before=before[0],
            reason_before=before[1],
            action=action,
            changed=action is not None,
        )
        if module._diff:
            result["diff"] = {"before": _describe(before), "after": _describe(after)}
        if module.check_mode:
            module.exit_json(**result)
        if action is not None:
            slurm_control.update(run, tools["scontrol"], name, action, params["reason"])
        if target == "drained" and params["wait_for_jobs_s"] > 0:
            result["jobs"], result["waited_s"] = _wait_for_jobs(module, run, tools["squeue"], name)
    except slurm_control.SlurmError as error:
        module.fail_json(msg="node %s: %s" % (name, error), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
