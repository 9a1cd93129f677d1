"""Tests for the NVML simulator: the C library seen through pynvml, and the nvml-sim tool.

Every NVML check runs in a child process (see SimulatedMachine in tests/conftest.py).
"""

import itertools
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CLI = HERE / "nvml-sim"
PROFILES = HERE / "profiles"

T180_BUS_IDS = ["00000000:1A:00.0", "00000000:1B:00.0", "00000000:3D:00.0", "00000000:3E:00.0"]
MIB = 1024 * 1024
NVLINK_TO_SWITCH = 2  # NVML_NVLINK_DEVICE_TYPE_SWITCH


@pytest.fixture
def sim(machine):
    """The shared simulated machine of tests/conftest.py, as these tests call it."""
    return machine


# ---- build ----


def test_build_is_incremental_and_exports_only_nvml(sim_lib_dir, sim):
    up_to_date = subprocess.run(["make", "-q", "-C", str(HERE), f"BUILD_DIR={sim_lib_dir}"])
    assert up_to_date.returncode == 0
    result = sim.nvml(
        """
        import ctypes
        lib = ctypes.CDLL("libnvidia-ml.so.1")
        result = [hasattr(lib, name) for name in (
            "nvmlInit_v2", "nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetPciInfo_v3",
            "nvmlDeviceGetNvLinkRemotePciInfo_v2", "nvmlDeviceGetComputeRunningProcesses_v3",
            "nvmlDeviceSetPowerManagementLimit_v2", "profile_load", "g_profile")]
        """,
        init=False,
    )
    assert result == [True] * 6 + [False, False]


# ---- profiles: every one loads, values match ----


@pytest.mark.parametrize(
    ("profile", "count", "name", "pci_id", "cc", "arch"),
    [
        ("t180-g20", 4, "Tesla V100-SXM2-16GB", 0x1DB110DE, [7, 0], "VOLTA"),
        ("hgx-a100-8", 8, "NVIDIA A100-SXM4-40GB", 0x20B010DE, [8, 0], "AMPERE"),
        ("h100-pcie", 1, "NVIDIA H100 PCIe", 0x233110DE, [9, 0], "HOPPER"),
        ("mixed-v100-a100", 4, "Tesla V100-SXM2-16GB", 0x1DB110DE, [7, 0], "VOLTA"),
    ],
    ids=lambda value: value if isinstance(value, str) and value.islower() else "",
)
def test_profile_loads(sim, profile, count, name, pci_id, cc, arch):
    sim.use(profile)
    result = sim.nvml(
        """
        ARCHS = {v: k[len("NVML_DEVICE_ARCH_"):] for k, v in vars(N).items()
                 if k.startswith("NVML_DEVICE_ARCH_")}
        result = {
            "driver": N.nvmlSystemGetDriverVersion(),
            "nvml": N.nvmlSystemGetNVMLVersion(),
            "cuda": N.nvmlSystemGetCudaDriverVersion_v2(),
            "gpus": [],
        }
        for i in range(N.nvmlDeviceGetCount()):
            h = gpu(i)
            result["gpus"].append({
                "index": N.nvmlDeviceGetIndex(h),
                "minor": N.nvmlDeviceGetMinorNumber(h),
                "name": N.nvmlDeviceGetName(h),
                "uuid": N.nvmlDeviceGetUUID(h),
                "serial": N.nvmlDeviceGetSerial(h),
                "bus_id": N.nvmlDeviceGetPciInfo(h).busId,
                "pci_id": N.nvmlDeviceGetPciInfo(h).pciDeviceId,
                "cc": N.nvmlDeviceGetCudaComputeCapability(h),
                "arch": ARCHS[N.nvmlDeviceGetArchitecture(h)],
                "by_uuid": N.nvmlDeviceGetIndex(
                    N.nvmlDeviceGetHandleByUUID(N.nvmlDeviceGetUUID(h))),
                "by_bus": N.nvmlDeviceGetIndex(
                    N.nvmlDeviceGetHandleByPciBusId(N.nvmlDeviceGetPciInfo(h).busId)),
                "processes": N.nvmlDeviceGetComputeRunningProcesses(h),
                "processes_v2": N.nvmlDeviceGetComputeRunningProcesses_v2(h),
            })
        """
    )
    assert result["driver"] == "580.95.05"
    assert result["nvml"] == "13.580.95.05"
    assert result["cuda"] == 13000
    gpus = result["gpus"]
    assert len(gpus) == count
    assert (gpus[0]["name"], gpus[0]["pci_id"], gpus[0]["cc"], gpus[0]["arch"]) == (
        name,
        pci_id,
        cc,
        arch,
    )
    for i, g in enumerate(gpus):
        assert g["index"] == g["minor"] == g["by_uuid"] == g["by_bus"] == i
        assert g["uuid"].startswith("GPU-") and len(g["uuid"]) == 40
        assert g["processes"] == g["processes_v2"] == []
    assert len({g["uuid"] for g in gpus}) == len({g["serial"] for g in gpus}) == count
    assert [g["bus_id"] for g in gpus] == sorted(g["bus_id"] for g in gpus)


