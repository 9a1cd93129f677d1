"""The boot-time command after a hardware change: a card replaced in its slot gets the file's
settings when the selection covers it and they fit it, and is named as new; a card whose settings
do not fit fails the command (so the units gated on it stay down); a slot the PCI tree shows
empty is named at once, never waited for; `check --held` tells whether the GPUs hold the file.

The config files are what the role wrote before the change: the same GPUs with the changed
slot's old card in its place (another UUID and serial, maybe another model)."""

import shutil
import time

import pytest
from boot_tool import BOOT, HELD, QUIET, recorded_gpus, run, write_config

OLD_UUID = "GPU-0bad0000-1111-2222-3333-444455556666"
OLD_SERIAL = "0323618000000"


@pytest.fixture
def pci_tree(machine):
    """The machine's PCI tree as sysfs shows it (the simulator writes it for the profile)."""

    def make():
        tree = machine.root / "pci"
        shutil.rmtree(tree, ignore_errors=True)
        machine.cli("sysfs", tree)
        return tree

    return make


def with_old_card(gpus, slot_index, name=None):
    """The file's GPUs with the card now in slot_index recorded as the one it replaced."""
    old = dict(gpus[slot_index], uuid=OLD_UUID, serial=OLD_SERIAL)
    if name:
        old["name"] = name
    return [old if gpu["index"] == slot_index else gpu for gpu in gpus]


def replacement_line(new, name, old_serial, old_uuid):
    """The journal line for a card (as recorded_gpus gives it) that replaced a recorded V100."""
    return (
        "GPU 2 (%s) in slot %s is a new card (%s, serial %s, %s): it replaces Tesla "
        "V100-SXM2-16GB, serial %s, %s; the file's settings cover it (run the gpu_tuning role "
        "to record it)"
        % (new["uuid"], new["slot"], name, new["serial"], new["uuid"], old_serial, old_uuid)
    )


def apply_with_tree(machine, path, tree, wait=30):
    return run(machine, "apply", "--config", path, "--wait", wait, "--sysfs-root", tree)


def test_a_replaced_card_gets_the_settings_and_is_named_at_once(machine, pci_tree):
    gpus = recorded_gpus(machine, slots=True)
    path = write_config(machine, gpus=with_old_card(gpus, 2))
    started = time.monotonic()
    result = apply_with_tree(machine, path, pci_tree())
    assert time.monotonic() - started < 15, "waited for the card that was replaced"
    assert result.returncode == 0, result.stderr
    assert "waiting" not in result.stdout
    assert result.stderr.splitlines() == [
        replacement_line(gpus[2], "Tesla V100-SXM2-16GB", OLD_SERIAL, OLD_UUID)
    ]
    assert (
        result.stdout.splitlines()[-1]
        == "4 of 4 GPU(s) hold the settings of %s (profile quiet)" % path
    )
    assert machine.state() == [HELD] * 4


def test_a_replaced_card_the_selection_does_not_cover_is_left_alone(machine, pci_tree):
    gpus = with_old_card(recorded_gpus(machine, slots=True), 2)
    request = dict(QUIET, gpus=[gpu["uuid"] for gpu in gpus])  # written for the old card
    path = write_config(machine, request, gpus=gpus)
    result = apply_with_tree(machine, path, pci_tree())
    assert result.returncode == 0, result.stderr
    assert "the file's selection does not cover it: left unchanged" in result.stderr
    assert machine.state() == [HELD, HELD, BOOT, HELD]
    assert result.stdout.splitlines()[-1].startswith("3 of 3 GPU(s) hold")


def test_settings_that_do_not_fit_the_new_model_fail_the_command(machine, pci_tree):
    """V100 -> A100 in slot 2 of the mixed node: 280 W fits a V100 (150-300 W), not the A100
    PCIe (150-250 W). The others still get their settings; the command fails, naming GPU 2."""
    machine.use("mixed-v100-a100")
    present = recorded_gpus(machine, slots=True)
    gpus = with_old_card(present, 2, name="Tesla V100-SXM2-16GB")
    path = write_config(machine, {"gpus": [0, 1, 2], "power_limit": 280}, gpus=gpus)
    result = apply_with_tree(machine, path, pci_tree())
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert any(
        line.startswith("GPU 2 (%s) in slot %s" % (present[2]["uuid"], present[2]["slot"]))
        and "is a new card (NVIDIA A100-PCIE-40GB" in line
        and "it replaces Tesla V100-SXM2-16GB, serial %s" % OLD_SERIAL in line
        for line in lines
    ), lines
    failed = [line for line in lines if "NOT applied" in line]
    assert len(failed) == 1 and failed[0].startswith("GPU 2 ("), lines
    assert "280" in failed[0] and "250" in failed[0], failed[0]
    limits = [gpu["power_limit_mw"] for gpu in machine.state()]
    assert limits == [280000, 280000, 250000, 250000]  # GPU 2 kept its own default
    held = run(machine, "check", "--held", "--sysfs-root", machine.root / "pci", path)
    assert held.returncode != 0, held.stdout
    # check names the card as apply does: covered by the file, its settings do not fit it.
    named = [line for line in held.stderr.splitlines() if "is a new card (NVIDIA A100" in line]
    assert len(named) == 1 and "the file's settings cover it" in named[0], held.stderr
    assert "not valid for the GPUs of this machine" in held.stderr, held.stderr


