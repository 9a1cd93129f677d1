"""nvidia_gpu_settings against simulated GPUs: every option, idempotence, check mode and diff,
selection, per-GPU overrides, and failures part-way that must be rolled back."""

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import SIM_PROFILES

SEED_FIX = {  # what the T180-G20's owner typed by hand: -pm 1, -pl 200, -ac 877,1005
    "persistence_mode": True,
    "power_limit": 200,
    "clocks": {"strategy": "application", "memory_mhz": 877, "graphics_mhz": 1005},
}
BOOT = {  # a V100 after boot, as NVML reads it back
    "persistence": 0,
    "power_limit_mw": 300000,
    "app_clocks": [877, 1312],
    "graphics_clock": 1312,
    "compute_mode": 0,
}


def apply(machine, args, **kwargs):
    result = machine.module("nvidia_gpu_settings", args, **kwargs)
    assert not result.get("failed"), result.get("msg")
    return result


def test_seed_fix_applies_then_is_idempotent(machine):
    first = apply(machine, SEED_FIX)
    assert first["changed"] is True
    assert [g["changed"] for g in first["gpus"]] == [
        ["persistence_mode", "power_limit_w", "applications_clocks"]
    ] * 4
    expected = dict(BOOT, persistence=1, power_limit_mw=200000, app_clocks=[877, 1005])
    expected["graphics_clock"] = 1005
    assert machine.state() == [expected] * 4
    second = apply(machine, SEED_FIX)
    assert second["changed"] is False
    assert all(g["changed"] == [] for g in second["gpus"])
    assert machine.state() == [expected] * 4


def test_check_mode_reports_and_diffs_but_changes_nothing(machine):
    result = apply(machine, SEED_FIX, check_mode=True, diff=True)
    assert result["changed"] is True
    label = "GPU 0 (%s)" % result["gpus"][0]["uuid"]
    assert result["diff"]["before"][label] == {
        "persistence_mode": False,
        "power_limit_w": 300,
        "applications_clocks": {"memory_mhz": 877, "graphics_mhz": 1312},
    }
    assert result["diff"]["after"][label] == {
        "persistence_mode": True,
        "power_limit_w": 200,
        "applications_clocks": {"memory_mhz": 877, "graphics_mhz": 1005},
    }
    assert machine.state() == [BOOT] * 4


def test_power_limit_default_restores_each_cards_own(machine):
    apply(machine, {"power_limit": 180})
    assert {g["power_limit_mw"] for g in machine.state()} == {180000}
    result = apply(machine, {"power_limit": "default"})
    assert result["changed"] and result["gpus"][0]["after"] == {"power_limit_w": 300}
    assert {g["power_limit_mw"] for g in machine.state()} == {300000}


def test_persistence_off_again(machine):
    apply(machine, {"persistence_mode": True})
    apply(machine, {"persistence_mode": False})
    assert {g["persistence"] for g in machine.state()} == {0}


@pytest.mark.parametrize(
    "mode, code", [("exclusive_process", 3), ("prohibited", 2), ("default", 0)]
)
def test_compute_mode(machine, mode, code):
    if mode == "default":
        apply(machine, {"compute_mode": "prohibited"})
    apply(machine, {"compute_mode": mode})
    assert {g["compute_mode"] for g in machine.state()} == {code}


def test_locked_clocks_cap_graphics_and_are_remembered(machine):
    args = {"clocks": {"strategy": "locked", "graphics_mhz": 1005}}
    result = apply(machine, args)
    assert result["gpus"][0]["after"]["locked_graphics_clocks"] == {"min_mhz": 135, "max_mhz": 1005}
    # Read back through NVML: the idle clock now sits at the cap, app clocks stay default.
    assert [(g["graphics_clock"], g["app_clocks"]) for g in machine.state()] == [
        (1005, [877, 1312])
    ] * 4
    record = json.loads((machine.run_dir / "locked-clocks.json").read_text())
    assert record["gpus"][result["gpus"][0]["uuid"]]["graphics"] == [135, 1005]
    assert apply(machine, args)["changed"] is False


def test_auto_strategy_locks_on_volta(machine):
    result = apply(machine, {"clocks": {"graphics_mhz": 1005, "graphics_min_mhz": 502}})
    assert result["gpus"][0]["after"]["locked_graphics_clocks"] == {"min_mhz": 502, "max_mhz": 1005}


