"""The rolling drain: slurm_control's decisions and batches (generated inputs), and the
slurm_node_state module run as Ansible runs it against a small fake Slurm (sinfo, squeue and
scontrol over a state file) - drain, the wait for jobs, resume of only its own drains, check
mode, and bad input failing with the value named. The real Slurm runs in molecule/cluster."""

import os
import sys
from pathlib import Path

import pytest
from conftest import run_module
from fake_slurm import FakeSlurm
from hypothesis import given
from hypothesis import strategies as st

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT / "module_utils"))

from nvidia_gpu import slurm_control  # noqa: E402

PREFIX = "gpu-node change: "
STATES = ["idle", "mixed", "allocated", "drained", "draining", "drained*", "idle+drain", "down*"]


@given(state=st.sampled_from(STATES), reason=st.text())
def test_drain_only_a_node_nobody_has_drained(state, reason):
    action = slurm_control.plan("drained", state, reason)
    assert action == (None if "drain" in state else "drain")


@given(state=st.sampled_from(STATES), reason=st.text())
def test_resume_only_our_own_drain(state, reason):
    action = slurm_control.plan("resumed", state, reason, PREFIX)
    assert (action == "resume") == ("drain" in state and reason.startswith(PREFIX))
    assert slurm_control.plan("resumed", state, PREFIX + reason, PREFIX) == (
        "resume" if "drain" in state else None
    )


