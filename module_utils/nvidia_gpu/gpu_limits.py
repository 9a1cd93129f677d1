"""What the GPUs of a node accept: driver branches, kernel module flavours and CUDA versions.

The limits of each GPU come from its architecture in models.ARCHITECTURES (and a later first
branch for some models); GpuLimits keeps the tightest of all GPUs and which GPU sets each one, so
that a refusal names the GPU, its architecture and the allowed range.
"""

from __future__ import annotations

from . import models
from .choice_pins import FLAVOURS, PolicyError

# NVIDIA installs the open kernel modules by default on the GPUs that can use them from R560.
OPEN_MODULES_DEFAULT_FROM = 560


def label(gpu):
    """How refusals name a GPU found on PCI: 'GPU 0000:1a:00.0 Tesla V100-SXM2-16GB (volta)'."""
    return "GPU %s %s (%s)" % (
        gpu.get("pci_bus_id", "?"),
        gpu.get("model", "unknown model"),
        gpu.get("architecture", "unknown"),
    )


def summary(gpus):
    """'4x Tesla V100-SXM2-16GB (volta)', groups in discovery order; 'no GPU' for none."""
    groups = []
    for gpu in gpus:
        key = (gpu.get("model", "unknown model"), gpu.get("architecture", "unknown"))
        for group in groups:
            if group[0] == key:
                group[1] += 1
                break
        else:
            groups.append([key, 1])
    text = " + ".join("%dx %s (%s)" % (count, key[0], key[1]) for key, count in groups)
    return text or "no GPU"


def _rules(gpu):
    arch = models.ARCHITECTURES.get(gpu.get("architecture"))
    if arch is None:
        return None
    min_branch = arch["min_branch"]
    if gpu.get("min_branch"):
        min_branch = max(min_branch or 0, gpu["min_branch"])
    return dict(arch, min_branch=min_branch)


def cuda_key(version):
    """'12.8' -> (12, 8), for ordering CUDA versions."""
    major, _, minor = str(version).partition(".")
    return int(major), int(minor or 0)


