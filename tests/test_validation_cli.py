"""The validation tool's command end to end on this machine's CPU: every section runs, the four
files are real (JSON, markdown, PNGs matplotlib reads back), exit codes 0 / 1 / 3 mean what the
README says, failures are listed on stderr with their likely cause."""

import fcntl
import json
import os
import types

import matplotlib.image
import pytest
from validation_tool import TINY, run_cli, write_config

SECTIONS = ["gemm", "membw", "allreduce", "ddp", "threebody"]
CHECK_FIELDS = {
    "name",
    "value",
    "unit",
    "expected",
    "comparison",
    "status",
    "reason",
    "likely_cause",
}


@pytest.fixture(scope="session")
def cpu_run(tmp_path_factory):
    """One run for the whole session, shared by the xdist workers (the first runs it under a
    lock, the others read its files)."""
    base = tmp_path_factory.getbasetemp()
    # xdist: every worker's basetemp is a child of this session's own directory
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    root = shared / "validation-cpu-run"
    root.mkdir(exist_ok=True)
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "proc.json").exists():
            config = write_config(root / "config.json", TINY)
            proc = run_cli("--config", config, "--out", root / "out")
            done = {"returncode": proc.returncode, "stderr": proc.stderr}
            (root / "proc.json").write_text(json.dumps(done))
    proc = types.SimpleNamespace(**json.loads((root / "proc.json").read_text()))
    assert (root / "out" / "report.json").exists(), proc.stderr
    report = json.loads((root / "out" / "report.json").read_text())
    return root / "out", proc, report


def checks(report):
    return {c["name"]: c for s in report["sections"].values() for c in s["checks"]}


def test_run_passes_and_shows_progress(cpu_run):
    out, proc, _ = cpu_run
    assert proc.returncode == 0, proc.stderr
    assert "[gemm] cpu fp32 n=64 ... " in proc.stderr
    assert "[allreduce] 65536 bytes ... algbw " in proc.stderr
    assert "[ddp] world size 2: " in proc.stderr
    assert "[done] PASS: " in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "busbw.png",
        "report.json",
        "report.md",
        "scaling.png",
    ]


def test_report_json_has_every_section_and_complete_checks(cpu_run):
    _, _, report = cpu_run
    assert list(report["sections"]) == SECTIONS
    assert report["sections_not_run"] == []
    assert report["facts"]["torch"].startswith("2.")
    assert report["config"]["device"] == "cpu"
    assert report["config"]["gemm"]["n"] == 64
    for name, section in report["sections"].items():
        assert section["checks"], name
        assert section["measurements"], name
        for c in section["checks"]:
            assert set(c) == CHECK_FIELDS
            assert c["status"] in ("pass", "not_applicable"), c
    summary = report["summary"]
    assert summary["exit_code"] == 0
    assert summary["checks"] == summary["pass"] + summary["not_applicable"] == len(checks(report))
    # correctness checks apply on the CPU; speed thresholds do not
    statuses = {name: c["status"] for name, c in checks(report).items()}
    for name in (
        "gemm.cpu.fp32.max_rel_error",
        "gemm.cpu.fp64.max_rel_error",
        "membw.cpu.copy_exact",
        "allreduce.exact",
        "ddp.loss_drop",
        "ddp.weights_match.ws2",
        "threebody.fp64.energy_drift_median",
        "threebody.fp32.energy_drift_max",
    ):
        assert statuses[name] == "pass", name
    for name in (
        "gemm.cpu.fp32.tflops",
        "membw.cpu.bandwidth_gbs",
        "allreduce.busbw_gbs",
        "ddp.speedup.ws2",
    ):
        assert statuses[name] == "not_applicable", name
        assert checks(report)[name]["reason"].startswith("CPU run")


def test_gemm_results_are_checked_against_float64(cpu_run):
    _, _, report = cpu_run
    results = report["sections"]["gemm"]["measurements"]["results"]
    assert [(r["dtype"], r["n"]) for r in results] == [("fp32", 64), ("fp64", 64)]
    errors = {r["dtype"]: r["max_rel_error"] for r in results}
    assert 0 < errors["fp32"] < 1e-5
    assert errors["fp64"] < 1e-13
    assert all(r["tflops"] > 0 for r in results)


def test_allreduce_bandwidth_formulas_and_exact_sums(cpu_run):
    _, _, report = cpu_run
    m = report["sections"]["allreduce"]["measurements"]
    assert (m["world_size"], m["backend"]) == (2, "gloo")
    assert [r["size_bytes"] for r in m["results"]] == [1024, 65536]
    n = m["world_size"]
    for r in m["results"]:
        assert r["mismatched_elements"] == 0
        assert r["algbw_gbs"] == pytest.approx(r["size_bytes"] / r["seconds_per_op_s"] / 1e9)
        assert r["busbw_gbs"] == pytest.approx(r["algbw_gbs"] * 2 * (n - 1) / n)


