"""Which NVIDIA driver branch, kernel module flavour and CUDA version a node gets.

One pure function, select(), decides from the GPUs found on PCI (pci.discover), the versions the
configured package source offers, and what the user pinned. It returns the choice and a one-line
reason, or raises PolicyError with a message that names the GPU, its architecture and the allowed
range. The limits come from models.ARCHITECTURES; nothing here reads the machine.
"""

from __future__ import annotations

import re

from . import models

AUTO = "auto"
FLAVOURS = ("proprietary", "open")
# First branch of the open kernel modules, and the branch from which NVIDIA installs them by
# default on GPUs that can use them (R560).
OPEN_MODULES_MIN_BRANCH = 515
OPEN_MODULES_DEFAULT_FROM = 560
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


class PolicyError(Exception):
    """A choice that cannot work on this machine; the message says why and what would."""


# ---- versions ----


def _split_epoch(version):
    version = str(version).strip()
    if re.match(r"^\d+:", version):
        epoch, version = version.split(":", 1)
        return int(epoch), version
    return 0, version


def upstream(version):
    """'1:535.309.01-0+deb12u1' -> '535.309.01' (no epoch, no Debian revision)."""
    _, version = _split_epoch(version)
    return version.rsplit("-", 1)[0] if "-" in version else version


def branch_of(version):
    """Driver branch of a driver version or branch number: '535.309.01-0+deb12u1' -> 535."""
    match = re.match(r"^\s*(?:\d+:)?(\d+)", str(version))
    if not match:
        raise PolicyError("'%s' is not a driver version or branch" % version)
    return int(match.group(1))


def cuda_version_of(text):
    """CUDA 'major.minor' in a version or package name: 'cuda-toolkit-12-8' -> '12.8',
    '11.8.89~11.8.0-5~deb12u1' -> '11.8'. None when there is none."""
    match = re.search(r"(?<![\d.])(\d{1,2})[.-](\d{1,2})(?![\d])", str(text))
    return "%d.%d" % (int(match.group(1)), int(match.group(2))) if match else None


def cuda_key(version):
    major, _, minor = str(version).partition(".")
    return int(major), int(minor or 0)


def _order(char):
    if char == "~":
        return -1
    if char.isdigit():
        return 0
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _compare_part(a, b):
    """dpkg's comparison of one upstream or revision string."""
    a, b = list(a), list(b)
    while a or b:
        first_diff = 0
        while (a and not a[0].isdigit()) or (b and not b[0].isdigit()):
            ac = _order(a[0]) if a and not a[0].isdigit() else 0
            bc = _order(b[0]) if b and not b[0].isdigit() else 0
            if ac != bc:
                return ac - bc
            if a and not a[0].isdigit():
                a.pop(0)
            if b and not b[0].isdigit():
                b.pop(0)
        while a and a[0] == "0":
            a.pop(0)
        while b and b[0] == "0":
            b.pop(0)
        while a and a[0].isdigit() and b and b[0].isdigit():
            if not first_diff:
                first_diff = int(a[0]) - int(b[0])
            a.pop(0)
            b.pop(0)
        if a and a[0].isdigit():
            return 1
        if b and b[0].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def compare_versions(a, b):
    """Debian version order (as `dpkg --compare-versions`): negative, 0 or positive."""
    epoch_a, rest_a = _split_epoch(a)
    epoch_b, rest_b = _split_epoch(b)
    if epoch_a != epoch_b:
        return epoch_a - epoch_b
    up_a, _, rev_a = rest_a.rpartition("-") if "-" in rest_a else (rest_a, "", "")
    up_b, _, rev_b = rest_b.rpartition("-") if "-" in rest_b else (rest_b, "", "")
    return _compare_part(up_a, up_b) or _compare_part(rev_a, rev_b)


def newest(versions):
    best = None
    for version in versions:
        if best is None or compare_versions(version, best) > 0:
            best = version
    return best


