#!/usr/bin/env python3
"""Run ansible-test's validate-modules on library/ (with module_utils/nvidia_gpu).

ansible-test only tests collections, and this project keeps its modules in library/: they are
copied with module_utils/ into a throwaway collection, their imports and module references are
rewritten to the collection's names, and the findings are printed with the project's paths.

Run it with the project's virtualenv first on PATH (`make lint` does), from any directory.
Exit status: 0 without findings, 1 with findings, ansible-test's own status (with its whole output)
when it could not run.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE, NAME = "gpu_node", "local"
FQCN_PREFIX = "%s.%s." % (NAMESPACE, NAME)
PROJECT_IMPORT = "ansible.module_utils.nvidia_gpu"
COLLECTION_IMPORT = "ansible_collections.%s.%s.plugins.module_utils.nvidia_gpu" % (NAMESPACE, NAME)
# (collection path, project path) for every copied folder.
FOLDERS = (("plugins/modules/", "library/"), ("plugins/module_utils/", "module_utils/"))
# ansible-core's licensing rule for GPL content; this project is under the Apache License 2.0.
IGNORED_CODES = ("missing-gplv3-license",)
# Where ansible-test tells it could not download its pip bootstrap script (no internet).
BOOTSTRAP_MISSING = re.compile(r"manually downloaded and saved to: (\S+)")
# Offline stand-in for that script: the pip that ships with Python.
OFFLINE_BOOTSTRAP = "import ensurepip; ensurepip.bootstrap(upgrade=True)\n"
FINDING = re.compile(r"^(?:ERROR|WARNING): ((?:plugins|tests)/[^:\s]+:\d+:\d+: .*)$")


def build_collection(top):
    """Copy the modules and module_utils into top/ansible_collections/...; returns its root."""
    collection = top / "ansible_collections" / NAMESPACE / NAME
    modules = collection / "plugins" / "modules"
    modules.mkdir(parents=True)
    names = sorted(path.stem for path in (ROOT / "library").glob("*.py"))
    for name in names:
        shutil.copy(ROOT / "library" / (name + ".py"), modules)
    shutil.copytree(
        ROOT / "module_utils",
        collection / "plugins" / "module_utils",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    # Our modules refer to each other by short name (M(), seealso): give them the collection's.
    short_name = re.compile(r"(\bM\(|^\s+-\s+module:\s*)(%s)\b" % "|".join(names), re.MULTILINE)
    for path in collection.rglob("*.py"):
        text = path.read_text().replace(PROJECT_IMPORT, COLLECTION_IMPORT)
        path.write_text(short_name.sub(r"\g<1>%s\g<2>" % FQCN_PREFIX, text))
    ignores = collection / "tests" / "sanity" / ("ignore-%s.txt" % ansible_core_version())
    ignores.parent.mkdir(parents=True)
    ignores.write_text(
        "".join(
            "plugins/modules/%s.py validate-modules:%s\n" % (name, code)
            for name in names
            for code in IGNORED_CODES
        )
    )
    return collection, names


def ansible_core_version():
    from ansible.release import __version__

    return ".".join(__version__.split(".")[:2])


def ansible_test(collection):
    """(status, output) of one validate-modules run on this Python."""
    executable = Path(sys.executable).parent / "ansible-test"
    command = [
        str(executable if executable.exists() else "ansible-test"),
        "sanity",
        "--test",
        "validate-modules",
        "--python",
        "%d.%d" % sys.version_info[:2],
        "--color",
        "no",
        "--truncate",
        "0",
    ]
    done = subprocess.run(
        command, cwd=collection, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return done.returncode, done.stdout


def write_offline_bootstrap(output):
    """Write the offline pip bootstrap where ansible-test failed to download it, if missing."""
    missing = BOOTSTRAP_MISSING.search(output)
    if not missing or os.path.exists(missing.group(1)):
        return False
    path = Path(missing.group(1))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OFFLINE_BOOTSTRAP)
    print(
        "validate-modules: ansible-test could not download its pip bootstrap script; wrote %s "
        "(%s) so that it bootstraps the pip that ships with Python."
        % (path, OFFLINE_BOOTSTRAP.strip())
    )
    return True


def project_path(finding):
    """A finding with the project's paths and names instead of the collection's."""
    for inside, outside in FOLDERS:
        if finding.startswith(inside):
            finding = outside + finding[len(inside) :]
    if finding.startswith("tests/sanity/"):
        finding = "%s (its ignore list): %s" % (Path(__file__).relative_to(ROOT), finding)
    return finding.replace(COLLECTION_IMPORT, PROJECT_IMPORT).replace(FQCN_PREFIX, "")


def main():
    with tempfile.TemporaryDirectory(prefix="validate-modules-") as top:
        collection, names = build_collection(Path(top))
        status, output = ansible_test(collection)
        if status != 0 and write_offline_bootstrap(output):
            status, output = ansible_test(collection)
    findings = [project_path(m.group(1)) for m in map(FINDING.match, output.splitlines()) if m]
    for finding in findings:
        print(finding)
    if status != 0 and not findings:
        print(output, end="", file=sys.stderr)
        print("validate-modules: ansible-test failed (exit status %d)." % status, file=sys.stderr)
        return status
    print(
        "validate-modules: %d finding(s) in %d module(s) of library/." % (len(findings), len(names))
    )
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
