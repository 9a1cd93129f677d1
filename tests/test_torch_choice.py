"""The PyTorch choice as a table: which torch line, CUDA build and pip arguments a node gets for
V100 / A100 / H100 / mixed / Pascal / no GPUs and a driver branch, with pins, indexes and a
wheelhouse, and the refusals with their reasons. Also: what pip would do with the requirement
(packaging's own matching), so that a CPU build can never resolve to PyPI's CUDA wheel."""

import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.requirements import Requirement
from packaging.version import Version

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "module_utils"))

from nvidia_gpu.choice_pins import PolicyError
from nvidia_gpu.torch_choice import (
    PYPI_WHEELS,
    PYTORCH_INDEX,
    TORCH_LINES,
    TorchRequest,
    choose_torch,
    cupy_requirement,
)
from test_driver_policy import CUDA_REPO, DEBIAN_12, decide, many, synthetic

T180_G20 = many("1db1", 4)  # 4x V100-SXM2-16GB
HGX_A100 = many("20b0", 8, 0x07)
H100 = many("2330", 8, 0x18)
MIXED = many("1db1", 2) + many("20b2", 2, 0x3B)
PASCAL = many("1c03", 1)


@pytest.mark.parametrize(
    "gpus, branch, line, cuda, because",
    [
        (T180_G20, 535, "2.10", "12.8", "stays on CUDA 12.x"),
        (T180_G20, 580, "2.10", "12.8", "stays on CUDA 12.x"),
        (HGX_A100, 580, "2.14", "13.0", "the newest line PyPI has"),
        (H100, 580, "2.14", "13.0", "the newest line PyPI has"),
        (
            HGX_A100,
            535,
            "2.10",
            "12.8",
            "needs driver branch 580 or later; the driver branch is 535",
        ),
        (MIXED, 580, "2.10", "12.8", "Tesla V100-SXM2-16GB (volta) stays on CUDA 12.x"),
        (PASCAL, 535, "2.7", "12.6", "no kernels for compute capability 6.1"),
    ],
    ids=["v100-535", "v100-580", "a100-580", "h100-580", "a100-535", "mixed", "pascal"],
)
def test_the_newest_line_whose_cuda_build_runs(gpus, branch, line, cuda, because):
    choice = choose_torch(gpus, branch, TorchRequest())
    assert (choice["build"], choice["line"], choice["cuda"]) == ("cuda", line, cuda)
    major, minor = line.split(".")
    assert choice["requirement"] == "torch>=%s,<%s.%d" % (line, major, int(minor) + 1)
    assert choice["pip_args"] == []
    assert because in choice["reason"], choice["reason"]


def test_a_requirement_for_a_line_takes_its_patch_releases_only():
    choice = choose_torch(T180_G20, 535, TorchRequest())
    requirement = Requirement(choice["requirement"])
    assert requirement.specifier.contains("2.10.3")
    assert not requirement.specifier.contains("2.11.0")
    assert not requirement.specifier.contains("2.9.1")


@pytest.mark.parametrize(
    "gpus, branch, version, message",
    [
        (T180_G20, 580, "2.11", "built with CUDA 13.0, and GPU 0000:1a:00.0 Tesla V100-SXM2-16GB"),
        (HGX_A100, 535, "2.12.1", "needs driver branch 580 or later; the driver branch is 535"),
        (PASCAL, 535, "2.9", "no kernels for compute capability 6.1"),
        (T180_G20, 580, "2.15", "not a line this project knows the PyPI build of (2.7 to 2.14)"),
        ([*many("1db1", 1), synthetic("kepler")], 580, "auto", "stays on CUDA 11.x"),
    ],
    ids=["2.11-on-volta", "cuda13-old-driver", "pascal-2.9", "unknown-line", "kepler"],
)
def test_pins_that_cannot_run_are_refused_with_the_reason(gpus, branch, version, message):
    with pytest.raises(PolicyError) as refused:
        choose_torch(gpus, branch, TorchRequest(version=version))
    assert message in str(refused.value)


def test_a_refusal_names_the_line_that_would_run():
    with pytest.raises(PolicyError, match=r"torch 2\.10 runs here"):
        choose_torch(T180_G20, 580, TorchRequest(version="2.12"))