def test_t180_matches_the_real_machine(sim):
    result = sim.nvml(
        """
        result = []
        for i in range(4):
            h = gpu(i)
            mem = N.nvmlDeviceGetSupportedMemoryClocks(h)
            v2 = N.nvmlDeviceGetMemoryInfo(h, version=N.nvmlMemory_v2)
            result.append({
                "brand": N.nvmlDeviceGetBrand(h) == N.NVML_BRAND_TESLA,
                "subsystem": N.nvmlDeviceGetPciInfo(h).pciSubSystemId,
                "total": N.nvmlDeviceGetMemoryInfo(h).total,
                "free": N.nvmlDeviceGetMemoryInfo(h).free,
                "v2": [v2.total, v2.reserved, v2.used, v2.free],
                "ecc": N.nvmlDeviceGetEccMode(h),
                "vbios": N.nvmlDeviceGetVbiosVersion(h),
                "part": N.nvmlDeviceGetBoardPartNumber(h),
                "pcie": [N.nvmlDeviceGetCurrPcieLinkGeneration(h),
                         N.nvmlDeviceGetCurrPcieLinkWidth(h),
                         N.nvmlDeviceGetMaxPcieLinkGeneration(h),
                         N.nvmlDeviceGetMaxPcieLinkWidth(h)],
                "power": [N.nvmlDeviceGetPowerManagementLimitConstraints(h),
                          N.nvmlDeviceGetPowerManagementDefaultLimit(h),
                          N.nvmlDeviceGetPowerManagementLimit(h),
                          N.nvmlDeviceGetEnforcedPowerLimit(h),
                          N.nvmlDeviceGetPowerManagementMode(h)],
                "usage": N.nvmlDeviceGetPowerUsage(h),
                "mem_clocks": mem,
                "gfx_clocks": N.nvmlDeviceGetSupportedGraphicsClocks(h, mem[0]),
                "other_mem": call(N.nvmlDeviceGetSupportedGraphicsClocks, h, 1000),
                "app": [N.nvmlDeviceGetApplicationsClock(h, N.NVML_CLOCK_MEM),
                        N.nvmlDeviceGetApplicationsClock(h, N.NVML_CLOCK_GRAPHICS),
                        N.nvmlDeviceGetDefaultApplicationsClock(h, N.NVML_CLOCK_GRAPHICS),
                        N.nvmlDeviceGetClock(h, N.NVML_CLOCK_SM,
                                             N.NVML_CLOCK_ID_APP_CLOCK_DEFAULT)],
                "current": [N.nvmlDeviceGetClockInfo(h, N.NVML_CLOCK_GRAPHICS),
                            N.nvmlDeviceGetClockInfo(h, N.NVML_CLOCK_MEM)],
                "max": [N.nvmlDeviceGetMaxClockInfo(h, N.NVML_CLOCK_GRAPHICS),
                        N.nvmlDeviceGetMaxClockInfo(h, N.NVML_CLOCK_MEM)],
                "thresholds": [N.nvmlDeviceGetTemperatureThreshold(h, t) for t in (
                    N.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN, N.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN,
                    N.NVML_TEMPERATURE_THRESHOLD_GPU_MAX)],
                "acoustic": call(N.nvmlDeviceGetTemperatureThreshold, h,
                                 N.NVML_TEMPERATURE_THRESHOLD_ACOUSTIC_MIN),
                "temp": N.nvmlDeviceGetTemperature(h, N.NVML_TEMPERATURE_GPU),
                "temp_v": N.nvmlDeviceGetTemperatureV(h, N.NVML_TEMPERATURE_GPU),
                "fan": call(N.nvmlDeviceGetFanSpeed, h),
                "reasons": [N.nvmlDeviceGetCurrentClocksEventReasons(h),
                            N.nvmlDeviceGetCurrentClocksThrottleReasons(h),
                            N.nvmlDeviceGetSupportedClocksEventReasons(h),
                            N.nvmlDeviceGetSupportedClocksThrottleReasons(h)],
                "modes": [N.nvmlDeviceGetPersistenceMode(h), N.nvmlDeviceGetComputeMode(h),
                          N.nvmlDeviceGetDisplayMode(h), N.nvmlDeviceGetDisplayActive(h),
                          N.nvmlDeviceGetPerformanceState(h)],
                "util": [N.nvmlDeviceGetUtilizationRates(h).gpu,
                         N.nvmlDeviceGetUtilizationRates(h).memory],
                "ecc_errors": N.nvmlDeviceGetTotalEccErrors(h, 1, 1),
                "retired": [N.nvmlDeviceGetRetiredPages(h, 0), N.nvmlDeviceGetRetiredPages_v2(h, 1),
                            N.nvmlDeviceGetRetiredPagesPendingStatus(h)],
                "remapped": call(N.nvmlDeviceGetRemappedRows, h),
                "mem_lock": call(N.nvmlDeviceSetMemoryLockedClocks, h, 877, 877),
                "replays": N.nvmlDeviceGetPcieReplayCounter(h),
            })
        """
    )
    for g in result:
        assert g["brand"] and g["subsystem"] == 0x121210DE
        assert g["total"] == 16384 * MIB and g["free"] == 16160 * MIB
        assert g["v2"] == [16384 * MIB, 224 * MIB, 0, 16160 * MIB]
        assert g["ecc"] == [1, 1] and g["ecc_errors"] == 0
        assert (g["vbios"], g["part"]) == ("88.00.4F.00.09", "900-2G503-0000-000")
        assert g["pcie"] == [3, 16, 3, 16]
        assert g["power"] == [[150000, 300000], 300000, 300000, 300000, 1]
        assert 38000 <= g["usage"] <= 44000
        assert g["mem_clocks"] == [877] and g["other_mem"] == "!NOT_FOUND"
        gfx = g["gfx_clocks"]
        assert gfx[:4] == [1530, 1522, 1515, 1507] and gfx[-1] == 135
        assert 1005 in gfx and 1312 in gfx
        assert all(7 <= a - b <= 8 for a, b in itertools.pairwise(gfx))
        assert g["app"] == [877, 1312, 1312, 1312]
        assert g["current"] == [1312, 877] and g["max"] == [1530, 877]
        assert g["thresholds"] == [90, 87, 83] and g["acoustic"] == "!NOT_SUPPORTED"
        assert 33 <= g["temp"] <= 38 and g["temp_v"] == g["temp"]
        assert g["fan"] == "!NOT_SUPPORTED"
        assert g["reasons"] == [0x1, 0x1, 0x1FF, 0x1FF]
        assert g["modes"] == [0, 0, 0, 0, 0] and g["util"] == [0, 0]
        assert g["retired"] == [[], [], 0]
        assert g["remapped"] == "!NOT_SUPPORTED" and g["mem_lock"] == "!NOT_SUPPORTED"
        assert g["replays"] == 0
    assert len({g["temp"] for g in result}) == 4


