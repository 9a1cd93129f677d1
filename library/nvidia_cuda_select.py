#!/usr/bin/python
# Copyright: the gpu-node project contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: the CUDA version for the GPUs present and the driver chosen for them."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_cuda_select
short_description: Choose the CUDA toolkit version for the GPUs and the chosen NVIDIA driver
description:
  - Asks apt what the configured CUDA source offers (C(apt-cache search --names-only) with
    O(probe); with O(offered_by=version) also C(apt-cache madison) over the packages found),
    applies the project's CUDA policy to the GPUs found on PCI (M(nvidia_pci_facts)) and the
    driver chosen by M(nvidia_driver_select), and returns the choice with a one-line reason that
    covers driver and CUDA alike.
  - By default the CUDA version of O(defaults) for the newest major release the GPUs and the
    driver branch run (Volta stays on 12.x; 13.x needs branch 580). A pinned O(version) wins,
    but is checked against every GPU and the driver branch; one that is not C(auto) or
    C(MAJOR.MINOR) fails with a message naming C(cuda_version).
  - When the source lacks the wanted version and it is not pinned, the newest offered version
    that runs is installed instead (O(fallback)), and the reason line says so.
  - A source without any package O(probe) matches is an error that names it, except in check
    mode on a fresh node, where only a real run configures the source; the result then says so,
    with C(chosen=false).
  - Returns the choice as the fact C(cuda_selection); installs nothing.
version_added: "1.0.0"
author: gpu-node project contributors (@gpu-node)
options:
  driver_selection:
    description:
      - The driver choice, as M(nvidia_driver_select) returned it (the fact
        C(nvidia_driver_selection), or the node's local fact C(nvidia_driver)). Its driver part
        is reused as it is.
    type: dict
    required: true
  gpus:
    description: GPUs as C(ansible_facts.nvidia_pci.gpus) lists them.
    type: list
    elements: dict
    required: true
  version:
    description: CUDA version (C(12.8)), or C(auto) for the default of the CUDA line.
    type: str
    default: auto
  defaults:
    description: CUDA version installed per major release when nothing is pinned.
    type: dict
    default: {"11": "11.8", "12": "12.8", "13": "13.0"}
  fallback:
    description:
      - When the source does not offer the wanted version (and it is not pinned), install the
        newest one it offers that the GPUs and the driver run, and say so.
    type: bool
    default: true
  probe:
    description:
      - Regular expression (POSIX extended and Python alike) of the toolkit package names that
        tell what the source offers (C(^cuda-toolkit-[0-9]+-[0-9]+$), C(^nvidia-cuda-toolkit$)).
    type: str
    required: true
  offered_by:
    description:
      - C(name) when the package names carry the CUDA version (C(cuda-toolkit-12-8)); C(version)
        when the package versions are the CUDA versions (C(11.8.89~11.8.0-5~deb12u1)).
    type: str
    choices: [name, version]
    required: true
  source:
    description: How messages name the CUDA source.
    type: str
    default: the configured source
  hint:
    description:
      - What the reason line suggests when the source lacks the wanted version; C({line}) is
        replaced by the wanted CUDA line (C(12.x)).
    type: str
    default: ""
attributes:
  check_mode:
    description: Runs in check mode too; it only reads what apt says.
    support: full
  diff_mode:
    description: Changes nothing, so has no diff.
    support: none
  facts:
    description: Returns the choice as C(ansible_facts.cuda_selection).
    support: full
notes:
  - The policy lives in C(module_utils/nvidia_gpu/cuda_choice.py); apt is asked by
    C(apt_query.py).
seealso:
  - module: nvidia_driver_select
  - module: nvidia_pci_facts
"""

EXAMPLES = r"""
- name: Choose CUDA from NVIDIA's repository for the driver chosen earlier
  nvidia_cuda_select:
    gpus: "{{ ansible_facts['nvidia_pci']['gpus'] }}"
    driver_selection: "{{ ansible_facts['nvidia_driver_selection'] }}"
    probe: ^cuda-toolkit-[0-9]+-[0-9]+$
    offered_by: name
    source: NVIDIA's CUDA repository (debian12)

- name: Debian's own toolkit, saying what to do when it lacks the wanted line
  nvidia_cuda_select:
    gpus: "{{ ansible_facts['nvidia_pci']['gpus'] }}"
    driver_selection: "{{ ansible_facts['local']['nvidia_driver'] }}"
    probe: ^nvidia-cuda-toolkit$
    offered_by: version
    source: Debian 12 (nvidia-cuda-toolkit)
    hint: "set cuda_source: nvidia for {line}"
"""

RETURN = r"""
chosen:
  description: False only in check mode, when the CUDA source offers no toolkit yet.
  returned: always
  type: bool
  sample: true
msg:
  description: The node's reason line (driver and CUDA), or why no CUDA version was chosen.
  returned: always
  type: str
offered:
  description: CUDA package versions or names the source offers.
  returned: when the source offers toolkit packages
  type: list
  elements: str
  sample: [cuda-toolkit-12-8, cuda-toolkit-13-0]
selection:
  description:
    - The choice (also returned as the fact C(cuda_selection)), with the keys of the selection
      of M(nvidia_driver_select); its driver keys are those of O(driver_selection), its CUDA
      keys and reason line are this module's.
  returned: when chosen
  type: dict
  contains:
    cuda_version:
      description: CUDA version the GPUs and the driver want.
      type: str
      sample: "12.8"
    cuda_install:
      description: CUDA version the source will install.
      type: str
      sample: "11.8"
    cuda_fallback:
      description: True when cuda_install differs from cuda_version (the source lacks it).
      type: bool
    reason:
      description: The node's line, driver and CUDA.
      type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.nvidia_gpu.apt_query import cuda_offer
from ansible.module_utils.nvidia_gpu.choice_module import exit_with_choice
from ansible.module_utils.nvidia_gpu.cuda_choice import DEFAULT_CUDA, CudaRequest, choose_cuda


def argument_spec():
    return {
        "gpus": {"type": "list", "elements": "dict", "required": True},
        "driver_selection": {"type": "dict", "required": True},
        "version": {"type": "str", "default": "auto"},
        "defaults": {"type": "dict", "default": dict(DEFAULT_CUDA)},
        "fallback": {"type": "bool", "default": True},
        "probe": {"type": "str", "required": True},
        "offered_by": {"type": "str", "choices": ["name", "version"], "required": True},
        "source": {"type": "str", "default": "the configured source"},
        "hint": {"type": "str", "default": ""},
    }


def cuda_request(params):
    """The user's CUDA options, checked; YAML may have made the majors of defaults numbers."""
    defaults = {str(major): version for major, version in params["defaults"].items()}
    return CudaRequest(
        params["version"], defaults, params["fallback"], params["source"], params["hint"]
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    exit_with_choice(
        module,
        "cuda_selection",
        lambda: cuda_request(params),
        lambda run: cuda_offer(run, params["probe"], params["offered_by"], params["source"]),
        lambda request, offered: choose_cuda(
            params["gpus"], params["driver_selection"], request, offered
        ),
    )


if __name__ == "__main__":
    main()
