"""What the burn-in watches while the load runs: every sample interval, each GPU's power, clocks,
temperature, clock event reasons and utilization through NVML (a GPU that falls off the bus is
recorded with the time and the phase), and, in a thread of its own since ipmitool can take
seconds, the BMC's 12 V rail sensors. Kept as per-phase summaries (min/max), not a timeline, so
that a day-long run makes a report of the same size.

Standard library, pynvml and the nvidia_gpu package only, Python 3.8+.
"""

from __future__ import annotations

import threading
import time

from . import bmc, clock_events
from .boot_config import one_line
from .nvml import call_name, explain, is_error, pynvml

# The phases samples are summarised by, in the order they run.
PHASES = ("square_high", "square_low", "sustained")


class Timeline:
    """Where the run is: the phase, the square-wave cycle (from 1; None outside) and the time."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.started = clock()
        self.phase = "start"
        self.cycle = None

    def enter(self, phase, cycle=None):
        self.phase, self.cycle = phase, cycle

    def elapsed_s(self):
        return round(self.clock() - self.started, 3)

    def where(self):
        """{phase, cycle, elapsed_s} of now."""
        return {"phase": self.phase, "cycle": self.cycle, "elapsed_s": self.elapsed_s()}


def _range(stats, key, value):
    low_high = stats.setdefault(key, {"min": value, "max": value})
    low_high["min"] = min(low_high["min"], value)
    low_high["max"] = max(low_high["max"], value)


class GpuLost(Exception):
    pass


class Sampler:
    """NVML samples of the GPUs under load, inside an open NVML session."""

    def __init__(self, gpus):
        self.gpus = gpus  # [{"index", "uuid", "handle"}]
        self.phases = {}  # phase -> {gpu index (str) -> stats}
        self.lost = []  # [{gpu, uuid, phase, cycle, elapsed_s, error}]
        self.unreadable = {}  # (gpu index, call) -> {gpu, uuid, call, error, count}
        self.last = {}  # gpu index -> the latest sample, for progress lines

    def lost_indices(self):
        return {event["gpu"] for event in self.lost}

    def sample(self, where):
        """One sample of every GPU not yet lost; returns the GPUs lost in this sample."""
        newly = []
        for gpu in self.gpus:
            if gpu["index"] in self.lost_indices():
                continue
            try:
                values = self._read(gpu)
            except GpuLost as lost:
                event = dict(where, gpu=gpu["index"], uuid=gpu["uuid"], error=str(lost))
                self.lost.append(event)
                newly.append(event)
                continue
            self.last[gpu["index"]] = values
            self._add(where["phase"], gpu["index"], values)
        return newly

    def _add(self, phase, index, values):
        stats = self.phases.setdefault(phase, {}).setdefault(str(index), {"samples": 0})
        stats["samples"] += 1
        for key in ("power_w", "graphics_mhz", "sm_mhz", "temperature_c", "utilization_pct"):
            if values.get(key) is not None:
                _range(stats, key, values[key])
        seen = set(stats.get("clock_event_reasons", [])) | set(values.get("reasons") or [])
        stats["clock_event_reasons"] = sorted(seen)

    def _value(self, gpu, function, *args):
        """function(handle, *args); None when unsupported or failing (recorded), GpuLost when
        the GPU is gone."""
        try:
            return function(gpu["handle"], *args)
        except pynvml.NVMLError as error:
            if is_error(error, "GPU_IS_LOST"):
                raise GpuLost(explain(error)) from error
            if is_error(error, "NOT_SUPPORTED") or is_error(error, "FUNCTION_NOT_FOUND"):
                return None
            key = (gpu["index"], call_name(function))
            entry = self.unreadable.setdefault(
                key,
                {"gpu": gpu["index"], "uuid": gpu["uuid"], "call": key[1], "count": 0},
            )
            entry["count"] += 1
            entry["error"] = explain(error)
            return None

    def _read(self, gpu):
        p = pynvml
        power_mw = self._value(gpu, p.nvmlDeviceGetPowerUsage)
        reasons = self._value(gpu, p.nvmlDeviceGetCurrentClocksEventReasons)
        utilization = self._value(gpu, p.nvmlDeviceGetUtilizationRates)
        return {
            "power_w": None if power_mw is None else round(power_mw / 1000.0, 1),
            "graphics_mhz": self._value(gpu, p.nvmlDeviceGetClockInfo, p.NVML_CLOCK_GRAPHICS),
            "sm_mhz": self._value(gpu, p.nvmlDeviceGetClockInfo, p.NVML_CLOCK_SM),
            "temperature_c": self._value(gpu, p.nvmlDeviceGetTemperature, p.NVML_TEMPERATURE_GPU),
            "reasons": None if reasons is None else clock_events.decode(reasons),
            "utilization_pct": None if utilization is None else utilization.gpu,
        }

    def overall(self, index, phases=PHASES):
        """One GPU's stats over the given phases merged (min of mins, max of maxes, union)."""
        merged = {"samples": 0, "clock_event_reasons": []}
        for phase in phases:
            stats = self.phases.get(phase, {}).get(str(index))
            if not stats:
                continue
            merged["samples"] += stats["samples"]
            for key, value in stats.items():
                if isinstance(value, dict):
                    _range(merged, key, value["min"])
                    _range(merged, key, value["max"])
            merged["clock_event_reasons"] = sorted(
                set(merged["clock_event_reasons"]) | set(stats["clock_event_reasons"])
            )
        return merged


