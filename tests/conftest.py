"""Shared test harness: a simulated GPU machine, and the project's real modules run against it.

pynvml loads libnvidia-ml.so.1 by soname once per process, so everything that touches NVML runs in
a child process whose environment selects the simulator build, a profile and a private state
directory. Modules run as Ansible runs them on a node: their own process, arguments from a file,
JSON on stdout.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
SIM_SOURCE = PROJECT / "tests" / "nvml_sim"
SIM_CLI = SIM_SOURCE / "nvml-sim"
SIM_PROFILES = SIM_SOURCE / "profiles"
LIBRARY = PROJECT / "library"
MODULE_UTILS = PROJECT / "module_utils"

# First lines of every NVML child: `call` turns an NVML error into "!NAME" so results are data.
CHILD_PRELUDE = """
import json, os, sys
import pynvml as N
ERRORS = {v: k[len("NVML_ERROR_"):] for k, v in vars(N).items() if k.startswith("NVML_ERROR_")}

def call(fn, *args):
    try:
        return fn(*args)
    except N.NVMLError as err:
        return "!" + ERRORS[err.value]

def gpu(index):
    return N.nvmlDeviceGetHandleByIndex(index)
"""

# Runs a module file the way AnsiballZ does on a node: module_utils importable as
# ansible.module_utils.*, arguments read from the file named in argv[1].
# With a uid in argv[4] it drops root first, as a module started by an unprivileged user would be;
# what it imports is loaded before, since the checkout and the virtualenv may be unreadable for
# that user (a clone under /root or a mktemp -d directory is mode 0700). That includes the JSON
# profiles ansible-core imports lazily to read the arguments and to write the result.
MODULE_RUNNER = """
import os, sys
import ansible.module_utils
ansible.module_utils.__path__.append(sys.argv[1])
module = sys.argv[2]
with open(module) as source:
    code = compile(source.read(), module, "exec")
if len(sys.argv) > 4:
    import ansible.module_utils.basic, ansible.module_utils.nvidia_gpu.settings, ctypes, pynvml
    from ansible.module_utils.common import json as module_json
    module_json.get_module_decoder("legacy", module_json.Direction.CONTROLLER_TO_MODULE)
    module_json.get_module_encoder("legacy", module_json.Direction.MODULE_TO_CONTROLLER)
    os.setgid(int(sys.argv[4]))
    os.setuid(int(sys.argv[4]))
sys.argv = [module, sys.argv[3]]
exec(code, {"__name__": "__main__", "__file__": module})
"""

# What a GPU's settings read back through NVML: the state tests compare before and after.
STATE_READER = """
result = []
for i in INDICES or range(N.nvmlDeviceGetCount()):
    h = gpu(i)
    result.append({
        "persistence": call(N.nvmlDeviceGetPersistenceMode, h),
        "power_limit_mw": call(N.nvmlDeviceGetPowerManagementLimit, h),
        "app_clocks": [call(N.nvmlDeviceGetApplicationsClock, h, N.NVML_CLOCK_MEM),
                       call(N.nvmlDeviceGetApplicationsClock, h, N.NVML_CLOCK_GRAPHICS)],
        "graphics_clock": call(N.nvmlDeviceGetClockInfo, h, N.NVML_CLOCK_GRAPHICS),
        "compute_mode": call(N.nvmlDeviceGetComputeMode, h),
    })
