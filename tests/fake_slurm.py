"""A fake Slurm controller for the tests: sinfo, squeue and scontrol as shell scripts over a
directory, answering the calls the project makes (nvidia_gpu/slurm_control.py) as Slurm would.

- nodes/<node>: the node's "state|reason" (sinfo's %T|%E); a node without a file is unknown.
- jobs/<node>: the ids of the jobs on the node, one a line; each squeue call ends the first one,
  as jobs that finish while a drain waits.
- calls: every scontrol command line, in order. A drain leaves the node "draining" while it has
  jobs and "drained" without; a resume leaves it "idle".

Shared by the health check program's, the slurm_node_state module's and the rolling entry
points' tests; the real Slurm runs in molecule/cluster.
"""

import stat
from pathlib import Path

SINFO = """#!/bin/sh
# sinfo --noheader --Node --nodes NODE --format %T|%E
cat "{root}/nodes/$4" 2>/dev/null
"""
SQUEUE = """#!/bin/sh
# squeue --noheader --nodelist NODE --format %i
jobs="{root}/jobs/$3"
[ -f "$jobs" ] || exit 0
cat "$jobs"
sed -i 1d "$jobs"
"""
SCONTROL = """#!/bin/sh
# scontrol update NodeName=NODE State=DRAIN Reason=... | State=RESUME
echo "$*" >> "{root}/calls"
node="${{2#NodeName=}}"
case "$3" in
  State=DRAIN)
    state=drained
    [ -s "{root}/jobs/$node" ] && state=draining
    echo "$state|${{4#Reason=}}" > "{root}/nodes/$node";;
  State=RESUME)
    echo "idle|none" > "{root}/nodes/$node";;
esac
"""


class FakeSlurm:
    def __init__(self, root):
        self.root = Path(root)
        self.bin = self.root / "bin"
        for directory in (self.bin, self.root / "nodes", self.root / "jobs"):
            directory.mkdir(parents=True, exist_ok=True)
        self.calls_path = self.root / "calls"
        for name, text in (("sinfo", SINFO), ("squeue", SQUEUE), ("scontrol", SCONTROL)):
            script = self.bin / name
            script.write_text(text.format(root=self.root))
            script.chmod(script.stat().st_mode | stat.S_IXUSR)

    def command(self, name):
        return str(self.bin / name)

    def set_node(self, node, state="idle|none"):
        (self.root / "nodes" / node).write_text(state + "\n")

    def node(self, node):
        return (self.root / "nodes" / node).read_text()

    def set_jobs(self, node, job_ids):
        (self.root / "jobs" / node).write_text("".join("%s\n" % job for job in job_ids))

    def calls(self):
        """scontrol's command lines (and anything else written to calls_path) since the last
        clear_calls."""
        return self.calls_path.read_text().splitlines() if self.calls_path.exists() else []

    def clear_calls(self):
        if self.calls_path.exists():
            self.calls_path.unlink()
