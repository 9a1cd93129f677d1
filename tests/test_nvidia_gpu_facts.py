"""nvidia_gpu_facts against simulated machines: every profile, unsupported values, faults."""

import pytest

MESH = {str(a): {str(b): "X" if a == b else "NV2" for b in range(4)} for a in range(4)}


def facts_of(machine, **args):
    result = machine.module("nvidia_gpu_facts", args)
    assert not result.get("failed"), result
    assert result["changed"] is False
    return result["ansible_facts"]["nvidia_gpu"]


def test_t180_g20(machine):
    facts = facts_of(machine)
    assert facts["driver_version"] == "580.95.05"
    assert facts["cuda_driver_version"] == "13.0"
    assert facts["count"] == 4 and facts["lost_count"] == 0
    assert facts["link_matrix"] == MESH
    gpu = facts["gpus"][0]
    assert gpu["name"] == "Tesla V100-SXM2-16GB"
    assert gpu["pci_device_id"] == "10de:1db1"
    assert gpu["pci_bus_id"] == "0000:1a:00.0"
    assert gpu["architecture"] == "volta" and gpu["compute_capability"] == "7.0"
    assert gpu["uuid"].startswith("GPU-") and len({g["uuid"] for g in facts["gpus"]}) == 4
    assert gpu["power"] == {
        "usage_w": gpu["power"]["usage_w"],
        "limit_w": 300.0,
        "default_limit_w": 300.0,
        "min_limit_w": 150.0,
        "max_limit_w": 300.0,
        "enforced_limit_w": 300.0,
    }
    assert list(gpu["supported_clocks"]) == ["877"]
    graphics = gpu["supported_clocks"]["877"]
    assert graphics[0] == 1530 and graphics[-1] == 135 and 1005 in graphics
    assert gpu["clocks"]["default_applications_memory_mhz"] == 877
    assert gpu["temperature"]["slowdown_c"] == 87 and gpu["temperature"]["shutdown_c"] == 90
    assert gpu["ecc"]["enabled"] is True and gpu["ecc"]["volatile_uncorrected"] == 0
    assert gpu["retired_pages"] == {"single_bit_ecc": 0, "double_bit_ecc": 0, "pending": False}
    assert "remapped_rows" not in gpu  # Volta retires pages; Ampere remaps rows
    assert len(gpu["nvlinks"]) == 6 and all(link["active"] for link in gpu["nvlinks"])
    assert gpu["pcie"]["generation"] == 3 and gpu["pcie"]["width"] == 16
    assert gpu["persistence_mode"] is False and gpu["compute_mode"] == "default"
    assert gpu["clock_event_reasons"] == ["gpu_idle"]


def test_hgx_a100_nvswitch(machine):
    machine.use("hgx-a100-8")
    facts = facts_of(machine, supported_clocks=False)
    assert facts["count"] == 8
    assert {facts["link_matrix"]["0"][str(b)] for b in range(1, 8)} == {"NV12"}
    gpu = facts["gpus"][3]
    assert gpu["architecture"] == "ampere"
    assert "supported_clocks" not in gpu
    assert all(link["remote_is_switch"] for link in gpu["nvlinks"])
    assert gpu["remapped_rows"] == {
        "corrected": 0,
        "uncorrected": 0,
        "pending": False,
        "failure": False,
    }


def test_h100_single_gpu_without_nvlink(machine):
    machine.use("h100-pcie")
    facts = facts_of(machine)
    assert facts["count"] == 1
    assert facts["link_matrix"] == {"0": {"0": "X"}}
    gpu = facts["gpus"][0]
    assert gpu["architecture"] == "hopper" and gpu["pcie"]["max_generation"] == 5
    assert not any(link["active"] for link in gpu["nvlinks"])


def test_mixed_node_links_only_the_v100_pair(machine):
    machine.use("mixed-v100-a100")
    facts = facts_of(machine, supported_clocks=False)
    names = [g["name"] for g in facts["gpus"]]
    assert names[:2] == ["Tesla V100-SXM2-16GB"] * 2
    assert names[2:] == ["NVIDIA A100-PCIE-40GB"] * 2
    assert facts["link_matrix"]["0"]["1"] == "NV2"
    assert not facts["link_matrix"]["0"]["2"].startswith("NV")
    assert not facts["link_matrix"]["2"]["3"].startswith("NV")


def test_unsupported_value_is_reported_not_an_error(machine):
    machine.cli("fault", 1, "fail", "nvmlDeviceGetPcieReplayCounter", "NOT_SUPPORTED")
    machine.cli("fault", 1, "fail", "nvmlDeviceGetPowerManagementLimitConstraints", "NOT_SUPPORTED")
    gpu = facts_of(machine)["gpus"][1]
    assert gpu["pcie"]["replay_counter"] == "unsupported"
    assert gpu["power"]["min_limit_w"] == "unsupported" == gpu["power"]["max_limit_w"]
    assert gpu["power"]["limit_w"] == 300.0


def test_lost_gpu_is_listed_and_the_others_still_read(machine):
    machine.cli("fault", 2, "lost")
    facts = facts_of(machine)
    assert facts["count"] == 4 and facts["lost_count"] == 1
    lost = facts["gpus"][2]
    assert lost["lost"] is True and "fallen off the bus" in lost["error"]
    assert [g["lost"] for g in facts["gpus"]] == [False, False, True, False]
    assert "2" not in facts["link_matrix"]
    assert facts["link_matrix"]["0"]["1"] == "NV2"


def test_absent_gpu_is_not_counted(machine):
    machine.cli("fault", 1, "absent")
    facts = facts_of(machine)
    assert facts["count"] == 3
    assert [g["pci_bus_id"] for g in facts["gpus"]] == [
        "0000:1a:00.0",
        "0000:3d:00.0",
        "0000:3e:00.0",
    ]


