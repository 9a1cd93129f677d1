# Copyright: the gpu-node project contributors
# SPDX-License-Identifier: Apache-2.0
"""What the GPU runtime's virtualenv holds, as JSON for the nvml_runtime role.

Run on the node by the virtualenv's own interpreter with -I, as the boot-time command runs, so it
sees what that command imports. One call answers everything the role compares: the version of
each distribution (null when missing), the installed files that no longer match their RECORD
(edited by hand), and what earlier versions of the role left that must go (its old package
directory and .pth file, wheels of other versions). Python 3.8+, standard library only.
"""

import argparse
import base64
import glob
import hashlib
import importlib.metadata
import json
import os
import re
import sysconfig


def normalized(name):
    """A distribution's name as PEP 503 compares it (Python 3.8 does not do it for us)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def modified_files(dist):
    """Files of the distribution whose content differs from the hash pip recorded."""
    modified = []
    for entry in dist.files or []:
        if entry.hash is None or entry.hash.mode != "sha256":
            continue
        try:
            with open(str(entry.locate()), "rb") as stream:
                digest = hashlib.sha256(stream.read()).digest()
        except OSError:
            modified.append(str(entry))
            continue
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != entry.hash.value:
            modified.append(str(entry))
    return modified


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dist", action="append", default=[], help="a distribution to report")
    parser.add_argument("--old-path", action="append", default=[], help="a path that must go")
    parser.add_argument(
        "--old-site-file", action="append", default=[], help="a file in site-packages that must go"
    )
    parser.add_argument("--wheel-dir", required=True, help="where the role keeps its wheel")
    parser.add_argument("--wheel", required=True, help="the wheel of this run (kept)")
    args = parser.parse_args()

    installed = {normalized(name): None for name in args.dist}
    modified = {}
    for dist in importlib.metadata.distributions():
        name = normalized(dist.metadata["Name"] or "")
        if name in installed and installed[name] is None:
            installed[name] = dist.version
            modified[name] = modified_files(dist)

    site_packages = sysconfig.get_paths()["purelib"]
    candidates = args.old_path + [os.path.join(site_packages, n) for n in args.old_site_file]
    candidates += sorted(glob.glob(os.path.join(args.wheel_dir, "*.whl")))
    keep = os.path.join(args.wheel_dir, args.wheel)
    leftovers = [path for path in candidates if path != keep and os.path.lexists(path)]

    modified = {name: files for name, files in modified.items() if files}
    print(json.dumps({"installed": installed, "modified": modified, "leftovers": leftovers}))


if __name__ == "__main__":
    main()