def parse_madison(text):
    """`apt-cache madison` output -> {package: [versions, newest first, no duplicates]}."""
    offered = {}
    for line in (text or "").splitlines():
        fields = [field.strip() for field in line.split("|")]
        if len(fields) < 3 or not fields[0] or not fields[1]:
            continue
        versions = offered.setdefault(fields[0], [])
        if fields[1] not in versions:
            versions.append(fields[1])
    for versions in offered.values():
        versions.sort(key=_VersionKey, reverse=True)
    return offered


class _VersionKey:
    def __init__(self, version):
        self.version = version

    def __lt__(self, other):
        return compare_versions(self.version, other.version) < 0


def offered_by_flavour(madison_text, probes):
    """Driver versions per kernel module flavour: probes maps a flavour to a regex of the package
    names whose versions tell what the source offers for it."""
    packages = parse_madison(madison_text)
    offered = {}
    for flavour, pattern in (probes or {}).items():
        versions = []
        for name, package_versions in sorted(packages.items()):
            if re.match(pattern, name):
                versions.extend(v for v in package_versions if v not in versions)
        versions.sort(key=_VersionKey, reverse=True)
        offered[flavour] = versions
    return offered


def installed_from_listing(text, probes):
    """(version, flavour) of the installed driver from `dpkg-query --show` lines
    'package | version | status', the first installed ('ii') package a probe matches."""
    for flavour, pattern in (probes or {}).items():
        for line in (text or "").splitlines():
            fields = [field.strip() for field in line.split("|")]
            if len(fields) >= 3 and fields[2].startswith("ii") and re.match(pattern, fields[0]):
                return fields[1], flavour
    return "", ""


# ---- the GPUs ----


def _label(gpu):
    return "GPU %s %s (%s)" % (
        gpu.get("pci_bus_id", "?"),
        gpu.get("model", "unknown model"),
        gpu.get("architecture", "unknown"),
    )


def _summary(gpus):
    """'4x Tesla V100-SXM2-16GB (volta)', groups in discovery order."""
    groups = []
    for gpu in gpus:
        key = (gpu.get("model", "unknown model"), gpu.get("architecture", "unknown"))
        for group in groups:
            if group[0] == key:
                group[1] += 1
                break
        else:
            groups.append([key, 1])
    return " + ".join("%dx %s (%s)" % (count, key[0], key[1]) for key, count in groups)


def _rules(gpu):
    arch = models.ARCHITECTURES.get(gpu.get("architecture"))
    if arch is None:
        return None
    min_branch = arch["min_branch"]
    if gpu.get("min_branch"):
        min_branch = max(min_branch or 0, gpu["min_branch"])
    return dict(arch, min_branch=min_branch)


class _Limits:
    """What every GPU of the node accepts, and which GPU sets each limit."""

    def __init__(self, gpus):
        self.gpus = gpus
        self.unknown = [g for g in gpus if _rules(g) is None]
        self.known = [(g, _rules(g)) for g in gpus if _rules(g) is not None]
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

    def why_not_branch(self, branch):
        if self.max_branch is not None and branch > self.max_branch:
            return self.why_max()
        return self.why_min()

    def why_max(self):
        return "%s is supported up to branch %d (%s)" % (
            _label(self.max_gpu),
            self.max_branch,
            _rules(self.max_gpu).get("why_max", "its last branch"),
        )

    def why_min(self):
        return "%s needs branch %d or later" % (_label(self.min_gpu), self.min_branch)

    def gpu_rejecting_flavour(self, flavour):
        for gpu, rules in self.known:
            if flavour not in rules["kernel_modules"]:
                return gpu
        return None