def test_switching_from_application_to_locked_resets_application_clocks(machine):
    apply(machine, SEED_FIX)
    result = apply(machine, {"clocks": {"strategy": "locked", "graphics_mhz": 1005}})
    assert result["gpus"][0]["changed"] == ["applications_clocks", "locked_graphics_clocks"]
    assert {tuple(g["app_clocks"]) for g in machine.state()} == {(877, 1312)}


def test_reset_clocks_removes_locks_and_application_clocks(machine):
    apply(machine, {"clocks": {"strategy": "locked", "graphics_mhz": 1005}})
    apply(machine, {"gpus": [1], "clocks": {"strategy": "application", "graphics_mhz": 1005}})
    result = apply(machine, {"reset_clocks": True})
    assert result["changed"]
    assert machine.state() == [BOOT] * 4
    assert apply(machine, {"reset_clocks": True})["changed"] is False


def test_selection_by_index_uuid_and_model(machine):
    uuids = [g["uuid"] for g in apply(machine, {"power_limit": 300})["gpus"]]
    apply(machine, {"gpus": [0, uuids[2]], "power_limit": 250})
    assert [g["power_limit_mw"] for g in machine.state()] == [250000, 300000, 250000, 300000]
    apply(machine, {"gpus": ["tesla v100-sxm2-*"], "power_limit": 260})
    assert {g["power_limit_mw"] for g in machine.state()} == {260000}


def test_a_gpu_nvml_cannot_name_is_refused_when_selected_and_others_still_set(machine):
    machine.cli("fault", 2, "fail", "nvmlDeviceGetName", "UNKNOWN")
    for selection in (["all"], ["tesla v100-*"], [2]):
        result = machine.module("nvidia_gpu_settings", {"gpus": selection, "power_limit": 250})
        assert result["failed"], selection
        assert "Nothing was changed" in result["msg"]
        assert "GPU 2: NVML cannot name it: nvmlDeviceGetName failed" in result["msg"]
    assert [g["power_limit_mw"] for g in machine.state()] == [300000] * 4
    apply(machine, {"gpus": [0, 1, 3], "power_limit": 250})
    assert [g["power_limit_mw"] for g in machine.state()] == [250000, 250000, 300000, 250000]


def test_snap_clocks_uses_the_nearest_supported(machine):
    result = apply(
        machine,
        {"snap_clocks": True, "clocks": {"strategy": "application", "graphics_mhz": 1003}},
    )
    assert result["gpus"][0]["after"]["applications_clocks"] == {
        "memory_mhz": 877,
        "graphics_mhz": 1005,
    }


def test_overrides_per_model_on_a_mixed_node(machine):
    machine.use("mixed-v100-a100")
    result = apply(
        machine,
        {
            "persistence_mode": True,
            "power_limit": 200,
            "overrides": [
                {"gpus": ["*A100*"], "power_limit": 250},
                {"gpus": [3], "clocks": {"strategy": "locked", "graphics_mhz": 1005}},
            ],
        },
    )
    assert [g["after"]["power_limit_w"] for g in result["gpus"]] == [200, 200, 250, 250]
    assert "locked_graphics_clocks" in result["gpus"][3]["after"]
    assert "locked_graphics_clocks" not in result["gpus"][2]["after"]
    state = machine.state()
    assert [g["power_limit_mw"] for g in state] == [200000, 200000, 250000, 250000]
    assert state[3]["graphics_clock"] <= 1005


def test_ampere_memory_locks(machine):
    machine.use("hgx-a100-8")
    result = apply(
        machine,
        {"gpus": [0], "clocks": {"strategy": "locked", "graphics_mhz": 1200, "memory_mhz": 1215}},
    )
    after = result["gpus"][0]["after"]
    assert after["locked_memory_clocks"]["max_mhz"] == 1215
    assert after["locked_graphics_clocks"]["max_mhz"] == 1200
    reset = apply(machine, {"gpus": [0], "reset_clocks": True})["gpus"][0]
    assert reset["changed"] == ["locked_graphics_clocks", "locked_memory_clocks"]
    assert reset["after"]["locked_memory_clocks"] == "unlocked"
    assert apply(machine, {"gpus": [0], "reset_clocks": True})["changed"] is False


