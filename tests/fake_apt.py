"""Fake `apt-cache` and `dpkg-query` for the choosing modules: executables put first on the PATH
of the module's process, so the tests never ask the host's real apt. They answer from recorded
text (`apt-cache madison` lines of what a source offers, `dpkg-query --show` lines of what is
installed) and log every call, so a test can check what the module asked."""

import json
import os
import sys
from pathlib import Path

# One script for both tools; it tells them apart by the name it is called by.
FAKE_TOOL = r"""
import fnmatch, json, os, re, sys

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "fake-apt.json")) as source:
    DATA = json.load(source)
tool, args = os.path.basename(sys.argv[0]), sys.argv[1:]
with open(os.path.join(HERE, "calls.log"), "a") as log:
    log.write(json.dumps([tool, *args]) + "\n")
if tool in DATA["fail"]:
    rc, message = DATA["fail"][tool]
    sys.stderr.write(message + "\n")
    sys.exit(rc)
madison = [line for line in DATA["madison"].splitlines() if line.strip()]
known = {line.split("|")[0].strip(): line for line in madison}
if tool == "apt-cache" and args[:2] == ["search", "--names-only"] and len(args) == 3:
    for name in sorted(known):
        if re.search(args[2], name, re.IGNORECASE):
            print("%s - %s" % (name, DATA["descriptions"].get(name, "package " + name)))
elif tool == "apt-cache" and args[:1] == ["madison"]:
    for line in madison:
        if line.split("|")[0].strip() in args[1:]:
            print(line)
elif tool == "dpkg-query" and args[:2] == ["--show", DATA["showformat"]]:
    rc = 0
    lines = [line for line in DATA["installed"].splitlines() if line.strip()]
    for pattern in args[2:]:
        found = [l for l in lines if fnmatch.fnmatchcase(l.split("|")[0].strip(), pattern)]
        if not found:
            sys.stderr.write("dpkg-query: no packages found matching %s\n" % pattern)
            rc = 1
        for line in found:
            print(line)
    sys.exit(rc)
else:
    sys.stderr.write("fake %s: unexpected arguments %r\n" % (tool, args))
    sys.exit(64)
"""


class FakeApt:
    """The fake tools in directory: madison (what the sources offer, as `apt-cache madison`
    prints it), installed (`package | version | status` lines), descriptions (name: text, for
    `apt-cache search`), fail (tool: (rc, stderr)) for a tool that fails."""

    def __init__(self, directory, madison="", installed="", descriptions=None, fail=None):
        self.bin = Path(directory) / "fake-apt-bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        data = {
            "madison": madison,
            "installed": installed,
            "descriptions": descriptions or {},
            "fail": fail or {},
            "showformat": "--showformat=${Package} | ${Version} | ${db:Status-Abbrev}\n",
        }
        (self.bin / "fake-apt.json").write_text(json.dumps(data))
        for tool in ("apt-cache", "dpkg-query"):
            script = self.bin / tool
            script.write_text("#!%s\n%s" % (sys.executable, FAKE_TOOL))
            script.chmod(0o755)

    @property
    def env(self):
        """The environment of a module process that finds the fake tools first."""
        return dict(os.environ, PATH=str(self.bin) + os.pathsep + os.environ["PATH"])

    def calls(self):
        """Every call so far, as [tool, arguments...]."""
        log = self.bin / "calls.log"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]
