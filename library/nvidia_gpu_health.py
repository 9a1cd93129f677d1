#!/usr/bin/python
# Copyright: the gpu-node project contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: health of NVIDIA GPUs against what the host's hardware should look like."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_gpu_health
short_description: Check NVIDIA GPUs against the expected hardware and name the likely cause
description:
  - Reads every GPU through NVML and checks it against expectations given as options - GPU count
    and model, NVLink links per GPU and the peer map, PCIe generation and width, temperature and
    the spread between the hottest GPU and its peers, uncorrected ECC errors (and corrected ones
    above a threshold), pending page retirement or row remapping, forbidden clock event
    (throttle) reasons, persistence mode, and the Xid events of this boot in the kernel log.
  - A value NVML fails to read costs that value, not the report - every GPU still gets its
    checks, and each failing NVML call is a finding (C(unreadable)) naming the GPU, the call and
    the values it left unread; critical when it hides the temperature, the uncorrected ECC
    count or the row remapping state (checks that guard against damage or corrupted results),
    else a warning.
  - Options are checked before anything is evaluated - a value outside its range, or an
    O(nvlink_peer_map) naming a GPU the node does not have, fails the task with a message naming
    the option and what is allowed.
  - Returns a list of findings, each with the GPU's index and UUID, the check, a severity, the
    value seen, the value expected and a message that names the likely cause (a GPU fallen off the
    bus, a loose SXM2 screw, a badly seated heatsink, a weak power supply...).
  - Fails the task when a finding reaches O(fail_on), and returns those findings as RV(blocking)
    whether it fails or not.
version_added: "1.0.0"
author: gpu-node project contributors (@gpu-node)
options:
  expected_count:
    description: Number of GPUs the host should have (1 or more).
    type: int
  expected_model:
    description: Model name every GPU should have, as NVML reports it; shell patterns allowed.
    type: str
  nvlink_links_per_gpu:
    description: Active NVLink links every GPU should have (6 on a 4x V100 SXM2 board), 0 to 18.
    type: int
  nvlink_pair_links:
    description:
      - NVLinks between every pair of GPUs (2 on a 4x V100 SXM2 board, the C(NV2) mesh), 1 to 18.
    type: int
  nvlink_peer_map:
    description:
      - "NVLinks expected between specific GPUs, for boards that are not a full mesh: GPU index to
        peer index to number of links, for example C({0: {1: 2, 2: 1}})."
      - Indices must be GPUs the node has (or O(expected_count) says it should have); links 1 to
        18; a GPU is not its own peer.
      - Mutually exclusive with O(nvlink_pair_links).
    type: dict
  nvlink_error_threshold:
    description: NVLink replay/recovery/CRC count above which a link is reported (0 or more).
    type: int
    default: 100
  min_pcie_generation:
    description:
      - Lowest acceptable PCIe generation, 1 to 6. An idle GPU that lowered its link speed is only
        reported as info.
    type: int
  min_pcie_width:
    description: Lowest acceptable PCIe link width, 1 to 32.
    type: int
  pcie_replay_threshold:
    description: PCIe replay count above which a GPU is reported (0 or more).
    type: int
    default: 100
  max_temperature_c:
    description:
      - Highest acceptable GPU temperature, 1 to 120; by default 5 C below each card's slowdown
        temperature.
    type: int
  max_temperature_spread_c:
    description:
      - How much hotter than the median of its peers a GPU may run (with 3 or more GPUs), 0 to
        100.
    type: int
    default: 15
  max_uncorrected_ecc:
    description: Highest acceptable count of uncorrected (volatile) ECC errors (0 or more).
    type: int
    default: 0
  max_corrected_ecc:
    description:
      - Corrected (volatile, since the driver loaded) ECC error count above which a GPU gets a
        warning - an early warning, as DCGM treats a high corrected rate; watch for retired pages
        or remapped rows. C(0) turns the check off.
    type: int
    default: 0
  max_retired_pages:
    description: Retired page count above which a GPU is reported as wearing out (0 or more).
    type: int
    default: 60
  forbidden_clock_event_reasons:
    description: Clock event reasons that are findings when present.
    type: list
    elements: str
    default: [hw_slowdown, hw_thermal_slowdown, hw_power_brake_slowdown, sw_thermal_slowdown]
  require_persistence:
    description: Report GPUs whose persistence mode is off.
    type: bool
    default: true
  kernel_log:
    description:
      - Where to look for Xid events of this boot. C(journal) (C(journalctl -k -b)), C(dmesg),
        a file path, or C(none) to skip.
    type: str
    default: journal
  sysfs_root:
    description:
      - The PCI device tree. A GPU that has fallen off the bus cannot tell NVML its PCI address;
        NVML numbers GPUs in PCI bus order, so the address is taken from here when the tree and
        NVML agree, and the GPU's Xid lines name it by index.
    type: path
    default: /sys/bus/pci/devices
  infiniband:
    description:
      - Also check the InfiniBand HCA ports, as the gpu-health timer does - C(sysfs_root) (the
        directory above C(sys/class/infiniband), default C(/)) and C(expected_ports) (each with
        C(hca), C(port) and any of C(rate_gbps), C(width), C(link_layer), C(fw_ver),
        C(pci_address); null checks only the ports found). A port down, missing, narrower or
        slower than expected is a critical finding (check C(infiniband)) naming the HCA and port.
      - Unset, no port is checked.
    type: dict
  gpu_inventory:
    description:
      - The GPU inventory by slot that M(nvidia_gpu_inventory) keeps (its C(path) option), as the
        gpu-health timer reads it. A GPU missing from the count is then named by its slot
        (PCI address) and the card last recorded there (model and serial), and whether the PCI
        bus shows the slot empty or holding a GPU the driver does not enumerate, in the
        C(gpu_count) finding. A slot the inventory records that no GPU answers for while the
        count is right (or no O(expected_count) is given) is a critical finding (check
        C(gpu_slot)).
      - No file there - nothing is named. A file that is not such an inventory is a warning
        (check C(gpu_inventory)) naming it, and every other check still runs.
      - Unset, no inventory is read. An absolute path.
    type: path
  fail_on:
    description: Fail the task when a finding is at least this severe; C(never) only reports.
    type: str
    choices: [critical, warning, never]
    default: critical
