#!/usr/bin/env python3
"""How long site.yml takes on sandbox nodes: the first converge and the no-op re-run.

Prints, from one run, side by side (medians of --repeats runs):
  - the first converge of site.yml on 1 fresh node, and its no-op re-run over SSH;
  - the same no-op re-run over the podman connection (`podman exec`, the fallback);
  - the no-op re-run on --nodes nodes at once (forks 10), and how that compares with 1 node;
  - the least that re-run can take here: the nodes are containers on this machine, so N nodes
    need N times the CPU time (all processes) of the 1-node re-run, spread over its cores;
  - the 10 slowest tasks of the 1-node no-op re-run (ansible.posix.profile_tasks).

A benchmark, not a test: it asserts nothing but that every re-run says changed=0 (otherwise the
figure would not be a no-op's). Its nodes are its own (bench-gpu1..N on the sandbox network, from
.21 up), removed at the end unless --keep. `make bench` runs it; it took 18 minutes on 2 cores
(2026-12-02), most of it the first converges, and needs about 9 GB of free disk per node. Results
also go to build/bench/site.json.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parent.parent
BUILD = PROJECT / "build"
SANDBOX_SUBNET = ipaddress.ip_network(
    yaml.safe_load((PROJECT / "sandbox" / "vars.yml").read_text())["sandbox_network_subnet"]
)
FIRST_ADDRESS = 21  # .21 and up: below the network's dynamic range, apart from the demo's .11
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")
PROFILE_LINE = re.compile(r"^(.*?) -+ (\d+\.\d+)s$")
STARTED = time.monotonic()
# What one converged node holds in podman's storage (2026-12-02: 8.4 GB, 5 GB of it Debian's CUDA
# libraries, 1.6 GB the stacks' virtualenvs), with some room for the run's own files.
NODE_DISK_GB = 9


def say(message):
    elapsed = int(time.monotonic() - STARTED)
    print("[%02d:%02d] %s" % (elapsed // 60, elapsed % 60, message), flush=True)


def write_inventory(nodes):
    """build/bench-N/hosts.yml: N sandbox nodes with the demo inventory's group_vars.

    Two levels below the project, as inventory/sandbox is: its group_vars find this checkout's
    SSH key relative to the inventory directory.
    """
    directory = BUILD / ("bench-%d" % nodes)
    directory.mkdir(parents=True, exist_ok=True)
    names = ["bench-gpu%d" % number for number in range(1, nodes + 1)]
    hosts = {
        name: {
            "sandbox_address": str(SANDBOX_SUBNET.network_address + FIRST_ADDRESS + number),
            "sandbox_gpu_profile": "t180-g20",
        }
        for number, name in enumerate(names)
    }
    inventory = {
        "all": {
            "children": {
                "sandbox_nodes": {"hosts": hosts},
                "gpu_nodes": {"hosts": {name: None for name in names}},
                "hw_t180_g20": {"hosts": {name: None for name in names}},
            }
        }
    }
    (directory / "hosts.yml").write_text(json.dumps(inventory, indent=2) + "\n")  # JSON is YAML
    link = directory / "group_vars"
    if not link.is_symlink():
        link.symlink_to(PROJECT / "inventory" / "sandbox" / "group_vars")
    return directory


def ansible(args, env=None, log=None):
    """Run ansible-playbook from the project; (seconds, output). Fails loudly on a failed run."""
    environment = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", **(env or {}))
    started = time.monotonic()
    proc = subprocess.run(
        ["ansible-playbook", *args],
        cwd=PROJECT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seconds = time.monotonic() - started
    if log is not None:
        log.write_text(proc.stdout)
    if proc.returncode != 0:
        sys.exit(
            "ansible-playbook %s failed (rc %d); the end of its output:\n%s"
            % (" ".join(args), proc.returncode, proc.stdout[-4000:])
        )
    return seconds, proc.stdout


def recap(output):
    """{host: (ok, changed)} from the PLAY RECAP."""
    return {
        m.group(1): (int(m.group(2)), int(m.group(3)))
        for m in map(RECAP.match, output.splitlines())
        if m
    }


def slowest_tasks(output, count=10):
    lines = output.split("TASKS RECAP", 1)[-1].splitlines()
    return [(m.group(1).strip(), float(m.group(2))) for m in map(PROFILE_LINE.match, lines) if m][
        :count
    ]


def check_disk(count):
    """Stop before starting count nodes that would fill podman's storage mid-converge."""
    graph_root = subprocess.run(
        ["podman", "info", "--format", "{{.Store.GraphRoot}}"],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    ).stdout.strip()
    free_gb = shutil.disk_usage(graph_root).free / 1e9
    if free_gb < count * NODE_DISK_GB:
        sys.exit(
            "%d bench nodes need about %d GB free under %s (about %d GB each once converged); "
            "%.0f GB are free: free some (make sandbox-down, make cluster-down) or pass fewer "
            "--nodes" % (count, count * NODE_DISK_GB, graph_root, NODE_DISK_GB, free_gb)
        )


