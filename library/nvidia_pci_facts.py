#!/usr/bin/python
# Copyright: the gpu-node project contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: NVIDIA GPUs and NVSwitches found on the PCI bus, before any driver exists."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_pci_facts
short_description: NVIDIA GPUs and NVSwitches on the PCI bus, read from sysfs without a driver
description:
  - Lists every NVIDIA (vendor C(10de)) device of PCI class display VGA (C(0x0300)) or 3D
    controller (C(0x0302)) under C(/sys/bus/pci/devices), and every NVSwitch (class C(0x0680)).
  - Names each GPU from the project's own table (model, architecture, compute capability) and
    falls back to the system's C(pci.ids) database for devices the table does not know; the
    architecture then comes from the chip name (C(GV100GL) is Volta, C(GA102) Ampere, ...).
  - Needs neither the NVIDIA driver nor pynvml, so it runs on a bare server to decide which
    driver it gets. Returns the facts under C(ansible_facts.nvidia_pci).
version_added: "1.0.0"
author: gpu-node project contributors (@gpu-node)
options:
  sysfs_root:
    description: Directory of PCI devices, one sub-directory per device as sysfs has them.
    type: path
    default: /sys/bus/pci/devices
  pci_ids_paths:
    description: pci.ids files to name unknown devices from, the first that exists is used.
    type: list
    elements: path
    default:
      - /usr/share/misc/pci.ids
      - /usr/share/hwdata/pci.ids
      - /usr/share/pci.ids
      - /usr/share/pciutils/pci.ids
attributes:
  check_mode:
    description: Only reads sysfs and pci.ids, so check mode returns the same facts.
    support: full
  diff_mode:
    description: Changes nothing, so has no diff.
    support: none
  facts:
    description: Returns the GPUs and NVSwitches found as C(ansible_facts.nvidia_pci).
    support: full
notes:
  - Reads only; runs without root.
seealso:
  - module: nvidia_driver_select
  - module: nvidia_gpu_facts
"""

EXAMPLES = r"""
- name: Find the GPUs before installing a driver
  nvidia_pci_facts:

- name: Say what was found
  ansible.builtin.debug:
    msg: "{{ item.pci_bus_id }}: {{ item.model }} ({{ item.architecture }})"
  loop: "{{ ansible_facts['nvidia_pci']['gpus'] }}"

- name: Fail on a node that should have four GPUs
  ansible.builtin.assert:
    that: ansible_facts['nvidia_pci']['count'] == 4
"""

RETURN = r"""
ansible_facts:
  description: Facts under the key C(nvidia_pci).
  returned: success
  type: complex
  contains:
    nvidia_pci:
      description: GPUs and NVSwitches in PCI bus order, with counts.
      type: dict
      contains:
        count:
          description: Number of NVIDIA GPUs.
          type: int
          sample: 4
        gpus:
          description:
            - One entry per GPU with C(pci_bus_id) (C(0000:1a:00.0)), C(device_id) (C(1db1)),
              C(pci_device_id) (C(10de:1db1)), C(subsystem_id), C(pci_class), C(display_class)
              (C(vga) or C(3d)), C(model), C(architecture) (C(volta), C(ampere), ... or
              C(unknown)), C(compute_capability), C(form_factor), C(memory_gib), C(min_branch)
              (a later first driver branch than its architecture's, or null) and C(named_by)
              (C(project table), C(pci.ids) or nothing).
          type: list
          elements: dict
        models:
          description: Number of GPUs per model name.
          type: dict
          sample: {"Tesla V100-SXM2-16GB": 4}
        architectures:
          description: Architectures present, oldest first.
          type: list
          elements: str
          sample: [volta]
        unknown_count:
          description: GPUs whose architecture could not be told.
          type: int
          sample: 0
        nvswitch_count:
          description: Number of NVSwitch chips; any means the fabric manager is needed.
          type: int
          sample: 0
        nvswitches:
          description: One entry per NVSwitch with C(pci_bus_id), C(device_id), C(pci_device_id)
            and C(name).
          type: list
          elements: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.nvidia_gpu.pci import PCI_IDS_PATHS, SYSFS_PCI_DEVICES, discover


def main():
    module = AnsibleModule(
        argument_spec={
            "sysfs_root": {"type": "path", "default": SYSFS_PCI_DEVICES},
            "pci_ids_paths": {"type": "list", "elements": "path", "default": list(PCI_IDS_PATHS)},
        },
        supports_check_mode=True,
    )
    try:
        facts = discover(module.params["sysfs_root"], module.params["pci_ids_paths"])
    except OSError as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=False, ansible_facts={"nvidia_pci": facts})


if __name__ == "__main__":
    main()
