"""`gpu-tuning apply|check`: the node-side command of the gpu_tuning role.

A systemd oneshot unit runs `gpu-tuning apply` at every boot; the role runs `gpu-tuning check` on
a new config file before installing it. This file is the command: its arguments, the lines it
writes for people and the journal, and its exit status. The file's model is boot_config.py, the
waiting and applying boot_apply.py.

When the wait runs out the settings still go to the GPUs that answer, and each GPU that could not
be set is named (index and UUID) on stderr.

Exit status: 0 every GPU of the file holds its settings; 1 at least one GPU of the file is
missing or could not be set (the others were set); 2 usage error or the file is not valid
(nothing was changed).

Standard library and the nvidia_gpu package only, Python 3.8+.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import boot_apply
from .boot_config import ConfigError, load
from .identity import label_of

DEFAULT_CONFIG = "/etc/gpu-node/gpu-tuning.json"
DEFAULT_WAIT_S = 120
EXIT_OK = 0
EXIT_GPU_FAILED = 1
EXIT_INVALID = 2
# syslog priorities journald takes from a "<N>" line prefix (SyslogLevelPrefix=, on by default).
PRIORITY_ERR = 3
PRIORITY_WARNING = 4
PRIORITY_INFO = 6


class Output:
    """Lines for people and for the journal: info on stdout, problems on stderr.

    Under systemd (stderr connected to the journal, as JOURNAL_STREAM says) each line carries a
    syslog priority prefix, so `journalctl -p err` shows the GPUs that failed.
    """

    def __init__(self, stdout=None, stderr=None):
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.journal = _to_journal(self.stderr)

    def _write(self, stream, priority, message):
        for line in str(message).splitlines() or [""]:
            stream.write(("<%d>" % priority if self.journal else "") + line + "\n")
        stream.flush()

    def info(self, message):
        self._write(self.stdout, PRIORITY_INFO, message)

    def warning(self, message):
        self._write(self.stderr, PRIORITY_WARNING, message)

    def error(self, message):
        self._write(self.stderr, PRIORITY_ERR, message)


def _to_journal(stream):
    """True when stream is the journal stream systemd gave this service (see systemd.exec)."""
    wanted = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in wanted.split(":"))
        stat = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (stat.st_dev, stat.st_ino) == (device, inode)


def _shown(key, value):
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, dict) and "graphics_mhz" in value:
        return "%s/%s MHz" % (value["memory_mhz"], value["graphics_mhz"])
    if isinstance(value, dict) and "max_mhz" in value:
        return "%s-%s MHz" % (value["min_mhz"], value["max_mhz"])
    if key == "power_limit_w":
        return "%s W" % value
    return str(value)


def describe(result, verb):
    """'GPU 0 (uuid): set power_limit_w 300 W -> 200 W, ...' for one per-GPU result."""
    head = label_of(result)
    if not result["changed"]:
        return "%s: already as configured" % head
    return "%s: %s %s" % (
        head,
        verb,
        ", ".join(
            "%s %s -> %s"
            % (key, _shown(key, result["before"][key]), _shown(key, result["after"][key]))
            for key in result["changed"]
        ),
    )


def run_apply(path, wait_s, out):
    try:
        config = load(path)
    except ConfigError as error:
        out.error("nothing changed: %s" % error)
        return EXIT_INVALID
    gpus, results, failures = boot_apply.apply_file(config, wait_s, out.info, out.warning)
    for result in results:
        out.info(describe(result, "set"))
    for gpu in boot_apply.unrecorded(config, gpus):
        out.warning(
            "%s is not in %s (written for the GPUs present then); left unchanged: run the "
            "gpu_tuning role again" % (label_of(gpu, with_name=True), path)
        )
    for uuid in config.targets:
        if uuid in failures:
            out.error("%s: NOT applied: %s" % (boot_apply.label(config, uuid), failures[uuid]))
    held = len(config.targets) - len(failures)
    out.info(
        "%d of %d GPU(s) hold the settings of %s%s"
        % (
            held,
            len(config.targets),
            path,
            " (profile %s)" % config.profile if config.profile else "",
        )
    )
    return EXIT_GPU_FAILED if failures else EXIT_OK


def run_check(path, structure_only, out):
    """Validate a file; unless structure_only, also plan it (check mode) against the GPUs here."""
    try:
        config = load(path)
    except ConfigError as error:
        out.error(str(error))
        return EXIT_INVALID
    out.info("%s: valid; settings for %d GPU(s)" % (path, len(config.targets)))
    if structure_only:
        return EXIT_OK
    missing, results, error = boot_apply.plan_file(config)
    for uuid, reason in missing.items():
        out.error("%s: does not answer: %s" % (boot_apply.label(config, uuid), reason))
    if error is not None:
        out.error("not valid for the GPUs of this machine: %s" % error)
        return EXIT_INVALID
    if results is None:
        return EXIT_GPU_FAILED
    for result in results:
        out.info(describe(result, "would set"))
    return EXIT_GPU_FAILED if missing else EXIT_OK


def parser(prog, default_config):
    top = argparse.ArgumentParser(
        prog=prog,
        description="Apply the GPU power, clock and persistence settings the gpu_tuning role "
        "wrote to a config file, with the project's NVML code (nvidia_gpu.settings).",
        epilog="Exit status: 0 every GPU of the file holds its settings; 1 a GPU of the file is "
        "missing or could not be set (the others were set); 2 usage error or invalid file.",
    )
    commands = top.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    apply = commands.add_parser("apply", help="apply the file, waiting for its GPUs first")
    apply.add_argument("--config", default=default_config, help="default: %(default)s")
    apply.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT_S,
        metavar="SECONDS",
        help="longest wait for NVML and every GPU of the file to answer (default: %(default)s)",
    )
    check = commands.add_parser(
        "check", help="validate a file and show what applying it would change (changes nothing)"
    )
    check.add_argument("config", nargs="?", default=default_config, metavar="FILE")
    check.add_argument(
        "--structure-only",
        action="store_true",
        help="only check the file's content, do not look at the GPUs",
    )
    return top


def main(argv=None, prog="gpu-tuning", default_config=DEFAULT_CONFIG, out=None):
    args = parser(prog, default_config).parse_args(argv)
    out = out or Output()
    if args.command == "apply":
        if args.wait < 0:
            out.error("--wait must be 0 or more seconds")
            return EXIT_INVALID
        return run_apply(args.config, args.wait, out)
    return run_check(args.config, args.structure_only, out)


if __name__ == "__main__":
    sys.exit(main())