def test_ddp_loss_falls_and_two_processes_match_one(cpu_run):
    _, _, report = cpu_run
    m = report["sections"]["ddp"]["measurements"]
    runs = {r["world_size"]: r for r in m["runs"]}
    assert sorted(runs) == [1, 2]
    losses = runs[1]["losses_rank0"]
    assert len(losses) == 30
    assert losses[-1] < 0.5 * losses[0]
    assert runs[1]["speedup"] == 1.0
    assert runs[2]["speedup"] == pytest.approx(runs[1]["seconds_s"] / runs[2]["seconds_s"])
    assert runs[2]["efficiency"] == pytest.approx(runs[2]["speedup"] / 2)
    match = checks(report)["ddp.weights_match.ws2"]
    assert match["value"] <= 1e-3 == match["expected"]
    assert runs[2]["max_weight_difference"] < 1e-4


def test_threebody_keeps_configurations_and_conserves_energy(cpu_run):
    _, _, report = cpu_run
    for result in report["sections"]["threebody"]["measurements"]["results"]:
        drift = result["energy_drift"]
        assert drift["configurations"] == 64
        assert drift["kept"] + drift["close_encounters"] + drift["non_finite"] == 64
        assert drift["kept"] >= 16
        assert drift["median"] < (1e-5 if result["dtype"] == "fp64" else 1e-4)
        assert result["devices"][0]["config_steps_per_s"] > 0
        # the seed: fp64 59 s on one V100, fp32 7.04 s on four, for 1M x 50k
        seed_s = {"fp64": 59.0, "fp32": 7.04 * 4}[result["dtype"]]
        expected_s = 64 * 400 * seed_s / (1e6 * 5e4)
        assert result["seed_seconds_for_this_work_s"] == pytest.approx(expected_s)