def busy_cpu_s():
    """CPU seconds this machine has been busy (all cores, every process: the controller and the
    sandbox nodes' own processes alike), from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def nodes(inventory, state):
    ansible(["-i", str(inventory), "sandbox/nodes.yml", "-e", "sandbox_state=%s" % state])


def no_op(inventory, repeats, label, extra_args=(), profile=False):
    """Repeated no-op re-runs of site.yml, each must say changed=0: (median seconds, each run's
    seconds, the last run's output, median CPU seconds the machine was busy during a run)."""
    seconds, cpu_seconds, last = [], [], ""
    extra = (
        {
            "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
            "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "10",
        }
        if profile
        else {}
    )
    for number in range(1, repeats + 1):
        cpu_before_s = busy_cpu_s()
        took, last = ansible(
            ["-i", str(inventory), "site.yml", *extra_args],
            env=extra,
            log=BUILD / "bench" / ("%s-%d.log" % (label.replace(" ", "-"), number)),
        )
        cpu_seconds.append(busy_cpu_s() - cpu_before_s)
        changed = {host: counts[1] for host, counts in recap(last).items() if counts[1]}
        if changed:
            sys.exit(
                "%s re-run %d changed something, so it is no no-op: %s" % (label, number, changed)
            )
        say(
            "  %s: re-run %d of %d took %.1f s, %.1f CPU s (changed=0 on %d node(s))"
            % (label, number, repeats, took, cpu_seconds[-1], len(recap(last)))
        )
        seconds.append(took)
    return statistics.median(seconds), seconds, last, statistics.median(cpu_seconds)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--nodes", type=int, default=8, help="nodes of the many-node re-run (default 8)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="re-runs per figure; medians (default 3)"
    )
    parser.add_argument("--keep", action="store_true", help="leave the bench nodes running")
    args = parser.parse_args(argv)
    if not 2 <= args.nodes <= 100 or not 1 <= args.repeats <= 20:
        parser.error("--nodes must be 2..100 and --repeats 1..20")
    (BUILD / "bench").mkdir(parents=True, exist_ok=True)
    one, many = write_inventory(1), write_inventory(args.nodes)
    results = {"nodes": args.nodes, "repeats": args.repeats, "cores": os.cpu_count()}

    say("removing bench nodes left from an earlier run")
    nodes(many, "absent")
    check_disk(args.nodes)
    say("starting 1 fresh node")
    nodes(one, "started")
    say("first converge of site.yml on 1 node (minutes: packages, the NCCL wheel, the runtime)")
    took, output = ansible(
        ["-i", str(one), "site.yml"], log=BUILD / "bench" / "first-converge-1.log"
    )
    results["first_converge_1_node_s"] = round(took, 1)
    results["first_converge_1_node_changed"] = recap(output)["bench-gpu1"][1]
    say("  took %.1f s, changed=%d" % (took, results["first_converge_1_node_changed"]))

    say("no-op re-runs on 1 node over SSH")
    median, runs, output, cpu_s = no_op(one, args.repeats, "ssh 1 node", profile=True)
    results["noop_1_node_ssh_cpu_s"] = round(cpu_s, 1)
    results["noop_1_node_ssh_s"], results["noop_1_node_ssh_runs_s"] = (
        round(median, 1),
        [round(s, 1) for s in runs],
    )
    results["noop_1_node_tasks_ok"] = recap(output)["bench-gpu1"][0]
    results["slowest_tasks"] = slowest_tasks(output)

    say("no-op re-runs on 1 node over the podman connection")
    median, runs, _, _ = no_op(
        one, args.repeats, "podman 1 node", extra_args=("-e", "sandbox_connection=podman")
    )
    results["noop_1_node_podman_s"], results["noop_1_node_podman_runs_s"] = (
        round(median, 1),
        [round(s, 1) for s in runs],
    )

    say("starting %d more nodes, then the first converge of those (forks 10)" % (args.nodes - 1))
    nodes(many, "started")
    took, _ = ansible(
        ["-i", str(many), "site.yml"], log=BUILD / "bench" / "first-converge-many.log"
    )
    results["first_converge_more_nodes_s"] = round(took, 1)
    say("  took %.1f s" % took)

    say("no-op re-runs on %d nodes over SSH" % args.nodes)
    median, runs, _, _ = no_op(many, args.repeats, "ssh %d nodes" % args.nodes)
    results["noop_many_nodes_ssh_s"], results["noop_many_nodes_ssh_runs_s"] = (
        round(median, 1),
        [round(s, 1) for s in runs],
    )

    if not args.keep:
        say("removing the bench nodes")
        nodes(many, "absent")
    (BUILD / "bench" / "site.json").write_text(json.dumps(results, indent=2) + "\n")
    report(results)
    return 0


