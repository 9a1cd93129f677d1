"""The validation tool's computations and judgements, in-process: GEMM correctness that catches a
wrong product, all-reduce data whose sums are exact, a symplectic three-body integrator, DDP
weights that tell an averaged gradient from a half-batch one, and the pass/fail/n/a rules."""

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from validation_tool import context  # first: puts validation/ on sys.path

# isort: split
from gpu_node_validate import allreduce, checks, ddp, gemm, threebody
from gpu_node_validate.distributed import free_port
from gpu_node_validate.threebody_sim import (
    FIGURE_EIGHT_PERIOD,
    ThreeBody,
    drift_summary,
    figure_eight,
    random_configurations,
)

# One DDP rank in a fresh interpreter: argv is the validation/ directory and the worker's spec.
WORKER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from gpu_node_validate import ddp, distributed
distributed._entry(0, ddp.worker, json.loads(sys.argv[2]))
"""
VALIDATION_DIR = str(Path(__file__).resolve().parent.parent / "validation")


# GEMM -------------------------------------------------------------------------------------------
def test_gemm_check_passes_a_right_product_and_fails_a_wrong_one():
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(96, 96, generator=generator, dtype=torch.float64) * 2 - 1
    b = torch.rand(96, 96, generator=generator, dtype=torch.float64) * 2 - 1
    rows = gemm.check_rows(96)
    right = a @ b
    error = gemm.relative_error(torch, right, a, b, rows)
    assert error < 1e-14
    assert gemm.correctness_check("x", error, "fp64")["status"] == "pass"
    flipped = right.clone()
    flipped[17, 3] += 0.01  # one element off, as a flipped low-order bit in a big product
    error = gemm.relative_error(torch, flipped, a, b, rows)
    wrong = gemm.correctness_check("gemm.cpu.fp64.max_rel_error", error, "fp64")
    assert wrong["status"] == "fail" and 1e-4 < error < 1e-2
    assert wrong["likely_cause"].startswith("the GPU computes wrong results")
    transposed = gemm.relative_error(torch, a @ b.T, a, b, rows)
    assert gemm.correctness_check("x", transposed, "fp32")["status"] == "fail"
    nan = right.clone()
    nan[0, 0] = float("nan")
    assert gemm.relative_error(torch, nan, a, b, rows) == float("inf")


def test_gemm_sampled_rows_cover_a_big_product():
    rows = gemm.check_rows(8192)
    assert len(rows) == 64 and rows[0] == 0 and rows[-1] == 8191 and rows == sorted(set(rows))


def test_gemm_measure_on_cpu(tmp_path):
    ctx = context(tmp_path)
    seconds, calls, error = gemm.measure(
        ctx, 0, "fp32", 48, dict(warmup=1, iterations=2, max_time_s=5.0)
    )
    assert seconds > 0 and calls == 2 and error < gemm.TOLERANCE["fp32"]


# All-reduce -------------------------------------------------------------------------------------
@pytest.mark.parametrize("world_size", [2, 3, 4, 8, 64, 4096])
def test_allreduce_pattern_sums_are_exact_in_fp32(world_size):
    count = 3000
    total = torch.zeros(count, dtype=torch.float32)
    for rank in range(world_size):
        total += allreduce.rank_pattern(torch, count, rank, world_size, "cpu")
    expected = allreduce.expected_sum(torch, count, world_size, "cpu")
    assert torch.equal(total, expected)
    assert float(expected.max()) <= 2**24
    # a corrupted contribution shows
    total[5] += 1
    assert int((total != expected).sum()) == 1


def test_allreduce_bandwidth_formula():
    assert allreduce.bandwidths_gbs(1e9, 1.0, 4) == (1.0, 1.5)
    assert allreduce.bandwidths_gbs(2e9, 0.5, 2) == (4.0, 4.0)
    algbw, busbw = allreduce.bandwidths_gbs(256 << 20, 2.4e-3, 8)
    assert busbw == pytest.approx(algbw * 14 / 8)


def _fake_ctx(expectation, cpu=False, hook=False):
    config = {
        "device": "cpu" if cpu else "cuda",
        "expectations": {
            "allreduce_busbw_gbs": expectation,
            "gpu_models": {},
            "apply_thresholds_on_cpu": hook,
        },
    }
    return types.SimpleNamespace(config=config, expectations=checks.Expectations(config))


def test_allreduce_busbw_judged_with_the_topology_cause():
    nvlink = {"expected": 120.0, "min_fraction": 0.8, "topology": "NV2 between every pair"}
    low = allreduce.judge_busbw(_fake_ctx(nvlink), 40.0)
    assert (low["status"], low["expected"]) == ("fail", 96.0)
    assert "a link down or an SXM2 module not seated" in low["likely_cause"]
    assert "nvidia-smi nvlink -s" in low["likely_cause"]
    assert allreduce.judge_busbw(_fake_ctx(nvlink), 110.0)["status"] == "pass"
    pcie = dict(nvlink, expected=11.0, topology="PCIe Gen3 x16")
    assert "PCIe link trained below" in allreduce.judge_busbw(_fake_ctx(pcie), 2.0)["likely_cause"]
    unset = allreduce.judge_busbw(_fake_ctx(None), 40.0)
    assert unset["status"] == "not_applicable" and "not set" in unset["reason"]
    assert allreduce.judge_busbw(_fake_ctx(nvlink, cpu=True), 1.0)["status"] == "not_applicable"
    assert allreduce.judge_busbw(_fake_ctx(nvlink, cpu=True, hook=True), 1.0)["status"] == "fail"


# Judging ----------------------------------------------------------------------------------------
def test_judge_pass_fail_and_missing_value():
    ok = checks.judge("a", 100.0, "TFLOPS", ">=", 87.5, "70% of 125", "gemm_slow")
    assert (ok["status"], ok["likely_cause"]) == ("pass", None)
    slow = checks.judge("a", 50.0, "TFLOPS", ">=", 87.5, "70% of 125", "gemm_slow")
    assert slow["status"] == "fail" and slow["likely_cause"].startswith("power or clock caps")
    assert checks.judge("a", 2e-3, "", "<=", 1e-3, "", "energy_drift")["status"] == "fail"
    assert checks.judge("a", None, "", ">=", 1.0, "", "x")["status"] == "fail"
    with pytest.raises(ValueError):
        checks.judge("a", 1, "", "==", 1, "", "x")


def test_expectations_match_model_names_and_say_why_not():
    config = {
        "device": "cuda",
        "expectations": {
            "apply_thresholds_on_cpu": False,
            "gpu_models": {
                "Tesla V100-SXM2-16GB": {
                    "gemm_tflops": {"fp16": 125.0},
                    "memory_bandwidth_gbs": 900.0,
                },
                "NVIDIA H100 80GB HBM3": {"gemm_tflops": {"fp16": 989.0}},
            },
        },
    }
    found = checks.Expectations(config)
    assert found.peak("Tesla V100-SXM2-16GB", "gemm_tflops", "fp16") == (125.0, None)
    assert found.peak("nvidia tesla v100-sxm2-16gb", "memory_bandwidth_gbs") == (900.0, None)
    assert found.peak("H100 80GB HBM3", "gemm_tflops", "fp16") == (989.0, None)
    value, reason = found.peak("Tesla V100-SXM2-16GB", "gemm_tflops", "bf16")
    assert value is None and "has no gemm_tflops.bf16" in reason
    value, reason = found.peak("NVIDIA A100-SXM4-40GB", "gemm_tflops", "fp16")
    assert value is None and "no expectations for GPU model 'NVIDIA A100-SXM4-40GB'" in reason
    assert "known: NVIDIA H100 80GB HBM3, Tesla V100-SXM2-16GB" in reason
    cpu = checks.Expectations(dict(config, device="cpu"))
    assert cpu.peak("Tesla V100-SXM2-16GB", "gemm_tflops", "fp16")[1].startswith("CPU run")


# Three-body -------------------------------------------------------------------------------------
def _figure_eight_error(dt):
    system = ThreeBody(torch, [1.0, 1.0, 1.0], torch.float64, "cpu")
    x, v = figure_eight(torch, torch.float64, "cpu")
    start_x, start_e = x.clone(), system.energy(x, v)
    steps = round(FIGURE_EIGHT_PERIOD / dt)
    system.integrate(x, v, FIGURE_EIGHT_PERIOD / steps, steps)
    drift = float(((system.energy(x, v) - start_e) / start_e).abs())
    return float((x - start_x).abs().max()), drift


def test_figure_eight_returns_to_its_start_with_second_order_accuracy():
    coarse, coarse_drift = _figure_eight_error(4e-3)
    fine, fine_drift = _figure_eight_error(2e-3)
    assert fine < 1e-5 < coarse < 1e-4
    assert 3.5 < coarse / fine < 4.5  # halving dt quarters the error: a second-order scheme
    assert coarse_drift < 1e-9 and fine_drift < coarse_drift


def test_random_bound_configurations_conserve_energy():
    system = ThreeBody(torch, [1.0, 2.0, 0.5], torch.float64, "cpu")
    x, v = random_configurations(torch, 128, [1.0, 2.0, 0.5], 3, torch.float64, "cpu")
    start = system.energy(x, v)
    assert bool((start < 0).all())  # bound: E = U / 2
    momentum = (torch.tensor([1.0, 2.0, 0.5])[None, :, None] * v).sum(dim=1)
    assert float(momentum.abs().max()) < 1e-12
    min_distance = system.integrate(x, v, 1e-3, 500)
    summary = drift_summary(torch, start, system.energy(x, v), min_distance, 0.1)
    assert summary["kept"] + summary["close_encounters"] == 128 and summary["kept"] >= 32
    assert summary["median"] < 1e-5 and summary["max"] < 1e-2


def test_broken_forces_fail_the_energy_check(tmp_path, monkeypatch):
    """A section run with repulsive instead of attractive gravity (a sign error, as corrupted
    arithmetic would give): the drift checks must fail."""
    ctx = context(tmp_path, {"threebody": {"configurations": 32, "steps": 200, "dtypes": ["fp64"]}})
    healthy = threebody.run(ctx)
    assert {c["status"] for c in healthy["checks"] if "drift" in c["name"]} == {"pass"}
    real = ThreeBody.accelerations

    def repulsive(self, x):
        a, r2 = real(self, x)
        return -a, r2

    monkeypatch.setattr(ThreeBody, "accelerations", repulsive)
    broken = threebody.run(ctx)
    drift = {c["name"]: c for c in broken["checks"] if "drift" in c["name"]}
    assert drift["threebody.fp64.energy_drift_median"]["status"] == "fail"
    assert "numerics" in drift["threebody.fp64.energy_drift_median"]["likely_cause"]


# DDP --------------------------------------------------------------------------------------------
def test_loss_drop():
    assert ddp.loss_drop([4.0, 4.0, 4.0, 3.0, 1.0, 1.0, 1.0, 1.0]) == pytest.approx(0.75)
    assert ddp.loss_drop([2.0, 2.1]) == pytest.approx(-0.05)


def test_weight_check_tells_the_global_batch_from_half_of_it(tmp_path):
    """World size 1 with batch B against world size 1 with batch B/2 (what a rank computes when
    its gradient is not averaged with the other's): the relative difference is far above the
    tolerance that rounding stays under. The worker runs in a child process, in a real
    one-process gloo group, as each rank runs it (in-process, DDP would import torch._dynamo,
    which fails where ansible, imported by other tests of the same pytest worker, has patched
    sys.intern)."""
    ctx = context(tmp_path)
    tolerance = ctx.config["expectations"]["ddp"]["weight_match_rel_tol"]
    moved = {}
    for batch in (8, 4):
        directory = tmp_path / ("b%d" % batch)
        directory.mkdir()
        spec = dict(
            ctx.config["ddp"],
            global_batch=batch,
            seed=ctx.config["seed"],
            weights_dir=str(directory),
            world_size=1,
            device_type="cpu",
            gloo_socket_ifname="lo",
            port=free_port(),
            result_dir=str(directory),
            timeout_s=60,
        )
        worker = subprocess.run(
            [sys.executable, "-c", WORKER, VALIDATION_DIR, json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert worker.returncode == 0, worker.stderr[-3000:]
        moved[batch] = json.loads((directory / "rank0.json").read_text())["moved"]
    difference = ddp.max_weight_difference(
        torch, tmp_path / "b8" / "weights-ws1.pt", tmp_path / "b4" / "weights-ws1.pt"
    )
    assert difference / moved[8] > 30 * tolerance
