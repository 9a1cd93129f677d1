"""Which PyTorch build a node gets: the newest one whose CUDA runs on every GPU of the node with
the installed driver branch, or a CPU build on a node without NVIDIA GPUs.

choose_torch() decides from the GPUs found on PCI, the driver branch (the nvidia_driver role's
choice) and the user's options (one TorchRequest). It returns what pip is asked for and a
one-line reason; nothing here reads the machine or talks to pip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .choice_pins import AUTO, PolicyError, cuda_version
from .cuda_choice import CUDA_MAJOR_MIN_BRANCH
from .gpu_limits import GpuLimits, cuda_key, label, summary
from .models import ARCHITECTURES

# Per PyTorch line, oldest first: the CUDA of its default PyPI wheels, and the oldest compute
# capability those wheels carry kernels for (the 12.8 wheels left Maxwell and Pascal to the 12.6
# builds; the CUDA 13 ones start at Turing, because CUDA 13 does).
PYPI_WHEELS = {
    "2.7": ("12.6", "5.0"),
    "2.8": ("12.8", "7.0"),
    "2.9": ("12.8", "7.0"),
    "2.10": ("12.8", "7.0"),
    "2.11": ("13.0", "7.5"),
    "2.12": ("13.0", "7.5"),
    "2.13": ("13.0", "7.5"),
    "2.14": ("13.0", "7.5"),
}
TORCH_LINES = list(PYPI_WHEELS)
# PyTorch's own package index: https://download.pytorch.org/whl/<build>. The lines this project
# knows each build for (first, last); cu126 keeps Volta up to 2.14.
PYTORCH_INDEX = "https://download.pytorch.org/whl/"
PYTORCH_INDEX_LINES = {
    "cpu": ("2.7", "2.14"),
    "12.6": ("2.7", "2.14"),
    "12.8": ("2.7", "2.10"),
    "13.0": ("2.9", "2.14"),
}
BUILDS = ("auto", "cuda", "cpu")
# CuPy's wheels per CUDA major release: one package runs on every minor release of its major.
CUPY_PACKAGES = {11: "cupy-cuda11x", 12: "cupy-cuda12x", 13: "cupy-cuda13x"}

_VERSION = re.compile(r"([1-9][0-9]*)\.([0-9]+)(?:\.([0-9]+))?")
_INDEX_BUILD = re.compile(r"/(cpu|cu([0-9]{2})([0-9]))/?$")
VERSION_ALLOWED = "auto, a PyTorch line such as 2.10, or a release such as 2.10.0"


class DriverNotChosen(PolicyError):
    """A CUDA build is wanted but no driver branch is chosen yet (check mode on a fresh node)."""


def _line_key(line):
    major, minor = line.split(".")[:2]
    return int(major), int(minor)


def _next_line(line):
    major, minor = _line_key(line)
    return "%d.%d" % (major, minor + 1)


@dataclass
class TorchRequest:
    """The user's PyTorch options (training_stack_torch_* role variables), checked when made.

    version: auto, a line (2.10) or a release (2.10.1). build: auto (CUDA when the node has
    NVIDIA GPUs), cuda or cpu. index_url: a package index instead of PyPI ('' for PyPI).
    index_build: the CUDA version (12.6) or 'cpu' of what index_url serves; '' reads it from a
    PyTorch-style URL ending in /cu126 or /cpu. wheelhouse: a directory of wheels pip also
    looks in (find-links); wheelhouse_only: pip looks nowhere else (air-gapped sites).
    """

    version: object = AUTO
    build: str = "auto"
    index_url: str = ""
    index_build: str = ""
    wheelhouse: str = ""
    wheelhouse_only: bool = False

    def __post_init__(self):
        self.version = str(self.version if self.version is not None else AUTO)
        if self.version != AUTO and not _VERSION.fullmatch(self.version):
            raise PolicyError(
                "training_stack_torch_version '%s' is not a PyTorch version; allowed: %s"
                % (self.version, VERSION_ALLOWED)
            )
        if self.build not in BUILDS:
            raise PolicyError(
                "training_stack_torch_build '%s' is not a build; allowed: %s"
                % (self.build, ", ".join(BUILDS))
            )
        self.index_url = (self.index_url or "").strip()
        if self.index_url and not re.match(r"(https?|file)://", self.index_url):
            raise PolicyError(
                "training_stack_torch_index_url '%s' is not a URL; allowed: '' (PyPI) or an "
                "http(s):// or file:// index such as %scu126" % (self.index_url, PYTORCH_INDEX)
            )
        self.index_build = self._index_build()
        self.wheelhouse = (self.wheelhouse or "").strip()
        if self.wheelhouse and not self.wheelhouse.startswith("/"):
            raise PolicyError(
                "training_stack_torch_wheelhouse '%s' is not an absolute path; allowed: '' or a "
                "directory of wheels on the node such as /srv/wheels" % self.wheelhouse
            )
        if self.wheelhouse_only and not self.wheelhouse:
            raise PolicyError(
                "training_stack_torch_wheelhouse_only is true but training_stack_torch_wheelhouse "
                "is empty; allowed: a wheelhouse directory, or wheelhouse_only false"
            )

    def _index_build(self):
        given = str(self.index_build or "").strip()
        if given:
            if given == "cpu":
                return given
            return cuda_version(given, "training_stack_torch_index_build", "cpu or a CUDA version")
        if not self.index_url:
            return ""
        match = _INDEX_BUILD.search(self.index_url)
        if not match:
            raise PolicyError(
                "training_stack_torch_index_url '%s' does not say which build it serves; set "
                "training_stack_torch_index_build to cpu or its CUDA version such as 12.6"
                % self.index_url
            )
        return "cpu" if match.group(1) == "cpu" else "%s.%s" % (match.group(2), match.group(3))

    @property
    def line(self):
        """The pinned line (2.10), or None for auto."""
        if self.version == AUTO:
            return None
        return "%s.%s" % _VERSION.fullmatch(self.version).groups()[:2]


def choose_torch(gpus, driver_branch, request):
    """The PyTorch build for a node.

    gpus: GPU dicts as pci.discover() returns them (empty: a node without NVIDIA GPUs).
    driver_branch: the installed driver branch (int), or None when there is no driver.
    Returns {build, line, cuda, requirement, pip_args, index, reason, notes}; raises PolicyError
    with the reason when nothing this project knows runs.
    """
    limits = GpuLimits(gpus)
    want_cpu = request.build == "cpu" or (request.build == "auto" and not limits.gpus)
    if request.index_build == "cpu":
        want_cpu = True
    if want_cpu:
        choice = _cpu_choice(limits, request)
        if limits.gpus and driver_branch is not None:
            try:
                cuda = _cuda_choice(limits, int(driver_branch), TorchRequest())
                choice["notes"].append(
                    "a CUDA build for these GPUs would be torch %s.x with CUDA %s from PyPI"
                    % (cuda["line"], cuda["cuda"])
                )
            except PolicyError as error:
                choice["notes"].append("no CUDA build would run here: %s" % error)
        return choice
    if not limits.gpus:
        raise PolicyError(
            "training_stack_torch_build is cuda, but this node has no NVIDIA GPU; allowed "
            "there: auto or cpu"
        )
    if driver_branch is None:
        raise DriverNotChosen("a CUDA build of PyTorch needs the NVIDIA driver, and none is chosen")
    return _cuda_choice(limits, int(driver_branch), request)


def _cuda_choice(limits, branch, request):
    if request.index_build:
        lines = _index_lines(request.index_build)
        source = "%s (CUDA %s builds)" % (request.index_url, request.index_build)
        candidates = [(line, request.index_build, None) for line in lines]
    else:
        source = "PyPI"
        candidates = [(line, cuda, min_cc) for line, (cuda, min_cc) in PYPI_WHEELS.items()]
    refusals = {}
    for line, cuda, min_cc in candidates:
        refusals[line] = _refusal(limits, branch, cuda, min_cc)
    if request.line is not None:
        line = request.line
        cuda = _cuda_of(line, candidates, request)
        why_not = refusals.get(line) if line in refusals else _refusal(limits, branch, cuda, None)
        if why_not:
            raise PolicyError(
                "torch %s from %s: %s%s"
                % (request.version, source, why_not, _alternative(refusals))
            )
        why = "pinned"
    else:
        usable = [line for line, _, _ in candidates if not refusals[line]]
        if not usable:
            newest = candidates[-1][0]
            raise PolicyError(
                "no PyTorch line from %s runs here; torch %s: %s"
                % (source, newest, refusals[newest])
            )
        line = usable[-1]
        cuda = _cuda_of(line, candidates, request)
        newer = [entry[0] for entry in candidates if _line_key(entry[0]) > _line_key(line)]
        why = (
            "the newest line %s has that runs here" % source
            if not newer
            else "torch %s+ from %s: %s" % (newer[0], source, refusals[newer[0]])
        )
    return {
        "build": "cuda",
        "line": line,
        "cuda": cuda,
        "requirement": _requirement(request, line, None),
        "pip_args": _pip_args(request),
        "index": request.index_url or "PyPI",
        "reason": "%s: torch %s with CUDA %s (%s)"
        % (summary(limits.gpus), request.version if request.line else line + ".x", cuda, why),
        "notes": [],
    }


def _cpu_choice(limits, request):
    """A CPU build. PyPI's torch wheels are CUDA builds, so a CPU one comes from PyTorch's CPU
    index, an index_url serving CPU builds, or the wheelhouse (its +cpu local version)."""
    line = request.line or _index_lines("cpu")[-1]
    exact = _exact(request.version)
    pip_args = _pip_args(request)
    local = None
    if not request.index_url and not request.wheelhouse_only:
        if request.wheelhouse:
            if not exact:
                raise PolicyError(
                    "training_stack_torch_version '%s' with a wheelhouse and PyPI: pin the "
                    "release the wheelhouse holds (such as 2.13.0), or a newer CUDA build from "
                    "PyPI would win over its CPU build" % request.version
                )
            local = "cpu"
        else:
            pip_args = ["--extra-index-url", PYTORCH_INDEX + "cpu", *pip_args]
            local = "cpu" if exact else None
    if limits.gpus:
        why = "training_stack_torch_build is cpu"
        if request.index_build == "cpu":
            why = "training_stack_torch_index_url serves CPU builds"
    else:
        why = "no NVIDIA GPU"
    return {
        "build": "cpu",
        "line": line,
        "cuda": None,
        "requirement": _requirement(request, line, local),
        "pip_args": pip_args,
        "index": request.index_url or request.wheelhouse or PYTORCH_INDEX + "cpu",
        "reason": "%s: torch %s, CPU build (%s)"
        % (summary(limits.gpus), request.version if request.line else line + ".x", why),
        "notes": [],
    }


def _refusal(limits, branch, cuda, min_cc):
    """Why a build with this CUDA (and oldest compute capability) cannot run here, or ''."""
    major = cuda_key(cuda)[0]
    if limits.cuda_max_major is not None and major > limits.cuda_max_major:
        gpu = limits.cuda_max_gpu
        arch = gpu.get("architecture")
        return "it is built with CUDA %s, and %s stays on CUDA %d.x" % (
            cuda,
            label(gpu),
            limits.cuda_max_major,
        ) + (" (%s)" % _arch_why(arch) if _arch_why(arch) else "")
    for gpu in limits.gpus:
        capability = gpu.get("compute_capability")
        if min_cc and capability and cuda_key(capability) < cuda_key(min_cc):
            return "its wheels carry no kernels for compute capability %s (%s)" % (
                capability,
                label(gpu),
            )
    need = CUDA_MAJOR_MIN_BRANCH.get(major)
    if need and branch < need:
        return (
            "it is built with CUDA %s, which needs driver branch %d or later; the driver branch "
            "is %d" % (cuda, need, branch)
        )
    return ""


def _arch_why(arch):
    return (ARCHITECTURES.get(arch) or {}).get("why_cuda", "")


def _alternative(refusals):
    usable = [line for line, why in refusals.items() if not why]
    if usable:
        return "; torch %s runs here" % usable[-1]
    return ""


def _cuda_of(line, candidates, request):
    for candidate, cuda, _ in candidates:
        if candidate == line:
            return cuda
    if request.index_build:
        return request.index_build
    raise PolicyError(
        "torch %s is not a line this project knows the PyPI build of (%s to %s); pin a known "
        "line, or name its index with training_stack_torch_index_url"
        % (request.version, TORCH_LINES[0], TORCH_LINES[-1])
    )


def _index_lines(build):
    first, last = PYTORCH_INDEX_LINES.get(build, (TORCH_LINES[0], TORCH_LINES[-1]))
    return [line for line in TORCH_LINES if _line_key(first) <= _line_key(line) <= _line_key(last)]


def _exact(version):
    match = _VERSION.fullmatch(version)
    return bool(match and match.group(3) is not None)


def _requirement(request, line, local):
    if _exact(request.version):
        return "torch==%s%s" % (request.version, "+" + local if local else "")
    return "torch>=%s,<%s" % (line, _next_line(line))


def _pip_args(request):
    args = []
    if request.index_url:
        args += ["--index-url", request.index_url]
    if request.wheelhouse:
        args += ["--find-links", request.wheelhouse]
    if request.wheelhouse_only:
        args += ["--no-index"]
    return args


def cupy_requirement(cuda_line, cupy_version):
    """The CuPy requirement for the node's CUDA line ('12.8' -> 'cupy-cuda12x==13.6.0')."""
    major = cuda_key(cuda_version(cuda_line, "the node's CUDA line"))[0]
    if major not in CUPY_PACKAGES:
        raise PolicyError(
            "CuPy has no wheels for CUDA %s; it has them for CUDA %s"
            % (cuda_line, ", ".join("%d.x" % m for m in sorted(CUPY_PACKAGES)))
        )
    if not _VERSION.fullmatch(str(cupy_version)):
        raise PolicyError(
            "simulation_stack_cupy_version '%s' is not a CuPy release such as 13.6.0" % cupy_version
        )
    return "%s==%s" % (CUPY_PACKAGES[major], cupy_version)
