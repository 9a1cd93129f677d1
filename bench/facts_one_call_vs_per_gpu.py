#!/usr/bin/env python3
"""Benchmark: GPU facts for all GPUs in one module call, against one process per GPU.

The peer projects read GPUs with a shell loop - one `nvidia-smi --query-gpu=... -i N` process per
GPU, each an Ansible loop iteration. This measures, on whatever NVML this machine has (a real
driver, or the simulator when run by `make bench`):

  ansible  one Ansible task running nvidia_gpu_facts  vs  a `command` task looped over the GPUs
  process  one process reading every GPU               vs  one process per GPU

The per-GPU process is `nvidia-smi --query-gpu` where nvidia-smi exists; elsewhere (the sandbox,
whose simulated driver has no nvidia-smi) it is a Python process querying that GPU through
pynvml, and the output says so. Figures are medians of --repeat runs, in seconds.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
QUERY = "index,uuid,name,power.limit,clocks.applications.graphics,temperature.gpu"
PYNVML_ONE_GPU = (
    "import sys, pynvml as N; N.nvmlInit(); h = N.nvmlDeviceGetHandleByIndex(int(sys.argv[1])); "
    "print(N.nvmlDeviceGetUUID(h), N.nvmlDeviceGetName(h), N.nvmlDeviceGetPowerManagementLimit(h), "
    "N.nvmlDeviceGetApplicationsClock(h, N.NVML_CLOCK_GRAPHICS), N.nvmlDeviceGetTemperature(h, 0))"
)
COLLECT_ALL = (
    "import sys; sys.path.insert(0, %r); from nvidia_gpu.facts import collect; "
    "print(collect()['count'])" % str(PROJECT / "module_utils")
)


def per_gpu_command(index):
    if shutil.which("nvidia-smi"):
        return ["nvidia-smi", "--query-gpu=" + QUERY, "--format=csv,noheader", "-i", str(index)]
    return [sys.executable, "-c", PYNVML_ONE_GPU, str(index)]


def gpu_count():
    code = "import pynvml as N; N.nvmlInit(); print(N.nvmlDeviceGetCount())"
    return int(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
    )


def timed(action, repeat):
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def run(command):
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def playbook(tasks, workdir):
    path = Path(workdir) / ("play-%d.yml" % abs(hash(tasks)))
    path.write_text(
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n" + tasks
    )
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_LOCALHOST_WARNING="false",
    )
    bin_dir = Path(sys.executable).parent
    return lambda: subprocess.run(
        [str(bin_dir / "ansible-playbook"), "-i", "localhost,", str(path)],
        cwd=PROJECT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def report(name, ours, theirs, ours_label, theirs_label):
    print("%-8s %-46s %8.3f s" % (name, ours_label, ours))
    print("%-8s %-46s %8.3f s" % ("", theirs_label, theirs))
    print("%-8s %-46s %8.1fx" % ("", "per-GPU / one call", theirs / ours))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    count = gpu_count()
    baseline = "nvidia-smi --query-gpu" if shutil.which("nvidia-smi") else "python+pynvml"
    print("GPUs: %d; per-GPU process: %s; median of %d runs" % (count, baseline, args.repeat))

    one_process = timed(lambda: run([sys.executable, "-c", COLLECT_ALL]), args.repeat)
    per_process = timed(lambda: [run(per_gpu_command(i)) for i in range(count)], args.repeat)
    report(
        "process",
        one_process,
        per_process,
        "1 process, all GPUs (facts.collect)",
        "%d processes, one per GPU (%s)" % (count, baseline),
    )

    with tempfile.TemporaryDirectory() as workdir:
        ours = playbook("    - name: Facts of every GPU\n      nvidia_gpu_facts:\n", workdir)
        command = json.dumps(per_gpu_command("{{ item }}"))
        theirs = playbook(
            "    - name: One query per GPU\n      ansible.builtin.command:\n"
            "        argv: %s\n      changed_when: false\n      loop: %s\n"
            % (command, json.dumps(list(range(count)))),
            workdir,
        )
        ansible_ours = timed(ours, args.repeat)
        ansible_theirs = timed(theirs, args.repeat)
    report(
        "ansible",
        ansible_ours,
        ansible_theirs,
        "1 task: nvidia_gpu_facts",
        "1 task looped over %d GPUs (%s)" % (count, baseline),
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "gpus": count,
                    "baseline": baseline,
                    "repeat": args.repeat,
                    "process": {"one_call_s": one_process, "per_gpu_s": per_process},
                    "ansible": {"one_task_s": ansible_ours, "looped_task_s": ansible_theirs},
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
