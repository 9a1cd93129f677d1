# Copyright: the gpu-node project contributors
# SPDX-License-Identifier: Apache-2.0
"""One Slurm node as the controller sees it, and the two changes the project makes to it: drain
with a reason, resume.

Used by `gpu-health-slurm` (slurm_health: a critical finding drains the node) and by the
slurm_node_state module (a rolling driver or GPU settings change drains each node first). Both
tell their drains apart by the reason's prefix and resume only their own.

Every function takes `run`: argv -> (rc, stdout, stderr), so that the module passes Ansible's
run_command and the health check program a plain subprocess runner.

Standard library only, Python 3.8+.
"""

from __future__ import annotations

import subprocess

TIMEOUT_S = 30


class SlurmError(RuntimeError):
    """A Slurm command failed: no controller to answer, no permission."""


def subprocess_runner(argv):
    """run(argv) for callers outside Ansible."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError) as error:
        return 127, "", str(error)
    return done.returncode, done.stdout, done.stderr


def _checked(run, argv):
    rc, out, err = run(argv)
    if rc != 0:
        raise SlurmError(
            "%s failed (rc %s): %s" % (" ".join(argv[:2]), rc, (err or out).strip() or "no output")
        )
    return out


def read_node(run, sinfo, node):
    """(extended state, reason) of the node (state as sinfo's %T: idle, mixed, drained, draining,
    down*, ...; reason "" without one), or None when Slurm does not know the node."""
    rc, out, err = run([sinfo, "--noheader", "--Node", "--nodes", node, "--format", "%T|%E"])
    if rc != 0 and "invalid node name" in (err + out).lower():
        return None
    if rc != 0:
        raise SlurmError("%s failed (rc %s): %s" % (sinfo, rc, (err or out).strip()))
    lines = out.strip().splitlines()
    if not lines:
        return None
    state, _, reason = lines[0].partition("|")
    reason = reason.strip()
    return state.strip(), "" if reason == "none" else reason


def is_drained(state):
    """Drained or draining, whatever else the state says (idle+drain, drained*, ...)."""
    return "drain" in state


def node_jobs(run, squeue, node):
    """The ids of the jobs on the node (running, completing, suspended), in squeue's order."""
    out = _checked(run, [squeue, "--noheader", "--nodelist", node, "--format", "%i"])
    return [line.strip() for line in out.splitlines() if line.strip()]


def update_argv(scontrol, node, action, reason=None):
    """scontrol's argv to drain the node with a reason, or to resume it."""
    argv = [scontrol, "update", "NodeName=%s" % node]
    if action == "drain":
        return [*argv, "State=DRAIN", "Reason=%s" % reason]
    if action == "resume":
        return [*argv, "State=RESUME"]
    raise ValueError("action must be drain or resume, not %r" % (action,))


def update(run, scontrol, node, action, reason=None):
    """Drain (with reason) or resume the node; SlurmError when scontrol refuses."""
    _checked(run, update_argv(scontrol, node, action, reason))


def plan(target, state, reason, drained_by=""):
    """'drain', 'resume' or None for a node in `state` with `reason`: target 'drained' drains
    a node nobody has drained; target 'resumed' resumes only a drain whose reason starts with
    `drained_by` (never somebody else's)."""
    if target == "drained":
        return None if is_drained(state) else "drain"
    if target == "resumed":
        if not drained_by:
            raise ValueError("resuming needs the reason prefix of the drains to resume")
        return "resume" if is_drained(state) and reason.startswith(drained_by) else None
    raise ValueError("target must be drained or resumed, not %r" % (target,))


def batches(hosts, size):
    """The hosts in order, cut into batches of `size`: a whole number (at least 1) or a
    percentage of the hosts as a string ("25%", at least one host a batch), as Ansible's serial."""
    hosts = list(hosts)
    text = str(size).strip()
    try:
        if text.endswith("%"):
            percent = float(text[:-1])
            if not 0 < percent <= 100:
                raise ValueError
            count = max(1, int(len(hosts) * percent / 100))
        else:
            if isinstance(size, bool):
                raise ValueError
            count = int(text)
            if count < 1:
                raise ValueError
    except ValueError:
        raise ValueError(
            "rolling batch size %r: give a whole number of nodes (at least 1) or a percentage "
            "of them such as '25%%' (more than 0, at most 100)" % (size,)
        ) from None
    return [hosts[start : start + count] for start in range(0, len(hosts), count)]
