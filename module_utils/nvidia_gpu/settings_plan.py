"""From desired settings to a plan: each selected GPU's target values, checked against what the
GPU supports, compared with its current state. Nothing here changes a GPU."""

from __future__ import annotations

from . import locked_clocks
from .facts import supported_clocks
from .identity import label_of
from .nvml import UNSUPPORTED, GpuError, NvmlCallError, compute_mode_name, pynvml
from .selection import names_a_gpu, parse_selector, select

# The order settings are applied in: persistence first so the rest sticks on an idle GPU.
# Inside a plan values are in NVML's units (power in milliwatts); results show them as people
# read them, under the names in SHOWN_NAMES (see display).
ORDER = (
    "persistence_mode",
    "power_limit_mw",
    "applications_clocks",
    "locked_graphics_clocks",
    "locked_memory_clocks",
    "compute_mode",
)
SHOWN_NAMES = {"power_limit_mw": "power_limit_w"}
UNLOCKED = "unlocked"
# A lock the record under /run cannot tell (locked_clocks.UNKNOWN): it differs from every target,
# so the plan sets the lock again.
UNKNOWN_LOCK = locked_clocks.UNKNOWN
LOCK_DOMAINS = {"locked_graphics_clocks": "graphics", "locked_memory_clocks": "memory"}


def nearest(values, target, count=3):
    """The supported values closest to target, ascending."""
    return sorted(sorted(values, key=lambda v: (abs(v - target), v))[:count])


class Problems:
    """Collects every validation problem so the user sees them all at once."""

    def __init__(self):
        self.messages = []

    def add(self, gpu, message):
        self.messages.append("%s: %s" % (gpu.label, message))

    def raise_if_any(self):
        if self.messages:
            raise GpuError(
                "Nothing was changed; the requested settings are not valid for these GPUs:\n- "
                + "\n- ".join(self.messages)
            )


def settings_per_gpu(gpus, request, tolerant=False):
    """{gpu: merged settings}: the base for its selection, then each override on top.

    tolerant: a selector item that names none of gpus is passed over instead of refused (the
    boot command re-reads a request written for the GPUs present then: a card may be gone).
    """
    pick = _names_present if tolerant else select
    chosen = {gpu.index: dict(request["settings"]) for gpu in pick(gpus, request["gpus"])}
    for override in request["overrides"]:
        for gpu in pick(gpus, override["gpus"]):
            chosen.setdefault(gpu.index, {}).update(override["settings"])
    by_index = {gpu.index: gpu for gpu in gpus}
    return [(by_index[index], chosen[index]) for index in sorted(chosen) if chosen[index]]


def _names_present(gpus, selector):
    """select, keeping only the selector items that name one of gpus."""
    items = [item for item in parse_selector(selector) if names_a_gpu(item, gpus)]
    return select(gpus, items) if items else []


def _clock(gpu, problems, kind, value, allowed, memory_mhz, snap):
    """value if it is one of allowed, else the nearest when snapping, else a problem (None)."""
    if value in allowed:
        return value
    if snap:
        return min(allowed, key=lambda v: (abs(v - value), v))
    at = " at memory clock %d MHz" % memory_mhz if memory_mhz else ""
    problems.add(
        gpu,
        "%d MHz is not a supported %s clock%s; nearest supported: %s MHz "
        "(set snap_clocks to use the nearest)"
        % (value, kind, at, ", ".join(str(v) for v in nearest(allowed, value))),
    )
    return None


def _application_target(gpu, clocks, supported, default_app, problems, snap):
    memory = clocks.get("memory_mhz")
    memory = default_app[0] if memory in (None, "default") else memory
    memory = _clock(gpu, problems, "memory", memory, sorted(supported), None, snap)
    if memory is None:
        return None
    graphics = clocks.get("graphics_mhz")
    graphics = default_app[1] if graphics in (None, "default") else graphics
    graphics = _clock(gpu, problems, "graphics", graphics, supported[memory], memory, snap)
    return None if graphics is None else (memory, graphics)


def _graphics_lock(gpu, clocks, supported, problems, snap):
    graphics_all = sorted({mhz for values in supported.values() for mhz in values})
    high = _clock(gpu, problems, "graphics", clocks["graphics_mhz"], graphics_all, None, snap)
    low = clocks.get("graphics_min_mhz") or graphics_all[0]
    low = _clock(gpu, problems, "graphics", low, graphics_all, None, snap)
    if high is None or low is None:
        return None
    if low > high:
        problems.add(gpu, "graphics_min_mhz %d is above graphics_mhz %d" % (low, high))
        return None
    return (low, high)