def test_failure_part_way_rolls_back_and_names_the_gpu(machine):
    # GPU 2 accepts reads but its power limit cannot be set: GPUs 0 and 1 were already changed.
    machine.cli("fault", 2, "fail", "nvmlDeviceSetPowerManagementLimit", "GPU_IS_LOST")
    result = machine.module("nvidia_gpu_settings", SEED_FIX)
    assert result["failed"]
    uuid = machine.nvml("result = N.nvmlDeviceGetUUID(gpu(2))")
    assert result["failed_gpu"] == {"index": 2, "uuid": uuid}
    assert "GPU 2 (Tesla V100-SXM2-16GB, %s)" % uuid in result["msg"]
    assert "fallen off the bus" in result["msg"]
    rolled = {(e["index"], e["setting"]) for e in result["rolled_back"]}
    assert (0, "applications_clocks") in rolled and (2, "persistence_mode") in rolled
    assert result["not_restored"] == []
    assert machine.state() == [BOOT] * 4


def test_rollback_that_fails_is_reported_per_gpu(machine):
    # GPU 0 is fully set, GPU 1 refuses its power limit; undoing GPU 0's persistence then fails.
    machine.cli("fault", 0, "fail", "nvmlDeviceSetPersistenceMode", "GPU_IS_LOST", "--after", 1)
    machine.cli("fault", 1, "fail", "nvmlDeviceSetPowerManagementLimit", "NO_PERMISSION")
    result = machine.module("nvidia_gpu_settings", {"gpus": [0, 1], **SEED_FIX})
    assert result["failed"] and result["failed_gpu"]["index"] == 1
    assert "no permission' although this runs as root" in result["msg"]
    uuid0 = machine.nvml("result = N.nvmlDeviceGetUUID(gpu(0))")
    assert result["not_restored"] == [
        {
            "index": 0,
            "uuid": uuid0,
            "setting": "persistence_mode",
            "value": False,
            "error": result["not_restored"][0]["error"],
        }
    ]
    assert "NOT restored: GPU 0 (%s) persistence_mode" % uuid0 in result["msg"]
    state = machine.state()
    assert state[0] == dict(BOOT, persistence=1)  # only what could not be undone remains
    assert state[1] == BOOT


@pytest.fixture
def open_machine(make_machine, sim_lib_dir):
    """A machine whose driver (the simulator library and its profiles) is world-readable, as a
    real driver is, for runs as an unprivileged user; the checkout may not be (mode 0700)."""
    root = Path(tempfile.mkdtemp(prefix="gpu-settings-"))
    root.chmod(0o755)
    lib = root / "lib"
    shutil.copytree(sim_lib_dir, lib)
    lib.chmod(0o755)
    profiles = root / "profiles"
    shutil.copytree(SIM_PROFILES, profiles)
    profiles.chmod(0o755)
    machine = make_machine(root)
    machine.env["LD_LIBRARY_PATH"] = str(lib)
    machine.env["NVML_SIM_PROFILE_DIR"] = str(profiles)
    machine.cli("status")  # creates the shared state directory
    yield machine
    shutil.rmtree(root)


def test_not_root_fails_before_changing_anything(open_machine):
    result = open_machine.module("nvidia_gpu_settings", SEED_FIX, uid=65534)
    assert result["failed"]
    assert "needs root" in result["msg"] and "nothing was changed" in result["msg"]
    assert open_machine.state() == [BOOT] * 4


def test_check_mode_works_without_root(open_machine):
    result = open_machine.module("nvidia_gpu_settings", SEED_FIX, check_mode=True, uid=65534)
    assert result["changed"] is True and not result.get("failed")


LOCK = {"clocks": {"strategy": "locked", "graphics_mhz": 1005}}
LOCKED = dict(BOOT, graphics_clock=1005)  # a V100 whose graphics clocks are capped at 1005 MHz


def unusable_run_dirs(root):
    """NVIDIA_GPU_RUN_DIR values where the lock record cannot be written, even by root."""
    a_file = root / "a-file"
    a_file.write_text("")
    return {"under a file": str(a_file / "run"), "a file": str(a_file)}


@pytest.mark.parametrize("where", ["under a file", "a file"])
def test_a_lock_that_cannot_be_recorded_is_undone(machine, where):
    run_dir = unusable_run_dirs(machine.root)[where]
    result = machine.module("nvidia_gpu_settings", LOCK, env={"NVIDIA_GPU_RUN_DIR": run_dir})
    assert result["failed"]
    assert "the lock record %s/locked-clocks.json cannot be written" % run_dir in result["msg"]
    assert result["failed_gpu"]["index"] == 0 and result["rolled_back"] == []
    (entry,) = result["not_restored"]
    assert (entry["index"], entry["setting"]) == (0, "locked_graphics_clocks")
    assert entry["error"].startswith(REMOVED_INSTEAD)
    assert machine.state() == [BOOT] * 4  # no lock left that no later run could see


