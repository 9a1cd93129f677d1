"""What the run stands on: torch, the device it uses, and the facts the report records."""

import datetime
import os
import platform
import socket

from . import __version__
from .errors import EnvironmentProblem


def import_torch(also=("numpy", "matplotlib.backends.backend_agg")):
    """torch, after checking that every package the run needs imports (torch.distributed and
    `also`); EnvironmentProblem saying what is missing otherwise (exit 3, no traceback)."""
    missing = []
    for name in ("torch", "torch.distributed", *also):
        try:
            __import__(name)
        except ImportError as err:
            missing.append("%s (%s)" % (name, err))
    if missing:
        raise EnvironmentProblem(
            "cannot import %s: install them into this Python's environment (the validation "
            "role pins them for the node's GPUs)" % ", ".join(missing)
        )
    import torch

    if not torch.distributed.is_available():
        raise EnvironmentProblem("this torch build has no torch.distributed")
    return torch


def resolve_device(torch, requested):
    """("cuda"|"cpu", GPU count) for device "auto", "cuda" or "cpu"."""
    cuda = torch.cuda.is_available()
    if requested == "cuda" and not cuda:
        built = torch.version.cuda
        raise EnvironmentProblem(
            'the config asks for device "cuda" but torch sees no usable GPU (torch %s, %s): '
            "check that the driver is loaded (nvidia-smi), CUDA_VISIBLE_DEVICES, and that this "
            "torch build supports the GPUs' architecture"
            % (torch.__version__, "built for CUDA %s" % built if built else "a CPU-only build")
        )
    if requested == "cpu" or not cuda:
        return "cpu", 0
    return "cuda", torch.cuda.device_count()


def devices(torch, device_type):
    """Every device the run uses: index, name, and on CUDA what identifies the GPU."""
    if device_type == "cpu":
        return [{"index": 0, "name": "cpu", "processor": platform.processor() or "unknown"}]
    result = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        entry = {
            "index": index,
            "name": props.name,
            "compute_capability": "%d.%d" % (props.major, props.minor),
            "total_memory_bytes": props.total_memory,
            "multiprocessors": props.multi_processor_count,
        }
        uuid = getattr(props, "uuid", None)
        if uuid is not None:
            text = str(uuid)
            entry["uuid"] = text if text.startswith("GPU-") else "GPU-" + text
        result.append(entry)
    return result


def facts(torch, device_type):
    """Host, time and versions for report.json."""
    nccl = None
    if device_type == "cuda":
        try:
            version = torch.cuda.nccl.version()
            nccl = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
        except (AttributeError, RuntimeError):
            nccl = None
    return {
        "host": socket.gethostname(),
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tool_version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device_type == "cuda" else None,
        "nccl": nccl,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "device_type": device_type,
    }
