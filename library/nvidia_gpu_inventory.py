#!/usr/bin/python
# Copyright: the gpu-node project contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: the node's GPU inventory by slot, kept in a local fact, with a drift report."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_gpu_inventory
short_description: GPU inventory of a host by slot, kept on the host, with a drift report
description:
  - Reads every GPU through NVML (serial, UUID, model, memory size, VBIOS, board part number and
    PCI address) and the PCI device tree, and compares them by slot (PCI address) with the
    inventory kept on the host in O(path).
  - Reports one line per slot that differs in RV(drift) - a card replaced by another of the same
    model, a model changed, a GPU missing from its slot, a new GPU, a VBIOS flashed (or memory
    size, board part number, model name changed) on the same card - and records the change in
    the file's history (newest last, at most O(history_max) events).
  - A GPU the PCI tree shows but NVML cannot read (fallen off the bus) is not removed from the
    inventory; a line says it does not answer. Only a GPU that is gone from both the PCI tree
    and NVML is missing.
  - The file changes only when the hardware does, so a run on unchanged hardware writes nothing.
    A card present has its C(first_seen) time; a card that left a slot goes to the history with
    C(last_seen), the time the change was found. The first run records every GPU without drift
    lines and returns RV(first_inventory=true).
  - In C(/etc/ansible/facts.d) (the default), the inventory is the local fact
    C(ansible_local.gpu_inventory) at the next fact gathering.
version_added: "1.0.0"
author: gpu-node project contributors (@gpu-node)
options:
  path:
    description:
      - The inventory file (JSON, mode 0644), written atomically and only when it changes. Its
        directory is created when missing.
    type: path
    default: /etc/ansible/facts.d/gpu_inventory.fact
  history_max:
    description:
      - How many change events the file keeps; older ones are dropped. C(0) keeps none.
    type: int
    default: 200
  sysfs_root:
    description:
      - The PCI device tree. It tells a GPU that fell off the bus (still in the tree) from one
        that was removed (gone from it), and gives a lost GPU its PCI address. When it cannot
        be read, a warning says so and no recorded GPU counts as missing.
    type: path
    default: /sys/bus/pci/devices
  on_corrupt:
    description:
      - What to do when O(path) holds something that is not an inventory this module wrote (bad
        JSON, a foreign file, a newer format).
      - C(fail) stops with a message that names the file and what is wrong, and changes nothing.
      - C(replace) warns with the same message and starts a new inventory in its place (the old
        content and its history are lost).
    type: str
    choices: [fail, replace]
    default: fail
attributes:
  check_mode:
    description: Reads the GPUs and returns the drift and the inventory it would write, writing
      nothing.
    support: full
  diff_mode:
    description: Shows the inventory file before and after.
    support: full
requirements:
  - nvidia-ml-py (pynvml) on the managed host
  - an NVIDIA driver that provides libnvidia-ml.so.1
notes:
  - Writing to the default path needs root (use become).
  - A card that moves to another slot is a change in both slots; the lines name where it went
    and where it came from, and it keeps its C(first_seen).
seealso:
  - module: nvidia_gpu_facts
"""

EXAMPLES = r"""
- name: Record the GPUs and report what changed since the last run
  become: true
  nvidia_gpu_inventory:
  register: gpu_inventory

- name: Show the changes
  ansible.builtin.debug:
    msg: "{{ gpu_inventory.drift }}"
  when: gpu_inventory.drift | length > 0

- name: Keep the inventory elsewhere, with a shorter history, overwriting a damaged file
  become: true
  nvidia_gpu_inventory:
    path: /var/lib/gpu-node/gpu_inventory.json
    history_max: 50
    on_corrupt: replace
"""

RETURN = r"""
drift:
  description:
    - One line per slot that differs from the inventory (and per GPU that does not answer NVML),
      in PCI address order. Empty when nothing changed, and on the first run.
  returned: success
  type: list
  elements: str
  sample:
    - "slot 0000:1a:00.0: serial 0323618008123 -> 0324618008999, same model (replaced)"
    - "GPU missing from slot 0000:3d:00.0 (was Tesla V100-SXM2-16GB, serial 0323618009016)"
    - "slot 0000:3e:00.0: model changed Tesla V100-SXM2-16GB -> Tesla V100-SXM2-32GB
      (serial 0323618009382 -> 0325618000101)"
changes:
  description:
    - The drift as data, one entry per line, with C(slot), C(kind), C(line), C(before) and
      C(after) (the recorded card or null), and C(fields) for a change on the same card.
    - C(kind) is C(added), C(missing), C(replaced), C(model_changed), C(vbios_changed),
      C(memory_changed), C(board_part_number_changed), C(name_changed) or C(fields_changed)
      (several on the same card) - these are recorded in the history - or C(not_answering),
      C(unidentified) (its UUID and serial cannot be read) or C(unplaced) (its PCI address
      cannot be read), which leave the inventory as it is.
  returned: success
  type: list
  elements: dict
  sample:
    - slot: "0000:1b:00.0"
      kind: vbios_changed
      line: "slot 0000:1b:00.0: VBIOS 88.00.4F.00.09 -> 88.00.80.00.01 (same card, flashed)"
      fields: [vbios_version]