def warnings(result):
    """The module's warnings as text (ansible-core 2.19 returns each as a structured event)."""
    return [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings", [])]


# A lock that cannot be recorded is undone. The record could not be read either, so the lock
# before the run is unknown: the GPU is left unlocked, and the error says so.
REMOVED_INSTEAD = "its lock before this run is unknown (the lock record could not tell it)"


def boot_id():
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


# Record contents that must not be taken for "nothing locked" (U stands for GPU 0's UUID).
CORRUPT_RECORDS = {
    "not JSON": (b"{not json", "is not JSON"),
    "not UTF-8": (b"\xff\xfe{}", "is not text"),
    "a list": (b"[]", "the top level is list, not an object"),
    "boot id a number": (b'{"boot_id": 5, "gpus": {}}', "boot_id is 5, not a string"),
    "gpus a list": (b'{"boot_id": "B", "gpus": []}', "gpus is [], not an object"),
    "gpu a list": (b'{"boot_id": "B", "gpus": {"U": []}}', "gpus.U is [], not an object"),
    "lock of one value": (
        b'{"boot_id": "B", "gpus": {"U": {"graphics": [135]}}}',
        "gpus.U.graphics is [135], not null or [min_mhz, max_mhz]",
    ),
    "lock of strings": (
        b'{"boot_id": "B", "gpus": {"U": {"graphics": ["135", "1005"]}}}',
        "gpus.U.graphics is ['135', '1005']",
    ),
    "lock upside down": (
        b'{"boot_id": "B", "gpus": {"U": {"graphics": [1005, 135]}}}',
        "gpus.U.graphics is [1005, 135]",
    ),
    "unknown domain": (b'{"boot_id": "B", "gpus": {"U": {"video": null}}}', "gpus.U is {'video'"),
    "unknown key": (b'{"boot_id": "B", "gpus": {}, "locks": 1}', "unknown key(s) locks"),
}


@pytest.mark.parametrize("content, problem", CORRUPT_RECORDS.values(), ids=list(CORRUPT_RECORDS))
def test_a_corrupt_lock_record_means_unknown_locks_set_again(machine, content, problem):
    uuid = apply(machine, LOCK)["gpus"][0]["uuid"]
    record = machine.run_dir / "locked-clocks.json"
    record.write_bytes(
        content.replace(b'"B"', json.dumps(boot_id()).encode()).replace(
            b'"U"', json.dumps(uuid).encode()
        )
    )
    # The locks are still there; a record read as "nothing locked" would skip removing them.
    result = apply(machine, {"reset_clocks": True})
    assert [g["changed"] for g in result["gpus"]] == [["locked_graphics_clocks"]] * 4
    assert result["gpus"][0]["before"]["locked_graphics_clocks"] == "unknown"
    (warning,) = warnings(result)
    assert "the lock record %s" % record in warning and problem.replace("U", uuid) in warning
    assert "they are set again" in warning
    assert machine.state() == [BOOT] * 4
    rewritten = json.loads(record.read_text())
    assert rewritten["complete"] is False and len(rewritten["gpus"]) == 4
    assert apply(machine, {"reset_clocks": True})["changed"] is False


def test_a_lock_record_replaced_incomplete_keeps_other_gpus_unknown(machine):
    apply(machine, LOCK)
    record = machine.run_dir / "locked-clocks.json"
    record.write_text("garbage")
    apply(machine, {"gpus": [0], "reset_clocks": True})  # rewrites the record, GPU 0 only
    result = apply(machine, {"gpus": [1], "reset_clocks": True})
    assert result["gpus"][0]["before"]["locked_graphics_clocks"] == "unknown"
    assert "was replaced after it could not be used" in warnings(result)[0]
    assert machine.state_of([0, 1]) == [BOOT, BOOT] and machine.state_of([2]) == [LOCKED]


def test_a_record_that_can_be_neither_read_nor_written_rolls_back(machine):
    (machine.run_dir / "locked-clocks.json").mkdir(parents=True)
    result = machine.module("nvidia_gpu_settings", LOCK)
    assert result["failed"] and result["not_restored"][0]["error"].startswith(REMOVED_INSTEAD)
    assert "locked-clocks.json cannot be written" in result["msg"]
    assert machine.state() == [BOOT] * 4