attributes:
  check_mode:
    description: Only reads the GPUs and the kernel log, so check mode runs every check.
    support: full
  diff_mode:
    description: Changes nothing, so has no diff.
    support: none
requirements:
  - nvidia-ml-py (pynvml) on the managed host
  - an NVIDIA driver that provides libnvidia-ml.so.1
seealso:
  - module: nvidia_gpu_facts
  - module: nvidia_gpu_inventory
"""

EXAMPLES = r"""
- name: Check a T180-G20 (4x V100 SXM2, NV2 between every pair)
  nvidia_gpu_health:
    expected_count: 4
    expected_model: Tesla V100-SXM2-16GB
    nvlink_links_per_gpu: 6
    nvlink_pair_links: 2
    min_pcie_generation: 3
    min_pcie_width: 16
    fail_on: critical

- name: Report only, and show the findings
  nvidia_gpu_health:
    fail_on: never
  register: gpu_health

- name: Print what is wrong
  ansible.builtin.debug:
    msg: "{{ gpu_health.findings | map(attribute='message') }}"
"""

RETURN = r"""
ansible_facts:
  description: >-
    The facts the findings were made from, as M(nvidia_gpu_facts) gathers them without the
    supported clocks: a report needs no second read of the GPUs.
  returned: when the GPUs could be read
  type: dict
  contains:
    nvidia_gpu:
      description: Driver, CUDA and per-GPU facts (see M(nvidia_gpu_facts)).
      type: dict
healthy:
  description: True when no finding is a warning or critical.
  returned: always
  type: bool
findings:
  description: What is wrong, worst first.
  returned: always
  type: list
  elements: dict
  contains:
    severity:
      description: C(critical), C(warning) or C(info).
      type: str
    check:
      description: >-
        Which check: unreadable (an NVML call failed; value lists the values it left unread),
        gpu_count, gpu_lost, gpu_model, nvlink_active, nvlink_errors, nvlink_topology,
        pcie_generation, pcie_width, pcie_replays, temperature, temperature_spread,
        ecc_uncorrected, ecc_corrected, ecc_history, retired_pages, retired_pages_pending,
        remapped_rows_failure, remapped_rows_pending, clock_events, persistence_mode, xid,
        kernel_log, infiniband, gpu_slot (a slot of the GPU inventory without a GPU; value the
        slot), gpu_inventory (the inventory file cannot be used).
      type: str
    gpu:
      description: GPU index, or null for host-wide findings.
      type: int
    uuid:
      description: GPU UUID, when known (null when it could not be read).
      type: str
    value:
      description: What was seen.
      type: raw
    expected:
      description: What was expected.
      type: raw
    message:
      description: What is wrong and its likely cause.
      type: str
  sample:
    - severity: critical
      check: gpu_lost
      gpu: 2
      uuid: null
      value: lost
      expected: present
      message: "GPU 2 has fallen off the bus (Xid 79): ..."