"""


@pytest.fixture(scope="session")
def sim_lib_dir(tmp_path_factory):
    """The simulator library, built from source for this test session."""
    build = tmp_path_factory.mktemp("nvml-sim-build")
    subprocess.run(["make", "-s", "-C", str(SIM_SOURCE), f"BUILD_DIR={build}"], check=True)
    return build


class SimulatedMachine:
    """One machine with simulated GPUs: its own profile selection, state and run directories."""

    def __init__(self, lib_dir, root, profile="t180-g20"):
        self.root = Path(root)
        self.state_dir = self.root / "state"
        self.run_dir = self.root / "run"
        self.env = dict(
            os.environ,
            LD_LIBRARY_PATH=str(lib_dir),
            NVML_SIM_PROFILE_DIR=str(SIM_PROFILES),
            NVML_SIM_STATE_DIR=str(self.state_dir),
            NVML_SIM_PROFILE_FILE=str(self.root / "profile"),
            NVIDIA_GPU_RUN_DIR=str(self.run_dir),
            # Swapped hardware (nvml-sim swap) and the PCI tree a reset rewrites: this machine's.
            NVML_SIM_HARDWARE_DIR=str(self.root / "hardware"),
            NVML_SIM_SYSFS_DIR=str(self.root / "pci"),
        )
        self.use(profile)

    def use(self, profile):
        """Select a profile by name or path; None means no driver is configured."""
        if profile is None:
            self.env.pop("NVML_SIM_PROFILE", None)
        else:
            self.env["NVML_SIM_PROFILE"] = profile

    def reboot(self):
        """What a reboot does to driver state: /run is emptied."""
        self.cli("reset")
        for path in self.run_dir.glob("*"):
            path.unlink()

    def script(self, body, init=True):
        return CHILD_PRELUDE + ("N.nvmlInit()\n" if init else "") + textwrap.dedent(body)

    def nvml(self, body, init=True):
        """Run body in a child (after nvmlInit unless init=False); return its `result`."""
        code = self.script(body, init) + "\nprint(json.dumps(result))\n"
        proc = subprocess.run(
            [sys.executable, "-c", code], env=self.env, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def state(self):
        """Every GPU's settings as NVML reads them back."""
        return self.state_of(None)

    def state_of(self, indices):
        """The settings of some GPUs (by index) as NVML reads them back."""
        return self.nvml("INDICES = %r\n" % (indices,) + STATE_READER)

    def cli(self, *args, check=True):
        proc = subprocess.run(
            [sys.executable, str(SIM_CLI), *map(str, args)],
            env=self.env,
            capture_output=True,
            text=True,
        )
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc

    def module(self, name, args=None, check_mode=False, diff=False, env=None, uid=None):
        """Run library/<name>.py against this machine's GPUs; see run_module."""
        return run_module(
            self.root,
            name,
            args,
            check_mode=check_mode,
            diff=diff,
            env=dict(self.env, **(env or {})),
            uid=uid,
        )


def run_module(workdir, name, args=None, check_mode=False, diff=False, env=None, uid=None):
    """Run library/<name>.py as Ansible runs it on a node: its own process, arguments from a file
    in workdir, JSON on stdout. Returns that JSON ('failed' set on failure). With uid, the module
    runs as that user (workdir and the libraries must allow it)."""
    module_args = dict(args or {}, _ansible_check_mode=check_mode, _ansible_diff=diff)
    args_file = Path(workdir) / ("args-%s.json" % name)
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": module_args}))
    args_file.chmod(0o644)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            MODULE_RUNNER,
            str(MODULE_UTILS),
            str(LIBRARY / (name + ".py")),
            str(args_file),
            *([] if uid is None else [str(uid)]),
        ],
        env=env if env is not None else dict(os.environ),
        capture_output=True,
        text=True,
    )
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(
            "module %s printed no JSON (rc %d): %s %s"
            % (name, proc.returncode, proc.stdout, proc.stderr)
        ) from None


IB_SIM = PROJECT / "tests" / "ib_sim"


def ib_sim(*args):
    """Run the InfiniBand simulator (tests/ib_sim/ib-sim) with its profiles; raise on error."""
    subprocess.run(
        [sys.executable, str(IB_SIM / "ib-sim"), *map(str, args)],
        env={"IB_SIM_PROFILE_DIR": str(IB_SIM / "profiles"), "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
    )


@pytest.fixture
def make_machine(sim_lib_dir):
    """Factory for machines in a given directory (tests that need a world-readable one)."""

    def make(root, profile="t180-g20"):
        return SimulatedMachine(sim_lib_dir, root, profile)

    return make


@pytest.fixture
def machine(make_machine, tmp_path):
    """A freshly booted T180-G20 (4x V100 SXM2) unless the test switches profiles."""
    return make_machine(tmp_path)