def _flavour_reason(flavour, gpus_arches):
    if flavour == "proprietary":
        lacking = [
            a for a in gpus_arches if "open" not in models.ARCHITECTURES[a]["kernel_modules"]
        ]
        if lacking:
            return "%s has no GSP for the open ones" % "/".join(lacking)
        return "chosen over the open modules"
    only_open = [a for a in gpus_arches if models.ARCHITECTURES[a]["kernel_modules"] == ("open",)]
    if only_open:
        return "%s runs on the open modules only" % "/".join(only_open)
    return "NVIDIA's default for Turing and newer from R%d" % OPEN_MODULES_DEFAULT_FROM


# ---- the policy ----


def _pinned(value):
    return value not in (None, "", AUTO)


def _normalise_branch_pin(value):
    if not _pinned(value):
        return None
    try:
        return int(str(value).strip())
    except ValueError as error:
        raise PolicyError(
            "nvidia_driver_branch '%s' is not a branch number such as 580 (or 'auto')" % value
        ) from error


def _branch_choices(offered_versions, limits, flavour):
    """Branches offered for a flavour that every GPU accepts, newest first."""
    branches = sorted({branch_of(v) for v in offered_versions}, reverse=True)
    return [
        b
        for b in branches
        if limits.accepts_branch(b) and (flavour != "open" or b >= OPEN_MODULES_MIN_BRANCH)
    ]


def _offered_text(offered_versions):
    branches = sorted({branch_of(v) for v in offered_versions}, reverse=True)
    return ", ".join(str(b) for b in branches) if branches else "nothing"


def select(
    gpus,
    driver_offered=None,
    nvswitch_count=0,
    driver_branch=AUTO,
    kernel_modules=AUTO,
    cuda_version=AUTO,
    cuda_offered=None,
    cuda_defaults=None,
    cuda_fallback=True,
    installed_version="",
    installed_kernel_modules="",
    allow_branch_change=False,
    upgrade=False,
    source="the configured source",
    cuda_source="the configured source",
    cuda_hint="",
    driver_selection=None,
):
    """Decide driver branch and version, kernel module flavour, CUDA and fabric manager.

    gpus: GPU dicts as pci.discover() returns them (architecture, model, pci_bus_id, ...).
    driver_offered: {flavour: [package versions]} the driver source offers.
    driver_branch, kernel_modules, cuda_version: pins ('auto' or empty: the policy decides). A pin
      wins over the default but is checked against every GPU.
    cuda_offered: CUDA versions or package names the CUDA source offers; None: only say which
      CUDA the GPUs want.
    installed_version / installed_kernel_modules: the driver installed now; it is kept unless
      upgrade (newest of the same branch) or allow_branch_change (another branch or flavour).
    driver_selection: an earlier result of select() (the nvidia_driver role's): its driver
      choice is reused and only CUDA is decided, so later roles speak the same line.
    """
    gpus = list(gpus or [])
    limits = _Limits(gpus)
    if driver_selection:
        driver = _reuse_driver(driver_selection)
        notes = list(driver_selection.get("driver_notes") or [])
    else:
        driver, notes = _decide_driver(
            gpus,
            limits,
            driver_offered,
            driver_branch,
            kernel_modules,
            installed_version,
            installed_kernel_modules,
            allow_branch_change,
            upgrade,
            source,
        )
    branch = driver["branch"]
    cuda = _choose_cuda(
        limits,
        branch,
        cuda_version,
        cuda_offered,
        dict(DEFAULT_CUDA, **(cuda_defaults or {})),
        cuda_fallback,
        cuda_source,
        cuda_hint,
    )
    fabric_manager = int(nvswitch_count or 0) > 0
    parts = {
        "driver": driver["driver_text"],
        "kernel_modules": driver["modules_text"],
        "cuda": cuda["text"],
        "fabric_manager": "fabric manager for %d NVSwitch(es)" % nvswitch_count
        if fabric_manager
        else "no fabric manager (no NVSwitch)",
    }
    reason = "%s: %s" % (
        _summary(gpus) if gpus else "no GPU",
        ", ".join(parts[key] for key in ("driver", "kernel_modules", "cuda", "fabric_manager")),
    )
    all_notes = notes + cuda["notes"]
    if all_notes:
        reason += " [%s]" % "; ".join(all_notes)
    return {
        "branch": branch,
        "version": driver["version"],
        "upstream_version": upstream(driver["version"]) if driver["version"] else "",
        "action": driver["action"],
        "kernel_modules": driver["kernel_modules"],
        "cuda_version": cuda["wanted"],
        "cuda_install": cuda["install"],
        "cuda_fallback": cuda["fallback"],
        "fabric_manager": fabric_manager,
        "architectures": sorted({g["architecture"] for g in gpus}, key=models.arch_index),
        "allowed_branches": {"min": limits.min_branch, "max": limits.max_branch},
        "allowed_kernel_modules": [f for f in FLAVOURS if f in limits.flavours],
        "parts": parts,
        "driver_notes": notes,
        "reason": reason,
        "notes": all_notes,
    }