blocking:
  description:
    - The findings at least as severe as O(fail_on), worst first; none with O(fail_on=never).
    - The task fails when there is one, with their messages as C(msg).
  returned: always
  type: list
  elements: dict
gpus:
  description: Status per GPU (C(ok), C(warning) or C(critical)) with index, UUID and model.
  returned: always
  type: list
  elements: dict
infiniband:
  description:
    - With O(infiniband), the ports found (hca, port, state, phys_state, rate_gbps, width,
      link_layer, lid); null without it.
  returned: always
  type: dict
  sample: {"ports": [{"hca": "mlx5_0", "port": 1, "state": "ACTIVE", "phys_state": "LinkUp",
           "rate_gbps": 100, "width": "4X", "link_layer": "InfiniBand", "lid": 3}]}
gpu_inventory:
  description:
    - With O(gpu_inventory), the file (C(file)), whether it was read (C(read)), why it could not
      be used (C(error), else null), the recorded slots no GPU answers for (C(unanswered) - each
      with C(slot), C(state) (C(empty), C(not_enumerated) or C(unknown) when the PCI tree cannot
      be read), C(recorded) (C(slots), or C(history) for a slot the inventory recorded missing),
      C(since) (when it was recorded missing) and C(card) as recorded), and the indices of GPUs
      with no known PCI address (C(unplaced)); null without it.
  returned: always
  type: dict
  sample: {"file": "/etc/ansible/facts.d/gpu_inventory.fact", "read": true, "error": null,
           "unplaced": [], "unanswered": [{"slot": "0000:3d:00.0", "state": "empty",
           "recorded": "history", "since": "2025-03-09T10:12:40Z",
           "card": {"name": "Tesla V100-SXM2-16GB", "serial": "0323618009016"}}]}
xid_events:
  description:
    - Xid lines of this boot found in the kernel log, with PCI bus id and code; the findings name
      the GPU by index, a lost one included when its address is known.
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.nvidia_gpu.facts import collect
from ansible.module_utils.nvidia_gpu.health import FAIL_ON, Findings, blocking, evaluate, verdict
from ansible.module_utils.nvidia_gpu.health_config import gpu_inventory_file, infiniband_section
from ansible.module_utils.nvidia_gpu.health_options import DEFAULTS, OPTION_TYPES, normalise
from ansible.module_utils.nvidia_gpu.health_status import gpu_inventory_status, infiniband_status
from ansible.module_utils.nvidia_gpu.nvml import GpuError
from ansible.module_utils.nvidia_gpu.pci import SYSFS_PCI_DEVICES


def argument_spec():
    spec = {}
    for name, kind in OPTION_TYPES.items():
        spec[name] = {"type": kind}
        if DEFAULTS[name] is not None:
            spec[name]["default"] = DEFAULTS[name]
        if kind == "list":
            spec[name]["elements"] = "str"
    spec["sysfs_root"] = {"type": "path", "default": SYSFS_PCI_DEVICES}
    spec["infiniband"] = {"type": "dict"}
    spec["gpu_inventory"] = {"type": "path"}
    spec["fail_on"] = {"type": "str", "choices": list(FAIL_ON), "default": "critical"}
    return spec


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[["nvlink_pair_links", "nvlink_peer_map"]],
        supports_check_mode=True,
    )
    expectations = {name: module.params[name] for name in OPTION_TYPES}
    sysfs_root = module.params["sysfs_root"]
    # The ports' and the inventory's findings join the GPUs', as in the gpu-health timer's status.
    others = Findings()
    try:
        normalise(expectations)  # a wrong option fails before any GPU is read
        infiniband = infiniband_section(module.params["infiniband"])
        inventory = gpu_inventory_file(module.params["gpu_inventory"])
        facts = collect(with_supported_clocks=False, sysfs_root=sysfs_root)
        slots = gpu_inventory_status(inventory, facts, sysfs_root, others)
        report = evaluate(facts, expectations, slots)
    except GpuError as error:
        module.fail_json(
            msg=str(error),
            healthy=False,
            findings=[],
            blocking=[],
            gpus=[],
            xid_events=[],
            infiniband=None,
            gpu_inventory=None,
        )
    ports_found = infiniband_status(infiniband, others)
    report = dict(
        verdict(facts, report["findings"] + others.items, report["xid_events"]),
        infiniband=ports_found,
        gpu_inventory=slots,
    )
    result = dict(
        report,
        changed=False,
        blocking=blocking(report["findings"], module.params["fail_on"]),
        ansible_facts={"nvidia_gpu": facts},
    )
    if result["blocking"]:
        messages = [f["message"] for f in result["blocking"]]
        module.fail_json(msg="GPU health check failed: " + " | ".join(messages), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
