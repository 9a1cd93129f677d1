#!/usr/bin/env python3
"""Read-only check of this project's GPU code against a real GPU. It never changes a setting.

Runs, against the machine's own NVML: the facts, the health checks, and the settings logic in
CHECK MODE for a few typical requests (the seed machine's fix, a power cap, a clock lock, back to
defaults), then reads the GPUs again and fails if anything differs from before. Where Ansible is
installed the real modules run (as AnsiballZ would run them); otherwise the same module_utils code
is called directly. Needs only Python 3 and pynvml (nvidia-ml-py): give --pynvml-dir for a copy of
pynvml.py when the package is not installed.

    python3 tests/hardware/readonly_check.py [--json report.json] [--expected-count N]
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
MODULE_UTILS = PROJECT / "module_utils"
# Settings this script plans in check mode. None of them is ever applied.
REQUESTS = {
    "seed machine fix (-pm 1, -pl 200 or the card's minimum, locked 1005 MHz)": None,
    "power limit back to the card's default": {"power_limit": "default"},
    "clocks back to the card's own": {"reset_clocks": True},
    "persistence on": {"persistence_mode": True},
}
WATCHED = ("persistence_mode", "compute_mode")


def seed_fix(gpu):
    """The seed machine's settings, made valid for this GPU (its own power range)."""
    low = gpu["power"]["min_limit_w"]
    watts = 200 if low == "unsupported" or low <= 200 else int(low)
    return {
        "persistence_mode": True,
        "power_limit": watts,
        "clocks": {"strategy": "auto", "graphics_mhz": 1005},
        "snap_clocks": True,
    }


def settings_snapshot(facts):
    """What settings changes would alter, per GPU."""
    return [
        {
            "index": g["index"],
            "power_limit_w": g.get("power", {}).get("limit_w"),
            "applications_clocks": [
                g.get("clocks", {}).get("applications_memory_mhz"),
                g.get("clocks", {}).get("applications_graphics_mhz"),
            ],
            **{key: g.get(key) for key in WATCHED},
        }
        for g in facts["gpus"]
    ]


class Direct:
    """The module_utils code called in this process."""

    name = "module_utils called directly (Ansible not installed)"

    def __init__(self):
        sys.path.insert(0, str(MODULE_UTILS))
        from nvidia_gpu import facts, health, settings

        self.facts, self.health, self.settings = facts, health, settings

    def gather(self):
        return self.facts.collect()

    def check_health(self, options):
        return self.health.evaluate(self.facts.collect(with_supported_clocks=False), options)

    def plan(self, request):
        changed, gpus, diff = self.settings.ensure(request, check_mode=True)
        return {"changed": changed, "gpus": gpus, "diff": diff}


class Modules:
    """The real Ansible modules, each in its own process with module_utils importable."""

    name = "the Ansible modules in library/ (check mode)"
    RUNNER = (
        "import runpy, sys, ansible.module_utils as m; m.__path__.append(sys.argv[1]); "
        "sys.argv = sys.argv[2:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    )

    def run(self, module, args, check_mode=False):
        payload = dict(args, _ansible_check_mode=check_mode, _ansible_diff=True)
        path = Path(os.environ.get("TMPDIR", "/tmp")) / ("readonly-%d.json" % os.getpid())
        path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": payload}))
        try:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    self.RUNNER,
                    str(MODULE_UTILS),
                    str(PROJECT / "library" / (module + ".py")),
                    str(path),
                ],
                capture_output=True,
                text=True,
            )
        finally:
            path.unlink()
        result = json.loads(proc.stdout)
        if result.get("failed") and module != "nvidia_gpu_health":
            raise RuntimeError("%s failed: %s" % (module, result.get("msg")))
        return result

    def gather(self):
        return self.run("nvidia_gpu_facts", {})["ansible_facts"]["nvidia_gpu"]

    def check_health(self, options):
        return self.run("nvidia_gpu_health", dict(options, fail_on="never"))

    def plan(self, request):
        return self.run("nvidia_gpu_settings", request, check_mode=True)


def pick_runner():
    try:
        import ansible.module_utils.basic  # noqa: F401
    except ImportError:
        return Direct()
    return Modules()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write everything seen to this file")
    parser.add_argument("--expected-count", type=int, help="GPUs this machine should have")
    parser.add_argument("--pynvml-dir", help="directory holding pynvml.py, if not installed")
    args = parser.parse_args()
    if args.pynvml_dir:
        sys.path.insert(0, args.pynvml_dir)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [args.pynvml_dir, os.environ.get("PYTHONPATH")])
        )
    runner = pick_runner()
    print("Using", runner.name)
    report = {"runner": runner.name}

    start = time.perf_counter()
    before = runner.gather()
    report["facts_seconds"] = round(time.perf_counter() - start, 3)
    report["facts"] = before
    print(
        "Driver %s, CUDA %s, NVML %s, %d GPU(s), facts in %.3f s"
        % (
            before["driver_version"],
            before["cuda_driver_version"],
            before["nvml_version"],
            before["count"],
            report["facts_seconds"],
        )
    )
    for gpu in before["gpus"]:
        if gpu["lost"]:
            print("  GPU %d LOST: %s" % (gpu["index"], gpu["error"]))
            continue
        print(
            "  GPU %d %s %s arch=%s cc=%s bus=%s power %s W (%s-%s, default %s)"
            " app clocks %s/%s MHz temp %s C persistence=%s events=%s"
            % (
                gpu["index"],
                gpu["name"],
                gpu["uuid"],
                gpu["architecture"],
                gpu["compute_capability"],
                gpu["pci_bus_id"],
                gpu["power"]["limit_w"],
                gpu["power"]["min_limit_w"],
                gpu["power"]["max_limit_w"],
                gpu["power"]["default_limit_w"],
                gpu["clocks"]["applications_memory_mhz"],
                gpu["clocks"]["applications_graphics_mhz"],
                gpu["temperature"]["gpu_c"],
                gpu["persistence_mode"],
                ",".join(gpu["clock_event_reasons"])
                if isinstance(gpu["clock_event_reasons"], list)
                else gpu["clock_event_reasons"],
            )
        )
    print("Link matrix:", json.dumps(before["link_matrix"]))

    expectations = {"kernel_log": "dmesg"}
    if args.expected_count is not None:
        expectations["expected_count"] = args.expected_count
    health = runner.check_health(expectations)
    report["health"] = health
    print("Health: %s" % ("healthy" if health["healthy"] else "NOT healthy"))
    for finding in health["findings"]:
        print("  [%s] %s: %s" % (finding["severity"], finding["check"], finding["message"]))

    report["plans"] = {}
    answering = [g for g in before["gpus"] if not g["lost"]]
    for title, request in REQUESTS.items():
        request = request or seed_fix(answering[0])
        try:
            plan = runner.plan(request)
        except Exception as error:  # report and go on: this is a survey, not a gate
            plan = {"error": str(error)}
        report["plans"][title] = {"request": request, "result": plan}
        print(
            "Check mode - %s: %s"
            % (
                title,
                plan.get("error")
                or "would change %s" % [(g["index"], g["changed"]) for g in plan["gpus"]],
            )
        )

    after = runner.gather()
    untouched = settings_snapshot(before) == settings_snapshot(after)
    report["untouched"] = untouched
    print("GPU settings untouched after the check-mode runs:", untouched)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return 0 if untouched else 1


if __name__ == "__main__":
    sys.exit(main())