class RailMonitor:
    """Reads the BMC's 12 V sensors every interval_s in a thread; a failed read is recorded,
    never raised. bmc_config is burn_in_config's {access, rails_12v, timeout_s}."""

    def __init__(self, bmc_config, interval_s, timeline):
        self.config = bmc_config
        self.interval_s = interval_s
        self.timeline = timeline
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.readings = 0
        self.errors = []  # [{elapsed_s, phase, error}], the first few and a count
        self.error_count = 0
        self.missing = set()  # rail sensors the BMC did not list or gave no number for
        self.lowest = {}  # sensor -> {value_v, phase, cycle, elapsed_s}
        self.per_phase = {}  # phase -> sensor -> lowest volts
        self.last = {}  # sensor -> volts
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopped.set()
        if self.thread.ident is not None:  # started (a run interrupted early never starts it)
            self.thread.join(timeout=self.config["timeout_s"] + 5)

    def _loop(self):
        while not self.stopped.is_set():
            began = time.monotonic()
            self.read_once()
            self.stopped.wait(max(0.0, self.interval_s - (time.monotonic() - began)))

    def read_once(self):
        where = self.timeline.where()
        timeout_s = self.config["timeout_s"]
        try:
            readings = bmc.read_sensors(
                bmc.subprocess_runner(timeout_s), self.config["access"], timeout_s
            )
        except Exception as error:  # BmcError, or anything else: a warning, never the run
            with self.lock:
                self.error_count += 1
                if len(self.errors) < 5:
                    self.errors.append(dict(where, error=one_line(error)[:300]))
            return
        by_name = {reading.get("name"): reading for reading in readings}
        with self.lock:
            self.readings += 1
            for name in self.config["rails_12v"]:
                value = by_name.get(name, {}).get("value")
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    self.missing.add(name)
                    continue
                self.last[name] = value
                if name not in self.lowest or value < self.lowest[name]["value_v"]:
                    self.lowest[name] = dict(where, value_v=value)
                phase = self.per_phase.setdefault(where["phase"], {})
                phase[name] = min(phase.get(name, value), value)

    def record(self):
        with self.lock:
            return {
                "sensors": list(self.config["rails_12v"]),
                "readings": self.readings,
                "lowest": dict(self.lowest),
                "per_phase": {phase: dict(v) for phase, v in self.per_phase.items()},
                "missing": sorted(self.missing),
                "error_count": self.error_count,
                "errors": list(self.errors),
            }

    def latest(self):
        with self.lock:
            return dict(self.last)