def test_t180_nvlink_mesh_and_topology(sim):
    result = sim.nvml(
        """
        result = {"links": [], "p2p": {}, "topo": {}}
        for i in range(4):
            h = gpu(i)
            result["links"].append([
                (N.nvmlDeviceGetNvLinkState(h, l), N.nvmlDeviceGetNvLinkVersion(h, l),
                 N.nvmlDeviceGetNvLinkRemotePciInfo(h, l).busId,
                 N.nvmlDeviceGetNvLinkRemoteDeviceType(h, l),
                 N.nvmlDeviceGetNvLinkCapability(h, l, N.NVML_NVLINK_CAP_P2P_SUPPORTED))
                for l in range(6)])
            result["link6"] = call(N.nvmlDeviceGetNvLinkState, h, 6)
            for j in range(4):
                if i != j:
                    # pynvml's NVML_P2P_CAPS_INDEX_READ is a tuple by mistake: pass 0.
                    result["p2p"][f"{i}{j}"] = [N.nvmlDeviceGetP2PStatus(h, gpu(j), k)
                                                for k in (0, 1, N.NVML_P2P_CAPS_INDEX_NVLINK)]
                    result["topo"][f"{i}{j}"] = N.nvmlDeviceGetTopologyCommonAncestor(h, gpu(j))
        # The unversioned function fills the legacy struct, with the short bus id.
        legacy = N.nvmlPciInfo_v2_t()
        N._nvmlGetFunctionPointer("nvmlDeviceGetNvLinkRemotePciInfo")(gpu(0), 0, N.byref(legacy))
        result["legacy"] = [legacy.busId, legacy.pciDeviceId]
        """
    )
    for i, links in enumerate(result["links"]):
        assert all(
            state == 1 and version == 2 and kind == 0 and p2p == 1
            for state, version, _, kind, p2p in links
        )
        peers = sorted(bus for _, _, bus, _, _ in links)
        others = [b for b in T180_BUS_IDS if b != T180_BUS_IDS[i]]
        assert peers == sorted(others * 2)  # NV2: two links to every other GPU
    assert result["link6"] == "!INVALID_ARGUMENT"
    assert result["legacy"] == ["0000:1B:00.0", 0x1DB110DE]
    assert all(status == [0, 0, 0] for status in result["p2p"].values())
    assert result["topo"]["01"] == result["topo"]["23"] == 10  # same PCIe switch
    assert result["topo"]["02"] == 40  # same CPU socket


def test_hgx_nvswitch_fabric_and_ampere_features(sim):
    sim.use("hgx-a100-8")
    result = sim.nvml(
        """
        h = gpu(0)
        result = {
            "links": [(N.nvmlDeviceGetNvLinkState(h, l),
                       N.nvmlDeviceGetNvLinkRemoteDeviceType(h, l),
                       N.nvmlDeviceGetNvLinkRemotePciInfo(h, l).busId) for l in range(12)],
            "version": N.nvmlDeviceGetNvLinkVersion(h, 0),
            "link12": call(N.nvmlDeviceGetNvLinkState, h, 12),
            "p2p": N.nvmlDeviceGetP2PStatus(h, gpu(7), N.NVML_P2P_CAPS_INDEX_NVLINK),
            "topo": N.nvmlDeviceGetTopologyCommonAncestor(h, gpu(7)),
            "power": [N.nvmlDeviceGetPowerManagementLimitConstraints(h),
                      N.nvmlDeviceGetPowerManagementDefaultLimit(h)],
            "clocks": [N.nvmlDeviceGetSupportedMemoryClocks(h),
                       N.nvmlDeviceGetSupportedGraphicsClocks(h, 1215)],
            "pcie": [N.nvmlDeviceGetMaxPcieLinkGeneration(h), N.nvmlDeviceGetMaxPcieLinkWidth(h)],
            "remapped": N.nvmlDeviceGetRemappedRows(h),
            "retired": call(N.nvmlDeviceGetRetiredPages, h, 0),
            "pending": call(N.nvmlDeviceGetRetiredPagesPendingStatus, h),
            "mem_lock": call(N.nvmlDeviceSetMemoryLockedClocks, h, 1215, 1215),
            "mem_lock_bad": call(N.nvmlDeviceSetMemoryLockedClocks, h, 1215, 1300),
        }
        """
    )
    assert all(state == 1 and kind == NVLINK_TO_SWITCH for state, kind, _ in result["links"])
    switches = [bus for _, _, bus in result["links"]]
    assert sorted(set(switches)) == [f"00000000:C{n}:00.0" for n in range(4, 10)]
    assert all(switches.count(bus) == 2 for bus in switches)
    assert result["version"] == 5 and result["link12"] == "!INVALID_ARGUMENT"
    assert result["p2p"] == 0 and result["topo"] == 50  # NVLink via switches; other socket
    assert result["power"] == [[100000, 400000], 400000]
    mem, gfx = result["clocks"]
    assert mem == [1215] and (gfx[0], gfx[-1]) == (1410, 210)
    assert result["pcie"] == [4, 16]
    assert result["remapped"] == [0, 0, 0, 0]
    assert result["retired"] == result["pending"] == "!NOT_SUPPORTED"
    assert result["mem_lock"] is None and result["mem_lock_bad"] == "!INVALID_ARGUMENT"