def _reuse_driver(selection):
    try:
        return {
            "branch": int(selection["branch"]),
            "version": selection.get("version") or "",
            "action": selection.get("action") or "keep",
            "kernel_modules": selection["kernel_modules"],
            "driver_text": selection["parts"]["driver"],
            "modules_text": selection["parts"]["kernel_modules"],
        }
    except (KeyError, TypeError, ValueError) as error:
        raise PolicyError(
            "driver_selection is not a result of this policy (missing %s)" % error
        ) from error


def _decide_driver(
    gpus,
    limits,
    driver_offered,
    driver_branch,
    kernel_modules,
    installed_version,
    installed_kernel_modules,
    allow_branch_change,
    upgrade,
    source,
):
    branch_pin = _normalise_branch_pin(driver_branch)
    flavour_pin = kernel_modules if _pinned(kernel_modules) else None
    if flavour_pin is not None and flavour_pin not in FLAVOURS:
        raise PolicyError(
            "nvidia_driver_kernel_modules '%s' is not one of: auto, open, proprietary"
            % kernel_modules
        )
    notes = []
    if not gpus:
        if branch_pin is None or flavour_pin is None:
            raise PolicyError(
                "no NVIDIA GPU found on PCI (vendor 10de, display or 3D controller class): "
                "pin nvidia_driver_branch and nvidia_driver_kernel_modules to install a driver "
                "on a machine without GPUs"
            )
        notes.append("no GPU on PCI: installing the pinned driver")
    if limits.unknown:
        if branch_pin is None or flavour_pin is None:
            gpu = limits.unknown[0]
            raise PolicyError(
                "%s (PCI id %s) has an unknown architecture, so no driver can be chosen for "
                "it: pin nvidia_driver_branch and nvidia_driver_kernel_modules, or add the "
                "device to module_utils/nvidia_gpu/models.py"
                % (_label(gpu), gpu.get("pci_device_id", "?"))
            )
        notes.append("%d GPU(s) of unknown architecture: trusting the pins" % len(limits.unknown))

    if limits.min_branch and limits.max_branch and limits.min_branch > limits.max_branch:
        raise PolicyError(
            "no driver branch drives all these GPUs: %s; %s" % (limits.why_max(), limits.why_min())
        )
    if not limits.flavours:
        proprietary_only = limits.gpu_rejecting_flavour("open")
        open_only = limits.gpu_rejecting_flavour("proprietary")
        raise PolicyError(
            "no kernel module flavour drives all these GPUs: %s needs the proprietary modules "
            "(%s) and %s needs the open ones (%s)"
            % (
                _label(proprietary_only),
                models.NO_OPEN_MODULES.format(arch=proprietary_only["architecture"]),
                _label(open_only),
                models.NO_PROPRIETARY_MODULES.format(arch=open_only["architecture"]),
            )
        )
    if flavour_pin is not None:
        gpu = limits.gpu_rejecting_flavour(flavour_pin)
        if gpu is not None:
            why = models.NO_OPEN_MODULES if flavour_pin == "open" else models.NO_PROPRIETARY_MODULES
            raise PolicyError(
                "%s kernel modules cannot drive %s: %s; allowed for these GPUs: %s"
                % (
                    flavour_pin,
                    _label(gpu),
                    why.format(arch=gpu["architecture"]),
                    ", ".join(f for f in FLAVOURS if f in limits.flavours),
                )
            )
    if branch_pin is not None:
        if not limits.accepts_branch(branch_pin):
            raise PolicyError(
                "driver branch %d cannot drive these GPUs: %s; allowed for them: %s"
                % (branch_pin, limits.why_not_branch(branch_pin), limits.branch_range())
            )
        if flavour_pin == "open" and branch_pin < OPEN_MODULES_MIN_BRANCH:
            raise PolicyError(
                "the open kernel modules start with branch %d; branch %d has none"
                % (OPEN_MODULES_MIN_BRANCH, branch_pin)
            )
    if driver_offered is None:
        raise PolicyError("the driver versions the source offers are needed to choose a driver")

    flavour, branch, why_branch = _choose_driver(
        limits, driver_offered, branch_pin, flavour_pin, source
    )
    version, action = _choose_version(
        driver_offered.get(flavour) or [],
        branch,
        flavour,
        installed_version,
        installed_kernel_modules,
        allow_branch_change,
        upgrade,
    )
    arches = [a for a in sorted({g["architecture"] for g in gpus}) if a in models.ARCHITECTURES]
    return {
        "branch": branch,
        "version": version,
        "action": action,
        "kernel_modules": flavour,
        "driver_text": "driver branch %d (%s, %s)" % (branch, version, why_branch),
        "modules_text": "%s kernel modules (%s)"
        % (flavour, "pinned" if flavour_pin else _flavour_reason(flavour, arches)),
    }, notes


