"""Re-apply declared GPU settings at boot: the node-side command of the gpu_tuning role.

The role writes what it applied during the play to a JSON file: the request (the
nvidia_gpu_settings module's options) and the GPUs present then (index, UUID, model). A systemd
oneshot unit runs `gpu-tuning apply` at every boot. It waits, with a bound and a backoff, until
NVML initialises and every GPU the file gives settings to answers, then calls settings.ensure -
the code the module runs - so a boot and a play can never disagree about what a setting means.

When the wait runs out it still applies the settings to the GPUs that answer, prints one line
per GPU it could not set (index and UUID) on stderr, and exits non-zero. Settings follow each
GPU by UUID: if a GPU is missing, the others move down one index, and an override written for
"GPU 3" still goes to the card that was GPU 3 when the file was written.

Exit status: 0 every GPU of the file holds its settings; 1 at least one GPU of the file is
missing or could not be set (the others were set); 2 usage error or the file is not valid
(nothing was changed).

Standard library and the nvidia_gpu package only, Python 3.8+.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from .device import Gpu
from .nvml import GpuError, Nvml, NvmlUnavailable, explain, pynvml
from .settings import ensure
from .settings_plan import settings_per_gpu
from .settings_spec import normalise

DEFAULT_CONFIG = "/etc/gpu-node/gpu-tuning.json"
DEFAULT_WAIT_S = 120
CONFIG_FORMAT = 1
CONFIG_KEYS = ("comment", "format", "profile", "request", "gpus")
REQUEST_KEYS = (
    "gpus",
    "persistence_mode",
    "power_limit",
    "clocks",
    "reset_clocks",
    "compute_mode",
    "snap_clocks",
    "overrides",
)
EXIT_OK = 0
EXIT_GPU_FAILED = 1
EXIT_INVALID = 2
# Backoff between looks at the GPUs while waiting: first delay, growth, longest delay (seconds).
FIRST_DELAY_S = 0.25
LONGEST_DELAY_S = 5.0

NVML_ERRORS = (pynvml.NVMLError,) if pynvml is not None else ()
# syslog priorities journald takes from a "<N>" line prefix (SyslogLevelPrefix=, on by default).
PRIORITY_ERR = 3
PRIORITY_WARNING = 4
PRIORITY_INFO = 6


class ConfigError(GpuError):
    """The config file cannot be used; nothing was changed."""


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


def one_line(message):
    """A multi-line message (a list of problems) as one journal line."""
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


class Config:
    """A validated config file: the request, the GPUs recorded with it, and each one's settings."""

    def __init__(self, path, data):
        self.path = path
        self.profile = data.get("profile")
        self.request = data["request"]
        self.normalised = normalise(self.request)
        self.recorded = [_recorded_gpu(entry) for entry in data["gpus"]]
        # {uuid: (recorded gpu, settings in the module's option shape)} for every GPU with any
        # setting, in index order: the GPUs `apply` waits for.
        self.targets = {
            gpu.uuid: (gpu, _option_shape(settings))
            for gpu, settings in settings_per_gpu(self.recorded, self.normalised)
        }

    def recorded_gpu(self, uuid):
        return self.targets[uuid][0]

    def narrowed(self, uuids):
        """The request for some of the file's GPUs, each named by UUID with its merged settings.

        Used whenever the GPUs present differ from the ones recorded (a GPU missing, indices
        moved), so that settings stay with the card they were written for.
        """
        return {
            "gpus": list(uuids),
            "snap_clocks": self.normalised["snap_clocks"],
            "overrides": [dict(self.targets[uuid][1], gpus=[uuid]) for uuid in uuids],
        }

    def request_for(self, gpus):
        """What to hand to settings.ensure for the GPUs present now (list of device.Gpu)."""
        answering = {gpu.uuid for gpu in gpus if not gpu.lost}
        uuids = [uuid for uuid in self.targets if uuid in answering]
        same_layout = not any(gpu.lost for gpu in gpus) and {
            (gpu.index, gpu.uuid) for gpu in gpus
        } == {(gpu.index, gpu.uuid) for gpu in self.recorded}
        if same_layout:
            return self.request, uuids  # exactly what the play applied
        return self.narrowed(uuids), uuids