def test_h100_pcie_has_no_active_nvlink(sim):
    sim.use("h100-pcie")
    result = sim.nvml(
        """
        h = gpu(0)
        result = {
            "states": [N.nvmlDeviceGetNvLinkState(h, l) for l in range(12)],
            "remote": call(N.nvmlDeviceGetNvLinkRemotePciInfo, h, 0),
            "link12": call(N.nvmlDeviceGetNvLinkState, h, 12),
            "pcie": [N.nvmlDeviceGetCurrPcieLinkGeneration(h), N.nvmlDeviceGetCurrPcieLinkWidth(h)],
            "power": N.nvmlDeviceGetPowerManagementLimitConstraints(h),
            "default": N.nvmlDeviceGetPowerManagementDefaultLimit(h),
            "max": [N.nvmlDeviceGetMaxClockInfo(h, N.NVML_CLOCK_MEM),
                    N.nvmlDeviceGetMaxClockInfo(h, N.NVML_CLOCK_GRAPHICS)],
            "memory": N.nvmlDeviceGetMemoryInfo(h).total,
        }
        """
    )
    assert result["states"] == [0] * 12
    assert result["remote"] == "!NOT_SUPPORTED" and result["link12"] == "!INVALID_ARGUMENT"
    assert result["pcie"] == [5, 16]
    assert result["power"] == [200000, 350000] and result["default"] == 350000
    assert result["max"] == [1593, 1755]
    assert result["memory"] == 80 * 1024 * MIB


def test_mixed_node_has_per_model_values(sim):
    sim.use("mixed-v100-a100")
    result = sim.nvml(
        """
        result = {
            "names": [N.nvmlDeviceGetName(gpu(i)) for i in range(4)],
            "power": [N.nvmlDeviceGetPowerManagementLimitConstraints(gpu(i)) for i in range(4)],
            "active": [sum(N.nvmlDeviceGetNvLinkState(gpu(i), l) for l in range(6))
                       for i in range(4)],
            "nvlink_p2p": [N.nvmlDeviceGetP2PStatus(gpu(0), gpu(1), N.NVML_P2P_CAPS_INDEX_NVLINK),
                           N.nvmlDeviceGetP2PStatus(gpu(2), gpu(3), N.NVML_P2P_CAPS_INDEX_NVLINK)],
            "read_p2p": [N.nvmlDeviceGetP2PStatus(gpu(2), gpu(3), 0),
                         N.nvmlDeviceGetP2PStatus(gpu(0), gpu(2), 0)],
            "topo": [N.nvmlDeviceGetTopologyCommonAncestor(gpu(0), gpu(1)),
                     N.nvmlDeviceGetTopologyCommonAncestor(gpu(2), gpu(3)),
                     N.nvmlDeviceGetTopologyCommonAncestor(gpu(0), gpu(3))],
            "locks": [call(N.nvmlDeviceSetMemoryLockedClocks, gpu(i), 877 if i < 2 else 1215,
                           877 if i < 2 else 1215) for i in range(4)],
        }
        """
    )
    assert result["names"] == ["Tesla V100-SXM2-16GB"] * 2 + ["NVIDIA A100-PCIE-40GB"] * 2
    assert result["power"] == [[150000, 300000]] * 2 + [[150000, 250000]] * 2
    assert result["active"] == [2, 2, 0, 0]
    assert result["nvlink_p2p"] == [0, 5]  # OK, NOT_SUPPORTED
    assert result["read_p2p"] == [0, 1]  # OK within a socket, CHIPSET_NOT_SUPPORTED across
    assert result["topo"] == [10, 40, 50]
    assert result["locks"] == ["!NOT_SUPPORTED"] * 2 + [None] * 2


# ---- library lifetime and configuration ----


def test_no_profile_means_driver_not_loaded(sim):
    sim.use(None)
    result = sim.nvml("result = call(N.nvmlInit)", init=False)
    assert result == "!DRIVER_NOT_LOADED"


def test_profile_from_selection_file_and_refcounted_init(sim):
    sim.use(None)
    sim.cli("profile", "h100-pcie")
    assert (sim.root / "profile").read_text() == "h100-pcie\n"
    result = sim.nvml(
        """
        N.nvmlInit()
        N.nvmlShutdown()
        count = N.nvmlDeviceGetCount()  # still initialised once
        N.nvmlShutdown()
        result = [count, call(N.nvmlDeviceGetCount), call(N.nvmlShutdown)]
        """
    )
    assert result == [1, "!UNINITIALIZED", "!UNINITIALIZED"]
    assert "* h100-pcie" in sim.cli("profiles").stdout.splitlines()


def test_broken_profile_is_reported_with_its_line(sim):
    broken = sim.root / "broken.conf"
    text = (PROFILES / "h100-pcie.conf").read_text()
    broken.write_text(text.replace("pcie 5 16", "pcie 5 16\nwarp_speed 9"))
    sim.use(str(broken))
    proc = subprocess.run(
        [sys.executable, "-c", sim.script("print(call(N.nvmlInit))", init=False)],
        env=sim.env,
        capture_output=True,
        text=True,
    )
    line = text.splitlines().index("pcie 5 16") + 2
    assert proc.stdout.strip() == "!UNKNOWN"
    assert f"broken.conf:{line}: unknown key 'warp_speed'" in proc.stderr


