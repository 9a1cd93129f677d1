"""Which NVIDIA driver branch, version and kernel module flavour a node gets, and whether it needs
the fabric manager.

choose_driver() decides from the GPUs found on PCI (pci.discover), what the package source offers
and what is installed (apt_query.DriverOffer) and the user's options (one DriverRequest). It
returns the choice with a one-line reason, or raises PolicyError with a message that names the
GPU, its architecture and the allowed range. Nothing here reads the machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import choice_pins
from .choice_pins import AUTO, PolicyError
from .choice_result import assemble
from .cuda_choice import CudaRequest, cuda_part
from .debian_version import branch_of, compare_versions, newest
from .gpu_limits import OPEN_MODULES_DEFAULT_FROM, GpuLimits

# First branch of the open kernel modules.
OPEN_MODULES_MIN_BRANCH = 515


@dataclass
class DriverRequest:
    """The user's driver options (role variables), checked when it is made.

    branch: nvidia_driver_branch, 'auto' or a branch number. kernel_modules:
    nvidia_driver_kernel_modules, 'auto', 'open' or 'proprietary'. allow_branch_change / upgrade:
    whether an installed driver may move to another branch or flavour / to the newest version of
    its branch. nvswitch_count: NVSwitches on PCI (fabric manager). source: how messages name the
    driver source.
    """

    branch: object = AUTO
    kernel_modules: object = AUTO
    allow_branch_change: bool = False
    upgrade: bool = False
    nvswitch_count: int = 0
    source: str = "the configured source"
    branch_pin: int = field(init=False, default=None)
    flavour_pin: str = field(init=False, default=None)

    def __post_init__(self):
        self.branch_pin = choice_pins.branch_pin(self.branch)
        self.flavour_pin = choice_pins.flavour_pin(self.kernel_modules)


def choose_driver(gpus, request, offer):
    """The driver for these GPUs, and the CUDA line they and that driver want.

    gpus: GPU dicts as pci.discover() returns them (architecture, model, pci_bus_id, ...).
    request: DriverRequest. offer: apt_query.DriverOffer, what the source offers per flavour and
    the driver installed now; that one is kept unless request.upgrade (newest of the same branch)
    or request.allow_branch_change (another branch or flavour).
    Returns the result of choice_result.assemble.
    """
    limits = GpuLimits(gpus)
    notes = limits.check_driver_pins(request.branch_pin, request.flavour_pin)
    if (
        request.flavour_pin == "open"
        and request.branch_pin is not None
        and request.branch_pin < OPEN_MODULES_MIN_BRANCH
    ):
        raise PolicyError(
            "the open kernel modules start with branch %d; branch %d has none"
            % (OPEN_MODULES_MIN_BRANCH, request.branch_pin)
        )
    flavour, branch, why_branch = _pick_branch(limits, request, offer.versions)
    version, action = _pick_version(request, offer, flavour, branch)
    nvswitch_count = int(request.nvswitch_count or 0)
    driver = {
        "branch": branch,
        "version": version,
        "action": action,
        "kernel_modules": flavour,
        "fabric_manager": nvswitch_count > 0,
        "driver_text": "driver branch %d (%s, %s)" % (branch, version, why_branch),
        "modules_text": "%s kernel modules (%s)"
        % (flavour, "pinned" if request.flavour_pin else limits.flavour_reason(flavour)),
        "fabric_text": "fabric manager for %d NVSwitch(es)" % nvswitch_count
        if nvswitch_count
        else "no fabric manager (no NVSwitch)",
        "notes": notes,
    }
    return assemble(limits, driver, cuda_part(limits, branch, CudaRequest()))


def _branches(versions):
    """The branches of some versions, newest first."""
    return sorted({b for b in (branch_of(v) for v in versions) if b is not None}, reverse=True)


def _offered_text(versions):
    return ", ".join(str(b) for b in _branches(versions)) or "nothing"


def _usable(limits, branch_pin, flavour, branch):
    """Whether an offered branch may be chosen: the pinned one, else one every GPU accepts."""
    if branch_pin is not None:
        return branch == branch_pin
    return limits.accepts_branch(branch) and (
        flavour != "open" or branch >= OPEN_MODULES_MIN_BRANCH
    )


def _pick_branch(limits, request, offered):
    """(flavour, branch, why) from the pins and what the source offers."""
    flavours = [request.flavour_pin] if request.flavour_pin else limits.allowed_flavours
    best = {}
    for flavour in flavours:
        branches = [
            b
            for b in _branches(offered.get(flavour) or [])
            if _usable(limits, request.branch_pin, flavour, b)
        ]
        if branches:
            best[flavour] = branches[0]
    if not best:
        every = [v for flavour in flavours for v in offered.get(flavour) or []]
        flavour_text = " for the %s modules" % flavours[0] if len(flavours) == 1 else ""
        if request.branch_pin is not None:
            raise PolicyError(
                "driver branch %d is not offered by %s%s; it offers: %s"
                % (request.branch_pin, request.source, flavour_text, _offered_text(every))
            )
        raise PolicyError(
            "none of the driver branches %s offers%s (%s) can drive these GPUs, which allow %s"
            % (request.source, flavour_text, _offered_text(every), limits.branch_range())
        )
    if "open" in best and "proprietary" in best:
        # Both work: NVIDIA's default is open from R560 on; earlier the proprietary modules.
        open_wins = (
            best["open"] >= OPEN_MODULES_DEFAULT_FROM and best["open"] >= best["proprietary"]
        )
        flavour = "open" if open_wins else "proprietary"
    else:
        flavour = next(iter(best))
    if request.branch_pin is not None:
        why = "pinned; allowed for these GPUs: %s" % limits.branch_range()
    else:
        why = "the newest %s offers%s" % (
            request.source,
            " %s" % limits.branch_range() if limits.min_branch or limits.max_branch else "",
        )
        if limits.max_branch:
            why += ", R%d being %s's last" % (limits.max_branch, limits.max_gpu["architecture"])
    return flavour, best[flavour], why


def _pick_version(request, offer, flavour, branch):
    """(package version, action): keep what is installed unless told to move."""
    candidate = newest(v for v in offer.versions.get(flavour) or [] if branch_of(v) == branch)
    installed = offer.installed_version
    if not installed:
        return candidate, "install"
    installed_branch = branch_of(installed)
    installed_flavour = offer.installed_kernel_modules
    if installed_branch != branch or (installed_flavour and installed_flavour != flavour):
        if not request.allow_branch_change:
            raise PolicyError(
                "driver %s (%s modules) is installed and held, the policy selects branch %d "
                "(%s modules): set nvidia_driver_allow_branch_change: true to move (the node "
                "reboots when the new module cannot be loaded otherwise), or pin "
                "nvidia_driver_branch: %s to stay"
                % (installed, installed_flavour or "unknown", branch, flavour, installed_branch)
            )
        return candidate, "change_branch"
    if request.upgrade and candidate and compare_versions(candidate, installed) > 0:
        return candidate, "upgrade"
    return installed, "keep"
