"""The driver and CUDA choices as a table: which branch, kernel modules, CUDA and fabric manager a
node gets for V100 / A100 / H100 / mixed GPUs from what a source offers, with and without pins,
and the refusals with their reasons."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "module_utils"))

from nvidia_gpu import models
from nvidia_gpu.apt_query import DriverOffer
from nvidia_gpu.choice_pins import PolicyError
from nvidia_gpu.cuda_choice import CudaRequest, choose_cuda
from nvidia_gpu.driver_choice import DriverRequest, choose_driver


def gpu(device_id, bus="0000:1a:00.0"):
    """A GPU as pci.discover() reports one the project table knows."""
    known = models.lookup(device_id)
    return {
        "pci_bus_id": bus,
        "device_id": device_id,
        "pci_device_id": "10de:" + device_id,
        "model": known["name"],
        "architecture": known["architecture"],
        "compute_capability": known["compute_capability"],
        "min_branch": known.get("min_branch"),
    }


def synthetic(arch, bus="0000:c1:00.0", model=None):
    """A GPU of an architecture our table has no model for (Kepler, Blackwell) or none at all."""
    return {
        "pci_bus_id": bus,
        "device_id": "ffff",
        "pci_device_id": "10de:ffff",
        "model": model or "Some %s GPU" % arch,
        "architecture": arch,
    }


def many(device_id, count, first_bus=0x1A):
    return [gpu(device_id, "0000:%02x:00.0" % (first_bus + i)) for i in range(count)]


def decide(gpus, offered, cuda=None, installed=("", ""), **driver):
    """choose_driver with a DriverRequest of the keyword arguments, then, with cuda (CudaRequest
    fields and 'offered'), choose_cuda for that driver."""
    selection = choose_driver(gpus, DriverRequest(**driver), DriverOffer(offered, *installed))
    if cuda is None:
        return selection
    cuda = dict(cuda)
    cuda_offered = cuda.pop("offered", None)
    return choose_cuda(gpus, selection, CudaRequest(**cuda), cuda_offered)


T180_G20 = many("1db1", 4)  # 4x V100-SXM2-16GB
HGX_A100 = many("20b0", 8, 0x07)  # 8x A100-SXM4-40GB (+ 6 NVSwitches)
H100_PCIE = [gpu("2331", "0000:17:00.0")]
MIXED = [*many("1db1", 2), gpu("20f1", "0000:86:00.0"), gpu("20f1", "0000:af:00.0")]

# What the sources offer (package versions per kernel module flavour).
DEBIAN_12 = {
    "proprietary": ["535.309.01-0+deb12u1", "535.261.03-1"],
    "open": ["535.261.03-1"],
}
CUDA_REPO = {
    flavour: [
        "590.44.01-0ubuntu1",
        "580.95.05-0ubuntu1",
        "580.82.07-0ubuntu1",
        "575.57.08-0ubuntu1",
        "570.195.03-0ubuntu1",
    ]
    for flavour in ("proprietary", "open")
}
CUDA_REPO_TOOLKITS = [
    "cuda-toolkit-12-6",
    "cuda-toolkit-12-8",
    "cuda-toolkit-12-9",
    "cuda-toolkit-13-0",
]
DEBIAN_12_TOOLKIT = ["11.8.89~11.8.0-5~deb12u1"]


# id, GPUs, NVSwitches, offered, pins -> (branch, version, flavour, CUDA wanted, fabric manager)
def case(name, gpus, nvswitches, offered, pins, expected):
    return pytest.param(gpus, nvswitches, offered, pins, expected, id=name)


CHOICES = [
    case(
        "v100-cuda-repo",
        T180_G20,
        0,
        CUDA_REPO,
        {},
        (580, "580.95.05-0ubuntu1", "proprietary", "12.8", False),
    ),
    case(
        "v100-debian",
        T180_G20,
        0,
        DEBIAN_12,
        {},
        (535, "535.309.01-0+deb12u1", "proprietary", "12.8", False),
    ),
    case(
        "v100-pin-580",
        T180_G20,
        0,
        CUDA_REPO,
        {"branch": "580"},
        (580, "580.95.05-0ubuntu1", "proprietary", "12.8", False),
    ),
    case(
        "v100-pin-575",
        T180_G20,
        0,
        CUDA_REPO,
        {"branch": 575},
        (575, "575.57.08-0ubuntu1", "proprietary", "12.8", False),
    ),
    case(
        "v100-pin-cuda-12.4",
        T180_G20,
        0,
        CUDA_REPO,
        {"cuda": {"version": "12.4"}},
        (580, "580.95.05-0ubuntu1", "proprietary", "12.4", False),
    ),
    case(
        "v100-pin-proprietary",
        T180_G20,
        0,
        CUDA_REPO,
        {"kernel_modules": "proprietary"},
        (580, "580.95.05-0ubuntu1", "proprietary", "12.8", False),
    ),
    case(
        "a100-hgx-cuda-repo",
        HGX_A100,
        6,
        CUDA_REPO,
        {},
        (590, "590.44.01-0ubuntu1", "open", "13.0", True),
    ),
    case(
        "a100-hgx-pin-proprietary",
        HGX_A100,
        6,
        CUDA_REPO,
        {"kernel_modules": "proprietary"},
        (590, "590.44.01-0ubuntu1", "proprietary", "13.0", True),
    ),
    case(
        "a100-debian",
        HGX_A100,
        6,
        DEBIAN_12,
        {},
        (535, "535.309.01-0+deb12u1", "proprietary", "12.8", True),
    ),
    case(
        "a100-debian-pin-open",
        HGX_A100,
        6,
        DEBIAN_12,
        {"kernel_modules": "open"},
        (535, "535.261.03-1", "open", "12.8", True),
    ),
    case(
        "h100-cuda-repo",
        H100_PCIE,
        0,
        CUDA_REPO,
        {},
        (590, "590.44.01-0ubuntu1", "open", "13.0", False),
    ),
    case(
        "h100-pin-570",
        H100_PCIE,
        0,
        CUDA_REPO,
        {"branch": "570"},
        (570, "570.195.03-0ubuntu1", "open", "12.8", False),
    ),
    case(
        "h100-pin-580-cuda-12.9",
        H100_PCIE,
        0,
        CUDA_REPO,
        {"branch": "580", "cuda": {"version": "12.9"}},
        (580, "580.95.05-0ubuntu1", "open", "12.9", False),
    ),
    case(
        "mixed-cuda-repo",
        MIXED,
        0,
        CUDA_REPO,
        {},
        (580, "580.95.05-0ubuntu1", "proprietary", "12.8", False),
    ),
    case(
        "mixed-debian",
        MIXED,
        0,
        DEBIAN_12,
        {},
        (535, "535.309.01-0+deb12u1", "proprietary", "12.8", False),
    ),
    case(
        "mixed-pin-570",
        MIXED,
        0,
        CUDA_REPO,
        {"branch": "570"},
        (570, "570.195.03-0ubuntu1", "proprietary", "12.8", False),
    ),
]


@pytest.mark.parametrize(("gpus", "nvswitches", "offered", "pins", "expected"), CHOICES)
def test_choice(gpus, nvswitches, offered, pins, expected):
    branch, version, flavour, cuda, fm = expected
    chosen = decide(gpus, offered, nvswitch_count=nvswitches, **pins)
    assert chosen["branch"] == branch
    assert chosen["version"] == version
    assert chosen["upstream_version"] == version.split("-")[0]
    assert chosen["kernel_modules"] == flavour
    assert chosen["cuda_version"] == cuda
    assert chosen["fabric_manager"] is fm
    assert chosen["action"] == "install"
    assert chosen["cuda_install"] is None  # no CUDA source asked: nothing claimed
    assert "\n" not in chosen["reason"]
    assert "driver branch %d (%s" % (branch, version) in chosen["reason"]
    assert "%s kernel modules" % flavour in chosen["reason"]
    assert ("fabric manager for %d NVSwitch" % nvswitches if fm else "no fabric manager") in (
        chosen["reason"]
    )


def test_t180_g20_line_on_the_sandbox_source():
    driver = decide(T180_G20, DEBIAN_12, source="Debian 12 non-free")
    assert driver["reason"] == (
        "4x Tesla V100-SXM2-16GB (volta): driver branch 535 (535.309.01-0+deb12u1, the newest "
        "Debian 12 non-free offers up to 580, R580 being volta's last), proprietary kernel "
        "modules (volta has no GSP for the open ones), CUDA 12.8 wanted (volta stays on 12.x), "
        "no fabric manager (no NVSwitch)"
    )
    node = choose_cuda(
        T180_G20,
        driver,
        CudaRequest(
            source="Debian 12 (nvidia-cuda-toolkit)", hint="set cuda_source: nvidia for {line}"
        ),
        DEBIAN_12_TOOLKIT,
    )
    assert (node["branch"], node["kernel_modules"]) == (535, "proprietary")
    assert (node["cuda_version"], node["cuda_install"], node["cuda_fallback"]) == (
        "12.8",
        "11.8",
        True,
    )
    assert node["reason"] == (
        driver["reason"].replace(
            "CUDA 12.8 wanted (volta stays on 12.x)",
            "CUDA 12.8 wanted (volta stays on 12.x); Debian 12 (nvidia-cuda-toolkit) offers "
            "11.8: installing that - set cuda_source: nvidia for 12.x",
        )
    )


def test_cuda_from_the_cuda_repository_is_the_wanted_one():
    driver = decide(T180_G20, CUDA_REPO)
    node = choose_cuda(T180_G20, driver, CudaRequest(), CUDA_REPO_TOOLKITS)
    assert (node["cuda_version"], node["cuda_install"], node["cuda_fallback"]) == (
        "12.8",
        "12.8",
        False,
    )
    assert node["notes"] == []


def test_cuda_pin_on_an_old_driver_says_minor_version_compatibility():
    driver = decide(T180_G20, DEBIAN_12)
    node = choose_cuda(T180_G20, driver, CudaRequest(version="12.8"), CUDA_REPO_TOOLKITS)
    assert node["cuda_install"] == "12.8"
    assert "minor version compatibility" in node["reason"]


# id, GPUs, offered, keyword arguments -> words the refusal must contain
def refusal(name, gpus, offered, kwargs, words):
    return pytest.param(gpus, offered, kwargs, words, id=name)


REFUSALS = [
    refusal(
        "v100-pin-590",
        T180_G20,
        CUDA_REPO,
        {"branch": "590"},
        [
            "driver branch 590 cannot drive",
            "Tesla V100-SXM2-16GB (volta)",
            "up to branch 580",
            "allowed for them: up to 580",
        ],
    ),
    refusal(
        "v100-pin-open",
        T180_G20,
        CUDA_REPO,
        {"kernel_modules": "open"},
        [
            "open kernel modules cannot drive",
            "Tesla V100-SXM2-16GB (volta)",
            "GSP",
            "allowed for these GPUs: proprietary",
        ],
    ),
    refusal(
        "v100-cuda-13",
        T180_G20,
        CUDA_REPO,
        {"cuda": {"version": "13.0"}},
        [
            "cuda_version 13.0 cannot run on",
            "Tesla V100-SXM2-16GB (volta)",
            "CUDA 13 dropped",
            "CUDA 12.x or older",
        ],
    ),
    refusal(
        "mixed-pin-open",
        MIXED,
        CUDA_REPO,
        {"kernel_modules": "open"},
        ["open kernel modules cannot drive", "Tesla V100-SXM2-16GB (volta)"],
    ),
    refusal(
        "mixed-pin-590",
        MIXED,
        CUDA_REPO,
        {"branch": "590"},
        ["driver branch 590 cannot drive", "Tesla V100-SXM2-16GB (volta)", "580"],
    ),
    refusal(
        "mixed-cuda-13",
        MIXED,
        CUDA_REPO,
        {"cuda": {"version": "13.0"}},
        ["Tesla V100-SXM2-16GB (volta)", "CUDA 12.x or older"],
    ),
    refusal(
        "h100-pin-470",
        H100_PCIE,
        CUDA_REPO,
        {"branch": "470"},
        [
            "driver branch 470 cannot drive",
            "NVIDIA H100 PCIe (hopper)",
            "needs branch 525 or later",
            "from 525",
        ],
    ),
    refusal(
        "h100-cuda-11.7",
        H100_PCIE,
        CUDA_REPO,
        {"cuda": {"version": "11.7"}},
        ["too old", "NVIDIA H100 PCIe (hopper)", "CUDA 11.8 or later"],
    ),
    refusal(
        "a100-debian-cuda-13",
        HGX_A100,
        DEBIAN_12,
        {"cuda": {"version": "13.0"}},
        ["needs driver branch 580 or later", "is 535"],
    ),
    refusal(
        "v100-debian-pin-580",
        T180_G20,
        DEBIAN_12,
        {"branch": "580"},
        ["driver branch 580 is not offered by Debian 12 non-free", "offers: 535"],
    ),
    refusal(
        "h100-debian-open-too-old",
        H100_PCIE,
        {"proprietary": [], "open": ["510.108.03-1"]},
        {},
        ["none of the driver branches", "can drive these GPUs", "from 525"],
    ),
    refusal(
        "volta-and-blackwell",
        [*T180_G20, synthetic("blackwell")],
        CUDA_REPO,
        {},
        ["no kernel module flavour drives all these GPUs", "volta", "blackwell", "open ones"],
    ),
    refusal(
        "kepler-and-hopper",
        [synthetic("kepler"), *H100_PCIE],
        CUDA_REPO,
        {},
        [
            "no driver branch drives all these GPUs",
            "kepler",
            "up to branch 470",
            "needs branch 525",
        ],
    ),
    refusal(
        "no-gpu",
        [],
        CUDA_REPO,
        {},
        ["no NVIDIA GPU found on PCI", "pin nvidia_driver_branch"],
    ),
    refusal(
        "unknown-gpu",
        [synthetic("unknown", model="NVIDIA device 2fff")],
        CUDA_REPO,
        {},
        ["unknown architecture", "NVIDIA device 2fff", "models.py"],
    ),
    refusal(
        "installed-535-selected-580",
        T180_G20,
        CUDA_REPO,
        {"installed": ("535.261.03-1", "proprietary")},
        [
            "driver 535.261.03-1 (proprietary modules) is installed",
            "selects branch 580",
            "nvidia_driver_allow_branch_change: true",
            "nvidia_driver_branch: 535",
        ],
    ),
    refusal(
        "bad-branch-pin",
        T180_G20,
        CUDA_REPO,
        {"branch": "latest"},
        ["'latest' is not a branch number"],
    ),
]


@pytest.mark.parametrize(("gpus", "offered", "kwargs", "words"), REFUSALS)
def test_refusal(gpus, offered, kwargs, words):
    with pytest.raises(PolicyError) as refusal:
        decide(gpus, offered, source=kwargs.pop("source", "Debian 12 non-free"), **kwargs)
    for word in words:
        assert word in str(refusal.value), str(refusal.value)


def test_cuda_pin_the_source_lacks_is_refused():
    driver = decide(T180_G20, DEBIAN_12)
    with pytest.raises(PolicyError, match=r"CUDA 12.4 is not offered by Debian 12"):
        choose_cuda(
            T180_G20,
            driver,
            CudaRequest(version="12.4", source="Debian 12 (nvidia-cuda-toolkit)"),
            DEBIAN_12_TOOLKIT,
        )


def test_cuda_fallback_can_be_refused():
    driver = decide(T180_G20, DEBIAN_12)
    with pytest.raises(PolicyError, match=r"CUDA 12.8 is not offered .* offers: 11.8"):
        choose_cuda(T180_G20, driver, CudaRequest(fallback=False), DEBIAN_12_TOOLKIT)


def test_cuda_defaults_decide_the_version_of_a_line():
    driver = decide(T180_G20, CUDA_REPO)
    node = choose_cuda(
        T180_G20, driver, CudaRequest(defaults={"12": "12.6", "13": "13.0"}), CUDA_REPO_TOOLKITS
    )
    assert (node["cuda_version"], node["cuda_install"]) == ("12.6", "12.6")


def test_no_gpu_with_pins_installs_the_pinned_driver():
    chosen = decide([], CUDA_REPO, branch="580", kernel_modules="open")
    assert (chosen["branch"], chosen["kernel_modules"]) == (580, "open")
    assert "no GPU on PCI" in chosen["reason"]


def test_the_open_modules_start_with_r515():
    with pytest.raises(PolicyError, match="open kernel modules start with branch 515"):
        decide([], {"open": ["470.256.02-1"]}, branch="470", kernel_modules="open")


# ---- an installed driver: kept, upgraded, or moved only when allowed ----


def test_installed_driver_is_kept_even_when_a_newer_one_is_offered():
    chosen = decide(T180_G20, CUDA_REPO, installed=("580.82.07-0ubuntu1", "proprietary"))
    assert (chosen["version"], chosen["action"]) == ("580.82.07-0ubuntu1", "keep")


def test_upgrade_moves_within_the_branch():
    chosen = decide(T180_G20, CUDA_REPO, installed=("580.82.07-0ubuntu1", ""), upgrade=True)
    assert (chosen["version"], chosen["action"]) == ("580.95.05-0ubuntu1", "upgrade")


def test_branch_change_when_allowed():
    chosen = decide(
        T180_G20,
        CUDA_REPO,
        installed=("535.261.03-1", "proprietary"),
        allow_branch_change=True,
    )
    assert (chosen["branch"], chosen["action"]) == (580, "change_branch")


def test_flavour_change_needs_the_same_permission():
    with pytest.raises(PolicyError, match="allow_branch_change"):
        decide(
            HGX_A100,
            CUDA_REPO,
            nvswitch_count=6,
            installed=("590.44.01-0ubuntu1", "proprietary"),
        )


# ---- the CUDA choice reuses the driver choice as it was recorded ----


def test_the_fabric_manager_comes_from_the_driver_choice():
    driver = decide(HGX_A100, CUDA_REPO, nvswitch_count=6)
    node = choose_cuda(HGX_A100, driver, CudaRequest(), CUDA_REPO_TOOLKITS)
    assert node["fabric_manager"] is True
    assert node["parts"]["fabric_manager"] == "fabric manager for 6 NVSwitch(es)"
    assert node["reason"].endswith("fabric manager for 6 NVSwitch(es)")


@pytest.mark.parametrize("missing", ["branch", "kernel_modules", "fabric_manager", "parts"])
def test_a_driver_choice_without_its_keys_is_refused(missing):
    driver = decide(T180_G20, CUDA_REPO)
    del driver[missing]
    with pytest.raises(PolicyError, match="driver_selection is not a result of nvidia_driver"):
        choose_cuda(T180_G20, driver, CudaRequest(), CUDA_REPO_TOOLKITS)
