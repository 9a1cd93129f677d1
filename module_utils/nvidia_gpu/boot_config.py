"""The gpu_tuning role's config file: what it applied during the play, for the boot-time command.

A JSON object: the request (the nvidia_gpu_settings module's options, validated by the same
settings_spec) and the GPUs present when it was written (index, UUID, model). Settings follow
each GPU by UUID, so an override written for "GPU 3" still goes to the card that was GPU 3 when
the file was written, even if another GPU is missing at boot and the indices moved.

Standard library and the nvidia_gpu package only, Python 3.8+.
"""

from __future__ import annotations

import json

from .device import Gpu
from .nvml import GpuError
from .settings_options import REQUEST_KEYS
from .settings_plan import settings_per_gpu
from .settings_spec import normalise

CONFIG_FORMAT = 1
CONFIG_KEYS = ("comment", "format", "profile", "request", "gpus")


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
    if entry.get("name"):
        gpu.name = entry["name"]
    return gpu


def _option_shape(settings):
    """Normalised settings (settings_spec) back in the module's option shape."""
    raw = {key: value for key, value in settings.items() if key != "clocks"}
    if "clocks" in settings:
        raw["clocks"] = {k: v for k, v in settings["clocks"].items() if v is not None}
    return raw


def _check_structure(data):
    """Raise GpuError naming the first thing wrong with the file's layout.

    The request's values are settings_spec's to check (in Config), with the module's messages.
    """
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