def _choose_driver(limits, driver_offered, branch_pin, flavour_pin, source):
    """(flavour, branch, why) from the pins and what the source offers."""
    flavours = [flavour_pin] if flavour_pin else [f for f in FLAVOURS if f in limits.flavours]
    best = {}
    for flavour in flavours:
        offered = driver_offered.get(flavour) or []
        if branch_pin is not None:
            branches = [b for b in {branch_of(v) for v in offered} if b == branch_pin]
        else:
            branches = _branch_choices(offered, limits, flavour)
        if branches:
            best[flavour] = max(branches)
    if not best:
        offered = []
        for flavour in flavours:
            offered.extend(driver_offered.get(flavour) or [])
        flavour_text = " for the %s modules" % flavours[0] if len(flavours) == 1 else ""
        if branch_pin is not None:
            raise PolicyError(
                "driver branch %d is not offered by %s%s; it offers: %s"
                % (branch_pin, source, flavour_text, _offered_text(offered))
            )
        raise PolicyError(
            "none of the driver branches %s offers%s (%s) can drive these GPUs, which allow %s"
            % (source, flavour_text, _offered_text(offered), limits.branch_range())
        )
    if "open" in best and "proprietary" in best and not flavour_pin:
        # Both work: NVIDIA's default is open from R560 on; earlier the proprietary modules.
        if best["open"] >= OPEN_MODULES_DEFAULT_FROM and best["open"] >= best["proprietary"]:
            flavour = "open"
        else:
            flavour = "proprietary"
    else:
        flavour = next(iter(best))
    branch = best[flavour]
    if branch_pin is not None:
        why = "pinned; allowed for these GPUs: %s" % limits.branch_range()
    else:
        why = "the newest %s offers%s" % (
            source,
            " %s" % limits.branch_range() if limits.min_branch or limits.max_branch else "",
        )
        if limits.max_branch:
            why += ", R%d being %s's last" % (limits.max_branch, limits.max_gpu["architecture"])
    return flavour, branch, why