def test_fan_speed_only_where_the_profile_has_a_fan(sim):
    fan = sim.root / "fan.conf"
    fan.write_text(
        (PROFILES / "h100-pcie.conf").read_text().replace("pcie 5 16", "pcie 5 16\nfan_speed 30")
    )
    sim.use(str(fan))
    assert sim.nvml("result = N.nvmlDeviceGetFanSpeed(gpu(0))") == 30


def test_bad_arguments(sim):
    result = sim.nvml(
        """
        h = gpu(0)
        result = [
            call(gpu, 4),
            call(N.nvmlDeviceGetHandleByUUID, "GPU-00000000-0000-0000-0000-000000000000"),
            N.nvmlDeviceGetIndex(N.nvmlDeviceGetHandleByPciBusId("0000:1b:00.0")),
            N.nvmlDeviceGetIndex(N.nvmlDeviceGetHandleByPciBusId("3D:00.0")),
            call(N.nvmlDeviceGetHandleByPciBusId, "0000:99:00.0"),
            call(N.nvmlDeviceGetHandleByPciBusId, "not-a-bus-id"),
            call(N.nvmlDeviceGetTemperature, h, 1),
            call(N.nvmlDeviceGetTemperatureThreshold, h, 99),
            call(N.nvmlDeviceGetClockInfo, h, 9),
            call(N.nvmlDeviceGetNvLinkErrorCounter, h, 0, 9),
            call(N.nvmlDeviceGetMemoryInfo, h, 0x01000028),
        ]
        """
    )
    assert result == [
        "!INVALID_ARGUMENT",
        "!NOT_FOUND",
        1,
        2,
        "!NOT_FOUND",
        "!INVALID_ARGUMENT",
        "!INVALID_ARGUMENT",
        "!INVALID_ARGUMENT",
        "!INVALID_ARGUMENT",
        "!INVALID_ARGUMENT",
        "!ARGUMENT_VERSION_MISMATCH",
    ]


# ---- settings: round trips, validation, permissions ----


def test_settings_persist_across_processes_until_reset(sim):
    result = sim.nvml(
        """
        h = gpu(0)
        N.nvmlDeviceSetPersistenceMode(h, 1)
        N.nvmlDeviceSetPowerManagementLimit(h, 200000)
        N.nvmlDeviceSetApplicationsClocks(h, 877, 1005)
        N.nvmlDeviceSetGpuLockedClocks(h, 135, 900)
        N.nvmlDeviceSetComputeMode(h, N.NVML_COMPUTEMODE_EXCLUSIVE_PROCESS)
        N.nvmlDeviceSetPowerManagementLimit_v2(gpu(1), N.NVML_POWER_SCOPE_GPU, 250000)
        result = None
        """
    )
    read_back = """
        h = gpu(0)
        result = [N.nvmlDeviceGetPersistenceMode(h), N.nvmlDeviceGetPowerManagementLimit(h),
                  N.nvmlDeviceGetEnforcedPowerLimit(h),
                  N.nvmlDeviceGetApplicationsClock(h, N.NVML_CLOCK_GRAPHICS),
                  N.nvmlDeviceGetClockInfo(h, N.NVML_CLOCK_GRAPHICS),
                  N.nvmlDeviceGetComputeMode(h), N.nvmlDeviceGetPowerManagementLimit(gpu(1)),
                  N.nvmlDeviceGetPowerManagementLimit(gpu(2))]
        """
    # The locked range caps the running clock below the application clock.
    assert sim.nvml(read_back) == [1, 200000, 200000, 1005, 900, 3, 250000, 300000]
    status = json.loads(sim.cli("status", "--json").stdout)["gpus"][0]
    assert status["persistence"] and status["power_limit_w"] == 200
    assert status["app_clocks_mhz"] == [877, 1005]
    assert status["gpu_locked_clocks_mhz"] == [135, 900] and status["compute_mode"] == 3

    result = sim.nvml(
        """
        h = gpu(0)
        N.nvmlDeviceResetGpuLockedClocks(h)
        a = N.nvmlDeviceGetClockInfo(h, N.NVML_CLOCK_GRAPHICS)
        N.nvmlDeviceResetApplicationsClocks(h)
        result = [a, N.nvmlDeviceGetClockInfo(h, N.NVML_CLOCK_GRAPHICS)]
        """
    )
    assert result == [1005, 1312]
    sim.cli("reset")
    assert sim.nvml(read_back) == [0, 300000, 300000, 1312, 1312, 0, 300000, 300000]


def test_setters_validate_like_nvml(sim):
    result = sim.nvml(
        """
        h = gpu(0)
        v2 = N.c_nvmlPowerValue_v2_t(version=0x0100000C, powerScope=0, powerValueMw=200000)
        set_v2 = N._nvmlGetFunctionPointer("nvmlDeviceSetPowerManagementLimit_v2")
        result = [
            call(N.nvmlDeviceSetPowerManagementLimit, h, 149999),
            call(N.nvmlDeviceSetPowerManagementLimit, h, 300001),
            call(N.nvmlDeviceSetApplicationsClocks, h, 877, 1006),
            call(N.nvmlDeviceSetApplicationsClocks, h, 876, 1005),
            call(N.nvmlDeviceSetGpuLockedClocks, h, 1005, 900),
            call(N.nvmlDeviceSetGpuLockedClocks, h, 100, 900),
            call(N.nvmlDeviceSetGpuLockedClocks, h, 135, 1600),
            call(N.nvmlDeviceSetPersistenceMode, h, 2),
            call(N.nvmlDeviceSetComputeMode, h, N.NVML_COMPUTEMODE_EXCLUSIVE_THREAD),
            call(N.nvmlDeviceSetComputeMode, h, 7),
            set_v2(h, N.byref(v2)),  # pynvml's own wrapper drops the return code
            N.nvmlDeviceGetPowerManagementLimit(h),
        ]
        """
    )
    assert result == ["!INVALID_ARGUMENT"] * 8 + [
        "!NOT_SUPPORTED",
        "!INVALID_ARGUMENT",
        25,  # NVML_ERROR_ARGUMENT_VERSION_MISMATCH
        300000,
    ]


