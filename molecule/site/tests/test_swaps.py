"""GPU swaps on the converged node, last (they change its hardware): a card replaced by one of the
same model is capped by the boot unit and named in its journal before any play runs; site.yml
then reports the slot and both serials and changes only the records of the GPUs; a second run
changes nothing. A larger model goes through playbooks/replace-gpu.yml (two halves around the
swap: health and a short burn-in included). A pulled card is not waited for at boot, the others
stay capped, and site.yml names the slot and fails on the missing GPU."""

import json
import os
from pathlib import Path

import pytest
from node_gpus import read_back
from node_hardware import hardware_changes, node_time, play, podman, reboot, recap

NODE = "gpunode-site"
INVENTORY = "/etc/ansible/facts.d/gpu_inventory.fact"
QUIET = {"persistence": 1, "power_limit_mw": 200000, "graphics_clock": 1005}
# Only the records of which cards are where: the inventory (and its copy on the controller), and
# the boot unit's config with its GPU list (and the unit re-applying it).
CHANGED_AFTER_A_SWAP = [
    "gpu_inventory : Record the GPUs by slot and report what changed since the last run",
    "gpu_inventory : Copy the inventory to",
    "gpu_tuning : Install the boot-time command, the settings it applies at every boot and its "
    "unit",
    "gpu_tuning : Re-apply the GPU settings through the boot unit",
]


def slots(host):
    return json.loads(host.file(INVENTORY).content_string)["slots"]


@pytest.fixture(scope="module")
def before(host):
    """The node's GPUs by slot before any swap, and slot 2's address."""
    recorded = slots(host)
    return {"slots": recorded, "slot2": sorted(recorded)[2]}


def test_a_replaced_card_is_capped_at_boot_and_named(host, before):
    podman("exec", NODE, "nvml-sim", "swap", "2")
    since = node_time(NODE)
    reboot(NODE)
    gpus = read_back(host)
    assert [{key: gpu[key] for key in QUIET} for gpu in gpus] == [QUIET] * 4
    new_uuid = gpus[2]["uuid"]
    old = before["slots"][before["slot2"]]
    assert new_uuid != old["uuid"]
    journal = host.check_output("journalctl -u gpu-tuning.service --since '%s' -o cat" % since)
    assert (
        "GPU 2 (%s) in slot %s is a new card (Tesla V100-SXM2-16GB, serial "
        % (new_uuid, before["slot2"])
    ) in journal, journal
    assert "it replaces Tesla V100-SXM2-16GB, serial %s, %s" % (old["serial"], old["uuid"]) in (
        journal
    )
    assert "4 of 4 GPU(s) hold the settings" in journal
    assert host.service("gpu-tuning.service").is_running


def test_site_reports_the_swap_and_changes_only_the_records(host, before):
    run = play("site.yml")
    assert run.returncode == 0, run.stdout[-3000:]
    old = before["slots"][before["slot2"]]
    new = slots(host)[before["slot2"]]
    assert new["serial"] != old["serial"]
    changes = hardware_changes(run.stdout, NODE)
    assert changes["drift"] == [
        "slot %s: serial %s -> %s, same model (replaced)"
        % (before["slot2"], old["serial"], new["serial"])
    ]
    assert [name.split(" /")[0] for name in changes["changed"]] == CHANGED_AFTER_A_SWAP
    config = json.loads(host.file("/etc/gpu-node/gpu-tuning.json").content_string)
    assert [gpu["uuid"] for gpu in config["gpus"]] == [gpu["uuid"] for gpu in read_back(host)]
    assert [gpu["serial"] for gpu in config["gpus"]][2] == new["serial"]


def test_site_again_changes_nothing(host):
    run = play("site.yml")
    assert run.returncode == 0, run.stdout[-3000:]
    assert "changed=0" in recap(run.stdout, NODE), recap(run.stdout, NODE)
    assert hardware_changes(run.stdout, NODE)["drift"] == []
    # The controller's copy (fetched only when it differs) is the node's file, byte for byte.
    copy = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"], "reports", NODE, "gpu-inventory.json")
    assert copy.read_text() == host.file(INVENTORY).content_string


def test_a_larger_model_through_replace_gpu(host, before):
    first = play("playbooks/replace-gpu.yml", "-e", "replace_gpu_step=before")
    assert first.returncode == 0, first.stdout[-3000:]
    assert not host.service("gpu-health.timer").is_running  # stopped for the swap
    podman("exec", NODE, "nvml-sim", "swap", "2", "--model", "v100-sxm2-32gb")
    reboot(NODE)
    second = play(
        "playbooks/replace-gpu.yml",
        "-e",
        "replace_gpu_step=after",
        "-e",
        "replace_gpu_burn_in_sustained_s=4",
        "-e",
        '{"gpu_health_burn_in_cycles": 2, "gpu_health_burn_in_high_s": 2, '
        '"gpu_health_burn_in_low_s": 2, "gpu_health_burn_in_sample_interval_s": 0.25}',
    )
    assert second.returncode == 0, second.stdout[-3000:]
    drift = hardware_changes(second.stdout, NODE)["drift"]
    assert len(drift) == 1 and drift[0].startswith(
        "slot %s: model changed Tesla V100-SXM2-16GB -> Tesla V100-SXM2-32GB (serial "
        % before["slot2"]
    ), drift
    assert "Burn-in passed" in second.stdout
    assert slots(host)[before["slot2"]]["memory_total_mib"] == 32768
    gpus = read_back(host)
    assert [{key: gpu[key] for key in QUIET} for gpu in gpus] == [QUIET] * 4
    assert host.service("gpu-health.timer").is_running  # the health role started it again


def test_a_pulled_card_is_not_waited_for_and_site_names_its_slot(host, before):
    podman("exec", NODE, "nvml-sim", "swap", "3", "--empty")
    slot3 = sorted(before["slots"])[3]
    card = slots(host)[slot3]
    since = node_time(NODE)
    reboot(NODE)
    journal = host.check_output("journalctl -u gpu-tuning.service --since '%s' -o cat" % since)
    assert "slot %s is empty (no device at this address in the PCI tree)" % slot3 in journal
    assert "waiting" not in journal
    assert host.service("gpu-tuning.service").is_running  # the others hold their settings
    gpus = read_back(host)
    assert [{key: gpu[key] for key in QUIET} for gpu in gpus] == [QUIET] * 3
    run = play("site.yml")
    assert run.returncode == 2, run.stdout[-3000:]  # the health report fails the play
    assert hardware_changes(run.stdout, NODE)["drift"] == [
        "GPU missing from slot %s (was %s, serial %s)" % (slot3, card["name"], card["serial"])
    ]
    assert "Only 3 of 4 GPUs are visible to the driver: slot %s is empty" % slot3 in run.stdout
