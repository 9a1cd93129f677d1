"""The gpu_tuning role's config file: what it applied during the play, for the boot-time command.

A JSON object: the request (the nvidia_gpu_settings module's options, validated by the same
settings_spec) and the GPUs present when it was written (index, UUID, model, and - written since
the role records them - slot (PCI address) and serial). Settings follow each GPU by UUID, so an
override written for "GPU 3" still goes to the card that was GPU 3 when the file was written,
even if another GPU is missing at boot and the indices moved. A card found in a recorded slot
under another UUID replaced the recorded one: boot_hardware reads the request again for it.

Whatever the file holds, load() either returns a Config or raises ConfigError naming the file
and, for a value, its key path ("request.overrides[0].clocks: unknown key(s) foo"): bytes that
are not UTF-8, a BOM, NaN or Infinity, repeated keys, absurd sizes or nesting, and text that
would break a journal line are refused (strict_json) before the layout is checked.

Standard library and the nvidia_gpu package only, Python 3.8+.
"""

from __future__ import annotations

import re

from . import pci
from .boot_hardware import Layout
from .device import Gpu
from .nvml import GpuError
from .settings_options import REQUEST_KEYS
from .settings_plan import settings_per_gpu
from .settings_spec import normalise
from .strict_json import FileRefused, parse, read, shown

CONFIG_FORMAT = 1
CONFIG_KEYS = ("comment", "format", "profile", "request", "gpus")
GPU_KEYS = ("index", "uuid", "name", "slot", "serial")
MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 16
MAX_TEXT_CHARS = 4096
MAX_NUMBER_DIGITS = 20
MAX_GPU_INDEX = 1023
GPU_UUID = re.compile(r"(?:GPU|MIG)-[0-9A-Za-z][0-9A-Za-z/-]*\Z", re.IGNORECASE)
MAX_SERIAL_CHARS = 64
# Characters that would break a journal line or cannot be written out: C0/C1 controls, line and
# paragraph separators (str.splitlines splits there), unpaired surrogates (a \\udcff escape).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


class ConfigError(GpuError):
    """The config file cannot be used; nothing was changed."""


def one_line(message):
    """A multi-line message (a list of problems) as one journal line."""
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


class Config:
    """A validated config file: the request, the GPUs recorded with it, and each one's settings."""

    def __init__(self, path, data):
        self.path = path
        self.profile = data.get("profile")
        self.request = data["request"]
        self.normalised = normalise(self.request, where="request.")
        self.recorded = [_recorded_gpu(entry) for entry in data["gpus"]]
        # {uuid: (recorded gpu, settings in the module's option shape)} for every GPU with any
        # setting, in index order: the GPUs `apply` waits for.
        self.targets = {
            gpu.uuid: (gpu, _option_shape(settings))
            for gpu, settings in settings_per_gpu(self.recorded, self.normalised)
        }

    def recorded_gpu(self, uuid):
        return self.targets[uuid][0]

    def layout(self, gpus, slots=None):
        """The GPUs present (device.Gpu) matched to the recorded ones (boot_hardware.Layout).

        slots: the GPU addresses of the PCI tree (boot_hardware.gpu_slots) or None.
        """
        return Layout(self.recorded, gpus, slots)

    def settings_now(self, layout):
        """{UUID: settings in the module's option shape} of the answering GPUs the request covers,
        for the GPUs present as layout (self.layout) matched them.

        A recorded card keeps the settings written for it; a new card gets what the request
        gives it in its slot (boot_hardware.Layout.settings).
        """
        per_card = layout.settings(self.normalised)
        return {uuid: _option_shape(settings) for uuid, settings in per_card.items()}

    def narrowed(self, settings):
        """A request giving each GPU, by UUID, its settings ({UUID: option-shape settings}).

        Used whenever the GPUs present differ from the ones recorded (a GPU missing or new,
        indices moved), so that settings stay with the card they were written for.
        """
        return {
            "gpus": list(settings),
            "snap_clocks": self.normalised["snap_clocks"],
            "overrides": [dict(values, gpus=[uuid]) for uuid, values in settings.items()],
        }

    def request_for(self, layout, settings):
        """(what to hand to settings.ensure for the GPUs present now, the UUIDs it sets), from
        their layout and settings_now(layout)."""
        if layout.unchanged():
            return self.request, list(self.targets)  # exactly what the play applied
        return self.narrowed(settings), list(settings)


def _recorded_gpu(entry):
    gpu = Gpu(entry["index"])
    gpu.uuid = entry["uuid"]
    if entry.get("name"):
        gpu.name = entry["name"]
    if entry.get("slot"):
        gpu.pci_bus_id = entry["slot"]
    if entry.get("serial"):
        gpu.serial = entry["serial"]
    return gpu