def test_an_empty_slot_is_named_and_not_waited_for(machine, pci_tree):
    gpus = recorded_gpus(machine, slots=True)
    path = write_config(machine, gpus=gpus)
    tree = pci_tree()
    shutil.rmtree(tree / gpus[2]["slot"])  # the card was pulled
    machine.cli("fault", 2, "absent")  # and the driver no longer enumerates it
    started = time.monotonic()
    result = apply_with_tree(machine, path, tree, wait=60)
    assert time.monotonic() - started < 15, "waited for a card the PCI tree says is gone"
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "GPU 2 (Tesla V100-SXM2-16GB, %s) of %s: slot %s is empty (no device at this address in "
        "the PCI tree): the card was removed; not waited for (run the gpu_tuning role to record "
        "the GPUs present)" % (gpus[2]["uuid"], path, gpus[2]["slot"])
    ]
    assert result.stdout.splitlines()[-1].startswith("3 of 3 GPU(s) hold")
    assert machine.state() == [HELD] * 3


def test_a_card_the_pci_tree_still_shows_is_waited_for(machine, pci_tree):
    """Not enumerated but on the bus: it may answer late, so it is waited for (and named)."""
    gpus = recorded_gpus(machine, slots=True)
    path = write_config(machine, gpus=gpus)
    tree = pci_tree()
    machine.cli("fault", 2, "absent")
    result = apply_with_tree(machine, path, tree, wait=1)
    assert result.returncode == 1
    assert result.stdout.startswith("waiting up to 1 s for GPU 2 (%s)" % gpus[2]["uuid"])
    assert "GPU 2 (%s): NOT applied: did not answer within 1 s" % gpus[2]["uuid"] in result.stderr


@pytest.mark.parametrize("covered", [True, False])
def test_a_card_in_a_slot_the_file_does_not_know(machine, pci_tree, covered):
    gpus = recorded_gpus(machine, slots=True)
    request = QUIET if covered else dict(QUIET, gpus=[0, 1, 2])
    path = write_config(machine, request, gpus=gpus[:3])
    result = apply_with_tree(machine, path, pci_tree())
    assert result.returncode == 0, result.stderr
    assert "GPU 3 (%s) in slot %s is a new card" % (gpus[3]["uuid"], gpus[3]["slot"]) in (
        result.stderr
    )
    assert "the file recorded no card in this slot" in result.stderr
    assert machine.state() == [HELD] * 3 + [HELD if covered else BOOT]


def test_check_held_tells_whether_the_gpus_hold_the_file(machine, pci_tree):
    path = write_config(machine, gpus=recorded_gpus(machine, slots=True))
    tree = pci_tree()
    before = run(machine, "check", "--held", "--sysfs-root", tree, path)
    assert before.returncode == 1
    assert "4 GPU(s) do not hold the settings of %s" % path in before.stderr
    assert machine.state() == [BOOT] * 4  # a check changes nothing
    assert apply_with_tree(machine, path, tree).returncode == 0
    after = run(machine, "check", "--held", "--sysfs-root", tree, path)
    assert after.returncode == 0, after.stderr
    assert after.stdout.count("already as configured") == 4


@pytest.mark.parametrize(
    "swap, name",
    [
        ([], "Tesla V100-SXM2-16GB"),  # an RMA replacement: same model, new serial and UUID
        (["--model", "v100-sxm2-32gb"], "Tesla V100-SXM2-32GB"),
    ],
)
def test_a_card_swapped_in_the_simulator_is_capped_at_the_next_boot(machine, pci_tree, swap, name):
    """The whole story on the simulated T180-G20: settings applied, GPU 2 swapped, a reboot
    (the swap takes effect, the PCI tree follows), the boot command."""
    gpus = recorded_gpus(machine, slots=True)
    tree = pci_tree()
    path = write_config(machine, gpus=gpus)
    assert apply_with_tree(machine, path, tree).returncode == 0
    machine.cli("swap", 2, *swap)
    machine.reboot()
    now = recorded_gpus(machine, slots=True)
    assert now[2]["uuid"] != gpus[2]["uuid"] and now[2]["slot"] == gpus[2]["slot"]
    assert now[2]["name"] == name
    result = apply_with_tree(machine, path, tree)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        replacement_line(now[2], name, gpus[2]["serial"], gpus[2]["uuid"])
    ]
    assert machine.state() == [HELD] * 4


def test_a_card_pulled_in_the_simulator_is_not_waited_for(machine, pci_tree):
    gpus = recorded_gpus(machine, slots=True)
    tree = pci_tree()
    path = write_config(machine, gpus=gpus)
    machine.cli("swap", 2, "--empty")
    machine.reboot()
    assert not (tree / gpus[2]["slot"]).exists()  # the reset rewrote the PCI tree
    started = time.monotonic()
    result = apply_with_tree(machine, path, tree, wait=60)
    assert time.monotonic() - started < 15
    assert result.returncode == 0, result.stderr
    assert "slot %s is empty" % gpus[2]["slot"] in result.stderr
    assert machine.state() == [HELD] * 3