@given(
    hosts=st.lists(st.text(min_size=1), unique=True, max_size=40),
    size=st.one_of(
        st.integers(min_value=1, max_value=50), st.integers(1, 100).map(lambda p: "%d%%" % p)
    ),
)
def test_batches_keep_every_host_once_in_order(hosts, size):
    batches = slurm_control.batches(hosts, size)
    assert [host for batch in batches for host in batch] == hosts
    assert all(batch for batch in batches)
    if isinstance(size, int):
        assert all(len(batch) <= size for batch in batches)
    else:
        assert len(batches[0] if batches else []) == (
            max(1, len(hosts) * int(size[:-1]) // 100) if hosts else 0
        )


@pytest.mark.parametrize("size", [0, -2, "0%", "150%", "two", "", True, 1.5])
def test_a_bad_batch_size_is_named(size):
    with pytest.raises(ValueError, match="rolling batch size %s" % repr(size).replace("(", r"\(")):
        slurm_control.batches(["dl1", "dl2"], size)


def test_read_node_parses_sinfo_and_knows_an_unknown_node():
    def answer(rc, out, err=""):
        return lambda argv: (rc, out, err)

    assert slurm_control.read_node(answer(0, "drained|maintenance\n"), "sinfo", "dl1") == (
        "drained",
        "maintenance",
    )
    assert slurm_control.read_node(answer(0, "idle|none\n"), "sinfo", "dl1") == ("idle", "")
    assert slurm_control.read_node(answer(0, ""), "sinfo", "dl9") is None
    assert slurm_control.read_node(answer(1, "", "Invalid node name dl9"), "sinfo", "dl9") is None
    with pytest.raises(slurm_control.SlurmError, match="Unable to contact slurm controller"):
        slurm_control.read_node(answer(1, "", "Unable to contact slurm controller"), "sinfo", "dl1")


@pytest.fixture
def slurm(tmp_path):
    """The fake Slurm (fake_slurm.py) on a PATH of its own, node dl1 mixed; run(args) runs the
    module on it after setting the named node's state and jobs."""
    fake = FakeSlurm(tmp_path / "slurm")
    fake.set_node("dl1", "mixed|none")

    def run(args, check_mode=False, node_state=None, job_ids=()):
        if node_state is not None:
            fake.set_node(args["name"], node_state)
        fake.set_jobs(args["name"], job_ids)
        fake.clear_calls()
        env = dict(os.environ, PATH="%s:/usr/bin:/bin" % fake.bin)
        result = run_module(tmp_path, "slurm_node_state", args, check_mode, diff=True, env=env)
        return result, fake.calls()

    run.fake = fake
    return run


def test_drain_waits_for_the_jobs_and_names_them(slurm):
    args = {
        "name": "dl1",
        "state": "drained",
        "reason": PREFIX + "GPU settings",
        "poll_interval_s": 1,
    }
    result, calls = slurm(args, job_ids=["41", "42"])
    assert not result.get("failed"), result
    assert calls == ["update NodeName=dl1 State=DRAIN Reason=%sGPU settings" % PREFIX]
    assert (result["changed"], result["action"], result["jobs"]) == (True, "drain", ["41", "42"])
    assert result["waited_s"] >= 1
    assert slurm.fake.node("dl1") == "draining|%sGPU settings\n" % PREFIX
    assert result["diff"]["before"] == "state: mixed\nreason: \n"
    # Drained already (by anybody): no second drain, the reason stays.
    result, calls = slurm(args, node_state="drained|maintenance")
    assert (result["changed"], calls) == (False, [])


def test_a_drain_gives_up_after_the_wait_leaving_the_node_drained(slurm):
    args = {
        "name": "dl1",
        "state": "drained",
        "reason": PREFIX + "driver",
        "wait_for_jobs_s": 1,
        "poll_interval_s": 1,
    }
    result, _ = slurm(args, job_ids=["7", "8", "9", "10"])
    assert result["failed"] and result["changed"]
    assert "jobs 8, 9, 10 still run on it after 1 s" in result["msg"]
    assert slurm.fake.node("dl1").startswith("draining|")


def test_resume_touches_only_a_drain_with_our_prefix(slurm):
    args = {"name": "dl1", "state": "resumed", "drained_by": PREFIX}
    result, calls = slurm(args, node_state="drained|%sdriver" % PREFIX)
    assert (result["changed"], calls) == (True, ["update NodeName=dl1 State=RESUME"])
    for state in ("drained|maintenance", "drained|gpu-health: GPU 2 lost", "idle|none"):
        result, calls = slurm(args, node_state=state)
        assert (result["changed"], calls) == (False, []), state


def test_check_mode_says_what_it_would_do_and_does_nothing(slurm):
    args = {"name": "dl1", "state": "drained", "reason": PREFIX + "driver"}
    result, calls = slurm(args, check_mode=True, job_ids=["5"])
    assert (result["changed"], result["action"], calls) == (True, "drain", [])
    assert slurm.fake.node("dl1") == "mixed|none\n"
    assert result["diff"]["after"] == "state: drained\nreason: %sdriver\n" % PREFIX


def test_a_node_slurm_does_not_know_is_left_alone(slurm, tmp_path):
    result, calls = slurm({"name": "dl9", "state": "drained", "reason": "x"}, node_state="")
    assert (result["changed"], result["node_known"], calls) == (False, False, [])
    # Where Slurm's commands are not installed at all (the cluster's first run).
    env = dict(os.environ, PATH=str(tmp_path / "empty"))
    result = run_module(
        tmp_path,
        "slurm_node_state",
        {"name": "dl1", "state": "resumed", "drained_by": PREFIX},
        env=env,
    )
    assert (result["changed"], result["node_known"]) == (False, False)
    assert "not installed" in result["msg"]


@pytest.mark.parametrize(
    "args, message",
    [
        ({"state": "drained", "reason": " "}, "reason is empty"),
        ({"state": "resumed", "drained_by": ""}, "drained_by is empty"),
        ({"state": "drained"}, "state is drained but all of the following are missing: reason"),
        ({"state": "gone"}, "value of state must be one of: drained, resumed, got: gone"),
        ({"state": "drained", "reason": "x", "wait_for_jobs_s": -1}, "wait_for_jobs_s is -1"),
    ],
)
def test_bad_input_fails_naming_the_value_and_changes_nothing(slurm, args, message):
    result, calls = slurm(dict(args, name="dl1"))
    assert result["failed"] and message in result["msg"], result
    assert "Traceback" not in result["msg"] and calls == []
    assert slurm.fake.node("dl1") == "mixed|none\n"
