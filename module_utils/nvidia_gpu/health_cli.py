"""`gpu-health check|validate|show`: the node-side health command of the gpu_health role.

A systemd timer runs `gpu-health check` between plays: one health run (health_status.py), the
status written as JSON (atomically) for people and tools, the metrics as a .prom file for
node_exporter's textfile collector, and one journal line per finding at a priority matching its
severity, so `journalctl -u gpu-health -p warning` lists what is wrong. The role runs
`gpu-health validate` on a new config file before installing it.

Exit status (EXIT_STATUS): 0 no finding at or above fail_on; 1 findings at or above fail_on
(critical by default: a lost GPU, settings that no longer hold, a sagging 12 V rail); 2 usage
error or invalid config (nothing was read); 3 the status or metrics could not be written; 4 an
internal error (a bug: the one line says where).

Standard library and the nvidia_gpu package only, Python 3.8+.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys

from . import atomic_file, health_status, metrics
from .boot_cli import Output
from .health_config import DEFAULT_CONFIG, DEFAULT_STATUS_FILE, HealthConfigError, load

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_INVALID = 2
EXIT_NOT_WRITTEN = 3
EXIT_INTERNAL = 4
EXIT_STATUS = (
    "Exit status: 0 no finding at or above fail_on; 1 findings at or above fail_on; 2 usage "
    "error or invalid config (nothing was read); 3 the status or metrics could not be written; "
    "4 internal error."
)
SEVERITIES = ("critical", "warning", "info")


def _journal_line(out, finding):
    """One line per finding, at the journal priority of its severity (crit, warning, info)."""
    say = {"critical": out.critical, "warning": out.warning, "info": out.info}
    say[finding["severity"]]("%s: %s" % (finding["severity"], finding["message"]))


def run_check(path, out, quiet):
    try:
        config = load(path)
    except HealthConfigError as error:
        out.error("nothing read: %s" % error)
        return EXIT_INVALID
    report = health_status.run(config)
    for finding in report["findings"]:
        if not (quiet and finding["severity"] == "info"):
            _journal_line(out, finding)
    try:
        atomic_file.write_text(config.status_file, health_status.status_text(report))
        if config.textfile:
            atomic_file.write_text(config.textfile, metrics.render(report))
    except OSError as error:
        out.error("health status not written: %s" % error)
        return EXIT_NOT_WRITTEN
    counts = {s: sum(1 for f in report["findings"] if f["severity"] == s) for s in SEVERITIES}
    out.info(
        "%s: %d GPU(s), %d lost; %d critical, %d warning, %d info finding(s); status %s%s"
        % (
            report["status"],
            report["facts"]["count"],
            report["facts"]["lost_count"],
            counts["critical"],
            counts["warning"],
            counts["info"],
            config.status_file,
            ", metrics %s" % config.textfile if config.textfile else "",
        )
    )
    return EXIT_FINDINGS if report["blocking"] else EXIT_OK


def run_validate(path, out):
    try:
        config = load(path)
    except HealthConfigError as error:
        out.error(str(error))
        return EXIT_INVALID
    out.info(
        "%s: valid; fail on %s; settings %s; BMC %s; GPU inventory %s"
        % (
            path,
            config.fail_on,
            config.settings_file or "not checked",
            "read" if config.bmc else "not configured",
            config.gpu_inventory or "not read",
        )
    )
    return EXIT_OK


def run_show(path, out):
    """The last run's status file as a short table: for people on the node."""
    try:
        with open(path, encoding="utf-8") as handle:
            report = json.load(handle)
        when = datetime.datetime.fromtimestamp(report["time"]).isoformat(timespec="seconds")
        lines = ["%s at %s: %s" % (report["host"], when, report["status"])]
        for gpu in report["gpus"]:
            lines.append(
                "  GPU %s %s %s: %s" % (gpu["index"], gpu["name"], gpu["uuid"], gpu["status"])
            )
        for finding in report["findings"]:
            lines.append("  %s: %s" % (finding["severity"], finding["message"]))
    except (OSError, ValueError, KeyError, TypeError, OverflowError) as error:
        out.error("%s cannot be shown: %s" % (path, error))
        return EXIT_INVALID
    out.info("\n".join(lines))
    return EXIT_OK


def parser(prog, default_config):
    top = argparse.ArgumentParser(
        prog=prog,
        description="Check this node's GPUs, declared GPU settings and BMC sensors, and write "
        "the status (JSON) and metrics (Prometheus textfile).",
        epilog=EXIT_STATUS,
    )
    commands = top.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    check = commands.add_parser("check", help="run the health checks and write the status")
    check.add_argument("--config", default=default_config, help="default: %(default)s")
    check.add_argument("--quiet", action="store_true", help="leave info findings out of the log")
    validate = commands.add_parser("validate", help="check a config file (reads no GPU)")
    validate.add_argument("config", nargs="?", default=default_config, metavar="FILE")
    show = commands.add_parser("show", help="print the last status file")
    show.add_argument("status", nargs="?", default=DEFAULT_STATUS_FILE, metavar="FILE")
    return top


def main(argv=None, prog="gpu-health", default_config=DEFAULT_CONFIG, out=None):
    args = parser(prog, default_config).parse_args(argv)
    out = out or Output()
    try:
        if args.command == "check":
            return run_check(args.config, out, args.quiet)
        if args.command == "validate":
            return run_validate(args.config, out)
        return run_show(args.status, out)
    except Exception as error:
        out.internal_error(error)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