def _mhz_list(values):
    return (
        isinstance(values, list)
        and bool(values)
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)
    )


def _supported_clocks(gpu):
    """{memory MHz: [graphics MHz, ...]} as facts.supported_clocks reads it, or None when the
    GPU does not list them completely (a call not supported, an empty or odd list). A failing
    call raises NvmlCallError naming the GPU and that call."""
    supported = supported_clocks(gpu)
    if not isinstance(supported, dict) or not _mhz_list(list(supported)):
        return None
    if not all(_mhz_list(values) for values in supported.values()):
        return None
    return supported


def _clock_targets(gpu, clocks, problems, snap):
    """Resolve a clocks request into application clocks and graphics/memory locks.

    Exactly one mechanism holds the clocks afterwards: with locks, application clocks go back to
    the card's defaults; with application clocks (or 'default'), locks are removed.
    """
    p = pynvml
    supported = _supported_clocks(gpu)
    if supported is None:
        problems.add(gpu, "does not report its supported clocks; its clocks cannot be managed")
        return {}
    default_app = (
        gpu.query(p.nvmlDeviceGetDefaultApplicationsClock, p.NVML_CLOCK_MEM),
        gpu.query(p.nvmlDeviceGetDefaultApplicationsClock, p.NVML_CLOCK_GRAPHICS),
    )
    has_app_clocks = UNSUPPORTED not in default_app
    if not has_app_clocks and (
        gpu.query(p.nvmlDeviceGetApplicationsClock, p.NVML_CLOCK_MEM) != UNSUPPORTED
    ):
        # Leaving them out would quietly keep application clocks someone set.
        problems.add(
            gpu,
            "reports application clocks but not their defaults "
            "(nvmlDeviceGetDefaultApplicationsClock: not supported); its clocks cannot be managed",
        )
        return {}
    strategy = clocks["strategy"]
    if strategy == "auto":
        strategy = "locked" if gpu.supports_locked_clocks else "application"
    targets = {}
    if strategy == "locked":
        if not gpu.supports_locked_clocks:
            problems.add(
                gpu,
                "locked clocks need Volta or newer, this GPU is %s; use clocks.strategy application"
                % gpu.architecture,
            )
            return {}
        targets["locked_graphics_clocks"] = _graphics_lock(gpu, clocks, supported, problems, snap)
        targets["locked_memory_clocks"] = _memory_lock(gpu, clocks, supported, problems, snap)
        if has_app_clocks:
            targets["applications_clocks"] = default_app
    else:
        if not has_app_clocks and strategy == "application":
            problems.add(gpu, "does not support application clocks; use clocks.strategy locked")
            return {}
        if has_app_clocks:
            targets["applications_clocks"] = _application_target(
                gpu, clocks, supported, default_app, problems, snap
            )
        if gpu.supports_locked_clocks:
            targets["locked_graphics_clocks"] = UNLOCKED
        if gpu.supports_memory_locked_clocks:
            targets["locked_memory_clocks"] = UNLOCKED
    return {key: value for key, value in targets.items() if value is not None}


def _memory_lock(gpu, clocks, supported, problems, snap):
    memory = clocks.get("memory_mhz")
    if memory in (None, "default"):
        return UNLOCKED if gpu.supports_memory_locked_clocks else None
    if not gpu.supports_memory_locked_clocks:
        if [memory] == sorted(supported):
            return None  # the only memory clock this GPU has: nothing to lock
        problems.add(
            gpu,
            "memory clocks can be locked on Ampere and newer only; this %s GPU's memory clocks "
            "are %s MHz" % (gpu.architecture, ", ".join(str(v) for v in sorted(supported))),
        )
        return None
    high = _clock(gpu, problems, "memory", memory, sorted(supported), None, snap)
    return None if high is None else (min(supported), high)


