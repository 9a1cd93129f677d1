#!/usr/bin/python
# Copyright: the gpu-node project contributors
# Apache License 2.0 (see LICENSE)
"""Ansible module: the driver branch, kernel modules and CUDA version for the GPUs present."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_driver_select
short_description: Choose the NVIDIA driver branch, kernel module flavour and CUDA for the GPUs
description:
  - Applies the project's driver policy to the GPUs found on PCI (M(nvidia_pci_facts)) and the
    versions the configured package source offers, and returns the choice with a one-line reason.
  - By default the newest offered branch every GPU supports is chosen (Volta and older end at
    R580), the proprietary kernel modules where any GPU lacks a GSP (Volta and older) and the
    open ones for Turing and newer from R560, the newest CUDA line the GPUs and the driver run
    (Volta stays on 12.x), and the fabric manager only when NVSwitches are present.
  - A pinned branch, flavour or CUDA version wins, but is checked against every GPU; one that
    cannot work fails with a message naming the GPU, its architecture and the allowed range.
  - An installed driver is kept (same version) unless O(upgrade) or O(allow_branch_change) say
    otherwise; moving to another branch or flavour without O(allow_branch_change) fails.
  - Decides only; installs nothing. Returns the choice as the fact named by O(fact_name).
version_added: "1.0.0"
author: gpu-node project
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
  driver_offered:
    description: Driver package versions the source offers, per flavour (C(proprietary), C(open)).
    type: dict
  driver_madison:
    description:
      - Output of C(apt-cache madison) over the packages named by O(driver_probes); read into
        O(driver_offered) when that is not given.
    type: str
  driver_probes:
    description: Per flavour, a regular expression of the package names whose versions tell what
      the source offers for it (C(^nvidia-kernel-dkms$), C(^nvidia-headless-\d+$)).
    type: dict
  driver_branch:
    description: Driver branch to use (C(580)), or C(auto).
    type: str
    default: auto
  kernel_modules:
    description: Kernel module flavour.
    type: str
    choices: [auto, open, proprietary]
    default: auto
  cuda_version:
    description: CUDA version (C(12.8)), or C(auto) for the policy's default of the CUDA line.
    type: str
    default: auto
  cuda_offered:
    description:
      - CUDA versions or package names the CUDA source offers (C(cuda-toolkit-12-8),
        C(11.8.89~11.8.0-5~deb12u1)). Without it only the wanted CUDA version is decided.
    type: list
    elements: str
  cuda_defaults:
    description: CUDA version installed per major release when nothing is pinned.
    type: dict
    default: {"11": "11.8", "12": "12.8", "13": "13.0"}
  cuda_fallback:
    description:
      - When the CUDA source does not offer the wanted version (and it is not pinned), install
        the newest one it offers that the GPUs and the driver run, and say so.
    type: bool
    default: true
  installed_version:
    description: Version of the driver installed now (empty or unset when none).
    type: str
  installed_kernel_modules:
    description: Flavour of the installed driver (empty or unset when none or unknown).
    type: str
  installed_listing:
    description:
      - Output of C(dpkg-query --show) over the driver packages, one
        C(package | version | status) line each (showformat
        C(${Package} | ${Version} | ${db:Status-Abbrev}\n)); the first installed one that a
        probe of O(driver_probes) matches gives O(installed_version) and
        O(installed_kernel_modules).
    type: str
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
  cuda_source:
    description: How messages name the CUDA source.
    type: str
    default: the configured source
  cuda_hint:
    description:
      - What the message suggests when the CUDA source lacks the wanted version; C({line}) is
        replaced by the wanted CUDA line (C(12.x)).
    type: str
    default: ""
  driver_selection:
    description:
      - An earlier result of this module (the nvidia_driver role's); its driver choice is reused
        and only CUDA is decided, so the reason line covers both.
    type: dict
  fact_name:
    description: Name of the fact the choice is returned as.
    type: str
    default: nvidia_driver_selection
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  facts:
    support: full
notes:
  - The policy lives in C(module_utils/nvidia_gpu/driver_policy.py), the GPU table in
    C(module_utils/nvidia_gpu/models.py).
seealso:
  - module: nvidia_pci_facts
"""