def test_setters_need_root(make_machine):
    # Readable by nobody, unlike pytest's private temporary directories.
    root = Path(tempfile.mkdtemp(prefix="nvml-sim-"))
    try:
        root.chmod(0o755)
        sim = make_machine(root)
        sim.cli("fault", 0, "fail", "nvmlDeviceGetPowerUsage", "UNKNOWN", "--times", 1)
        result = sim.nvml(
            """
            h = gpu(0)  # the library is loaded and initialised before dropping root
            os.setuid(65534)
            result = [
                N.nvmlDeviceGetPowerManagementLimit(h),
                call(N.nvmlDeviceGetPowerUsage, h),
                call(N.nvmlDeviceGetPowerUsage, h) > 0,
                call(N.nvmlDeviceSetPowerManagementLimit, h, 200000),
                call(N.nvmlDeviceSetPersistenceMode, h, 1),
                call(N.nvmlDeviceSetApplicationsClocks, h, 877, 1005),
                call(N.nvmlDeviceSetGpuLockedClocks, h, 135, 1005),
                call(N.nvmlDeviceResetGpuLockedClocks, h),
                call(N.nvmlDeviceSetComputeMode, h, 0),
                call(N.nvmlDeviceResetNvLinkErrorCounters, h, 0),
                call(N.nvmlDeviceSetMemoryLockedClocks, h, 877, 877),
            ]
            """
        )
        # A counted fault is used up by an unprivileged reader as well.
        assert result == [300000, "!UNKNOWN", True] + ["!NO_PERMISSION"] * 7 + ["!NOT_SUPPORTED"]
        assert sim.nvml("result = N.nvmlDeviceGetPowerManagementLimit(gpu(0))") == 300000
    finally:
        shutil.rmtree(root)


def test_concurrent_writers_lose_nothing(sim):
    # Four processes set limits on four GPUs while the tool rewrites the state for a fifth kind
    # of change; without the shared lock some of these updates would be overwritten.
    setter = """
        h = gpu(int(sys.argv[1]))
        for mw in range(150000, 300001, 2500):
            N.nvmlDeviceSetPowerManagementLimit(h, mw)
            N.nvmlDeviceSetApplicationsClocks(h, 877, 1005 if mw % 5000 else 1312)
        result = None
        """
    injector = f"""
import runpy
main = runpy.run_path({str(CLI)!r}, run_name="nvml_sim")["main"]
for n in range(1, 41):
    main(["fault", "0", "pcie-replays", str(n)])
"""
    procs = [
        subprocess.Popen([sys.executable, "-c", sim.script(setter), str(i)], env=sim.env)
        for i in range(4)
    ]
    procs.append(subprocess.Popen([sys.executable, "-c", injector], env=sim.env))
    assert [p.wait() for p in procs] == [0] * 5
    result = sim.nvml(
        """
        result = [[N.nvmlDeviceGetPowerManagementLimit(gpu(i)),
                   N.nvmlDeviceGetApplicationsClock(gpu(i), N.NVML_CLOCK_GRAPHICS)]
                  for i in range(4)] + [N.nvmlDeviceGetPcieReplayCounter(gpu(0))]
        """
    )
    assert result == [[300000, 1312]] * 4 + [40]


# ---- faults ----


def test_lost_gpu(sim):
    sim.cli("fault", 1, "lost")
    result = sim.nvml(
        """
        h = gpu(1)
        result = [N.nvmlDeviceGetCount(), call(N.nvmlDeviceGetName, h),
                  call(N.nvmlDeviceGetTemperature, h, 0), call(N.nvmlDeviceGetPciInfo, h),
                  call(N.nvmlDeviceSetPowerManagementLimit, h, 200000),
                  N.nvmlDeviceGetName(gpu(0)),
                  [N.nvmlDeviceGetNvLinkState(gpu(0), l) for l in range(6)]]
        """
    )
    assert result[:5] == [4] + ["!GPU_IS_LOST"] * 4
    assert result[5] == "Tesla V100-SXM2-16GB"
    assert result[6] == [0, 0, 1, 1, 1, 1]  # the links to the lost GPU are down
    sim.cli("clear", 1)
    assert sim.nvml("result = N.nvmlDeviceGetName(gpu(1))") == "Tesla V100-SXM2-16GB"


def test_absent_gpu_shifts_indices(sim):
    sim.cli("fault", 1, "absent")
    result = sim.nvml(
        """
        result = [N.nvmlDeviceGetCount(),
                  [N.nvmlDeviceGetPciInfo(gpu(i)).busId for i in range(3)],
                  [N.nvmlDeviceGetMinorNumber(gpu(i)) for i in range(3)],
                  call(gpu, 3),
                  call(N.nvmlDeviceGetHandleByPciBusId, "00000000:1B:00.0")]
        """
    )
    bus_ids = [T180_BUS_IDS[0], *T180_BUS_IDS[2:]]
    assert result == [3, bus_ids, [0, 1, 2], "!INVALID_ARGUMENT", "!NOT_FOUND"]
    status = json.loads(sim.cli("status", "--json").stdout)["gpus"]
    assert [g["index"] for g in status] == [0, None, 1, 2]
    for slot in (0, 2, 3):
        sim.cli("fault", slot, "absent")
    assert sim.nvml("result = call(N.nvmlInit)", init=False) == "!DRIVER_NOT_LOADED"


