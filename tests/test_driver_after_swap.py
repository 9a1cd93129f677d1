"""The driver policy after GPUs were swapped on the mixed node (2x V100 SXM2 + 2x A100 PCIe): the
PCI tree the simulator rewrites at the reboot is what nvidia_pci_facts reads and the policy
re-decides from, naming the GPUs it decided for and why. While a V100 remains the node stays on
R580 (Volta's last branch) with the proprietary modules; once none does, the policy wants R590
with the open modules, and an installed, held R580 is not moved without being told to."""

from conftest import run_module
from fake_apt import FakeApt
from test_driver_modules import NVIDIA, NVIDIA_MADISON

INSTALLED_580 = "nvidia-headless-580 | 580.95.05-0ubuntu1 | ii \n"


def choose(machine, tree, **options):
    """The module's result for the GPUs the PCI tree shows now, with R580 installed."""
    gpus = run_module(machine.root, "nvidia_pci_facts", {"sysfs_root": str(tree)})
    apt = FakeApt(machine.root, madison=NVIDIA_MADISON, installed=INSTALLED_580)
    return run_module(
        machine.root,
        "nvidia_driver_select",
        {"gpus": gpus["ansible_facts"]["nvidia_pci"]["gpus"], **NVIDIA, **options},
        env=apt.env,
    )


def swap_to_a100(machine, slot):
    machine.cli("swap", slot, "--model", "a100-pcie-40gb")
    machine.reboot()  # the swap is installed and the PCI tree rewritten


def test_the_policy_re_decides_when_the_volta_cards_are_replaced(machine):
    machine.use("mixed-v100-a100")
    tree = machine.root / "pci"
    machine.cli("sysfs", tree)
    before = choose(machine, tree)["selection"]
    assert before["reason"].startswith(
        "2x Tesla V100-SXM2-16GB (volta) + 2x NVIDIA A100-PCIE-40GB (ampere): driver branch 580"
    )
    assert (before["branch"], before["kernel_modules"], before["action"]) == (
        580,
        "proprietary",
        "keep",
    )

    swap_to_a100(machine, 0)
    one_left = choose(machine, tree)["selection"]
    assert one_left["reason"].startswith(
        "3x NVIDIA A100-PCIE-40GB (ampere) + 1x Tesla V100-SXM2-16GB (volta): driver branch 580"
    )
    assert "R580 being volta's last" in one_left["reason"]
    assert (one_left["branch"], one_left["kernel_modules"]) == (580, "proprietary")

    swap_to_a100(machine, 1)
    held = choose(machine, tree)
    assert held["failed"] is True
    assert held["msg"] == (
        "driver 580.95.05-0ubuntu1 (proprietary modules) is installed and held, the policy "
        "selects branch 590 (open modules): set nvidia_driver_allow_branch_change: true to move "
        "(the node reboots when the new module cannot be loaded otherwise), or pin "
        "nvidia_driver_branch: 580 to stay"
    )
    moved = choose(machine, tree, allow_branch_change=True)["selection"]
    assert moved["reason"].startswith("4x NVIDIA A100-PCIE-40GB (ampere): driver branch 590")
    assert "open kernel modules" in moved["reason"] and "CUDA 13.0 wanted" in moved["reason"]