def report(results):
    one, podman, many = (
        results[k] for k in ("noop_1_node_ssh_s", "noop_1_node_podman_s", "noop_many_nodes_ssh_s")
    )
    print()
    print(
        "site.yml on sandbox nodes (simulated T180-G20), %d CPU cores, medians of %d runs"
        % (results["cores"], results["repeats"])
    )
    print(
        "  %-44s %8.1f s  (changed=%d)"
        % (
            "first converge, 1 node",
            results["first_converge_1_node_s"],
            results["first_converge_1_node_changed"],
        )
    )
    print(
        "  %-44s %8.1f s  (%d tasks ok, changed=0)"
        % ("no-op re-run, 1 node, SSH", one, results["noop_1_node_tasks_ok"])
    )
    print(
        "  %-44s %8.1f s  (%.1fx the SSH time)"
        % ("no-op re-run, 1 node, podman connection", podman, podman / one)
    )
    print(
        "  %-44s %8.1f s"
        % (
            "first converge, %d more nodes at once" % (results["nodes"] - 1),
            results["first_converge_more_nodes_s"],
        )
    )
    print(
        "  %-44s %8.1f s  (%.2fx the 1-node time)"
        % ("no-op re-run, %d nodes, SSH, forks 10" % results["nodes"], many, many / one)
    )
    # The sandbox nodes run on this machine's cores: N nodes cannot take less than N times one
    # node's CPU time spread over all cores, whatever the forks.
    cpu_s = results["noop_1_node_ssh_cpu_s"]
    floor_s = results["nodes"] * cpu_s / results["cores"]
    print(
        "  %-44s %8.1f s  (%d nodes x %.1f CPU s of a 1-node re-run / %d cores, %.2fx)"
        % (
            "  least possible, %d nodes on these cores" % results["nodes"],
            floor_s,
            results["nodes"],
            cpu_s,
            results["cores"],
            floor_s / one,
        )
    )
    print()
    print("Slowest tasks of the 1-node no-op re-run (SSH):")
    for name, seconds in results["slowest_tasks"]:
        print("  %5.2f s  %s" % (seconds, name))


if __name__ == "__main__":
    sys.exit(main())