def test_report_md_starts_with_the_summary_table(cpu_run):
    out, _, report = cpu_run
    text = (out / "report.md").read_text()
    assert text.startswith("# GPU node validation: ")
    assert "**Result: PASS**" in text
    summary = text.split("## Summary\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert summary[0] == "| check | value | expected | status |"
    assert [row.split(" | ")[0][2:] for row in summary[2:]] == list(checks(report))
    positions = [
        text.index("\n## " + title)
        for title in (
            "Summary",
            "GEMM",
            "Memory bandwidth",
            "All-reduce",
            "DDP training",
            "Three-body",
        )
    ]
    assert positions == sorted(positions)
    assert "![DDP speedup](scaling.png)" in text


def test_pngs_are_real_images(cpu_run):
    out, _, _ = cpu_run
    for name in ("scaling.png", "busbw.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        image = matplotlib.image.imread(out / name)
        assert image.shape[0] >= 300 and image.shape[1] >= 400
        assert image[..., :3].std() > 0.01  # something is drawn, not a blank canvas


def test_failures_exit_1_with_likely_cause(tmp_path):
    """expectations.apply_thresholds_on_cpu, the documented test hook: an expectation far above
    what a CPU does fails (exit 1, listed on stderr), one far below passes, one missing is n/a.
    A worker that cannot start (gloo on an interface that does not exist) fails its section,
    and the other sections' results are still reported."""
    config = dict(
        TINY,
        sections=["gemm", "membw", "allreduce"],
        gloo_socket_ifname="nosuchif0",
        worker_timeout_s=60,
        expectations={
            "apply_thresholds_on_cpu": True,
            "gpu_models": {
                "cpu": {"gemm_tflops": {"fp32": 1e6}, "memory_bandwidth_gbs": 1e-6},
            },
        },
    )
    proc = run_cli("--config", write_config(tmp_path / "c.json", config), "--out", tmp_path / "out")
    assert proc.returncode == 1, proc.stderr
    fail_lines = [line for line in proc.stderr.splitlines() if line.startswith("FAIL ")]
    assert len(fail_lines) == 2
    assert fail_lines[0].startswith("FAIL gemm.cpu.fp32.tflops: ")
    assert "expected >= 5e+05 TFLOPS (50% of the 1e+06 TFLOPS fp32 peak of cpu)" in fail_lines[0]
    assert "likely cause: power or clock caps" in fail_lines[0]
    assert fail_lines[1].startswith("FAIL allreduce.completed: ")
    assert "raised RuntimeError" in fail_lines[1] and "nosuchif0" in fail_lines[1]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    found = checks(report)
    assert found["gemm.cpu.fp32.tflops"]["status"] == "fail"
    assert found["membw.cpu.bandwidth_gbs"]["status"] == "pass"
    assert found["gemm.cpu.fp64.tflops"]["status"] == "not_applicable"
    assert "has no gemm_tflops.fp64" in found["gemm.cpu.fp64.tflops"]["reason"]
    assert report["summary"]["failed_checks"] == ["gemm.cpu.fp32.tflops", "allreduce.completed"]
    assert report["sections_not_run"] == ["ddp", "threebody"]
    text = (tmp_path / "out" / "report.md").read_text()
    assert "**Result: FAIL**" in text and "| **FAIL** |" in text
    # the plots of sections that did not run or measured nothing exist and say so
    for name in ("busbw.png", "scaling.png"):
        assert matplotlib.image.imread(tmp_path / "out" / name).shape[0] > 0


def test_cuda_requested_without_gpu_is_an_environment_problem(tmp_path):
    path = write_config(tmp_path / "c.json", dict(TINY, device="cuda"))
    proc = run_cli("--config", path, "--out", tmp_path / "out", env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 3, proc.stderr
    assert (
        'environment problem: the config asks for device "cuda" but torch sees no usable GPU'
        in proc.stderr
    )
    assert "Traceback" not in proc.stderr


def test_missing_torch_is_an_environment_problem(tmp_path):
    fake = tmp_path / "site" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named torch (simulated)')\n")
    path = write_config(tmp_path / "c.json", TINY)
    from validation_tool import VALIDATION

    proc = run_cli(
        "--config",
        path,
        "--out",
        tmp_path / "out",
        env={"PYTHONPATH": "%s:%s" % (tmp_path / "site", VALIDATION)},
    )
    assert proc.returncode == 3, proc.stderr
    assert (
        "environment problem: cannot import torch (No module named torch (simulated))"
        in proc.stderr
    )
    assert "Traceback" not in proc.stderr


def test_crashing_section_fails_its_check_and_a_tool_bug_exits_4(tmp_path, monkeypatch, capsys):
    """In-process: a section that raises becomes a failed `<section>.completed` check (the other
    sections still report); a bug outside the sections exits 4, never 1."""
    from gpu_node_validate import cli, membw, report

    def broken(ctx):
        raise ValueError("simulated bug")

    monkeypatch.setattr(membw, "run", broken)
    path = write_config(tmp_path / "c.json", TINY)
    code = cli.main(["--config", path, "--out", str(tmp_path / "a"), "--sections", "gemm,membw"])
    assert code == 1
    found = json.loads((tmp_path / "a" / "report.json").read_text())
    assert found["summary"]["failed_checks"] == ["membw.completed"]
    assert found["sections"]["membw"]["checks"][0]["reason"] == "ValueError: simulated bug"
    assert "Traceback" in found["sections"]["membw"]["measurements"]["traceback"]
    assert found["sections"]["gemm"]["measurements"]["results"]
    assert "FAIL membw.completed: " in capsys.readouterr().err

    def broken_build(*args):
        raise KeyError("simulated")

    monkeypatch.setattr(report, "build", broken_build)
    code = cli.main(["--config", path, "--out", str(tmp_path / "b"), "--sections", "gemm"])
    assert code == 4
    assert "internal error" in capsys.readouterr().err


def test_reports_of_single_sections_merge_into_one(tmp_path):
    """What the Ansible role does: one run per section, then --merge; the merged report holds
    each part's sections and checks, judged together, and its own files."""
    config = write_config(tmp_path / "config.json", TINY)
    parts = []
    for section in ("gemm", "threebody"):
        proc = run_cli("--config", config, "--sections", section, "--out", tmp_path / section)
        assert proc.returncode == 0, proc.stderr
        assert "[%s]" % section in proc.stderr  # its progress lines
        parts.append(json.loads((tmp_path / section / "report.json").read_text()))
    proc = run_cli("--merge", tmp_path / "gemm", tmp_path / "threebody", "--out", tmp_path / "all")
    assert proc.returncode == 0, proc.stderr
    merged = json.loads((tmp_path / "all" / "report.json").read_text())
    assert list(merged["sections"]) == ["gemm", "threebody"]
    assert merged["sections_not_run"] == ["membw", "allreduce", "ddp"]
    assert checks(merged) == {**checks(parts[0]), **checks(parts[1])}
    assert merged["summary"]["checks"] == sum(p["summary"]["checks"] for p in parts)
    for name in ("report.md", "scaling.png", "busbw.png"):
        assert (tmp_path / "all" / name).stat().st_size > 0


def test_merge_refuses_a_section_twice_and_a_missing_report(tmp_path, cpu_run):
    out, _, _ = cpu_run
    twice = run_cli("--merge", out, out, "--out", tmp_path / "twice")
    assert twice.returncode == 2 and "section gemm is in both" in twice.stderr
    missing = run_cli("--merge", tmp_path / "nothing", "--out", tmp_path / "missing")
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    assert "Traceback" not in twice.stderr + missing.stderr