class GpuLimits:
    """What every GPU of the node accepts, and which GPU sets each limit."""

    def __init__(self, gpus):
        self.gpus = list(gpus or [])
        rules_of = [(g, _rules(g)) for g in self.gpus]
        self.unknown = [g for g, rules in rules_of if rules is None]
        self.known = [(g, rules) for g, rules in rules_of if rules is not None]
        self.min_branch, self.min_gpu = None, None
        self.max_branch, self.max_gpu = None, None
        self.cuda_min, self.cuda_min_gpu = None, None
        self.cuda_max_major, self.cuda_max_gpu = None, None
        self.flavours = set(FLAVOURS)
        for gpu, rules in self.known:
            if rules["min_branch"] and (
                self.min_branch is None or rules["min_branch"] > self.min_branch
            ):
                self.min_branch, self.min_gpu = rules["min_branch"], gpu
            if rules["max_branch"] and (
                self.max_branch is None or rules["max_branch"] < self.max_branch
            ):
                self.max_branch, self.max_gpu = rules["max_branch"], gpu
            if self.cuda_min is None or cuda_key(rules["cuda_min"]) > cuda_key(self.cuda_min):
                self.cuda_min, self.cuda_min_gpu = rules["cuda_min"], gpu
            if rules["cuda_max_major"] and (
                self.cuda_max_major is None or rules["cuda_max_major"] < self.cuda_max_major
            ):
                self.cuda_max_major, self.cuda_max_gpu = rules["cuda_max_major"], gpu
            self.flavours &= set(rules["kernel_modules"])

    @property
    def architectures(self):
        """Architectures of the GPUs, oldest first."""
        return sorted({g["architecture"] for g in self.gpus}, key=models.arch_index)

    @property
    def allowed_flavours(self):
        return [f for f in FLAVOURS if f in self.flavours]

    def branch_range(self):
        if self.min_branch and self.max_branch:
            return "%d to %d" % (self.min_branch, self.max_branch)
        if self.max_branch:
            return "up to %d" % self.max_branch
        if self.min_branch:
            return "from %d" % self.min_branch
        return "any branch"

    def accepts_branch(self, branch):
        return (self.min_branch is None or branch >= self.min_branch) and (
            self.max_branch is None or branch <= self.max_branch
        )

    def why_max(self):
        return "%s is supported up to branch %d (%s)" % (
            label(self.max_gpu),
            self.max_branch,
            _rules(self.max_gpu).get("why_max", "its last branch"),
        )

    def why_min(self):
        return "%s needs branch %d or later" % (label(self.min_gpu), self.min_branch)

    def gpu_rejecting_flavour(self, flavour):
        for gpu, rules in self.known:
            if flavour not in rules["kernel_modules"]:
                return gpu
        return None

    def check_driver_pins(self, branch_pin, flavour_pin):
        """Refuse pins some GPU cannot use, and GPUs no driver can serve together; returns the
        notes for the reason line (GPUs trusted to the pins)."""
        notes = []
        if not self.gpus:
            if branch_pin is None or flavour_pin is None:
                raise PolicyError(
                    "no NVIDIA GPU found on PCI (vendor 10de, display or 3D controller class): "
                    "pin nvidia_driver_branch and nvidia_driver_kernel_modules to install a "
                    "driver on a machine without GPUs"
                )
            notes.append("no GPU on PCI: installing the pinned driver")
        if self.unknown:
            if branch_pin is None or flavour_pin is None:
                gpu = self.unknown[0]
                raise PolicyError(
                    "%s (PCI id %s) has an unknown architecture, so no driver can be chosen for "
                    "it: pin nvidia_driver_branch and nvidia_driver_kernel_modules, or add the "
                    "device to module_utils/nvidia_gpu/models.py"
                    % (label(gpu), gpu.get("pci_device_id", "?"))
                )
            notes.append("%d GPU(s) of unknown architecture: trusting the pins" % len(self.unknown))
        if self.min_branch and self.max_branch and self.min_branch > self.max_branch:
            raise PolicyError(
                "no driver branch drives all these GPUs: %s; %s" % (self.why_max(), self.why_min())
            )
        if not self.flavours:
            proprietary_only = self.gpu_rejecting_flavour("open")
            open_only = self.gpu_rejecting_flavour("proprietary")
            raise PolicyError(
                "no kernel module flavour drives all these GPUs: %s needs the proprietary "
                "modules (%s) and %s needs the open ones (%s)"
                % (
                    label(proprietary_only),
                    models.NO_OPEN_MODULES.format(arch=proprietary_only["architecture"]),
                    label(open_only),
                    models.NO_PROPRIETARY_MODULES.format(arch=open_only["architecture"]),
                )
            )
        if flavour_pin is not None:
            self._check_flavour(flavour_pin)
        if branch_pin is not None and not self.accepts_branch(branch_pin):
            why = (
                self.why_max()
                if self.max_branch is not None and branch_pin > self.max_branch
                else self.why_min()
            )
            raise PolicyError(
                "driver branch %d cannot drive these GPUs: %s; allowed for them: %s"
                % (branch_pin, why, self.branch_range())
            )
        return notes

    def _check_flavour(self, flavour):
        gpu = self.gpu_rejecting_flavour(flavour)
        if gpu is not None:
            why = models.NO_OPEN_MODULES if flavour == "open" else models.NO_PROPRIETARY_MODULES
            raise PolicyError(
                "%s kernel modules cannot drive %s: %s; allowed for these GPUs: %s"
                % (
                    flavour,
                    label(gpu),
                    why.format(arch=gpu["architecture"]),
                    ", ".join(self.allowed_flavours),
                )
            )

    def flavour_reason(self, flavour):
        """Why a flavour was chosen when it was not pinned."""
        arches = [a for a in self.architectures if a in models.ARCHITECTURES]
        if flavour == "proprietary":
            lacking = [a for a in arches if "open" not in models.ARCHITECTURES[a]["kernel_modules"]]
            if lacking:
                return "%s has no GSP for the open ones" % "/".join(lacking)
            return "chosen over the open modules"
        only_open = [a for a in arches if models.ARCHITECTURES[a]["kernel_modules"] == ("open",)]
        if only_open:
            return "%s runs on the open modules only" % "/".join(only_open)
        return "NVIDIA's default for Turing and newer from R%d" % OPEN_MODULES_DEFAULT_FROM

    def check_cuda(self, version, what):
        """Refuse a CUDA version some GPU cannot run."""
        major = cuda_key(version)[0]
        if self.cuda_max_major is not None and major > self.cuda_max_major:
            gpu = self.cuda_max_gpu
            raise PolicyError(
                "%s cannot run on %s: %s; allowed for these GPUs: CUDA %d.x or older"
                % (what, label(gpu), _rules(gpu)["why_cuda"], self.cuda_max_major)
            )
        if self.cuda_min is not None and cuda_key(version) < cuda_key(self.cuda_min):
            gpu = self.cuda_min_gpu
            raise PolicyError(
                "%s is too old for %s, which needs CUDA %s or later"
                % (what, label(gpu), self.cuda_min)
            )
