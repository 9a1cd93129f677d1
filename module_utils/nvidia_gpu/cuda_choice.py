"""Which CUDA version a node gets: the line its GPUs and driver branch run, and what the CUDA
source offers of it.

choose_cuda() decides from the GPUs found on PCI, the driver choice (nvidia_driver_select's
result), what the source offers and the user's CUDA options (one CudaRequest). The driver choice
itself names the CUDA line it wants with cuda_part() and no offer. Nothing here reads the machine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import choice_pins
from .choice_pins import AUTO, PolicyError
from .choice_result import assemble, reused_driver
from .gpu_limits import GpuLimits, cuda_key

# Oldest driver branch that runs anything built with a CUDA major release (minor version
# compatibility): 11.x from R450, 12.x from R525, 13.x from R580.
CUDA_MAJOR_MIN_BRANCH = {11: 450, 12: 525, 13: 580}
# Driver branch each toolkit release shipped with: older drivers of the same major run it
# through minor version compatibility (no PTX JIT of newer code), which the reason line says.
CUDA_TOOLKIT_BRANCH = {
    "11.8": 520,
    "12.0": 525,
    "12.1": 530,
    "12.2": 535,
    "12.3": 545,
    "12.4": 550,
    "12.5": 555,
    "12.6": 560,
    "12.8": 570,
    "12.9": 575,
    "13.0": 580,
}
# CUDA installed when nothing is pinned, per major release.
DEFAULT_CUDA = {"11": "11.8", "12": "12.8", "13": "13.0"}


def cuda_version_of(text):
    """CUDA 'major.minor' in a package version or name: 'cuda-toolkit-12-8' -> '12.8',
    '11.8.89~11.8.0-5~deb12u1' -> '11.8'. None when there is none."""
    match = re.search(r"(?<![\d.])(\d{1,2})[.-](\d{1,2})(?![\d])", str(text))
    return "%d.%d" % (int(match.group(1)), int(match.group(2))) if match else None


@dataclass
class CudaRequest:
    """The user's CUDA options (role variables), checked when it is made.

    version: cuda_version, 'auto' or MAJOR.MINOR. defaults: cuda_defaults, {major: version}
    installed when nothing is pinned. fallback: cuda_fallback, install the newest offered
    version that runs when the source lacks the wanted one (never for a pin). source: how
    messages name the CUDA source. hint: what to suggest when it lacks the wanted line
    ('{line}' is replaced by '12.x').
    """

    version: object = AUTO
    defaults: dict = field(default_factory=lambda: dict(DEFAULT_CUDA))
    fallback: bool = True
    source: str = "the configured source"
    hint: str = ""
    pin: str = field(init=False, default=None)

    def __post_init__(self):
        self.pin = choice_pins.cuda_pin(self.version)
        self.defaults = choice_pins.cuda_defaults(self.defaults)


def choose_cuda(gpus, driver_selection, request, offered):
    """The CUDA version for these GPUs and the driver chosen earlier.

    gpus: GPU dicts as pci.discover() returns them. driver_selection: nvidia_driver_select's
    result (its driver choice is reused, so the reason line covers both). request: CudaRequest.
    offered: CUDA versions or package names the source offers; None: only say which version the
    GPUs and the driver want.
    Returns the result of choice_result.assemble; raises PolicyError with the reason otherwise.
    """
    limits = GpuLimits(gpus)
    driver = reused_driver(driver_selection)
    return assemble(limits, driver, cuda_part(limits, driver["branch"], request, offered))


def cuda_part(limits, branch, request, offered=None):
    """The CUDA part of a choice: the version wanted, and (with offered) the one to install."""
    wanted, why = _wanted(limits, branch, request)
    notes = []
    install = None
    fallback_used = False
    if offered is None:
        text = "CUDA %s wanted (%s)" % (wanted, why)
    else:
        versions = sorted(
            {v for v in (cuda_version_of(o) for o in offered) if v}, key=cuda_key, reverse=True
        )
        if wanted in versions:
            install = wanted
            text = "CUDA %s (%s; %s offers it)" % (wanted, why, request.source)
        elif request.pin is not None or not request.fallback:
            raise PolicyError(
                "CUDA %s is not offered by %s; it offers: %s"
                % (wanted, request.source, ", ".join(versions) or "nothing")
            )
        else:
            usable = [v for v in versions if _fits(limits, branch, v)]
            if not usable:
                raise PolicyError(
                    "CUDA %s wanted, and none of what %s offers (%s) runs on these GPUs with "
                    "driver branch %d"
                    % (wanted, request.source, ", ".join(versions) or "nothing", branch)
                )
            install = usable[0]
            fallback_used = True
            hint = request.hint.replace("{line}", "%d.x" % cuda_key(wanted)[0])
            text = "CUDA %s wanted (%s); %s offers %s: installing that%s" % (
                wanted,
                why,
                request.source,
                install,
                " - %s" % hint if hint else "",
            )
        toolkit_branch = CUDA_TOOLKIT_BRANCH.get(install)
        if toolkit_branch and branch < toolkit_branch:
            notes.append(
                "CUDA %s runs on branch %d through minor version compatibility (it shipped "
                "with %d)" % (install, branch, toolkit_branch)
            )
    return {
        "wanted": wanted,
        "install": install,
        "fallback": fallback_used,
        "text": text,
        "notes": notes,
    }


def _wanted(limits, branch, request):
    """(CUDA version wanted, why): the pin, or the default of the newest major that runs."""
    if request.pin is not None:
        _check(limits, branch, request.pin, "cuda_version %s" % request.pin)
        return request.pin, "pinned"
    majors = sorted(int(m) for m in request.defaults)
    usable = [
        m
        for m in majors
        if (limits.cuda_max_major is None or m <= limits.cuda_max_major)
        and CUDA_MAJOR_MIN_BRANCH.get(m, 0) <= branch
    ]
    if not usable:
        raise PolicyError(
            "no CUDA major release in %s runs on driver branch %d with these GPUs"
            % (", ".join(str(m) for m in majors), branch)
        )
    wanted = request.defaults[str(usable[-1])]
    if limits.cuda_max_major is not None and usable[-1] == limits.cuda_max_major:
        return wanted, "%s stays on %d.x" % (
            limits.cuda_max_gpu["architecture"],
            limits.cuda_max_major,
        )
    return wanted, "the newest CUDA line driver branch %d runs" % branch


def _fits(limits, branch, version):
    try:
        _check(limits, branch, version, "CUDA %s" % version)
    except PolicyError:
        return False
    return True


def _check(limits, branch, version, what):
    limits.check_cuda(version, what)
    need = CUDA_MAJOR_MIN_BRANCH.get(cuda_key(version)[0])
    if need and branch < need:
        raise PolicyError(
            "%s needs driver branch %d or later; the driver branch is %d" % (what, need, branch)
        )
