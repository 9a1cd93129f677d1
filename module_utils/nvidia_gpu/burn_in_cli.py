"""`gpu-burn-in [--config FILE] --report PATH`: load the GPUs in lock-step (burn_in.py) and say
whether the node carries it. `--check` only validates the parameters.

The parameters are one JSON file (burn_in_config.py; without --config every default holds). One
line per phase change and a compact progress line every progress_interval_s go to stdout (with a
syslog priority prefix under systemd, so the journal shows the run move); a GPU that falls off
the bus, a worker that exits and every finding go to stderr at their priority. At the end: a
summary on stdout and the JSON report, written atomically.

Exit status (EXIT_STATUS): 0 pass; 1 fail (each reason names the GPU or sensor, the value, the
limit and the likely cause), or interrupted (SIGINT/SIGTERM: the workers are told 0 and
stopped, the partial report is written); 2 usage error or invalid parameters (nothing started);
3 the node cannot run it (NVML does not initialise, a GPU is lost before the load, a load
worker cannot start; named) or the report cannot be written; 4 an internal error (one line).

Standard library, pynvml and the nvidia_gpu package only, Python 3.8+.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading

from .boot_cli import Output
from .burn_in import BurnIn, write_report
from .burn_in_config import BurnInConfigError, load, validate
from .burn_in_sampling import PHASES
from .burn_in_verdict import when
from .burn_in_workers import WorkerError
from .identity import gpu_label
from .nvml import GpuError

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_INVALID = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERNAL = 4
EXIT_STATUS = (
    "Exit status: 0 pass; 1 fail or interrupted (partial report written); 2 usage error or "
    "invalid parameters (nothing started); 3 the node cannot run it (NVML, a lost GPU, a load "
    "worker that cannot start) or the report cannot be written; 4 internal error."
)


class StopRequest(threading.Event):
    """Set by SIGINT/SIGTERM; signal_name says which."""

    signal_name = None


@contextlib.contextmanager
def stopping_on_signals(stop):
    """SIGINT and SIGTERM set stop instead of killing the run (main thread only: elsewhere
    Python cannot install handlers, and the caller owns the signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(number, _frame):
        stop.signal_name = signal.Signals(number).name
        stop.set()

    saved = {number: signal.signal(number, handler) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, previous in saved.items():
            signal.signal(number, previous)


def parser(prog):
    top = argparse.ArgumentParser(
        prog=prog,
        description="Burn-in: square-wave and sustained load on every GPU in lock-step, sampling "
        "power, clocks, temperatures, clock event reasons and the BMC's 12 V rail; fails on a "
        "GPU that falls off the bus, new Xid events or error counts, a sagging rail, heat or "
        "forbidden throttling.",
        epilog=EXIT_STATUS,
    )
    top.add_argument("--config", metavar="FILE", help="JSON parameters (default: all defaults)")
    top.add_argument("--report", metavar="PATH", help="where the JSON report goes (required)")
    top.add_argument(
        "--check", action="store_true", help="only validate the parameters; start nothing"
    )
    return top


def report_path_problem(path):
    """Why the report cannot be written there, or None (checked before anything starts)."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return "--report %s is a directory; allowed: a file path" % path
    if not os.path.isdir(directory):
        return "--report %s: the directory %s does not exist" % (path, directory)
    if not os.access(directory, os.W_OK | os.X_OK):
        return "--report %s: the directory %s is not writable" % (path, directory)
    return None


def _range(stats, key, unit):
    value = stats.get(key)
    if not value:
        return None
    if value["min"] == value["max"]:
        return "%g %s" % (value["min"], unit)
    return "%g-%g %s" % (value["min"], value["max"], unit)


def summary_lines(report):
    """The human summary: per GPU under load, the rail, the verdict and its reasons."""
    lines = []
    phases = report["phases"]
    for gpu in report["gpus"]:
        parts = []
        for phase in PHASES:
            stats = phases.get(phase, {}).get(str(gpu["index"]))
            if not stats:
                continue
            shown = [
                _range(stats, "power_w", "W"),
                _range(stats, "sm_mhz", "MHz"),
                "max %g C" % stats["temperature_c"]["max"] if "temperature_c" in stats else None,
                _range(stats, "utilization_pct", "%"),
                ",".join(r for r in stats["clock_event_reasons"] if r != "gpu_idle") or None,
            ]
            parts.append("%s %s" % (phase, " ".join(s for s in shown if s)))
        for event in report["lost"]:
            if event["gpu"] == gpu["index"]:
                parts.append("LOST during %s at %.1f s" % (event["phase"], event["elapsed_s"]))
        lines.append("%s: %s" % (gpu_label(gpu["index"], gpu["uuid"]), "; ".join(parts) or "-"))
    rail = report["rail_12v"]
    if rail:
        for sensor in rail["sensors"]:
            low = rail["lowest"].get(sensor)
            idle = rail["per_phase"].get("idle", {}).get(sensor)
            lines.append(
                "%s: lowest %s%s (%d reading(s), %d failed)"
                % (
                    sensor,
                    "%.2f V %s" % (low["value_v"], when(low)) if low else "not read",
                    ", idle %.2f V" % idle if idle is not None else "",
                    rail["readings"],
                    rail["error_count"],
                )
            )
    verdict = report["verdict"]
    head = "FAIL" if verdict["result"] == "fail" else "PASS"
    if report["interrupted"]:
        head += " (interrupted)"
    lines.append("%s: %d reason(s)" % (head, len(verdict["reasons"])))
    lines.extend("  - " + reason for reason in verdict["reasons"])
    return lines


def run(args, out, stop):
    try:
        config = load(args.config) if args.config else validate({})
    except BurnInConfigError as error:
        out.error("nothing started: %s" % error)
        return EXIT_INVALID
    if args.check:
        out.info("%s: valid" % (args.config or "the defaults"))
        return EXIT_PASS
    problem = "--report is required" if not args.report else report_path_problem(args.report)
    if problem:
        out.error("nothing started: %s" % problem)
        return EXIT_INVALID
    burn = BurnIn(config, out, stop)
    try:
        burn.prepare()
    except BurnInConfigError as error:
        out.error("nothing started: %s" % error)
        return EXIT_INVALID
    except GpuError as error:
        out.error("nothing started: %s" % error)
        return EXIT_ENVIRONMENT
    try:
        report = burn.run()
    except (GpuError, WorkerError) as error:
        out.error("burn-in not run: %s" % error)
        return EXIT_ENVIRONMENT
    say = {"critical": out.error, "warning": out.warning, "info": out.info}
    for finding in report["findings"]:
        say[finding["severity"]]("%s: %s" % (finding["severity"], finding["message"]))
    # Also in the report: what a playbook shows after a run whose lines went to the journal.
    report["summary"] = summary_lines(report)
    for line in report["summary"]:
        out.info(line)
    try:
        write_report(args.report, report)
    except OSError as error:
        out.error("the report could not be written to %s: %s" % (args.report, error))
        return EXIT_ENVIRONMENT
    out.info("report: %s" % args.report)
    return EXIT_FAIL if report["result"] == "fail" else EXIT_PASS


def main(argv=None, prog="gpu-burn-in", out=None):
    args = parser(prog).parse_args(argv)
    out = out or Output()
    stop = StopRequest()
    try:
        with stopping_on_signals(stop):
            return run(args, out, stop)
    except Exception as error:
        out.internal_error(error)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
