"""`gpu-tuning apply|check`: the node-side command of the gpu_tuning role.

A systemd oneshot unit runs `gpu-tuning apply` at every boot; the role runs `gpu-tuning check` on
a new config file before installing it. This file is the command: its arguments, the lines it
writes for people and the journal, and its exit status. The file's model is boot_config.py, the
waiting and applying boot_apply.py.

When the wait runs out the settings still go to the GPUs that answer, and each GPU that could not
be set is named (index and UUID) on stderr.

A card in a recorded slot under another UUID replaced the recorded one, and a card in a slot the
file does not know was added: both are named (model, serial) and get what the file's request gives
them there (boot_hardware). A GPU whose slot the PCI tree shows empty is named and not waited for.

Exit status (EXIT_STATUS, also in --help): 0 every GPU of the file holds its settings (an empty
slot is a warning); 1 a GPU of the file did not answer in time or its settings do not fit it (the
others were set); 2 usage
error or the file is not valid (nothing was changed); 3 NVML failed a call while reading or
setting a GPU (that GPU's changes were rolled back, the others were set); 4 an internal error
(a bug: the one line says where). Each GPU that does not hold its settings gets one journal line
at priority err, naming it and why (for 3, the NVML call when it is known). Any file content and
any argument gets an answer: the numbers of --wait are checked (WAIT_RANGE_S), so nothing waits
forever.

Standard library and the nvidia_gpu package only, Python 3.8+.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import traceback

from . import boot_apply, boot_hardware, pci
from .boot_config import ConfigError, load
from .identity import label_of

DEFAULT_CONFIG = "/etc/gpu-node/gpu-tuning.json"
DEFAULT_WAIT_S = 120
# --wait: seconds, as ASCII digits with an optional fraction (no sign, exponent, nan or inf).
# The upper bound keeps a typo (or 1e9) from holding the boot; the unit's own timeout is longer.
WAIT_RANGE_S = (0, 3600)
_DECIMAL = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?\Z")
EXIT_OK = 0
EXIT_GPU_FAILED = 1
EXIT_INVALID = 2
EXIT_NVML_FAILED = 3
EXIT_INTERNAL = 4
EXIT_STATUS = (
    "Exit status: 0 every GPU of the file holds its settings (a GPU whose slot the PCI tree "
    "shows empty is a warning); 1 a GPU of the file did not answer in time or its settings, or "
    "a new card's, do not fit it (the others were set); with check --held also: a GPU does not "
    "hold its settings now; 2 usage error or invalid file "
    "(nothing was changed); 3 NVML failed a call on a GPU (its changes were rolled back; the "
    "others were set); 4 internal error."
)
EXIT_BY_KIND = {
    boot_apply.MISSING: EXIT_GPU_FAILED,
    boot_apply.NOT_VALID: EXIT_GPU_FAILED,
    boot_apply.NVML_FAILED: EXIT_NVML_FAILED,
}
# syslog priorities journald takes from a "<N>" line prefix (SyslogLevelPrefix=, on by default).
PRIORITY_CRIT = 2
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
        # What the stream cannot encode (a path given as undecodable bytes) is escaped, so that
        # a message never ends in a UnicodeEncodeError.
        encoding = getattr(stream, "encoding", None) or "utf-8"
        for line in str(message).splitlines() or [""]:
            line = line.encode(encoding, "backslashreplace").decode(encoding)
            stream.write(("<%d>" % priority if self.journal else "") + line + "\n")
        stream.flush()

    def info(self, message):
        self._write(self.stdout, PRIORITY_INFO, message)

    def warning(self, message):
        self._write(self.stderr, PRIORITY_WARNING, message)

    def error(self, message):
        self._write(self.stderr, PRIORITY_ERR, message)

    def critical(self, message):
        self._write(self.stderr, PRIORITY_CRIT, message)

    def internal_error(self, error):
        """A bug: one journal line saying where, not a traceback in many lines."""
        frame = traceback.extract_tb(error.__traceback__)[-1]
        self.error(
            "internal error, please report: %s: %s (%s line %d)"
            % (type(error).__name__, error, os.path.basename(frame.filename), frame.lineno)
        )


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


def _hardware_lines(config, found, covered, out):
    """Name each new card and each recorded GPU whose slot is empty."""
    for gpu, kind, old in found.layout.new_cards():
        out.warning(boot_hardware.new_card_line(gpu, kind, old, gpu.uuid in covered))
    for gpu in found.layout.empty:
        out.warning(boot_apply.empty_slot_line(gpu, config.path))


def run_apply(path, wait_s, sysfs_root, out):
    try:
        config = load(path)
    except ConfigError as error:
        out.error("nothing changed: %s" % error)
        return EXIT_INVALID
    slots = boot_hardware.gpu_slots(sysfs_root)
    found = boot_apply.wait_for_gpus(config, wait_s, out.info, slots)
    # New cards and empty slots are named before anything is set, so that a failure to set a new
    # card follows the line saying what it is.
    settings = config.settings_now(found.layout)
    _hardware_lines(config, found, settings, out)
    results, failures, covered = boot_apply.apply_settings(
        config, found.layout, settings, out.warning
    )
    failures.update(boot_apply.missing_failures(found, wait_s))
    for result in results:
        out.info(describe(result, "set"))
    for uuid in list(covered) + found.missing:
        if uuid in failures:
            out.error(
                "%s: NOT applied: %s" % (boot_apply.label(config, uuid, found.gpus), failures[uuid])
            )
    wanted = len(covered) + len(found.missing)
    out.info(
        "%d of %d GPU(s) hold the settings of %s%s"
        % (
            wanted - len(failures),
            wanted,
            path,
            " (profile %s)" % config.profile if config.profile else "",
        )
    )
    return max([EXIT_OK] + [EXIT_BY_KIND[failure.kind] for failure in failures.values()])


def run_check(path, structure_only, held, sysfs_root, out):
    """Validate a file; unless structure_only, also plan it (check mode) against the GPUs here.

    held: also fail (EXIT_GPU_FAILED) when a GPU the file covers does not hold its settings now
    (a unit that must start only on capped GPUs runs this before it starts).
    """
    try:
        config = load(path)
    except ConfigError as error:
        out.error(str(error))
        return EXIT_INVALID
    out.info("%s: valid; settings for %d GPU(s)" % (path, len(config.targets)))
    if structure_only:
        return EXIT_OK
    # A card the file covers is named as covered also when its settings do not fit it.
    found, missing, covered, results, failure = boot_apply.plan_file(
        config, boot_hardware.gpu_slots(sysfs_root)
    )
    _hardware_lines(config, found, covered, out)
    for uuid, reason in missing.items():
        out.error("%s: does not answer: %s" % (boot_apply.label(config, uuid), reason))
    if failure is not None and failure.kind == boot_apply.NVML_FAILED:
        out.error("cannot be planned: %s" % failure)
        return EXIT_NVML_FAILED
    if failure is not None:
        out.error("not valid for the GPUs of this machine: %s" % failure)
        return EXIT_INVALID
    if results is None:
        return EXIT_GPU_FAILED
    for result in results:
        out.info(describe(result, "would set"))
    not_held = [result for result in results if result["changed"]]
    if held and not_held:
        out.error(
            "%d GPU(s) do not hold the settings of %s: %s"
            % (len(not_held), path, ", ".join(label_of(result) for result in not_held))
        )
        return EXIT_GPU_FAILED
    return EXIT_GPU_FAILED if missing else EXIT_OK


def parser(prog, default_config):
    top = argparse.ArgumentParser(
        prog=prog,
        description="Apply the GPU power, clock and persistence settings the gpu_tuning role "
        "wrote to a config file, with the project's NVML code (nvidia_gpu.settings).",
        epilog=EXIT_STATUS,
    )
    commands = top.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    # Both commands look at the slots of the file's GPUs.
    slots = argparse.ArgumentParser(add_help=False)
    slots.add_argument(
        "--sysfs-root",
        default=pci.SYSFS_PCI_DEVICES,
        metavar="DIR",
        help="the PCI device tree, which tells an empty slot from a GPU that answers late "
        "(default: %(default)s)",
    )
    apply = commands.add_parser(
        "apply", parents=[slots], help="apply the file, waiting for its GPUs first"
    )
    apply.add_argument("--config", default=default_config, help="default: %(default)s")
    apply.add_argument(
        "--wait",
        type=seconds,
        default=DEFAULT_WAIT_S,
        metavar="SECONDS",
        help="longest wait for NVML and every GPU of the file to answer, %d to %d "
        "(default: %%(default)s)" % WAIT_RANGE_S,
    )
    check = commands.add_parser(
        "check",
        parents=[slots],
        help="validate a file and show what applying it would change (changes nothing)",
    )
    check.add_argument("config", nargs="?", default=default_config, metavar="FILE")
    check.add_argument(
        "--structure-only",
        action="store_true",
        help="only check the file's content, do not look at the GPUs",
    )
    check.add_argument(
        "--held",
        action="store_true",
        help="also fail (status 1) when a GPU the file covers does not hold its settings now: "
        "for units that must start only on GPUs that do (ExecStartPre=)",
    )
    return top


def seconds(text):
    """A --wait value: decimal seconds within WAIT_RANGE_S (argparse names the argument)."""
    lowest, highest = WAIT_RANGE_S
    value = float(text) if _DECIMAL.match(text) else None
    if value is None or not lowest <= value <= highest:
        raise argparse.ArgumentTypeError(
            "%s is not valid; allowed: seconds from %d to %d, as digits with an optional "
            "fraction (120, 0.5)" % (ascii(text)[:40], lowest, highest)
        )
    return int(value) if value.is_integer() else value


def main(argv=None, prog="gpu-tuning", default_config=DEFAULT_CONFIG, out=None):
    args = parser(prog, default_config).parse_args(argv)
    out = out or Output()
    try:
        if args.command == "apply":
            return run_apply(args.config, args.wait, args.sysfs_root, out)
        return run_check(args.config, args.structure_only, args.held, args.sysfs_root, out)
    except Exception as error:
        out.internal_error(error)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