def _recorded_gpu(entry):
    gpu = Gpu(entry["index"])
    gpu.uuid = entry["uuid"]
    gpu.name = entry.get("name") or "unknown"
    return gpu


def _option_shape(settings):
    """Normalised settings (settings_spec) back in the module's option shape."""
    raw = {key: value for key, value in settings.items() if key != "clocks"}
    if "clocks" in settings:
        raw["clocks"] = {k: v for k, v in settings["clocks"].items() if v is not None}
    return raw


def _check_structure(data):
    """Raise GpuError naming the first thing wrong with the file's content."""
    if not isinstance(data, dict):
        raise GpuError("the file must hold a JSON object with keys %s" % ", ".join(CONFIG_KEYS))
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise GpuError(
            "unknown key(s) %s; allowed: %s" % (", ".join(unknown), ", ".join(CONFIG_KEYS))
        )
    if data.get("format") != CONFIG_FORMAT:
        raise GpuError(
            "format %r is not supported; this command reads format %d"
            % (data.get("format"), CONFIG_FORMAT)
        )
    request = data.get("request")
    if not isinstance(request, dict):
        raise GpuError("request must be a mapping of nvidia_gpu_settings options")
    unknown = sorted(set(request) - set(REQUEST_KEYS))
    if unknown:
        raise GpuError(
            "request has unknown option(s) %s; allowed: %s"
            % (", ".join(unknown), ", ".join(REQUEST_KEYS))
        )
    for key in ("snap_clocks", "reset_clocks"):
        if key in request and not isinstance(request[key], bool):
            raise GpuError("request.%s %r is not valid; allowed: true, false" % (key, request[key]))
    if request.get("overrides") is not None and not isinstance(request["overrides"], list):
        raise GpuError("request.overrides must be a list")
    gpus = data.get("gpus")
    if not isinstance(gpus, list) or not gpus:
        raise GpuError("gpus must list the GPUs present when the file was written")
    seen_index, seen_uuid = set(), set()
    for number, entry in enumerate(gpus):
        where = "gpus[%d]" % number
        if not isinstance(entry, dict) or sorted(set(entry) - {"name"}) != ["index", "uuid"]:
            raise GpuError("%s must be a mapping with index, uuid and (optional) name" % where)
        index, uuid = entry["index"], entry["uuid"]
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise GpuError("%s.index %r is not a GPU index" % (where, index))
        if not isinstance(uuid, str) or not uuid.upper().startswith(("GPU-", "MIG-")):
            raise GpuError("%s.uuid %r is not a GPU UUID (GPU-...)" % (where, uuid))
        if not isinstance(entry.get("name", ""), str):
            raise GpuError("%s.name must be a string" % where)
        if index in seen_index or uuid.lower() in seen_uuid:
            raise GpuError("%s repeats index %d or UUID %s" % (where, index, uuid))
        seen_index.add(index)
        seen_uuid.add(uuid.lower())


def load(path):
    """Read and validate a config file; raise ConfigError saying what is wrong."""
    try:
        with open(path) as handle:
            text = handle.read()
    except OSError as error:
        raise ConfigError("%s cannot be read: %s" % (path, error.strerror or error)) from error
    try:
        data = json.loads(text)
    except ValueError as error:
        raise ConfigError("%s is not valid JSON: %s" % (path, error)) from error
    try:
        _check_structure(data)
        config = Config(path, data)
    except GpuError as error:
        raise ConfigError("%s: %s" % (path, one_line(error))) from error
    if not config.targets:
        raise ConfigError("%s gives no GPU any setting" % path)
    return config


def scan():
    """(every GPU NVML enumerates now, or [], and why NVML cannot be used, or None)."""
    try:
        with Nvml() as nvml:
            gpus = []
            for index in range(nvml.device_count()):
                try:
                    gpus.append(Gpu.open(index))
                except GpuError as error:  # cannot be opened at all: as good as lost
                    gpus.append(Gpu(index, error=one_line(error)))
            return gpus, None
    except NvmlUnavailable as error:
        return [], one_line(error)
    except NVML_ERRORS as error:  # e.g. the device count itself fails
        return [], "NVML failed: %s" % explain(error)


