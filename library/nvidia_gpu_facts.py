#!/usr/bin/python
# Copyright: the gpu-node project contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: facts about every NVIDIA GPU, read through NVML."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_gpu_facts
short_description: Facts about every NVIDIA GPU of a host, read through NVML
description:
  - Reads identity, versions, power, clocks, temperatures, clock event (throttle) reasons, ECC,
    retired pages or remapped rows, NVLink, PCIe and compute mode of every GPU in one NVML
    session, and the GPU-to-GPU link matrix (as C(nvidia-smi topo -m) shows it).
  - Returns them under C(ansible_facts.nvidia_gpu). A value a GPU does not support is reported as
    the string C(unsupported), not as an error.
  - A value NVML fails to read (any other error) is the string C(unreadable), with an entry in
    the C(unreadable) list of its GPU (or of the system, for the versions and the link matrix)
    saying which call failed and why; everything else is still read.
  - A GPU that has fallen off the bus, or that NVML cannot open at all, is listed with
    C(lost=true) and the reason, so a play can still report on the others.
  - Needs the NVIDIA driver (C(libnvidia-ml.so.1)) and the Python package nvidia-ml-py on the host.
version_added: "1.0.0"
author: gpu-node project contributors (@gpu-node)
options:
  supported_clocks:
    description:
      - Also list the supported memory and graphics clocks of each GPU (long lists; off makes the
        result much smaller).
    type: bool
    default: true
  sysfs_root:
    description:
      - The PCI device tree. A GPU that has fallen off the bus cannot tell NVML its PCI address;
        NVML numbers GPUs in PCI bus order, so the address is taken from here when the tree and
        NVML agree.
    type: path
    default: /sys/bus/pci/devices
attributes:
  check_mode:
    description: Only reads the GPUs, so check mode returns the same facts.
    support: full
  diff_mode:
    description: Changes nothing, so has no diff.
    support: none
  facts:
    description: Returns the GPUs as C(ansible_facts.nvidia_gpu).
    support: full
requirements:
  - nvidia-ml-py (pynvml) on the managed host
  - an NVIDIA driver that provides libnvidia-ml.so.1
notes:
  - Runs without root; reading some counters may need it on some drivers.
seealso:
  - module: nvidia_gpu_settings
  - module: nvidia_gpu_health
"""

EXAMPLES = r"""
- name: Read GPU facts
  nvidia_gpu_facts:

- name: Show each GPU's model and power limit
  ansible.builtin.debug:
    msg: "{{ item.index }}: {{ item.name }} {{ item.power.limit_w }} W"
  loop: "{{ ansible_facts['nvidia_gpu']['gpus'] | rejectattr('lost') }}"

- name: Read facts without the supported clock lists
  nvidia_gpu_facts:
    supported_clocks: false
"""

RETURN = r"""
ansible_facts:
  description: Facts under the key C(nvidia_gpu).
  returned: success
  type: complex
  contains:
    nvidia_gpu:
      description: Driver versions, GPUs and their link matrix.
      type: dict
      contains:
        driver_version:
          description: NVIDIA driver version (C(unreadable) when NVML failed to tell it).
          type: str
          sample: "580.95.05"
        cuda_driver_version:
          description: Highest CUDA version the driver supports.
          type: str
          sample: "13.0"
        nvml_version:
          description: NVML library version.
          type: str
          sample: "13.580.95.05"
        count:
          description: Number of GPUs NVML enumerates, lost ones included.
          type: int
          sample: 4
        lost_count:
          description: Number of GPUs that have fallen off the bus.
          type: int
          sample: 0
        link_matrix:
          description:
            - GPU-to-GPU connection by index, as C(nvidia-smi topo -m) spells it (C(NV2) = two
              NVLinks, C(PIX), C(PXB), C(PHB), C(NODE), C(SYS) = PCIe paths, C(X) = itself).
          type: dict
          sample: {"0": {"0": "X", "1": "NV2"}, "1": {"0": "NV2", "1": "X"}}
        unreadable:
          description:
            - System values NVML failed to read - the versions, and PCIe paths of the link matrix
              (field C(link_matrix.A.B)) - each with C(field), C(call) (the NVML function) and
              C(error) (what the failure means). Empty when everything was read.
          type: list
          elements: dict
          sample: []
        gpus:
          description:
            - One entry per GPU with C(index), C(lost), C(uuid), C(serial), C(name),
              C(board_part_number), C(vbios_version), C(pci_bus_id), C(pci_device_id),
              C(architecture), C(compute_capability), C(memory_total_mib), C(persistence_mode),
              C(compute_mode), C(performance_state), C(power) (C(usage_w), C(limit_w),
              C(default_limit_w), C(min_limit_w), C(max_limit_w), C(enforced_limit_w)), C(clocks)
              (current, max, application and default application clocks in MHz),
              C(supported_clocks) (memory MHz to graphics MHz list), C(temperature) (C(gpu_c),
              C(slowdown_c), C(shutdown_c), C(max_operating_c)), C(clock_event_reasons) (decoded
              names), C(ecc) (mode and volatile/aggregate counts), C(retired_pages) (Volta and
              older) or C(remapped_rows) (Ampere and newer), C(nvlinks) (per link C(active),
              C(remote_pci_bus_id), C(remote_is_switch), C(errors)) and C(pcie) (C(generation),
              C(max_generation), C(width), C(max_width), C(replay_counter)).
            - C(unreadable) lists the values of the GPU that NVML failed to read (their value is
              C(unreadable)), each as C(field) (its path in the GPU's facts, for example
              C(temperature.gpu_c), C(nvlinks[2].errors.replay), C(uuid)), C(call) (the NVML
              function) and C(error) (what the failure means); empty when everything was read.
              A GPU whose identity cannot be read is still listed, by index, with the rest of its
              facts; C(nvlinks) is C(unreadable) as a whole when the link states cannot be read.
            - A lost GPU has only C(index), C(lost=true) and C(error) (naming the NVML call when
              NVML could not open it at all), plus C(uuid) and C(pci_bus_id) when they were read
              before it was lost; C(pci_bus_id) comes from the PCI tree (then
              C(pci_bus_id_from=sysfs)) when NVML numbering and the tree agree.
          type: list
          elements: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.nvidia_gpu.facts import collect
from ansible.module_utils.nvidia_gpu.nvml import GpuError
from ansible.module_utils.nvidia_gpu.pci import SYSFS_PCI_DEVICES


def main():
    module = AnsibleModule(
        argument_spec={
            "supported_clocks": {"type": "bool", "default": True},
            "sysfs_root": {"type": "path", "default": SYSFS_PCI_DEVICES},
        },
        supports_check_mode=True,
    )
    try:
        facts = collect(
            with_supported_clocks=module.params["supported_clocks"],
            sysfs_root=module.params["sysfs_root"],
        )
    except GpuError as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=False, ansible_facts={"nvidia_gpu": facts})


if __name__ == "__main__":
    main()
