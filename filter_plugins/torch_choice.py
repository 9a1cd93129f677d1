# Copyright: the gpu-node project contributors
# SPDX-License-Identifier: Apache-2.0
"""The stacks' choices on the controller: PyTorch for a node's PCI facts and driver branch
(training_stack), CuPy for its CUDA line (simulation_stack); the policy of
module_utils/nvidia_gpu/torch_choice.py."""

from __future__ import annotations

from pathlib import Path

import ansible.module_utils

# On the controller ansible.module_utils holds only ansible-core's own; the modules get the
# project's through AnsiballZ. Make the project's importable the same way (tests/conftest.py too).
_MODULE_UTILS = str(Path(__file__).resolve().parents[1] / "module_utils")
if _MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_MODULE_UTILS)

from ansible.module_utils.nvidia_gpu.choice_pins import PolicyError  # noqa: E402
from ansible.module_utils.nvidia_gpu.torch_choice import (  # noqa: E402
    DriverNotChosen,
    TorchRequest,
    choose_torch,
    cupy_requirement,
)


def torch_choice(gpus, driver_branch=None, **options):
    """The choice for these GPUs (nvidia_pci facts) and driver branch (a number, or anything else
    for none), with the role's torch options (TorchRequest's fields). A refusal is returned, not
    raised, as {'refused': reason}: the role's assert then fails the host with the reason alone;
    one that only waits for the driver's choice also says 'waits_for_driver'."""
    branch = int(driver_branch) if str(driver_branch).isdigit() else None
    try:
        return choose_torch(gpus or [], branch, TorchRequest(**options))
    except DriverNotChosen as error:
        return {"refused": str(error), "waits_for_driver": True}
    except PolicyError as error:
        return {"refused": str(error)}
    except TypeError as error:
        return {"refused": "torch_choice: %s" % error}


def cupy_choice(cuda_line, cupy_version):
    """{'requirement': 'cupy-cuda12x==13.6.0'} for the node's CUDA line, or {'refused': reason}."""
    try:
        return {"requirement": cupy_requirement(cuda_line, cupy_version)}
    except PolicyError as error:
        return {"refused": str(error)}


class FilterModule:
    def filters(self):
        return {"torch_choice": torch_choice, "cupy_choice": cupy_choice}