def _choose_version(
    offered,
    branch,
    flavour,
    installed_version,
    installed_kernel_modules,
    allow_branch_change,
    upgrade,
):
    """(package version, action): keep what is installed unless told to move."""
    in_branch = [v for v in offered if branch_of(v) == branch]
    candidate = newest(in_branch)
    if not installed_version:
        return candidate, "install"
    installed_branch = branch_of(installed_version)
    flavour_changes = bool(installed_kernel_modules) and installed_kernel_modules != flavour
    if installed_branch != branch or flavour_changes:
        if not allow_branch_change:
            raise PolicyError(
                "driver %s (%s modules) is installed and held, the policy selects branch %d "
                "(%s modules): set nvidia_driver_allow_branch_change: true to move (the node "
                "reboots when the new module cannot be loaded otherwise), or pin "
                "nvidia_driver_branch: %d to stay"
                % (
                    installed_version,
                    installed_kernel_modules or "unknown",
                    branch,
                    flavour,
                    installed_branch,
                )
            )
        return candidate, "change_branch"
    if upgrade and candidate and compare_versions(candidate, installed_version) > 0:
        return candidate, "upgrade"
    return installed_version, "keep"


def _choose_cuda(limits, branch, pin, offered, defaults, fallback, source, hint):
    notes = []
    if _pinned(pin):
        wanted = cuda_version_of(pin)
        if wanted is None:
            raise PolicyError("cuda_version '%s' is not a CUDA version such as 12.8" % pin)
        _check_cuda(limits, branch, wanted, "cuda_version %s" % wanted)
        why = "pinned"
    else:
        majors = sorted(int(m) for m in defaults)
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
        wanted = cuda_version_of(defaults[str(usable[-1])])
        if limits.cuda_max_major is not None and usable[-1] == limits.cuda_max_major:
            why = "%s stays on %d.x" % (
                limits.cuda_max_gpu["architecture"],
                limits.cuda_max_major,
            )
        else:
            why = "the newest CUDA line driver branch %d runs" % branch
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
            text = "CUDA %s (%s; %s offers it)" % (wanted, why, source)
        elif _pinned(pin) or not fallback:
            raise PolicyError(
                "CUDA %s is not offered by %s; it offers: %s"
                % (wanted, source, ", ".join(versions) or "nothing")
            )
        else:
            usable = [v for v in versions if _cuda_fits(limits, branch, v)]
            if not usable:
                raise PolicyError(
                    "CUDA %s wanted, and none of what %s offers (%s) runs on these GPUs with "
                    "driver branch %d" % (wanted, source, ", ".join(versions) or "nothing", branch)
                )
            install = usable[0]
            fallback_used = True
            text = "CUDA %s wanted (%s); %s offers %s: installing that%s" % (
                wanted,
                why,
                source,
                install,
                " - %s" % hint.replace("{line}", "%d.x" % cuda_key(wanted)[0]) if hint else "",
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


def _cuda_fits(limits, branch, version):
    try:
        _check_cuda(limits, branch, version, "CUDA %s" % version)
    except PolicyError:
        return False
    return True


def _check_cuda(limits, branch, version, what):
    major = cuda_key(version)[0]
    if limits.cuda_max_major is not None and major > limits.cuda_max_major:
        gpu = limits.cuda_max_gpu
        raise PolicyError(
            "%s cannot run on %s: %s; allowed for these GPUs: CUDA %d.x or older"
            % (what, _label(gpu), _rules(gpu)["why_cuda"], limits.cuda_max_major)
        )
    if limits.cuda_min is not None and cuda_key(version) < cuda_key(limits.cuda_min):
        gpu = limits.cuda_min_gpu
        raise PolicyError(
            "%s is too old for %s, which needs CUDA %s or later"
            % (what, _label(gpu), limits.cuda_min)
        )
    need = CUDA_MAJOR_MIN_BRANCH.get(major)
    if need and branch < need:
        raise PolicyError(
            "%s needs driver branch %d or later; the driver branch is %d" % (what, need, branch)
        )