EXAMPLES = r"""
- name: Choose the driver from what Debian's archive offers
  nvidia_driver_select:
    gpus: "{{ ansible_facts['nvidia_pci']['gpus'] }}"
    nvswitch_count: "{{ ansible_facts['nvidia_pci']['nvswitch_count'] }}"
    driver_madison: "{{ madison.stdout }}"
    driver_probes:
      proprietary: ^nvidia-kernel-dkms$
      open: ^nvidia-open-kernel-dkms$
    source: Debian 12's archive (non-free)

- name: Pin branch 580 (fails on GPUs R580 cannot drive)
  nvidia_driver_select:
    gpus: "{{ ansible_facts['nvidia_pci']['gpus'] }}"
    driver_offered:
      proprietary: [580.95.05-0ubuntu1, 570.195.03-0ubuntu1]
    driver_branch: "580"

- name: Decide CUDA for the driver chosen earlier
  nvidia_driver_select:
    gpus: "{{ ansible_facts['nvidia_pci']['gpus'] }}"
    driver_selection: "{{ ansible_facts['nvidia_driver_selection'] }}"
    cuda_offered: [cuda-toolkit-12-8, cuda-toolkit-12-9, cuda-toolkit-13-0]
    fact_name: cuda_selection
"""

RETURN = r"""
selection:
  description: The choice (also returned as the fact named by O(fact_name)).
  returned: success
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
      description: CUDA version the GPUs and the driver want.
      type: str
      sample: "12.8"
    cuda_install:
      description: CUDA version the CUDA source will install (null without O(cuda_offered)).
      type: str
      sample: "11.8"
    cuda_fallback:
      description: True when cuda_install differs from cuda_version (the source lacks it).
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
    reason:
      description: One line saying what was chosen and why.
      type: str
    notes:
      description: Remarks (minor version compatibility, unknown GPUs trusted to the pins).
      type: list
      elements: str
msg:
  description: The reason line.
  returned: success
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.nvidia_gpu.driver_policy import (
    DEFAULT_CUDA,
    PolicyError,
    installed_from_listing,
    offered_by_flavour,
    select,
)


def argument_spec():
    return {
        "gpus": {"type": "list", "elements": "dict", "required": True},
        "nvswitch_count": {"type": "int", "default": 0},
        "driver_offered": {"type": "dict"},
        "driver_madison": {"type": "str"},
        "driver_probes": {"type": "dict"},
        "driver_branch": {"type": "str", "default": "auto"},
        "kernel_modules": {
            "type": "str",
            "choices": ["auto", "open", "proprietary"],
            "default": "auto",
        },
        "cuda_version": {"type": "str", "default": "auto"},
        "cuda_offered": {"type": "list", "elements": "str"},
        "cuda_defaults": {"type": "dict", "default": dict(DEFAULT_CUDA)},
        "cuda_fallback": {"type": "bool", "default": True},
        "installed_version": {"type": "str"},
        "installed_kernel_modules": {"type": "str"},
        "installed_listing": {"type": "str"},
        "allow_branch_change": {"type": "bool", "default": False},
        "upgrade": {"type": "bool", "default": False},
        "source": {"type": "str", "default": "the configured source"},
        "cuda_source": {"type": "str", "default": "the configured source"},
        "cuda_hint": {"type": "str", "default": ""},
        "driver_selection": {"type": "dict"},
        "fact_name": {"type": "str", "default": "nvidia_driver_selection"},
    }


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_by={"driver_madison": "driver_probes", "installed_listing": "driver_probes"},
        mutually_exclusive=[
            ["driver_offered", "driver_madison"],
            ["installed_listing", "installed_version"],
        ],
        supports_check_mode=True,
    )
    params = module.params
    offered = params["driver_offered"]
    if offered is None and params["driver_madison"] is not None:
        offered = offered_by_flavour(params["driver_madison"], params["driver_probes"])
    installed = (params["installed_version"] or "", params["installed_kernel_modules"] or "")
    if params["installed_listing"] is not None:
        installed = installed_from_listing(params["installed_listing"], params["driver_probes"])
    try:
        selection = select(
            params["gpus"],
            driver_offered=offered,
            nvswitch_count=params["nvswitch_count"],
            driver_branch=params["driver_branch"],
            kernel_modules=params["kernel_modules"],
            cuda_version=params["cuda_version"],
            cuda_offered=params["cuda_offered"],
            cuda_defaults={str(k): str(v) for k, v in params["cuda_defaults"].items()},
            cuda_fallback=params["cuda_fallback"],
            installed_version=installed[0],
            installed_kernel_modules=installed[1],
            allow_branch_change=params["allow_branch_change"],
            upgrade=params["upgrade"],
            source=params["source"],
            cuda_source=params["cuda_source"],
            cuda_hint=params["cuda_hint"],
            driver_selection=params["driver_selection"],
        )
    except PolicyError as error:
        module.fail_json(msg=str(error), driver_offered=offered)
    module.exit_json(
        changed=False,
        msg=selection["reason"],
        selection=selection,
        ansible_facts={params["fact_name"]: selection},
    )


if __name__ == "__main__":
    main()
