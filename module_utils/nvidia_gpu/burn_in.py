"""The burn-in: load every GPU in lock-step to find a supply that cannot carry it, before a
week-long run does. The seed machine's 12 V rail sagged when all four V100s stepped from idle to
full power at the same instant, and a GPU fell off the bus (Xid 79).

Phases: counters before (facts.collect and the Xid lines of this boot); a square wave (every GPU
to 100 % at the same instant, hold high_s, all to 0, hold low_s, `cycles` times); a sustained
phase at 100 %; load 0 and counters after. Samples every sample_interval_s (burn_in_sampling),
the verdict from what changed and what was seen (burn_in_verdict, burn_in_checks), a JSON report.
The workers are stopped whatever happens (burn_in_workers).

Standard library, pynvml and the nvidia_gpu package only, Python 3.8+.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import time

from . import atomic_file, facts, selection, xid
from . import burn_in_workers as workers
from .burn_in_checks import CHECKS
from .burn_in_config import BurnInConfigError, duration_s, worker_argv
from .burn_in_sampling import RailMonitor, Sampler, Timeline
from .burn_in_verdict import counters, evaluate
from .identity import gpu_label
from .nvml import GpuError, Nvml, explain, pynvml

REPORT_FORMAT = 1
# The BMC's password stays in its file; a value under such a key would be one (a path is not).
SECRET_KEY = re.compile(r"(password|secret|token)\Z", re.IGNORECASE)


class NodeNotReady(GpuError):
    """The node cannot run the burn-in: a GPU already lost, NVML failing (exit 3)."""


def schedule(config):
    """(phase, cycle, seconds, percent) in the order they run."""
    for cycle in range(1, config["cycles"] + 1):
        yield "square_high", cycle, config["high_s"], 100
        yield "square_low", cycle, config["low_s"], 0
    if config["sustained_s"]:
        yield "sustained", None, config["sustained_s"], 100


def read_kernel(source):
    """(lines, problem) of the kernel log; a log file that does not exist yet has no Xid."""
    if source == "none":
        return [], None
    if source not in ("journal", "dmesg") and not os.path.exists(source):
        return [], "%s does not exist" % source
    return xid.read_kernel_log(source)


def read_counters(config):
    return counters(facts.collect(with_supported_clocks=False), *read_kernel(config["kernel_log"]))


def redacted(value):
    """The parameters as the report keeps them: no BMC password."""
    if isinstance(value, dict):
        return {
            k: "(hidden)" if SECRET_KEY.search(str(k)) and v else redacted(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


class BurnIn:
    """One run: prepare (nothing started), then run (always stops what it started)."""

    def __init__(self, config, out, stop_event, clock=time.monotonic):
        self.config = config
        self.out = out
        self.stop_event = stop_event
        self.clock = clock
        self.interrupted = None
        self.timeline = Timeline(clock)
        self.worker_exits = []
        self.stopped_early = None
        self.rail = None
        self.sampler = None

    def prepare(self):
        """Counters before and the GPUs under test. GpuError when NVML fails (exit 3),
        BurnInConfigError when the selection names a GPU this node lacks (exit 2)."""
        self.started_at = datetime.datetime.now(datetime.timezone.utc).isoformat()
        self.before = read_counters(self.config)
        try:
            chosen = selection.select(self.before["gpus"], self.config["gpus"])
        except GpuError as error:
            raise BurnInConfigError("gpus: %s" % error) from error
        lost = [gpu for gpu in chosen if gpu["lost"]]
        if lost:
            raise NodeNotReady(
                "%s does not answer before the load, so it cannot be tested: %s"
                % (gpu_label(lost[0]["index"]), lost[0].get("error"))
            )
        self.gpus = chosen

    def run(self):
        """The load and the counters after; returns the report."""
        with Nvml():
            handles = []
            for gpu in self.gpus:
                try:
                    handle = pynvml.nvmlDeviceGetHandleByUUID(gpu["uuid"])
                except pynvml.NVMLError as error:
                    raise NodeNotReady(
                        "%s cannot be opened for sampling: %s"
                        % (gpu_label(gpu["index"], gpu["uuid"]), explain(error))
                    ) from error
                handles.append(dict(index=gpu["index"], uuid=gpu["uuid"], handle=handle))
            self.sampler = Sampler(handles)
            argvs = [
                worker_argv(self.config["load_command"], g["index"], g["uuid"]) for g in self.gpus
            ]
            self.out.info(
                "starting %d load worker(s), the first: %s" % (len(argvs), " ".join(argvs[0]))
            )
            started = workers.start(
                self.gpus, argvs, self.config["worker_start_s"], self.stop_event
            )
            try:
                self._load(started)
            finally:
                self.timeline.enter("stop")
                workers.stop(started)
                if self.rail:
                    self.rail.stop()
            self.workers = [worker.record() for worker in started]
        self.after, self.after_error = None, None
        try:
            self.after = read_counters(self.config)
        except GpuError as error:
            self.after_error = str(error)
        return self.report()

    def _load(self, started):
        config = self.config
        if self._check_stop():  # during the workers' start
            return
        if config["bmc"]:
            self.rail = RailMonitor(config["bmc"], config["sample_interval_s"], self.timeline)
            self.timeline.enter("idle")
            self.rail.read_once()  # the idle rail, to compare the load with
        if self._check_stop():
            return
        self.timeline = Timeline(self.clock)
        total_s = duration_s(config)
        self.out.info(
            "load: %d cycle(s) of %s s at 100 %% / %s s at 0 %%, then %s s at 100 %% (%s s)"
            % (config["cycles"], config["high_s"], config["low_s"], config["sustained_s"], total_s)
        )
        offset = 0.0
        self.last_progress = self.clock()
        for phase, cycle, seconds, percent in schedule(config):
            self.timeline.enter(phase, cycle)
            workers.set_all(started, percent)
            if self.rail and not self.rail.thread.is_alive():
                self.rail.timeline = self.timeline  # readings from now on are the load's
                self.rail.start()
            self.out.info(
                "%s%s: all GPUs to %d %% for %s s (at %.1f of %s s)"
                % (
                    phase,
                    " %d/%d" % (cycle, config["cycles"]) if cycle else "",
                    percent,
                    seconds,
                    self.timeline.elapsed_s(),
                    total_s,
                )
            )
            offset += seconds
            if not self._hold(started, self.timeline.started + offset):
                return

    def _hold(self, started, end):
        """Sample until end; False when the run must stop (signal, lost GPU)."""
        interval = self.config["sample_interval_s"]
        next_sample = self.clock() + interval / 2
        while True:
            now = self.clock()
            if now >= end:
                return True
            if now >= next_sample:
                lost = self._sample(started)
                next_sample = max(next_sample + interval, now + interval / 4)
                if lost and self.config["stop_on_lost_gpu"]:
                    self.stopped_early = "a GPU fell off the bus (stop_on_lost_gpu)"
                elif len(self.sampler.lost) == len(self.gpus):
                    self.stopped_early = "every GPU fell off the bus"
                if self.stopped_early:
                    self.out.warning("stopping the load: %s" % self.stopped_early)
                    return False
            self.stop_event.wait(max(0.0, min(end, next_sample) - self.clock()))
            if self._check_stop():
                return False

    def _check_stop(self):
        if self.stop_event.is_set() and self.interrupted is None:
            self.interrupted = dict(
                self.timeline.where(),
                signal=getattr(self.stop_event, "signal_name", "stop requested"),
            )
            self.out.warning("interrupted (%s): stopping the load" % self.interrupted["signal"])
        return self.stop_event.is_set()

    def _sample(self, started):
        where = self.timeline.where()
        lost = self.sampler.sample(where)
        for event in lost:
            self.out.error(
                "%s fell off the bus during %s at %.1f s: %s"
                % (
                    gpu_label(event["gpu"], event["uuid"]),
                    event["phase"],
                    event["elapsed_s"],
                    event["error"],
                )
            )
        exited = {event["gpu"] for event in self.worker_exits}
        for worker in started:
            if worker.gpu["index"] not in exited and not worker.alive():
                worker.reader.join(timeout=0.5)
                event = dict(where, gpu=worker.gpu["index"], how=worker.exit_text())
                self.worker_exits.append(event)
                self.out.warning(
                    "the load worker of %s %s" % (workers.label(worker.gpu), event["how"])
                )
        if self.clock() - self.last_progress >= self.config["progress_interval_s"]:
            self.last_progress = self.clock()
            self.out.info(self.progress_line(where))
        return lost

    def progress_line(self, where):
        """'square_high 2/10 31.0/800 s | GPU0 298 W 71 C | ... | P_12V 11.92 V'."""
        cycle = " %d/%d" % (where["cycle"], self.config["cycles"]) if where["cycle"] else ""
        parts = [
            "%s%s %.1f/%s s" % (where["phase"], cycle, where["elapsed_s"], duration_s(self.config))
        ]
        lost = self.sampler.lost_indices()
        for gpu in self.gpus:
            last = self.sampler.last.get(gpu["index"], {})
            if gpu["index"] in lost:
                parts.append("GPU%d LOST" % gpu["index"])
                continue
            parts.append(
                "GPU%d %s W %s C"
                % (gpu["index"], _shown(last.get("power_w")), _shown(last.get("temperature_c")))
            )
        for sensor, volts in sorted((self.rail.latest() if self.rail else {}).items()):
            parts.append("%s %.2f V" % (sensor, volts))
        return " | ".join(parts)

    def report(self):
        run = {
            "samples": self.sampler,
            "rail": self.rail.record() if self.rail else None,
            "worker_exits": self.worker_exits,
            "interrupted": self.interrupted,
            "after_error": self.after_error,
        }
        if (
            self.after is not None
            and self.before["kernel_log_problem"]
            and not self.after["kernel_log_problem"]
        ):
            self.before["kernel_log_problem"] = None  # the log file came with the first line
        tested = [g for g in self.before["gpus"] if g["index"] in {x["index"] for x in self.gpus}]
        findings, verdict = evaluate(self.config, tested, self.before, self.after, run, CHECKS)
        return {
            "format": REPORT_FORMAT,
            "tool": "gpu-burn-in",
            "result": verdict["result"],
            "verdict": verdict,
            "interrupted": self.interrupted,
            "stopped_early": self.stopped_early,
            "started_at": self.started_at,
            "duration_s": self.timeline.elapsed_s(),
            "planned_s": duration_s(self.config),
            "parameters": redacted(self.config),
            "gpus": [
                {k: g.get(k) for k in ("index", "uuid", "name", "pci_bus_id")} for g in tested
            ],
            "phases": self.sampler.phases,
            "lost": self.sampler.lost,
            "rail_12v": run["rail"],
            "workers": self.workers,
            "worker_exits": self.worker_exits,
            "findings": findings,
            "before": self.before,
            "after": self.after,
            "after_error": self.after_error,
        }


def _shown(value):
    return "?" if value is None else "%g" % value


def write_report(path, report):
    """The report as JSON, written atomically: no reader sees half a report."""
    atomic_file.write_text(
        path, json.dumps(report, indent=1, sort_keys=True, default=str) + "\n", make_directory=False
    )
