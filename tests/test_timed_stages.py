"""tests/timed_stages.py, make test's runner: side-by-side stages really overlap, each stage's
time and result end the run, a failure shows its log's end and starts nothing new."""

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "timed_stages.py"


def run(tmp_path, *stages, jobs=2):
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--jobs",
            str(jobs),
            "--log-dir",
            str(tmp_path / "logs"),
            *stages,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    table = {}
    for line in proc.stdout.split("\nstage ")[-1].splitlines()[1:]:
        # "%-24s %8s  %s": name, time, result
        table[line[:24].strip()] = (line[25:33].strip(), line[35:])
    return proc, table


def test_side_by_side_stages_overlap_and_all_are_timed(tmp_path):
    marks = tmp_path / "marks"
    # Each side-by-side stage waits until the other has started: run one after the other, they
    # would wait for ever (and the timeout would fail the test).
    wait_for = "touch {m}/{me}; until [ -e {m}/{other} ]; do sleep 0.1; done; echo {me} done"
    proc, table = run(
        tmp_path,
        "first=mkdir -p %s && echo alone" % marks,
        "+a=" + wait_for.format(m=marks, me="a", other="b"),
        "+b=" + wait_for.format(m=marks, me="b", other="a"),
        "last=true",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "alone" in proc.stdout  # a stage run alone shows its output as it comes
    assert (tmp_path / "logs" / "a.log").read_text() == "a done\n"
    assert set(table) == {"first", "a", "b", "last", "total (wall)"}
    assert all(result == "passed" for _, result in table.values())
    assert all(re.match(r"^\d+:\d\d$", shown) for shown, _ in table.values())


def test_a_failure_shows_its_log_and_starts_nothing_new(tmp_path):
    proc, table = run(
        tmp_path,
        "+bad=echo the cause; exit 3",
        "+slow=sleep 1",
        "+later=true",
        "after=true",
        jobs=2,
    )
    assert proc.returncode == 3
    assert table["bad"][1] == "FAILED (exit 3)"
    assert table["slow"][1] == "passed"  # already running: it finishes
    assert table["later"] == ("-", "not run")
    assert table["after"] == ("-", "not run")
    assert table["total (wall)"][1] == "FAILED at bad"
    assert "the cause" in proc.stdout.split("---- last")[1]


def test_what_failed_is_repeated_just_before_the_table(tmp_path):
    # Lines as Ansible (in colour) and pytest print them, amid noise, before a long tail.
    log = (
        r"printf 'ok: [n]\n\033[31mfatal: [n]: FAILED! => {\"msg\": \"boom\"}\033[0m\n"
        r"E   AssertionError: degraded\nFAILED tests/test_site.py::test_x\n'; seq 200; exit 1"
    )
    proc, _ = run(tmp_path, "+scenario=" + log)
    before_table = proc.stdout.split("\nstage ")[0].split("---- end of")[-1]
    shown = before_table.split("what failed in scenario:")[1].strip().splitlines()
    assert [line.strip() for line in shown] == [
        'fatal: [n]: FAILED! => {"msg": "boom"}',
        "E   AssertionError: degraded",
        "FAILED tests/test_site.py::test_x",
    ]


def test_path_first_comes_first_in_every_stage(tmp_path):
    # As under a pyenv shim, which puts its own bin directory first in PATH.
    bin_dir = tmp_path / "venv-bin"
    bin_dir.mkdir()
    tool = bin_dir / "which-tool"
    tool.write_text("#!/bin/sh\necho from the venv\n")
    tool.chmod(0o755)
    proc, _ = run(
        tmp_path,
        "--path-first",
        str(bin_dir),
        "alone=which-tool",
        "+side=which-tool; echo $PATH",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "from the venv" in proc.stdout
    side = (tmp_path / "logs" / "side.log").read_text().splitlines()
    assert side[0] == "from the venv" and side[1].startswith(str(bin_dir) + ":")


def test_a_stage_must_have_a_name_and_a_command(tmp_path):
    proc, _ = run(tmp_path, "no command here")
    assert proc.returncode != 0
    assert "NAME=COMMAND" in proc.stderr
