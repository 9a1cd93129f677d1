#!/usr/bin/python
# Copyright: the gpu-node project contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: the driver branch, version and kernel modules for the GPUs present."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_driver_select
short_description: Choose the NVIDIA driver branch, version and kernel module flavour for the GPUs
description:
  - Asks apt what the configured package source offers (C(apt-cache search --names-only), then
    C(apt-cache madison) over the packages O(driver_probes) match) and dpkg which driver is
    installed (C(dpkg-query --show) over O(installed_patterns)), applies the project's driver
    policy to the GPUs found on PCI (M(nvidia_pci_facts)), and returns the choice with a
    one-line reason.
  - By default the newest offered branch every GPU supports is chosen (Volta and older end at
    R580), the proprietary kernel modules where any GPU lacks a GSP (Volta and older) and the
    open ones for Turing and newer from R560, and the fabric manager only when NVSwitches are
    present. The result also names the CUDA line these GPUs and this driver want (Volta stays on
    12.x); M(nvidia_cuda_select) decides the CUDA version to install.
  - A pinned branch or flavour wins, but is checked against every GPU; one that cannot work
    fails with a message naming the GPU, its architecture and the allowed range. A branch that
    is not C(auto) or a branch number fails with a message naming C(nvidia_driver_branch).
  - An installed driver is kept (same version) unless O(upgrade) or O(allow_branch_change) say
    otherwise; moving to another branch or flavour without O(allow_branch_change) fails.
  - When the source offers no package O(driver_probes) matches, a real run fails naming the
    source; check mode returns C(chosen=false) and a message instead, since on a fresh node only
    a real run configures the source.
  - Decides only; installs nothing. Returns the choice as the fact C(nvidia_driver_selection).
version_added: "1.0.0"
author: gpu-node project contributors (@gpu-node)
options:
  gpus:
    description: GPUs as C(ansible_facts.nvidia_pci.gpus) lists them.
    type: list
    elements: dict
    required: true
  nvswitch_count:
    description: NVSwitch chips present (C(ansible_facts.nvidia_pci.nvswitch_count)).
    type: int
    default: 0
  driver_probes:
    description:
      - Per kernel module flavour, a regular expression (POSIX extended and Python alike) of the
        package names whose versions tell what the source offers for it.
    type: dict
    required: true
    suboptions:
      proprietary:
        description: Packages of the proprietary modules (C(^nvidia-kernel-dkms$)).
        type: str
        required: true
      open:
        description: Packages of the open modules (C(^nvidia-headless-[0-9]+-open$)).
        type: str
        required: true
  installed_patterns:
    description:
      - C(dpkg-query) patterns (shell globs) of the driver packages; the first installed one a
        probe of O(driver_probes) matches is the installed driver.
    type: list
    elements: str
    required: true
  driver_branch:
    description: Driver branch to use (C(580)), or C(auto).
    type: str
    default: auto
  kernel_modules:
    description: Kernel module flavour.
    type: str
    choices: [auto, open, proprietary]
    default: auto
  allow_branch_change:
    description: Allow moving an installed driver to another branch or kernel module flavour.
    type: bool
    default: false
  upgrade:
    description: Move an installed driver to the newest version of its branch.
    type: bool
    default: false
  source:
    description: How messages name the driver source.
    type: str
    default: the configured source
attributes:
  check_mode:
    description: Runs in check mode too; it only reads what apt and dpkg say.
    support: full
  diff_mode:
    description: Changes nothing, so has no diff.
    support: none
  facts:
    description: Returns the choice as C(ansible_facts.nvidia_driver_selection).
    support: full
notes:
  - The policy lives in C(module_utils/nvidia_gpu/driver_choice.py) (limits per GPU in
    C(gpu_limits.py), from the table in C(models.py)); apt and dpkg are asked by
    C(apt_query.py).
seealso:
  - module: nvidia_pci_facts
  - module: nvidia_cuda_select
"""

EXAMPLES = r"""
- name: Choose the driver from what Debian's archive offers
  nvidia_driver_select:
    gpus: "{{ ansible_facts['nvidia_pci']['gpus'] }}"
    nvswitch_count: "{{ ansible_facts['nvidia_pci']['nvswitch_count'] }}"
    driver_probes:
      proprietary: ^nvidia-kernel-dkms$
      open: ^nvidia-open-kernel-dkms$
    installed_patterns: [nvidia-kernel-dkms, nvidia-open-kernel-dkms]
    source: Debian 12 non-free
  register: driver_choice

- name: End here in check mode when the source is not configured yet
  ansible.builtin.meta: end_role
  when: not driver_choice.chosen

