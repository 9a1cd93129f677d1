#!/usr/bin/env python3
"""Run make test's stages, some side by side, and end with each stage's wall time.

    timed_stages.py [--jobs N] [--log-dir DIR] [--path-first DIR] STAGE...

A STAGE is "NAME=COMMAND" (run alone, its output shown as it comes) or "+NAME=COMMAND" (run
beside the other "+" stages next to it, at most N at once, in the order given: put the longest
first). A side-by-side stage writes to DIR/NAME.log; its end is reported with its time, and the
end of its log when it fails. While such stages run, a line every minute says which are running:
the molecule scenarios take minutes each and print nothing meanwhile.

--path-first puts DIR (the project's virtualenv) first in every stage's PATH: the Python running
this script may be a pyenv shim's, which puts its own bin directory first, and a stage's tools
(molecule's pytest) must not come from there.

After a failure no new stage starts; the ones running finish. Exit status: the first failed
stage's, else 0. The developer guide keeps `make test` under 45 minutes on 2 cores: the total
line says when the run took longer.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

BUDGET_S = 45 * 60
PROGRESS_EVERY_S = 60
FAILED_LOG_LINES = 80
# The lines of a failed stage's log that say what failed (Ansible's fatal/failed results, pytest's
# failures and assertion lines): printed again just before the table, since CI shows only the end.
KEY_LINE = re.compile(r"fatal: \[|failed: \[|^FAILED |^E  |^ERROR |Error: |AssertionError")
KEY_LINES_MAX = 40
ANSI = re.compile(r"\x1b\[[0-9;]*m")
STARTED = time.monotonic()


def clock(seconds):
    seconds = int(seconds)
    return "%d:%02d" % (seconds // 60, seconds % 60)


def say(message):
    print("[%s] %s" % (clock(time.monotonic() - STARTED), message), flush=True)


def parse_stage(text):
    side_by_side = text.startswith("+")
    name, separator, command = text.lstrip("+").partition("=")
    if not separator or not name or not command:
        raise SystemExit("timed_stages: a stage is NAME=COMMAND or +NAME=COMMAND, not %r" % text)
    return {"name": name, "command": command, "side_by_side": side_by_side, "result": "not run"}


def groups_of(stages):
    """Consecutive stages that run the same way: [[alone], [+, +, +], [alone], ...]."""
    groups = []
    for stage in stages:
        if groups and stage["side_by_side"] and groups[-1][0]["side_by_side"]:
            groups[-1].append(stage)
        else:
            groups.append([stage])
    return groups


def finish(stage, status, started_s):
    stage["seconds"] = time.monotonic() - started_s
    stage["status"] = status
    stage["result"] = "passed" if status == 0 else "FAILED (exit %d)" % status


def run_alone(stage):
    started_s = time.monotonic()
    status = subprocess.call(["bash", "-c", stage["command"]])
    finish(stage, status, started_s)


def log_name(name):
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name) + ".log"


def run_side_by_side(stages, jobs, log_dir):
    """Run the stages, at most jobs at once; returns when all that started have ended."""
    log_dir.mkdir(parents=True, exist_ok=True)
    waiting = list(stages)
    running = {}  # stage name -> (stage, process, started_s, log path)
    failed = False
    last_progress_s = time.monotonic()
    while waiting or running:
        while waiting and len(running) < jobs and not failed:
            stage = waiting.pop(0)
            log_path = log_dir / log_name(stage["name"])
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    ["bash", "-c", stage["command"]], stdout=log, stderr=subprocess.STDOUT
                )
            running[stage["name"]] = (stage, process, time.monotonic(), log_path)
            say("%s started (log: %s)" % (stage["name"], log_path))
        if failed:
            waiting.clear()
        for name, (stage, process, started_s, log_path) in list(running.items()):
            status = process.poll()
            if status is None:
                continue
            del running[name]
            finish(stage, status, started_s)
            say("%s %s in %s" % (name, stage["result"], clock(stage["seconds"])))
            if status != 0:
                failed = True
                text = log_path.read_text(errors="replace")
                stage["key_lines"] = key_lines(text)
                lines = text.splitlines()[-FAILED_LOG_LINES:]
                print("---- last %d lines of %s ----" % (len(lines), log_path))
                print("\n".join(lines))
                print("---- end of %s ----" % log_path, flush=True)
        if running and time.monotonic() - last_progress_s >= PROGRESS_EVERY_S:
            last_progress_s = time.monotonic()
            say(
                "running: "
                + ", ".join(
                    "%s (%s)" % (name, clock(time.monotonic() - started_s))
                    for name, (_, _, started_s, _) in running.items()
                )
            )
        time.sleep(0.5)


def key_lines(text):
    """What failed, from a log: the key lines without colours, the last KEY_LINES_MAX of them."""
    found = [line.strip() for line in ANSI.sub("", text).splitlines() if KEY_LINE.search(line)]
    return found[-KEY_LINES_MAX:]


def summary(stages):
    lines = []
    for stage in stages:
        if stage.get("key_lines"):
            lines += ["", "what failed in %s:" % stage["name"]] + [
                "  " + line[:300] for line in stage["key_lines"]
            ]
    lines += ["", "%-24s %8s  %s" % ("stage", "time", "result")]
    for stage in stages:
        seconds = stage.get("seconds")
        shown = clock(seconds) if seconds is not None else "-"
        lines.append("%-24s %8s  %s" % (stage["name"], shown, stage["result"]))
    total_s = time.monotonic() - STARTED
    failed = [stage["name"] for stage in stages if stage.get("status")]
    result = "FAILED at %s" % failed[0] if failed else "passed"
    if total_s > BUDGET_S:
        result += ", over the %d-minute budget" % (BUDGET_S // 60)
    lines.append("%-24s %8s  %s" % ("total (wall)", clock(total_s), result))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="side-by-side stages at once")
    parser.add_argument("--log-dir", type=Path, default=Path("build/test-logs"))
    parser.add_argument("--path-first", help="directory put first in every stage's PATH")
    parser.add_argument("stages", nargs="+")
    args = parser.parse_args(argv)
    if args.path_first:
        os.environ["PATH"] = os.pathsep.join([args.path_first, os.environ.get("PATH", "")])
    if args.jobs < 1:
        parser.error("--jobs must be 1 or more, not %d" % args.jobs)
    stages = [parse_stage(text) for text in args.stages]
    for group in groups_of(stages):
        if any(stage.get("status") for stage in stages):
            break
        if group[0]["side_by_side"]:
            run_side_by_side(group, args.jobs, args.log_dir)
        else:
            run_alone(group[0])
    print(summary(stages), flush=True)
    failed = [stage["status"] for stage in stages if stage.get("status")]
    return failed[0] if failed else 0


if __name__ == "__main__":
    sys.exit(main())
