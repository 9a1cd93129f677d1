"""Changing a sandbox node's hardware from a verify step, as an operator would: a swap in the
simulator (nvml-sim swap), a reboot (podman restart), then a playbook of the project against the
scenario's inventory. Shared by the scenarios that swap GPUs; molecule/ is on sys.path once
pytest has loaded molecule/conftest.py."""

import os
import socket
import subprocess
import time

import yaml


def podman(*args):
    return subprocess.run(["podman", *args], check=True, capture_output=True, text=True).stdout


def node_time(node):
    """The node's clock now, as journalctl --since takes it."""
    return podman("exec", node, "date", "+%Y-%m-%d %H:%M:%S").strip()


def address(node):
    """The node's ansible_host in the scenario's inventory."""
    with open(os.environ["MOLECULE_INVENTORY_FILE"]) as handle:
        groups = [yaml.safe_load(handle)["all"]]
    while groups:
        group = groups.pop()
        found = (group.get("hosts") or {}).get(node)
        if found and found.get("ansible_host"):
            return found["ansible_host"]
        groups.extend((group.get("children") or {}).values())
    raise AssertionError("%s has no ansible_host in the inventory" % node)


def reboot(node, timeout_s=180):
    """podman restart: /run and the simulated driver start afresh, a pending swap is installed
    (with the PCI tree), the boot units run. Returns once systemd has finished booting and sshd
    answers at the node's address (its restarted network may take a moment, as after a real
    reboot: ansible.builtin.reboot waits the same way)."""
    podman("restart", "--time", "2", node)
    deadline = time.time() + timeout_s
    while True:
        state = subprocess.run(
            ["podman", "exec", node, "systemctl", "is-system-running", "--wait"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        if state in ("running", "degraded"):
            break
        assert time.time() < deadline, state
        time.sleep(1)
    host = address(node)
    while True:
        try:
            with socket.create_connection((host, 22), timeout=5) as connection:
                if connection.recv(64).startswith(b"SSH-"):
                    return state
        except OSError:
            pass
        assert time.time() < deadline, "sshd of %s does not answer at %s" % (node, host)
        time.sleep(1)


def play(playbook, *args):
    """A playbook (path under the project) against the scenario's inventory."""
    return subprocess.run(
        [
            "ansible-playbook",
            "-i",
            os.environ["MOLECULE_INVENTORY_FILE"],
            *args,
            os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], playbook),
        ],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1"),
    )


def hardware_changes(output, node):
    """{'drift': [lines], 'changed': [task names]} of the gpu_hardware_changes callback's block
    after the recap, for one node."""
    if "GPU HARDWARE CHANGES" not in output:
        return {"drift": [], "changed": []}
    block = output[output.rindex("GPU HARDWARE CHANGES") :].splitlines()[1:]
    lines = [line.split(": ", 1)[1] for line in block if line.startswith(node + ": ")]
    changed = lines[-1].split(": ", 1)[1].split("; ")
    return {"drift": lines[:-1], "changed": changed}


def recap(output, node):
    """The node's line of the play recap."""
    lines = output[output.rindex("PLAY RECAP") :].splitlines()
    return next(line for line in lines if line.startswith(node))