def missing_reason(config, uuid, gpus, nvml_error):
    """Why a GPU of the file does not answer, from what NVML shows now."""
    if nvml_error:
        return nvml_error
    recorded = config.recorded_gpu(uuid)
    at_index = [gpu for gpu in gpus if gpu.index == recorded.index]
    if at_index and at_index[0].lost:
        return "NVML index %d does not answer: %s" % (recorded.index, at_index[0].error)
    return "not enumerated by the driver (%d GPU(s) present)" % len(gpus)


def label(config, uuid):
    recorded = config.recorded_gpu(uuid)
    return "GPU %d (%s)" % (recorded.index, uuid)


def wait_for_gpus(config, wait_s, out, clock=time.monotonic, sleep=time.sleep):
    """Look at the GPUs until every GPU of the file answers or wait_s has passed.

    Returns (gpus, nvml_error, missing UUIDs).
    """
    start = clock()
    deadline = start + wait_s
    delay = FIRST_DELAY_S
    announced = False
    while True:
        gpus, nvml_error = scan()
        answering = {gpu.uuid for gpu in gpus if not gpu.lost}
        missing = [uuid for uuid in config.targets if uuid not in answering]
        now = clock()
        if not missing or now >= deadline:
            break
        if not announced:
            reasons = [
                "%s: %s" % (label(config, uuid), missing_reason(config, uuid, gpus, nvml_error))
                for uuid in missing
            ]
            out.info("waiting up to %g s for %s" % (wait_s, "; ".join(reasons)))
            announced = True
        sleep(min(delay, deadline - now))
        delay = min(delay * 2, LONGEST_DELAY_S)
    if announced and not missing:
        out.info("every GPU of the file answers after %.1f s" % (clock() - start))
    return gpus, nvml_error, missing


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
    head = "GPU %d (%s)" % (result["index"], result["uuid"])
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


def apply_settings(config, gpus, out):
    """Bring every answering GPU of the file to its settings; returns (results, {uuid: why})."""
    request, uuids = config.request_for(gpus)
    if not uuids:
        return [], {}
    try:
        return ensure(request)[1], {}
    except GpuError as error:
        if len(uuids) == 1:
            return [], {uuids[0]: one_line(error)}
        out.warning("applying to all GPUs at once failed (%s); trying GPU by GPU" % one_line(error))
    results, failures = [], {}
    for uuid in uuids:
        try:
            results.extend(ensure(config.narrowed([uuid]))[1])
        except GpuError as error:
            failures[uuid] = one_line(error)
    return results, failures


def run_apply(path, wait_s, out):
    try:
        config = load(path)
    except ConfigError as error:
        out.error("nothing changed: %s" % error)
        return EXIT_INVALID
    gpus, nvml_error, missing = wait_for_gpus(config, wait_s, out)
    failures = {
        uuid: "did not answer within %g s: %s"
        % (wait_s, missing_reason(config, uuid, gpus, nvml_error))
        for uuid in missing
    }
    results, apply_failures = apply_settings(config, gpus, out)
    failures.update(apply_failures)
    for result in results:
        out.info(describe(result, "set"))
    recorded = {gpu.uuid for gpu in config.recorded}
    for gpu in gpus:
        if not gpu.lost and gpu.uuid not in recorded:
            out.warning(
                "GPU %d (%s, %s) is not in %s (written for the GPUs present then); left "
                "unchanged: run the gpu_tuning role again" % (gpu.index, gpu.name, gpu.uuid, path)
            )
    for uuid in config.targets:
        if uuid in failures:
            out.error("%s: NOT applied: %s" % (label(config, uuid), failures[uuid]))
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
    gpus, nvml_error = scan()
    request, uuids = config.request_for(gpus)
    missing = [uuid for uuid in config.targets if uuid not in uuids]
    for uuid in missing:
        out.error(
            "%s: does not answer: %s"
            % (label(config, uuid), missing_reason(config, uuid, gpus, nvml_error))
        )
    if not uuids:
        return EXIT_GPU_FAILED
    try:
        results = ensure(request, check_mode=True)[1]
    except GpuError as error:
        out.error("not valid for the GPUs of this machine: %s" % error)
        return EXIT_INVALID
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
