"""The gpu_hardware_changes callback as ansible-playbook loads it from the project's ansible.cfg:
after the recap, the drift lines of each node's nvidia_gpu_inventory run (against the simulated
T180-G20, its GPU 2 swapped) and the tasks that changed something on that node from then on;
nothing at all when the hardware did not change."""

import json
import os
import subprocess
import sys

from conftest import PROJECT

BIN = os.path.dirname(sys.executable)
PLAY = """
- name: Inventory, then a change and a task that changes nothing
  hosts: all
  gather_facts: false
  tasks:
    - name: Touch a file before the inventory
      ansible.builtin.copy:
        content: "{{ 1000 | random }}"
        dest: "{{ work }}/before"
        mode: "0644"

    - name: Record the GPUs
      nvidia_gpu_inventory:
        path: "{{ work }}/inventory.json"
        sysfs_root: "{{ work }}/pci"

    - name: Write what the hardware now needs
      ansible.builtin.copy:
        content: "{{ 1000 | random }}"
        dest: "{{ work }}/after"
        mode: "0644"

    - name: Read something
      ansible.builtin.stat:
        path: "{{ work }}"
"""


def run(machine):
    (machine.root / "play.yml").write_text(PLAY)
    (machine.root / "hosts").write_text(
        "node1 ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable
    )
    proc = subprocess.run(
        [
            os.path.join(BIN, "ansible-playbook"),
            "-i",
            str(machine.root / "hosts"),
            str(machine.root / "play.yml"),
            "-e",
            json.dumps({"work": str(machine.root)}),
        ],
        cwd=PROJECT,
        env=dict(machine.env, ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"), ANSIBLE_NOCOLOR="1"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    return proc.stdout


def after_recap(output):
    return output[output.rindex("PLAY RECAP") :]


def test_a_swap_is_summed_up_after_the_recap_and_nothing_else_is(machine):
    machine.cli("sysfs", machine.root / "pci")
    first = after_recap(run(machine))
    assert "GPU HARDWARE CHANGES" not in first  # the first inventory: nothing changed
    machine.cli("swap", 2)
    machine.reboot()
    inventory = json.loads((machine.root / "inventory.json").read_text())
    slot = sorted(inventory["slots"])[2]
    old_serial = inventory["slots"][slot]["serial"]
    output = after_recap(run(machine))
    new_serial = json.loads((machine.root / "inventory.json").read_text())["slots"][slot]["serial"]
    block = output[output.index("GPU HARDWARE CHANGES") :].splitlines()[1:]
    assert [line for line in block if line.strip()] == [
        "node1: slot %s: serial %s -> %s, same model (replaced)" % (slot, old_serial, new_serial),
        "node1: then changed (2): Record the GPUs; Write what the hardware now needs",
    ]
    again = after_recap(run(machine))
    assert "GPU HARDWARE CHANGES" not in again
