"""One report from the reports of runs of single sections (`--merge DIR...`): the Ansible role
runs each section as its own task, so that a long validation shows which section it is in, then
merges their report.json files. Nothing is measured here."""

import json
import os

from .config import SECTIONS
from .errors import ConfigError


def _read(directory):
    path = os.path.join(directory, "report.json")
    try:
        with open(path, encoding="utf-8") as handle:
            report = json.load(handle)
    except (OSError, ValueError) as err:
        raise ConfigError("", "--merge: cannot read %s: %s" % (path, err)) from None
    if not isinstance(report, dict) or report.get("tool") != "gpu-node-validate":
        raise ConfigError("", "--merge: %s is not a report of gpu-node-validate" % path)
    return report


def merge(directories, report_module):
    """The merged report: every part's sections in the usual order, the first part's facts,
    devices and config (they differ only in the sections run), the parts' run times added."""
    parts = [_read(directory) for directory in directories]
    sections, sources = {}, {}
    for directory, part in zip(directories, parts, strict=True):
        for name, result in part["sections"].items():
            if name in sections:
                raise ConfigError(
                    "",
                    "--merge: section %s is in both %s and %s" % (name, sources[name], directory),
                )
            sections[name], sources[name] = result, directory
    ordered = {name: sections[name] for name in SECTIONS if name in sections}
    first = parts[0]
    config = dict(first["config"], sections=list(ordered))
    facts = dict(first["facts"])
    facts["run_seconds_s"] = sum(part["facts"].get("run_seconds_s") or 0 for part in parts)
    skipped = [name for name in SECTIONS if name not in ordered]
    return report_module.build(facts, first["devices"], config, ordered, skipped)