def _power_target(gpu, power_limit, problems):
    if power_limit == "default":
        default = gpu.query(pynvml.nvmlDeviceGetPowerManagementDefaultLimit)
        if default == UNSUPPORTED:
            problems.add(gpu, "does not report a default power limit; power cannot be managed")
            return None
        return default
    constraints = gpu.query(pynvml.nvmlDeviceGetPowerManagementLimitConstraints)
    if constraints == UNSUPPORTED:
        problems.add(gpu, "does not support power limits")
        return None
    low, high = constraints
    if not low <= power_limit * 1000 <= high:
        problems.add(
            gpu,
            "power_limit %d W is outside the card's range %d-%d W"
            % (power_limit, low // 1000, high // 1000),
        )
        return None
    return power_limit * 1000


def targets_for(gpu, settings, problems, snap):
    """{setting: target value} for one GPU; power in milliwatts, clocks in MHz."""
    targets = {}
    if "persistence_mode" in settings:
        targets["persistence_mode"] = settings["persistence_mode"]
    if "power_limit" in settings:
        power = _power_target(gpu, settings["power_limit"], problems)
        if power is not None:
            targets["power_limit_mw"] = power
    if "clocks" in settings:
        targets.update(_clock_targets(gpu, settings["clocks"], problems, snap))
    if "compute_mode" in settings:
        targets["compute_mode"] = settings["compute_mode"]
    return targets


def _lock_state(gpu, key):
    value = locked_clocks.current(gpu.uuid, LOCK_DOMAINS[key])
    return UNLOCKED if value is None else value


def current_state(gpu, keys):
    """The GPU's present value of each setting in keys, in the same units as the targets.

    Locks come from the record under /run (UNKNOWN_LOCK when it cannot tell); every NVML failure
    is an NvmlCallError naming the setting, the GPU and the call.
    """
    p = pynvml
    readers = {
        "persistence_mode": lambda: bool(gpu.call(p.nvmlDeviceGetPersistenceMode)),
        "power_limit_mw": lambda: gpu.call(p.nvmlDeviceGetPowerManagementLimit),
        "applications_clocks": lambda: (
            gpu.call(p.nvmlDeviceGetApplicationsClock, p.NVML_CLOCK_MEM),
            gpu.call(p.nvmlDeviceGetApplicationsClock, p.NVML_CLOCK_GRAPHICS),
        ),
        "locked_graphics_clocks": lambda: _lock_state(gpu, "locked_graphics_clocks"),
        "locked_memory_clocks": lambda: _lock_state(gpu, "locked_memory_clocks"),
        "compute_mode": lambda: compute_mode_name(gpu.call(p.nvmlDeviceGetComputeMode)),
    }
    state = {}
    for key in keys:
        try:
            state[key] = readers[key]()
        except NvmlCallError as error:
            raise NvmlCallError(
                "Reading %s of %s: %s" % (shown_name(key), gpu.label, without_label(gpu, error)),
                error.call,
                error.value,
            ) from error
    return state


def without_label(gpu, error):
    """An error's message without the GPU label it starts with ('<call> failed: <why>')."""
    message = str(error)
    label = gpu.label + ": "
    return message[len(label) :] if message.startswith(label) else message


def unknown_locks(planned):
    """A warning when the plan sets locks again because the record under /run could not tell
    them (see locked_clocks), naming the GPUs and why; None when every lock is known."""
    gpus = [
        label_of(gpu)
        for gpu, before, _after in planned
        if any(before.get(key) == UNKNOWN_LOCK for key in LOCK_DOMAINS)
    ]
    if not gpus:
        return None
    why = locked_clocks.problem() or (
        "the lock record %s was replaced after it could not be used, and these GPUs' locks "
        "have not been set since" % locked_clocks.path()
    )
    return "Locked clocks of %s are unknown: %s; they are set again." % (", ".join(gpus), why)


def plan(gpus, request):
    """[(gpu, before, after)] for every selected GPU; raises GpuError listing every problem."""
    problems = Problems()
    wanted = []
    for gpu, settings in settings_per_gpu(gpus, request):
        if gpu.lost:
            problems.add(gpu, gpu.error)
            continue
        wanted.append((gpu, targets_for(gpu, settings, problems, request["snap_clocks"])))
    problems.raise_if_any()
    result = []
    for gpu, targets in wanted:
        before = current_state(gpu, targets)
        result.append((gpu, before, targets))
    return result


def shown_name(key):
    """The name results, diffs and messages give a plan's key."""
    return SHOWN_NAMES.get(key, key)


def display(key, value):
    """A plan's value as people read it: watts, {memory_mhz, graphics_mhz}, {min_mhz, max_mhz}."""
    if key == "power_limit_mw":
        return value // 1000 if value % 1000 == 0 else value / 1000.0
    if key == "applications_clocks":
        return {"memory_mhz": value[0], "graphics_mhz": value[1]}
    if key in LOCK_DOMAINS and value not in (UNLOCKED, UNKNOWN_LOCK):
        return {"min_mhz": value[0], "max_mhz": value[1]}
    return value
