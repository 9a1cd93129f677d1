# Copyright: the gpu-node project contributors
# SPDX-License-Identifier: Apache-2.0
"""`gpu-health-slurm`: slurmd's HealthCheckProgram on GPU nodes (slurm role).

Each run is one `gpu-health check` (the gpu_health role's config and status file), then: a
critical finding drains the node with the finding as the reason, so that `sinfo -R` names the
cause ("gpu-health: GPU 2 (GPU-...) has fallen off the bus (Xid 79)"); when no critical finding
is left, a drain that this program set (its reason starts with REASON_PREFIX) is resumed. A drain
anybody else set is never touched.

slurmd runs it as root with an almost empty environment, so every command is an absolute path.
Exit status: 0 done (drained, resumed or left alone), 2 the check or Slurm could not be asked.

Standard library only, Python 3.8+.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import syslog

from . import health_cli, slurm_control
from .boot_cli import Output
from .health_config import DEFAULT_CONFIG, HealthConfigError, load

REASON_PREFIX = "gpu-health: "
# Slurm keeps reasons of any length, but sinfo's columns and people read the first line only.
REASON_MAX_CHARS = 200
DONE = {"drain": "drained", "resume": "resumed"}
EXIT_OK = 0
EXIT_UNREADABLE = 2


def blocking_findings(status):
    """The critical findings of a gpu-health status (its JSON), in their order."""
    return [f for f in status.get("findings", []) if f.get("severity") == "critical"]


def drain_reason(findings):
    """The reason to drain with: the first finding, and how many more there are."""
    first = str(findings[0].get("message", "critical finding")).splitlines()[0]
    more = " (+%d more)" % (len(findings) - 1) if len(findings) > 1 else ""
    text = REASON_PREFIX + first
    if len(text) + len(more) > REASON_MAX_CHARS:
        text = text[: REASON_MAX_CHARS - len(more) - 3] + "..."
    return text + more


def decide(findings, state, reason):
    """('drain', reason), ('resume', None) or (None, None), for the node's current Slurm state
    (sinfo's extended state: idle, drained, draining, down~, ...) and drain reason."""
    ours = reason.startswith(REASON_PREFIX)
    drained = slurm_control.is_drained(state)
    if findings:
        wanted = drain_reason(findings)
        if drained and (reason == wanted or not ours):
            return None, None  # already ours with this cause, or somebody else's drain
        return "drain", wanted
    if drained and ours:
        return "resume", None
    return None, None


def _log(priority, message):
    """To the journal (slurmd drops what its HealthCheckProgram prints) and to stderr."""
    syslog.openlog("gpu-health-slurm")
    syslog.syslog(priority, message)
    print(message, file=sys.stderr)


def main(argv=None, prog="gpu-health-slurm"):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[1])
    parser.add_argument(
        "--config", default=DEFAULT_CONFIG, help="gpu-health's config; default: %(default)s"
    )
    parser.add_argument("--sinfo", default="/usr/bin/sinfo")
    parser.add_argument("--scontrol", default="/usr/bin/scontrol")
    parser.add_argument(
        "--node", default=os.environ.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]
    )
    args = parser.parse_args(argv)
    # The same run as the gpu-health timer's: it writes the status file read next.
    with open(os.devnull, "w", encoding="utf-8") as quiet:
        health_cli.run_check(args.config, Output(stdout=quiet, stderr=quiet), quiet=True)
    try:
        with open(load(args.config).status_file, encoding="utf-8") as handle:
            findings = blocking_findings(json.load(handle))
        node = slurm_control.read_node(slurm_control.subprocess_runner, args.sinfo, args.node)
        if node is None:
            raise RuntimeError("sinfo does not know node %s" % args.node)
        state, reason = node
    except (
        OSError,
        ValueError,
        RuntimeError,
        HealthConfigError,
    ) as error:
        _log(syslog.LOG_ERR, "node %s not checked: %s" % (args.node, error))
        return EXIT_UNREADABLE
    action, wanted = decide(findings, state, reason)
    if action is None:
        return EXIT_OK
    try:
        slurm_control.update(
            slurm_control.subprocess_runner, args.scontrol, args.node, action, wanted
        )
    except slurm_control.SlurmError as error:
        _log(syslog.LOG_ERR, "node %s not %s: %s" % (args.node, DONE[action], error))
        return EXIT_UNREADABLE
    _log(
        syslog.LOG_CRIT if action == "drain" else syslog.LOG_NOTICE,
        "node %s %s: %s" % (args.node, DONE[action], wanted or "no critical finding left"),
    )
    return EXIT_OK