- name: Pin branch 580 from NVIDIA's repository (fails on GPUs R580 cannot drive)
  nvidia_driver_select:
    gpus: "{{ ansible_facts['nvidia_pci']['gpus'] }}"
    driver_probes:
      proprietary: ^nvidia-headless-[0-9]+$
      open: ^nvidia-headless-[0-9]+-open$
    installed_patterns: ["nvidia-headless-[0-9]*"]
    driver_branch: "580"
"""

RETURN = r"""
chosen:
  description: Whether a driver was chosen; false only in check mode when the source offers none.
  returned: always
  type: bool
  sample: true
msg:
  description: The reason line, or why nothing was chosen.
  returned: always
  type: str
offered:
  description: What apt and dpkg said.
  returned: when the source offers driver packages
  type: dict
  contains:
    versions:
      description: Package versions the source offers, per kernel module flavour, newest first.
      type: dict
      sample: {"proprietary": ["535.309.01-0+deb12u1", "535.261.03-1"], "open": ["535.261.03-1"]}
    installed_version:
      description: Package version of the driver installed now (empty when none is).
      type: str
      sample: 535.261.03-1
    installed_kernel_modules:
      description: Its kernel module flavour (empty when none is installed).
      type: str
      sample: proprietary
selection:
  description: The choice (also returned as the fact C(nvidia_driver_selection)).
  returned: when chosen
  type: dict
  contains:
    branch:
      description: Driver branch.
      type: int
      sample: 580
    version:
      description: Package version of the driver to have installed.
      type: str
      sample: 580.95.05-0ubuntu1
    upstream_version:
      description: NVIDIA's version number of it.
      type: str
      sample: 580.95.05
    action:
      description: C(install) (none yet), C(keep), C(upgrade) (same branch) or C(change_branch).
      type: str
    kernel_modules:
      description: C(proprietary) or C(open).
      type: str
    cuda_version:
      description: CUDA version these GPUs and this driver want.
      type: str
      sample: "12.8"
    cuda_install:
      description: Always null here; M(nvidia_cuda_select) says what the CUDA source installs.
      type: str
    cuda_fallback:
      description: Always false here.
      type: bool
    fabric_manager:
      description: Whether the NVSwitch fabric manager is needed.
      type: bool
    architectures:
      description: Architectures of the GPUs, oldest first.
      type: list
      elements: str
    allowed_branches:
      description: Lowest and highest branch every GPU accepts (null where unbounded).
      type: dict
    allowed_kernel_modules:
      description: Flavours every GPU accepts.
      type: list
      elements: str
    parts:
      description: The parts of the reason line (driver, kernel_modules, cuda, fabric_manager).
      type: dict
    driver_notes:
      description: Remarks about the driver choice (unknown GPUs trusted to the pins).
      type: list
      elements: str
    reason:
      description: One line saying what was chosen and why.
      type: str
    notes:
      description: All remarks of the reason line.
      type: list
      elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.nvidia_gpu.apt_query import driver_offer
from ansible.module_utils.nvidia_gpu.choice_module import exit_with_choice
from ansible.module_utils.nvidia_gpu.driver_choice import DriverRequest, choose_driver


def argument_spec():
    return {
        "gpus": {"type": "list", "elements": "dict", "required": True},
        "nvswitch_count": {"type": "int", "default": 0},
        "driver_probes": {
            "type": "dict",
            "required": True,
            "options": {
                "proprietary": {"type": "str", "required": True},
                "open": {"type": "str", "required": True},
            },
        },
        "installed_patterns": {"type": "list", "elements": "str", "required": True},
        "driver_branch": {"type": "str", "default": "auto"},
        "kernel_modules": {
            "type": "str",
            "choices": ["auto", "open", "proprietary"],
            "default": "auto",
        },
        "allow_branch_change": {"type": "bool", "default": False},
        "upgrade": {"type": "bool", "default": False},
        "source": {"type": "str", "default": "the configured source"},
    }


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    exit_with_choice(
        module,
        "nvidia_driver_selection",
        lambda: DriverRequest(
            branch=params["driver_branch"],
            kernel_modules=params["kernel_modules"],
            allow_branch_change=params["allow_branch_change"],
            upgrade=params["upgrade"],
            nvswitch_count=params["nvswitch_count"],
            source=params["source"],
        ),
        lambda run: driver_offer(
            run, params["driver_probes"], params["installed_patterns"], params["source"]
        ),
        lambda request, offer: choose_driver(params["gpus"], request, offer),
    )


if __name__ == "__main__":
    main()