def test_nvlink_faults(sim):
    sim.cli("fault", 0, "nvlink-down", 2)
    sim.cli("fault", 0, "nvlink-errors", 3, "replay", 7)
    sim.cli("fault", 0, "nvlink-errors", 3, "crc", 2)
    body = """
        h = gpu(0)
        result = [[N.nvmlDeviceGetNvLinkState(h, l) for l in range(6)],
                  N.nvmlDeviceGetNvLinkState(gpu(2), 0),
                  N.nvmlDeviceGetP2PStatus(h, gpu(2), N.NVML_P2P_CAPS_INDEX_NVLINK),
                  [N.nvmlDeviceGetNvLinkErrorCounter(h, 3, c) for c in range(5)]]
        """
    # GPU 0's link 2 ends at GPU 2's link 0; link 3 still joins the pair.
    assert sim.nvml(body) == [[1, 1, 0, 1, 1, 1], 0, 0, [7, 0, 2, 0, 0]]
    sim.nvml("result = N.nvmlDeviceResetNvLinkErrorCounters(gpu(0), 3)")
    assert sim.nvml(body)[3] == [0] * 5
    assert "nvlink-down 2" in sim.cli("status").stdout


def test_ecc_and_retired_pages_on_volta(sim):
    sim.cli("fault", 0, "ecc", "volatile", "corrected", 5)
    sim.cli("fault", 0, "ecc", "aggregate", "uncorrected", 2)
    sim.cli("fault", 0, "retired-pages", "sbe", 2)
    sim.cli("fault", 0, "retired-pages", "dbe", 1, "--pending")
    result = sim.nvml(
        """
        h = gpu(0)
        result = [[N.nvmlDeviceGetTotalEccErrors(h, e, c) for e in (0, 1) for c in (0, 1)],
                  N.nvmlDeviceGetMemoryErrorCounter(h, 0, 0, N.NVML_MEMORY_LOCATION_DEVICE_MEMORY),
                  N.nvmlDeviceGetMemoryErrorCounter(h, 0, 0, N.NVML_MEMORY_LOCATION_L2_CACHE),
                  len(N.nvmlDeviceGetRetiredPages(h, 0)),
                  N.nvmlDeviceGetRetiredPages_v2(h, 1),
                  N.nvmlDeviceGetRetiredPagesPendingStatus(h)]
        """
    )
    # Errors since boot (volatile) also count in the lifetime (aggregate) total.
    assert result[:3] == [[5, 5, 0, 2], 5, 0]
    assert result[3] == 2 and len(result[4]) == 1 and result[4][0]["timestamp"] > 0
    assert result[5] == 1


def test_remapped_rows_on_ampere(sim):
    sim.use("hgx-a100-8")
    sim.cli("fault", 3, "remapped-rows", 4, 1, "--pending")
    result = sim.nvml("result = [N.nvmlDeviceGetRemappedRows(gpu(i)) for i in (2, 3)]")
    assert result == [[0, 0, 0, 0], [4, 1, 1, 0]]
    assert "remapped-rows 4 1 --pending" in sim.cli("status").stdout


def test_thermal_power_and_pcie_faults(sim):
    sim.cli("fault", 0, "temp", 92)
    sim.cli("fault", 1, "temp", 86)
    sim.cli("fault", 2, "throttle", "0x8")
    sim.cli("fault", 3, "power-usage", 310.5)
    sim.cli("fault", 3, "pcie", 2, 8)
    sim.cli("fault", 3, "pcie-replays", 12)
    result = sim.nvml(
        """
        reasons = [N.nvmlDeviceGetCurrentClocksEventReasons(gpu(i)) for i in range(4)]
        h = gpu(3)
        result = [N.nvmlDeviceGetTemperature(gpu(0), 0), reasons, N.nvmlDeviceGetPowerUsage(h),
                  N.nvmlDeviceGetCurrPcieLinkGeneration(h), N.nvmlDeviceGetCurrPcieLinkWidth(h),
                  N.nvmlDeviceGetMaxPcieLinkGeneration(h), N.nvmlDeviceGetPcieReplayCounter(h)]
        """
    )
    idle, sw_power, hw_slow, sw_thermal, hw_thermal = 0x1, 0x4, 0x8, 0x20, 0x40
    assert result == [
        92,
        [idle | hw_slow | sw_thermal | hw_thermal, idle, hw_slow, idle | sw_power],
        310500,
        2,
        8,
        3,
        12,
    ]


def test_injected_failures(sim):
    sim.cli("fault", 2, "fail", "nvmlDeviceSetPowerManagementLimit", "UNKNOWN", "--times", 1)
    sim.cli("fault", 1, "fail", "nvmlDeviceGetPciInfo", "NVML_ERROR_NOT_SUPPORTED")
    sim.cli("fault", 3, "fail", "nvmlDeviceGetHandleByIndex_v2", "GPU_IS_LOST")
    apply_all = """
        result = [call(N.nvmlDeviceSetPowerManagementLimit, gpu(i), 200000) for i in range(3)]
        result += [N.nvmlDeviceGetPowerManagementLimit(gpu(i)) for i in range(3)]
        result += [call(N.nvmlDeviceGetPciInfo, gpu(1)), call(gpu, 3)]
        """
    # The setter fails once, mid-way through a multi-GPU apply; reads on that GPU still work.
    first = sim.nvml(apply_all)
    assert first[:6] == [None, None, "!UNKNOWN", 200000, 200000, 300000]
    assert first[6:] == ["!NOT_SUPPORTED", "!GPU_IS_LOST"]
    assert sim.nvml(apply_all)[:6] == [None] * 3 + [200000] * 3
    sim.cli("clear", "all")
    assert sim.nvml("result = N.nvmlDeviceGetPciInfo(gpu(1)).busId") == T180_BUS_IDS[1]


