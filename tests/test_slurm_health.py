"""module_utils/nvidia_gpu/slurm_health: slurmd's health check program drains a node on a critical
finding with the finding as the reason, resumes only its own drains, and never touches a drain
that people set. main() runs against fake sinfo/scontrol commands that record their calls."""

import json
import os
import sys
from pathlib import Path

import pytest
from fake_slurm import FakeSlurm
from hypothesis import given
from hypothesis import strategies as st

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT / "module_utils"))

from nvidia_gpu import slurm_health  # noqa: E402

LOST = {"severity": "critical", "message": "GPU 2 (GPU-2a) has fallen off the bus (Xid 79)"}
WARM = {"severity": "warning", "message": "GPU 1 at 84 C"}


def test_a_critical_finding_drains_with_it_as_the_reason():
    action, reason = slurm_health.decide([LOST], "idle", "")
    assert action == "drain"
    assert reason == "gpu-health: GPU 2 (GPU-2a) has fallen off the bus (Xid 79)"


def test_more_findings_are_counted_and_a_long_reason_is_cut():
    long = {"severity": "critical", "message": "x" * 500}
    _, reason = slurm_health.decide([long, LOST, LOST], "mixed", "")
    assert len(reason) == slurm_health.REASON_MAX_CHARS and reason.endswith("... (+2 more)")


def test_our_drain_with_the_same_cause_is_left_as_it_is():
    reason = slurm_health.drain_reason([LOST])
    assert slurm_health.decide([LOST], "drained", reason) == (None, None)


def test_our_drain_resumes_when_the_finding_clears_and_a_warning_does_not_drain():
    reason = slurm_health.drain_reason([LOST])
    assert slurm_health.decide([], "drained", reason) == ("resume", None)
    assert slurm_health.decide(
        slurm_health.blocking_findings({"findings": [WARM]}), "idle", ""
    ) == (
        None,
        None,
    )


@given(
    reason=st.text(min_size=1).filter(lambda r: not r.startswith(slurm_health.REASON_PREFIX)),
    state=st.sampled_from(["drained", "draining", "drained*", "idle+drain"]),
    critical=st.booleans(),
)
def test_a_drain_people_set_is_never_touched(reason, state, critical):
    findings = [LOST] if critical else []
    assert slurm_health.decide(findings, state, reason) == (None, None)


@pytest.fixture
def node(tmp_path, monkeypatch):
    """A config whose status file the check cannot overwrite (no GPUs here: the check's own run
    fails to write into a read-only directory) and fake Slurm commands that log their calls."""
    status_dir = tmp_path / "status"
    status_dir.mkdir()
    config = tmp_path / "gpu-health.json"
    status = status_dir / "status.json"
    config.write_text(
        json.dumps(
            {"format": 1, "expectations": {}, "fail_on": "critical", "status_file": str(status)}
        )
    )
    slurm = FakeSlurm(tmp_path / "slurm")
    # The check itself is the gpu_health role's: here it leaves the status file as the test wrote.
    monkeypatch.setattr(slurm_health.health_cli, "run_check", lambda *a, **k: 0)

    def run(findings, current="idle|none"):
        status.write_text(json.dumps({"findings": findings}))
        slurm.set_node("dl2", current)
        slurm.clear_calls()
        sinfo, scontrol = slurm.command("sinfo"), slurm.command("scontrol")
        code = slurm_health.main(
            ["--config", str(config), "--sinfo", sinfo, "--scontrol", scontrol, "--node", "dl2"]
        )
        return code, "\n".join(slurm.calls())

    return run


def test_main_drains_and_resumes_through_scontrol(node, capsys):
    code, called = node([LOST])
    assert code == 0
    assert "node dl2 drained: gpu-health: GPU 2" in capsys.readouterr().err
    assert called == (
        "update NodeName=dl2 State=DRAIN "
        "Reason=gpu-health: GPU 2 (GPU-2a) has fallen off the bus (Xid 79)"
    )
    code, called = node([], "drained|" + slurm_health.drain_reason([LOST]))
    assert (code, called) == (0, "update NodeName=dl2 State=RESUME")
    assert "node dl2 resumed: no critical finding left" in capsys.readouterr().err
    assert node([], "drained|maintenance") == (0, "")


def test_main_says_what_it_could_not_read(node, tmp_path, capsys):
    os.environ.pop("SLURMD_NODENAME", None)
    code = slurm_health.main(["--config", str(tmp_path / "missing.json"), "--node", "dl2"])
    assert code == slurm_health.EXIT_UNREADABLE
    assert "node dl2 not checked" in capsys.readouterr().err