inventory:
  description:
    - The inventory as written (in check mode, as it would be written) - C(format) (1),
      C(created), C(last_changed), C(slots) (PCI address to C(serial), C(uuid), C(name),
      C(memory_total_mib), C(vbios_version), C(board_part_number), C(first_seen)) and
      C(history) (events with C(time), C(slot), C(kind), C(line), C(before), C(after); a card
      that left its slot has C(last_seen)). Times are UTC.
  returned: success
  type: dict
checked_at:
  description:
    - When the GPUs were read (UTC), which is when every card in C(inventory.slots) was last seen.
  returned: success
  type: str
  sample: "2025-03-09T10:12:40Z"
first_inventory:
  description: True when there was no inventory before (or a damaged one was replaced).
  returned: success
  type: bool
gpus_present:
  description: GPUs in the inventory now, those that do not answer NVML included.
  returned: success
  type: int
  sample: 4
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.nvidia_gpu.atomic_file import write_text
from ansible.module_utils.nvidia_gpu.facts import collect
from ansible.module_utils.nvidia_gpu.gpu_inventory import (
    DEFAULT_HISTORY_MAX,
    InventoryError,
    dumps,
    load,
    reconcile,
)
from ansible.module_utils.nvidia_gpu.nvml import GpuError
from ansible.module_utils.nvidia_gpu.pci import SYSFS_PCI_DEVICES, gpu_addresses

# A damaged file is shown in the diff up to this size; the inventory itself stays far below it.
DIFF_MAX_BYTES = 256 * 1024


def read_previous(module, path):
    """(previous record or None, the file's text for the diff)."""
    try:
        previous = load(path)
    except InventoryError as error:
        if not (error.replaceable and module.params["on_corrupt"] == "replace"):
            advice = (
                "; move it away (mv %s %s.bad) to start a new inventory, or set on_corrupt=replace"
                % (path, path)
                if error.replaceable
                else ""
            )
            module.fail_json(msg="%s%s" % (error, advice))
        module.warn("%s; replaced by a new inventory (on_corrupt=replace)" % error)
        return None, damaged_text(path)
    return previous, "" if previous is None else dumps(previous)


def damaged_text(path):
    try:
        with open(path, "rb") as handle:
            data = handle.read(DIFF_MAX_BYTES + 1)
    except OSError:
        return ""
    if len(data) > DIFF_MAX_BYTES or b"\0" in data:
        return "(not shown: binary or over %d bytes)\n" % DIFF_MAX_BYTES
    return data.decode("utf-8", "replace")


def pci_slots(module, sysfs_root):
    """The addresses of the GPUs in the PCI tree; None (with a warning) when it is unreadable."""
    try:
        return set(gpu_addresses(sysfs_root))
    except OSError as error:
        module.warn(
            "%s; without the PCI tree a GPU that NVML does not list cannot be told removed from "
            "fallen off the bus, so none is reported missing" % error
        )
        return None


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": "/etc/ansible/facts.d/gpu_inventory.fact"},
            "history_max": {"type": "int", "default": DEFAULT_HISTORY_MAX},
            "sysfs_root": {"type": "path", "default": SYSFS_PCI_DEVICES},
            "on_corrupt": {"type": "str", "choices": ["fail", "replace"], "default": "fail"},
        },
        supports_check_mode=True,
    )
    path, history_max = module.params["path"], module.params["history_max"]
    if history_max < 0:
        module.fail_json(msg="history_max must be 0 or more, not %d" % history_max)
    previous, before_text = read_previous(module, path)
    checked_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        # Only identity is needed; the supported clock lists are the slow part of facts.
        facts = collect(with_supported_clocks=False, sysfs_root=module.params["sysfs_root"])
    except GpuError as error:
        module.fail_json(msg="%s (the inventory in %s is left as it is)" % (error, path))
    record, changes, drift = reconcile(
        previous,
        facts["gpus"],
        pci_slots(module, module.params["sysfs_root"]),
        checked_at,
        history_max,
    )
    after_text = dumps(record)
    # A file written by hand in another layout but holding the same record is left alone.
    changed = record != previous
    if changed and not module.check_mode:
        try:
            write_text(path, after_text, mode=0o644)
        except OSError as error:
            module.fail_json(msg="cannot write the GPU inventory %s: %s" % (path, error))
    result = {
        "changed": changed,
        "drift": drift,
        "changes": changes,
        "inventory": record,
        "checked_at": checked_at,
        "first_inventory": previous is None,
        "gpus_present": len(record["slots"]),
    }
    if module._diff:
        result["diff"] = {
            "before_header": path,
            "after_header": path,
            "before": before_text,
            "after": after_text if changed else before_text,
        }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