def test_injected_failure_after_some_calls(sim):
    # Lets an apply succeed and its rollback fail, or a GPU fail on the second of two settings.
    sim.cli("fault", 0, "fail", "nvmlDeviceSetPersistenceMode", "GPU_IS_LOST", "--after", 1)
    sim.cli("fault", 1, "fail", "nvmlDeviceSetComputeMode", "UNKNOWN", "--after", 2, "--times", 1)
    result = sim.nvml(
        """
        result = [call(N.nvmlDeviceSetPersistenceMode, gpu(0), v) for v in (1, 0, 0)]
        result += [call(N.nvmlDeviceSetComputeMode, gpu(1), 0) for _ in range(4)]
        """
    )
    assert result == [None, "!GPU_IS_LOST", "!GPU_IS_LOST", None, None, "!UNKNOWN", None]
    assert "fail nvmlDeviceSetPersistenceMode GPU_IS_LOST (always)" in sim.cli("status").stdout


def test_long_lived_process_sees_new_faults(sim):
    code = sim.script(
        """
        h = gpu(0)
        print(N.nvmlDeviceGetTemperature(h, 0), flush=True)
        sys.stdin.readline()
        print(call(N.nvmlDeviceGetTemperature, h, 0), flush=True)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=sim.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "34"
    sim.cli("fault", 0, "lost")
    out, _ = proc.communicate("go\n")
    assert out.strip() == "!GPU_IS_LOST"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fault", 4, "lost"], "no GPU slot 4"),
        (["fault", 0, "nvlink-down", 6], "has no NVLink 6"),
        (["fault", 0, "pcie", 4, 16], "up to Gen3 x16"),
        (["fault", 0, "fail", "nvmlDeviceGetWarpDrive", "UNKNOWN"], "has no function"),
        (["fault", 0, "fail", "nvmlDeviceGetName", "OOPS"], "unknown NVML error"),
    ],
)
def test_tool_rejects_bad_faults(sim, args, message):
    proc = sim.cli(*args, check=False)
    assert proc.returncode == 1 and message in proc.stderr
    assert not (sim.state_dir / "state").exists()


# ---- sysfs ----


def test_sysfs_tree(sim, tmp_path):
    sim.use("hgx-a100-8")
    out = tmp_path / "devices"
    sim.cli("sysfs", out)
    entries = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert len(entries) == 8 + 6 + 1
    gpu = out / "0000:07:00.0"
    files = {f.name: f.read_text() for f in gpu.iterdir()}
    assert files == {
        "vendor": "0x10de\n",
        "device": "0x20b0\n",
        "class": "0x030200\n",
        "subsystem_vendor": "0x10de\n",
        "subsystem_device": "0x134f\n",
    }
    assert (out / "0000:c4:00.0" / "class").read_text() == "0x068000\n"
    assert (out / "0000:00:00.0" / "vendor").read_text() == "0x1022\n"

    sim.cli("fault", 1, "absent")
    sim.cli("sysfs", out)  # regenerated in place
    assert not (out / "0000:0f:00.0").exists() and gpu.exists()


# ---- speed ----


def test_facts_pass_over_eight_gpus_is_fast(sim):
    sim.use("hgx-a100-8")
    sim.cli("fault", 5, "ecc", "volatile", "corrected", 3)
    sim.cli("fault", 6, "fail", "nvmlDeviceGetSerial", "UNKNOWN")
    result = sim.nvml(
        """
        import time
        def facts():
            for i in range(N.nvmlDeviceGetCount()):
                h = gpu(i)
                for fn in (N.nvmlDeviceGetName, N.nvmlDeviceGetUUID, N.nvmlDeviceGetSerial,
                           N.nvmlDeviceGetPciInfo, N.nvmlDeviceGetMemoryInfo,
                           N.nvmlDeviceGetPowerUsage, N.nvmlDeviceGetPowerManagementLimit,
                           N.nvmlDeviceGetPowerManagementLimitConstraints,
                           N.nvmlDeviceGetEnforcedPowerLimit, N.nvmlDeviceGetPersistenceMode,
                           N.nvmlDeviceGetCurrentClocksEventReasons, N.nvmlDeviceGetRemappedRows,
                           N.nvmlDeviceGetCurrPcieLinkGeneration, N.nvmlDeviceGetEccMode,
                           N.nvmlDeviceGetSupportedMemoryClocks):
                    call(fn, h)
                for kind in range(4):
                    N.nvmlDeviceGetClockInfo(h, kind)
                    N.nvmlDeviceGetMaxClockInfo(h, kind)
                for link in range(12):
                    N.nvmlDeviceGetNvLinkState(h, link)
                    N.nvmlDeviceGetNvLinkRemotePciInfo(h, link)
                N.nvmlDeviceGetSupportedGraphicsClocks(h, 1215)
        facts()
        start = time.perf_counter()
        for _ in range(5):
            facts()
        result = (time.perf_counter() - start) / 5
        """
    )
    assert result < 0.05
