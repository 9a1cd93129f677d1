# Copyright: the gpu-node project contributors
# SPDX-License-Identifier: Apache-2.0
"""Filters of the slurm role over module_utils/nvidia_gpu/slurm_nodes.py: a node's definition
from `slurmd -C` and NVML facts, the merge with the controller's known nodes, and the lines of
slurm.conf and gres.conf; and the batches a rolling change drains one after the other
(slurm_control.py). A bad value fails the task with the message naming it."""

from __future__ import annotations

from pathlib import Path

import ansible.module_utils
from ansible.errors import AnsibleFilterError

_MODULE_UTILS = str(Path(__file__).resolve().parents[1] / "module_utils")
if _MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_MODULE_UTILS)

from ansible.module_utils.nvidia_gpu import slurm_control, slurm_nodes  # noqa: E402


def _checked(function):
    def run(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except ValueError as error:  # slurm_nodes.SlurmNodeError is one
            raise AnsibleFilterError(str(error)) from error

    run.__doc__ = function.__doc__
    return run


def slurm_node_definition(slurmd_hardware_text, name, gpus, **options):
    """The node's definition (slurm_nodes.definition) from `slurmd -C`'s output."""
    hardware = slurm_nodes.parse_slurmd_hardware(slurmd_hardware_text)
    return slurm_nodes.definition(name, hardware, gpus, **options)


class FilterModule:
    def filters(self):
        return {
            "slurm_node_definition": _checked(slurm_node_definition),
            "slurm_nodes_merge": _checked(slurm_nodes.merge),
            "slurm_node_line": _checked(slurm_nodes.node_line),
            "slurm_gres_lines": _checked(slurm_nodes.gres_lines),
            "slurm_rolling_batches": _checked(slurm_control.batches),
        }