def test_pins_that_run_are_kept_exactly():
    choice = choose_torch(T180_G20, 535, TorchRequest(version="2.9.1"))
    assert choice["requirement"] == "torch==2.9.1"
    assert "pinned" in choice["reason"]


def test_pytorchs_cu126_index_keeps_volta_on_newer_lines():
    request = TorchRequest(index_url=PYTORCH_INDEX + "cu126")
    choice = choose_torch(T180_G20, 535, request)
    assert (choice["line"], choice["cuda"]) == ("2.14", "12.6")
    assert choice["pip_args"] == ["--index-url", PYTORCH_INDEX + "cu126"]
    pinned = choose_torch(T180_G20, 535, TorchRequest(version="2.13", index_url=request.index_url))
    assert pinned["requirement"] == "torch>=2.13,<2.14"


def test_an_index_without_a_build_in_its_url_must_say_its_build():
    with pytest.raises(PolicyError, match="training_stack_torch_index_build"):
        TorchRequest(index_url="https://mirror.example/simple")
    request = TorchRequest(index_url="https://mirror.example/simple", index_build="12.8")
    assert choose_torch(T180_G20, 535, request)["cuda"] == "12.8"
    cuda13 = TorchRequest(index_url="https://mirror.example/simple", index_build="13.0")
    with pytest.raises(PolicyError, match=r"stays on CUDA 12\.x"):
        choose_torch(T180_G20, 580, cuda13)


def test_a_node_without_gpus_gets_the_cpu_index():
    choice = choose_torch([], None, TorchRequest())
    assert choice["build"] == "cpu" and choice["cuda"] is None
    assert choice["pip_args"] == ["--extra-index-url", PYTORCH_INDEX + "cpu"]
    assert "no NVIDIA GPU" in choice["reason"]


def test_the_sandbox_gets_the_wheelhouse_cpu_build_and_says_what_cuda_would_be():
    request = TorchRequest(build="cpu", version="2.13.0", wheelhouse="/opt/wheels")
    choice = choose_torch(T180_G20, 535, request)
    assert choice["requirement"] == "torch==2.13.0+cpu"
    assert choice["pip_args"] == ["--find-links", "/opt/wheels"]
    assert choice["notes"] == [
        "a CUDA build for these GPUs would be torch 2.10.x with CUDA 12.8 from PyPI"
    ]
    # pip's matching: the wheelhouse's CPU wheel satisfies it, PyPI's CUDA build of the same
    # release or a later one does not.
    requirement = Requirement(choice["requirement"])
    assert requirement.specifier.contains(Version("2.13.0+cpu"))
    assert not requirement.specifier.contains(Version("2.13.0"))
    assert not requirement.specifier.contains(Version("2.13.1"))


def test_a_wheelhouse_next_to_pypi_needs_an_exact_release_for_a_cpu_build():
    with pytest.raises(PolicyError, match="pin the release the wheelhouse holds"):
        choose_torch([], None, TorchRequest(version="2.13", wheelhouse="/srv/wheels"))
    alone = TorchRequest(version="2.13", wheelhouse="/srv/wheels", wheelhouse_only=True)
    choice = choose_torch([], None, alone)
    assert choice["pip_args"] == ["--find-links", "/srv/wheels", "--no-index"]


def test_a_cuda_build_needs_gpus_and_a_driver():
    with pytest.raises(PolicyError, match="no NVIDIA GPU"):
        choose_torch([], None, TorchRequest(build="cuda"))
    with pytest.raises(PolicyError, match="needs the NVIDIA driver"):
        choose_torch(T180_G20, None, TorchRequest())


@pytest.mark.parametrize(
    "options, variable",
    [
        ({"version": "latest"}, "training_stack_torch_version 'latest'"),
        ({"version": "2"}, "training_stack_torch_version '2'"),
        ({"build": "rocm"}, "training_stack_torch_build 'rocm'"),
        ({"index_url": "download.pytorch.org/whl/cu126"}, "is not a URL"),
        ({"index_url": PYTORCH_INDEX + "cu126", "index_build": "12"}, "index_build '12'"),
        ({"wheelhouse": "wheels"}, "not an absolute path"),
        ({"wheelhouse_only": True}, "wheelhouse is empty"),
    ],
)
def test_bad_options_are_named_with_what_is_allowed(options, variable):
    with pytest.raises(PolicyError) as refused:
        TorchRequest(**options)
    assert variable in str(refused.value)
    assert "allowed" in str(refused.value) or "set" in str(refused.value)