def _option_shape(settings):
    """Normalised settings (settings_spec) back in the module's option shape."""
    raw = {key: value for key, value in settings.items() if key != "clocks"}
    if "clocks" in settings:
        raw["clocks"] = {k: v for k, v in settings["clocks"].items() if v is not None}
    return raw


def _unknown_keys(where, mapping, allowed, noun="key(s)"):
    unknown = sorted(set(mapping) - set(allowed))
    if unknown:
        raise GpuError(
            "%sunknown %s %s; allowed: %s"
            % (where + " has " if where else "", noun, ", ".join(unknown), ", ".join(allowed))
        )


def _gpu_entry(where, entry):
    """Check one item of gpus; returns (index, uuid)."""
    if not isinstance(entry, dict):
        raise GpuError(
            "%s must be a mapping with index, uuid and (optional) name, not %s"
            % (where, shown(entry))
        )
    _unknown_keys(where, entry, GPU_KEYS)
    if "index" not in entry or "uuid" not in entry:
        raise GpuError("%s needs index and uuid" % where)
    index, uuid = entry["index"], entry["uuid"]
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= MAX_GPU_INDEX:
        raise GpuError(
            "%s.index %s is not a GPU index; allowed: a whole number from 0 to %d"
            % (where, shown(index), MAX_GPU_INDEX)
        )
    if not isinstance(uuid, str) or not GPU_UUID.match(uuid):
        raise GpuError("%s.uuid %s is not a GPU UUID (GPU-...)" % (where, shown(uuid)))
    if entry.get("name") is not None and not isinstance(entry["name"], str):
        raise GpuError("%s.name %s must be text (the GPU's model)" % (where, shown(entry["name"])))
    slot = entry.get("slot")
    if slot is not None and not (isinstance(slot, str) and pci.SLOT.match(slot)):
        raise GpuError(
            "%s.slot %s is not a PCI address; allowed: domain:bus:device.function in lowercase "
            "hex, as sysfs spells it (0000:1a:00.0)" % (where, shown(slot))
        )
    serial = entry.get("serial")
    if serial is not None and not (
        isinstance(serial, str) and 0 < len(serial) <= MAX_SERIAL_CHARS and serial.isprintable()
    ):
        raise GpuError(
            "%s.serial %s is not a board serial; allowed: text of 1 to %d printable characters"
            % (where, shown(serial), MAX_SERIAL_CHARS)
        )
    return index, uuid, slot


def _check_structure(data):
    """Raise GpuError naming the first thing wrong with the file's layout, by its key path.

    The request's values are settings_spec's to check (in Config), with the module's messages.
    """
    if not isinstance(data, dict):
        raise GpuError(
            "the file must hold a JSON object with keys %s, not %s"
            % (", ".join(CONFIG_KEYS), shown(data))
        )
    _unknown_keys("", data, CONFIG_KEYS)
    version = data.get("format")
    if isinstance(version, bool) or version != CONFIG_FORMAT or not isinstance(version, int):
        raise GpuError(
            "format %s is not supported; this command reads format %d"
            % (shown(version), CONFIG_FORMAT)
        )
    for key in ("comment", "profile"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise GpuError("%s %s must be text" % (key, shown(data[key])))
    request = data.get("request")
    if not isinstance(request, dict):
        raise GpuError(
            "request must be a mapping of nvidia_gpu_settings options, not %s" % shown(request)
        )
    _unknown_keys("request", request, REQUEST_KEYS, "option(s)")
    gpus = data.get("gpus")
    if not isinstance(gpus, list) or not gpus:
        raise GpuError(
            "gpus must list the GPUs present when the file was written, not %s" % shown(gpus)
        )
    seen_index, seen_uuid, seen_slot = set(), set(), set()
    for number, entry in enumerate(gpus):
        where = "gpus[%d]" % number
        index, uuid, slot = _gpu_entry(where, entry)
        for kind, value, seen in (
            ("index", index, seen_index),
            ("UUID", uuid.lower(), seen_uuid),
            ("slot", slot, seen_slot),
        ):
            if value is not None and value in seen:
                raise GpuError("%s repeats %s %s of an earlier GPU" % (where, kind, value))
        seen_index.add(index)
        seen_uuid.add(uuid.lower())
        seen_slot.add(slot)


def load(path):
    """Read and validate a config file; raise ConfigError saying what is wrong (and where)."""
    try:
        data = parse(path, read(path, "a file the gpu_tuning role wrote"))
    except FileRefused as error:
        raise ConfigError(str(error)) from error
    try:
        _check_structure(data)
        config = Config(path, data)
    except GpuError as error:
        raise ConfigError("%s: %s" % (path, one_line(error))) from error
    if not config.targets:
        raise ConfigError("%s gives no GPU any setting" % path)
    return config
