#!/usr/bin/python
# Copyright: the gpu-node project contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: declared persistence, power limit, clocks and compute mode for NVIDIA GPUs."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_gpu_settings
short_description: Persistence, power limit, clocks and compute mode of NVIDIA GPUs, through NVML
description:
  - Brings a selection of GPUs (all, indices, UUIDs or model names) to the declared persistence
    mode, power limit, clocks and compute mode, changing only what differs.
  - Every requested value is validated for every selected GPU before anything is changed; an
    unsupported clock is an error that lists the nearest supported values, a power limit outside a
    card's constraints names the allowed range.
  - If a change fails part-way (a GPU lost, no permission), the changes this call already made are
    undone and every GPU involved is reported by index and UUID.
  - Settings made through NVML last until reboot or driver reload; the gpu_tuning role re-applies
    them at every boot with the same code.
version_added: "1.0.0"
author: gpu-node project contributors (@gpu-node)
options:
  gpus:
    description:
      - Which GPUs the settings apply to. C(all), indices (C(0)), UUIDs (C(GPU-...)) or model names
        as NVML reports them, shell patterns allowed (C(*V100*)). Every item must match a GPU.
    type: list
    elements: raw
    default: [all]
  persistence_mode:
    description: Keep the driver loaded when no process uses the GPU.
    type: bool
  power_limit:
    description:
      - Power limit in watts (a whole number within the card's constraints), or C(default) for the
        card's own default limit.
    type: raw
  clocks:
    description:
      - Clock limits. Exactly one mechanism holds the clocks afterwards.
    type: dict
    suboptions: &clock_suboptions
      strategy:
        description:
          - C(locked) caps graphics clocks with locked clocks (Volta and newer; memory clocks too on
            Ampere and newer) and puts application clocks back to their defaults.
          - C(application) sets application clocks (memory and graphics) and removes locks.
          - C(auto) is C(locked) where the GPU supports it, else C(application).
          - C(default) restores the card's own clocks (same as O(reset_clocks)).
        type: str
        choices: [auto, locked, application, default]
        default: auto
      graphics_mhz:
        description:
          - Highest graphics clock (locked) or the graphics application clock, in MHz; C(default)
            for the card's default application clock. Must be a supported clock unless
            O(snap_clocks) is set.
        type: raw
      graphics_min_mhz:
        description:
          - Lowest graphics clock of a lock, in MHz; defaults to the lowest supported clock.
        type: raw
      memory_mhz:
        description:
          - Memory application clock (application), or the highest memory clock of a memory lock
            (locked, Ampere and newer); C(default) for the card's default.
        type: raw
  reset_clocks:
    description: Restore the card's own clocks (remove locks, default application clocks).
    type: bool
    default: false
  compute_mode:
    description: CUDA compute mode.
    type: str
    choices: [default, exclusive_process, prohibited]
  snap_clocks:
    description: Use the nearest supported clock instead of failing on an unsupported one.
    type: bool
    default: false
  overrides:
    description:
      - Settings for some GPUs that differ from the ones above (per model or per index), applied
        on top of them in order, later ones winning. An override's O(clocks) replace the clocks
        above for its GPUs. All GPUs are validated together before anything changes.
    type: list
    elements: dict
    suboptions:
      gpus:
        description: Which GPUs this override applies to, as in O(gpus).
        type: list
        elements: raw
        required: true
      persistence_mode:
        description: As O(persistence_mode).
        type: bool
      power_limit:
        description: As O(power_limit).
        type: raw
      clocks:
        description: As O(clocks), with the same suboptions.
        type: dict
        suboptions: *clock_suboptions
      reset_clocks:
        description: As O(reset_clocks).
        type: bool
      compute_mode:
        description: As O(compute_mode).
        type: str
        choices: [default, exclusive_process, prohibited]
attributes:
  check_mode:
    description: Validates every value for every selected GPU and reports what would change.
    support: full
  diff_mode:
    description: Shows each changed GPU's settings before and after, in watts and MHz.
    support: full
requirements:
  - nvidia-ml-py (pynvml) on the managed host
  - an NVIDIA driver that provides libnvidia-ml.so.1
  - root to change settings (check mode works without)
notes:
  - NVML has no call that reads locked clocks back; the module records the locks it makes under
    C(/run/nvidia-gpu) (emptied at reboot, like the locks themselves). Locks made by other tools
    such as C(nvidia-smi -lgc) are not seen. A record that cannot be read or is damaged is not
    taken for no lock; the locks it should show are unknown and set again, with a warning.
seealso:
  - module: nvidia_gpu_facts
  - module: nvidia_gpu_health
"""

EXAMPLES = r"""
- name: The seed machine's fix - persistence, 200 W and application clocks 877/1005 MHz
  nvidia_gpu_settings:
    persistence_mode: true
    power_limit: 200
    clocks:
      strategy: application
      memory_mhz: 877
      graphics_mhz: 1005
  become: true

- name: Cap graphics clocks with locked clocks on every V100
  nvidia_gpu_settings:
    gpus: ["Tesla V100*"]
    clocks:
      strategy: locked
      graphics_mhz: 1005
  become: true

- name: Back to each card's own limits and clocks
  nvidia_gpu_settings:
    power_limit: default
    reset_clocks: true
  become: true

- name: One call for a mixed node - 250 W everywhere, 300 W on the A100s
  nvidia_gpu_settings:
    persistence_mode: true
    power_limit: 250
    overrides:
      - gpus: ["*A100*"]
        power_limit: 300
  become: true
"""

RETURN = r"""
gpus:
  description: One entry per selected GPU.
  returned: success
  type: list
  elements: dict
  contains:
    index:
      description: NVML index.
      type: int
    uuid:
      description: GPU UUID.
      type: str
    name:
      description: Model name.
      type: str
    changed:
      description: Settings that were (or in check mode would be) changed, in the order applied.
      type: list
      elements: str
      sample: [power_limit_w, applications_clocks]
    before:
      description: Value of each managed setting before this call (watts, MHz).
      type: dict
      sample:
        power_limit_w: 300
        applications_clocks: {"memory_mhz": 877, "graphics_mhz": 1312}
    after:
      description: Value of each managed setting after this call.
      type: dict
      sample:
        power_limit_w: 200
        applications_clocks: {"memory_mhz": 877, "graphics_mhz": 1005}
failed_gpu:
  description: The GPU whose change failed (index and UUID), when applying failed part-way.
  returned: failure while applying
  type: dict
  sample: {"index": 2, "uuid": "GPU-0c1f..."}
rolled_back:
  description: Changes of this call that were undone after the failure.
  returned: failure while applying
  type: list
  elements: dict
not_restored:
  description: Changes that could not be undone, with the reason. Empty when all were restored.
  returned: failure while applying
  type: list
  elements: dict
"""

import copy

from ansible.module_utils import basic
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import NoLogError
from ansible.module_utils.nvidia_gpu.nvml import GpuError
from ansible.module_utils.nvidia_gpu.settings import ensure
from ansible.module_utils.nvidia_gpu.settings_apply import ApplyFailed
from ansible.module_utils.nvidia_gpu.settings_options import (
    MUTUALLY_EXCLUSIVE,
    OPTIONS,
    argument_spec,
)


def unnamed_option_error(params):
    """The first of Ansible's own validation errors that names its option, when the first one
    does not; else None.

    A mapping option given as text that is neither JSON nor key=value (clocks: fast) fails first
    in Ansible's no_log scan, whose message does not say which option it is; the type check
    that follows it does.
    """
    given = {k: copy.deepcopy(v) for k, v in params.items() if not k.startswith("_ansible_")}
    errors = list(ArgumentSpecValidator(argument_spec()).validate(given).errors)
    if not errors or not isinstance(errors[0], NoLogError):
        return None
    named = [error for error in errors if not isinstance(error, NoLogError)]
    return named[0].msg if named else None


def main():
    # (validate-modules reads the argument_spec with a _load_params that returns None.)
    message = unnamed_option_error(basic._load_params() or {})
    if message:
        # Only to report the message: options taken as they are, checked no further.
        bare = AnsibleModule(
            argument_spec={name: {"type": "raw"} for name in OPTIONS}, supports_check_mode=True
        )
        bare.fail_json(msg=message)
    # The options are those of settings_options (one table); DOCUMENTATION above is checked
    # against it by tests/test_settings_options.py.
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[list(pair) for pair in MUTUALLY_EXCLUSIVE],
        supports_check_mode=True,
    )
    try:
        changed, gpus, diff = ensure(module.params, check_mode=module.check_mode, warn=module.warn)
    except ApplyFailed as error:
        module.fail_json(
            msg=str(error),
            failed_gpu=error.failed_gpu,
            rolled_back=error.rolled_back,
            not_restored=error.not_restored,
        )
    except GpuError as error:
        module.fail_json(msg=str(error))
    result = {"changed": changed, "gpus": gpus}
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
