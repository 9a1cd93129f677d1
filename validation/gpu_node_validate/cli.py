"""gpu-node-validate --config CONFIG.json --out DIR [--sections gemm,membw,...]
gpu-node-validate load --device DEVICE ...   (the burn-in's load worker: load.py)
gpu-node-validate train --output FILE ...     (under torchrun: a multi-node DDP job, train_job.py)

Exit codes: 0 no check failed, 1 a check failed (each failure listed on stderr with its likely
cause), 2 bad input (config, arguments, output directory), 3 an environment problem (torch
missing, CUDA requested but absent, fewer GPUs than the config asks for), 4 an internal error
(a bug in this tool: the traceback is printed).
"""

import argparse
import importlib
import os
import sys
import tempfile
import time
import traceback

from . import config as config_module
from .checks import section_error
from .errors import ConfigError, EnvironmentProblem
from .progress import say
from .schema import load_json_file

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_INTERNAL = 0, 1, 2, 3, 4
REPORT_FILES = ("report.json", "report.md", "scaling.png", "busbw.png")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="gpu-node-validate",
        description="Prove a GPU node does its work (on a node without GPUs: that the "
        "computations are right). Writes report.json, report.md, scaling.png, busbw.png.",
    )
    parser.add_argument("--config", help="JSON config (see README.md); required unless --merge")
    parser.add_argument("--out", required=True, help="directory for the report files")
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="DIR",
        help="measure nothing: combine the reports of runs of single sections in these "
        "directories into one report in --out",
    )
    parser.add_argument(
        "--sections",
        help="comma-separated subset of %s (default: the config's sections)"
        % ",".join(config_module.SECTIONS),
    )
    return parser.parse_args(argv)


def parse_sections(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in config_module.SECTIONS]
    if not names or unknown:
        raise ConfigError(
            "",
            "--sections %r: allowed are %s, comma-separated"
            % (text, ", ".join(config_module.SECTIONS)),
        )
    return list(dict.fromkeys(names))


def prepare_out(path):
    """The output directory, created when missing; ConfigError when it cannot be used."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            "", "--out %s: cannot create the directory: %s" % (path, err.strerror)
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError("", "--out %s: the directory is not writable" % path)
    return path


def check_gpu_count(config, gpu_count):
    """On GPUs the world sizes must fit the GPUs present: a missing GPU is a node problem."""
    if config["device"] != "cuda":
        return
    wanted = {
        "allreduce.world_size": config["allreduce"]["world_size"],
        "ddp.world_sizes": max(config["ddp"]["world_sizes"]),
    }
    for key, count in wanted.items():
        if count > gpu_count:
            raise EnvironmentProblem(
                "%s asks for %d GPUs but torch sees %d: a GPU missing (fallen off the bus, "
                "CUDA_VISIBLE_DEVICES) or the config written for another node"
                % (key, count, gpu_count)
            )


def run_section(ctx, name):
    """One section's result; a section that raises becomes a failed check, not a crash."""
    module = importlib.import_module("gpu_node_validate." + name)
    start = time.monotonic()
    try:
        result = module.run(ctx)
    except Exception as err:  # a crash in one section must not lose the others' results
        message = "%s: %s" % (
            type(err).__name__,
            str(err).strip().splitlines()[0][:300] if str(err).strip() else "",
        )
        say(name, "failed: " + message)
        result = {
            "measurements": {"traceback": traceback.format_exc()},
            "checks": [section_error(name, message)],
        }
    result["seconds_s"] = time.monotonic() - start
    return result