@pytest.mark.parametrize(
    ("fault", "read"),
    [
        (["ecc", "volatile", "uncorrected", 2], lambda g: g["ecc"]["volatile_uncorrected"] == 2),
        (["ecc", "aggregate", "corrected", 7], lambda g: g["ecc"]["aggregate_corrected"] == 7),
        (
            ["retired-pages", "dbe", 3, "--pending"],
            lambda g: (
                g["retired_pages"] == {"single_bit_ecc": 0, "double_bit_ecc": 3, "pending": True}
            ),
        ),
        (
            ["throttle", "0x88"],
            lambda g: g["clock_event_reasons"] == ["hw_slowdown", "hw_power_brake_slowdown"],
        ),
        (["temp", 91], lambda g: g["temperature"]["gpu_c"] == 91),
        (["power-usage", 275], lambda g: g["power"]["usage_w"] == 275.0),
        (["pcie", 1, 8], lambda g: (g["pcie"]["generation"], g["pcie"]["width"]) == (1, 8)),
        (["pcie-replays", 500], lambda g: g["pcie"]["replay_counter"] == 500),
        (["nvlink-down", 4], lambda g: [link["active"] for link in g["nvlinks"]].count(False) == 1),
        (
            ["nvlink-errors", 0, "replay", 42],
            lambda g: g["nvlinks"][0]["errors"]["replay"] == 42,
        ),
    ],
    ids=lambda v: " ".join(map(str, v)) if isinstance(v, list) else "",
)
def test_faults_show_in_facts(machine, fault, read):
    machine.cli("fault", 0, *fault)
    assert read(facts_of(machine)["gpus"][0])


def test_remapped_rows_on_ampere(machine):
    machine.use("hgx-a100-8")
    machine.cli("fault", 5, "remapped-rows", 1, 2, "--pending")
    rows = facts_of(machine, supported_clocks=False)["gpus"][5]["remapped_rows"]
    assert rows == {"corrected": 1, "uncorrected": 2, "pending": True, "failure": False}


def test_no_driver_loaded(machine):
    machine.use(None)
    result = machine.module("nvidia_gpu_facts")
    assert result["failed"]
    assert "NVIDIA kernel driver is not loaded" in result["msg"]


def test_no_nvml_library(machine):
    result = machine.module("nvidia_gpu_facts", env={"LD_LIBRARY_PATH": "/nonexistent"})
    assert result["failed"]
    assert "libnvidia-ml.so.1 was not found" in result["msg"]


def test_no_pynvml(machine, tmp_path):
    shadow = tmp_path / "shadow"
    (shadow / "pynvml").mkdir(parents=True)
    (shadow / "pynvml" / "__init__.py").write_text("raise ImportError('no pynvml here')\n")
    result = machine.module("nvidia_gpu_facts", env={"PYTHONPATH": str(shadow)})
    assert result["failed"]
    assert "nvidia-ml-py (module pynvml) is not installed" in result["msg"]


def test_everything_read_leaves_no_unreadable_entries(machine):
    facts = facts_of(machine, supported_clocks=False)
    assert facts["unreadable"] == []
    assert [g["unreadable"] for g in facts["gpus"]] == [[], [], [], []]


def test_graphics_clocks_not_supported_is_no_table(machine):
    # Once the string "unsupported" was iterated into a list of its letters.
    machine.cli("fault", 1, "fail", "nvmlDeviceGetSupportedGraphicsClocks", "NOT_SUPPORTED")
    facts = facts_of(machine)
    assert facts["gpus"][1]["supported_clocks"] == "unsupported"
    assert list(facts["gpus"][0]["supported_clocks"]) == ["877"]


def test_unreadable_ecc_mode_still_reads_the_counts(machine):
    machine.cli("fault", 0, "fail", "nvmlDeviceGetEccMode", "UNKNOWN")
    machine.cli("fault", 0, "ecc", "volatile", "uncorrected", 3)
    gpu = facts_of(machine, supported_clocks=False)["gpus"][0]
    assert gpu["ecc"]["enabled"] == "unreadable" == gpu["ecc"]["pending_enabled"]
    assert gpu["ecc"]["volatile_uncorrected"] == 3
    assert [e["field"] for e in gpu["unreadable"]] == ["ecc.enabled", "ecc.pending_enabled"]


def test_unreadable_nvlink_states(machine):
    machine.cli("fault", 1, "fail", "nvmlDeviceGetNvLinkState", "UNKNOWN")
    facts = facts_of(machine, supported_clocks=False)
    assert facts["gpus"][1]["nvlinks"] == "unreadable"
    assert facts["gpus"][1]["unreadable"][0]["field"] == "nvlinks"
    # Its peers still see their links to it.
    assert facts["link_matrix"]["1"]["0"] == "NV2" == facts["link_matrix"]["0"]["1"]


def test_lost_gpu_gets_its_pci_address_from_the_pci_tree(machine, tmp_path):
    machine.cli("sysfs", tmp_path / "pci")
    machine.cli("fault", 2, "lost")
    lost = facts_of(machine, sysfs_root=str(tmp_path / "pci"))["gpus"][2]
    assert lost["lost"] is True and lost["pci_bus_id"] == "0000:3d:00.0"
    assert lost["pci_bus_id_from"] == "sysfs"
    # A tree that does not match NVML's GPUs is not guessed from.
    machine.cli("fault", 0, "absent")
    gpus = facts_of(machine, sysfs_root=str(tmp_path / "pci"))["gpus"]
    assert gpus[1]["lost"] is True and "pci_bus_id" not in gpus[1]