GPU_SETS = [T180_G20, HGX_A100, H100, MIXED, PASCAL, []]


@given(
    gpus=st.sampled_from(GPU_SETS),
    branch=st.sampled_from([None, 470, 525, 535, 550, 580, 590]),
    version=st.one_of(
        st.just("auto"),
        st.sampled_from([*TORCH_LINES, "2.6", "2.15", "3.0"]),
        st.builds("{}.{}".format, st.sampled_from(TORCH_LINES), st.integers(0, 3)),
        st.text(max_size=6),
    ),
    build=st.sampled_from(["auto", "cuda", "cpu", "gpu"]),
)
def test_generated_requests_choose_a_build_that_runs_or_say_why_not(gpus, branch, version, build):
    try:
        choice = choose_torch(gpus, branch, TorchRequest(version=version, build=build))
    except PolicyError as refused:
        assert str(refused), "a refusal says why"
        return
    Requirement(choice["requirement"])  # pip can read it
    if choice["build"] == "cpu":
        assert not gpus or build == "cpu"
        return
    cuda_major = int(choice["cuda"].split(".")[0])
    assert gpus and branch is not None
    assert branch >= {12: 525, 13: 580}[cuda_major]
    if any(g["architecture"] == "volta" for g in gpus):
        assert cuda_major == 12
    assert PYPI_WHEELS[choice["line"]][0] == choice["cuda"]


@pytest.mark.parametrize(
    "gpus, offered, package",
    [
        (T180_G20, DEBIAN_12, "cupy-cuda12x==13.6.0"),  # Volta stays on 12.x
        (T180_G20, CUDA_REPO, "cupy-cuda12x==13.6.0"),  # even on R580
        (HGX_A100, CUDA_REPO, "cupy-cuda13x==13.6.0"),
        (MIXED, CUDA_REPO, "cupy-cuda12x==13.6.0"),
    ],
    ids=["v100-debian", "v100-cuda-repo", "a100-cuda-repo", "mixed"],
)
def test_cupy_follows_the_cuda_line_the_cuda_choice_makes(gpus, offered, package):
    selection = decide(gpus, offered, cuda={})
    assert cupy_requirement(selection["cuda_version"], "13.6.0") == package


@pytest.mark.parametrize(
    "line, version, message",
    [
        ("10.2", "13.6.0", "CuPy has no wheels for CUDA 10.2; it has them for CUDA 11.x, 12.x"),
        ("", "13.6.0", "the node's CUDA line '' is not a CUDA version"),
        ("12.8", "latest", "simulation_stack_cupy_version 'latest' is not a CuPy release"),
    ],
)
def test_cupy_without_wheels_or_a_bad_version_is_refused(line, version, message):
    with pytest.raises(PolicyError) as refused:
        cupy_requirement(line, version)
    assert message in str(refused.value)


def test_the_filter_tells_waiting_for_the_driver_from_a_refusal():
    """filter_plugins/torch_choice.py: check mode on a fresh GPU node ends the role (no driver
    branch yet); a pin that cannot run is a refusal the role fails on."""
    import importlib.util

    plugin = Path(__file__).resolve().parent.parent / "filter_plugins" / "torch_choice.py"
    spec = importlib.util.spec_from_file_location("torch_filter", plugin)
    torch_filter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(torch_filter)
    waiting = torch_filter.torch_choice(T180_G20, None)
    assert waiting == {
        "refused": "a CUDA build of PyTorch needs the NVIDIA driver, and none is chosen",
        "waits_for_driver": True,
    }
    refused = torch_filter.torch_choice(T180_G20, "580", version="2.11")
    assert "stays on CUDA 12.x" in refused["refused"] and "waits_for_driver" not in refused
    assert torch_filter.torch_choice(T180_G20, 535)["line"] == "2.10"  # the local fact's int
    cpu = torch_filter.torch_choice(T180_G20, None, index_url=PYTORCH_INDEX + "cpu")
    assert cpu["build"] == "cpu"  # a CPU index needs no driver