def write_outputs(out, report, report_module, plots):
    from .files import write_atomic

    write_atomic(os.path.join(out, "report.json"), report_module.to_json(report))
    write_atomic(os.path.join(out, "report.md"), report_module.to_markdown(report))
    sections = report["sections"]
    not_run = "section not run (--sections)"
    plots.scaling(
        os.path.join(out, "scaling.png"),
        sections.get("ddp", {}).get("measurements"),
        note=None if "ddp" in sections else not_run,
    )
    busbw = report["config"]["expectations"]["allreduce_busbw_gbs"]
    # The threshold line only where it judged the run (not on the CPU, not with one GPU).
    judged = any(
        c["name"] == "allreduce.busbw_gbs" and c["status"] != "not_applicable"
        for c in sections.get("allreduce", {}).get("checks", [])
    )
    plots.busbw(
        os.path.join(out, "busbw.png"),
        sections.get("allreduce", {}).get("measurements"),
        expected_gbs=busbw["expected"] * busbw["min_fraction"] if busbw and judged else None,
        note=None if "allreduce" in sections else not_run,
    )


def finish(out, report, report_module, plots):
    """Write the report files, list the failures on stderr, say the result; the exit code."""
    write_outputs(out, report, report_module, plots)
    summary = report["summary"]
    for line in report_module.failure_lines(report):
        sys.stderr.write(line + "\n")
    say(
        "done",
        "%s: %d checks, %d pass, %d fail, %d not applicable; report in %s"
        % (
            summary["result"].upper(),
            summary["checks"],
            summary["pass"],
            summary["fail"],
            summary["not_applicable"],
            os.path.join(out, "report.md"),
        ),
    )
    return EXIT_FAILED if summary["fail"] else EXIT_OK


def merge(args):
    from . import merge as merge_module
    from . import plots
    from . import report as report_module

    report = merge_module.merge(args.merge, report_module)
    return finish(prepare_out(args.out), report, report_module, plots)


def run(args):
    if args.merge:
        return merge(args)
    if not args.config:
        raise ConfigError("", "--config is required (unless --merge)")
    checked = config_module.validate(load_json_file(args.config))
    chosen = parse_sections(args.sections) if args.sections else None
    out = prepare_out(args.out)

    from . import environment

    torch = environment.import_torch()
    device_type, gpu_count = environment.resolve_device(torch, checked.get("device", "auto"))
    config = config_module.resolve(checked, device_type, gpu_count)
    check_gpu_count(config, gpu_count)
    if chosen:
        config["sections"] = chosen
    from . import plots
    from . import report as report_module
    from .context import RunContext

    devices = environment.devices(torch, device_type)
    say(
        "setup",
        "device %s: %s; sections %s"
        % (device_type, ", ".join(d["name"] for d in devices), ",".join(config["sections"])),
    )
    facts = environment.facts(torch, device_type)  # the time the run started
    start = time.monotonic()
    sections = {}
    with tempfile.TemporaryDirectory(prefix="gpu-node-validate-") as workdir:
        ctx = RunContext(torch, config, device_type, devices, workdir)
        for name in config_module.SECTIONS:
            if name in config["sections"]:
                sections[name] = run_section(ctx, name)
    skipped = [name for name in config_module.SECTIONS if name not in sections]
    facts["run_seconds_s"] = time.monotonic() - start
    report = report_module.build(facts, devices, config, sections, skipped)
    return finish(out, report, report_module, plots)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["load"]:
        from . import load

        return load.main(argv[1:])
    if argv[:1] == ["train"]:
        from . import train_job

        return train_job.main(argv[1:])
    args = parse_args(argv)  # argparse itself exits 2 on bad arguments
    try:
        return run(args)
    except ConfigError as err:
        sys.stderr.write("gpu-node-validate: bad input: %s\n" % err)
        return EXIT_BAD_INPUT
    except EnvironmentProblem as err:
        sys.stderr.write("gpu-node-validate: environment problem: %s\n" % err)
        return EXIT_ENVIRONMENT
    except Exception:  # not 1: a bug in the tool must not read as a slow or broken node
        sys.stderr.write("gpu-node-validate: internal error, please report:\n")
        traceback.print_exc()
        return EXIT_INTERNAL
