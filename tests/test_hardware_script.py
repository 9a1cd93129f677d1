"""The read-only hardware check, run against the simulator so it keeps working between the rare
sessions that have a real GPU."""

import json
import subprocess
import sys

from conftest import PROJECT

SCRIPT = PROJECT / "tests" / "hardware" / "readonly_check.py"


def test_readonly_check_plans_but_changes_nothing(machine, tmp_path):
    before = machine.state()
    report_file = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--expected-count", "4", "--json", str(report_file)],
        env=machine.env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "GPU settings untouched after the check-mode runs: True" in proc.stdout
    report = json.loads(report_file.read_text())
    seed = next(plan for title, plan in report["plans"].items() if title.startswith("seed"))
    assert seed["result"]["gpus"][0]["changed"] == [
        "persistence_mode",
        "power_limit_w",
        "locked_graphics_clocks",
    ]
    assert machine.state() == before


def test_readonly_check_reports_a_lost_gpu(machine):
    machine.cli("fault", 1, "lost")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT)], env=machine.env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "GPU 1 LOST" in proc.stdout and "[critical] gpu_lost" in proc.stdout
