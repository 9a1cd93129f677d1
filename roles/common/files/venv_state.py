"""Which requirements a virtualenv does not satisfy, read by the system python3 (so also before
the virtualenv exists), and which kept wheels are no longer the one to keep. Prints
{"exists": bool, "installed": {name: version or null}, "unsatisfied": [...], "leftovers": [...]}
for the requirements' names (pip's own version matching, PEP 440).

Usage: python3 -I venv_state.py --venv VENV [--keep-wheel PATH] REQUIREMENT...
"""

import argparse
import glob
import json
import os
from importlib import metadata

from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.utils import canonicalize_name


def installed(venv):
    found = {}
    for site in glob.glob(os.path.join(venv, "lib", "python3*", "site-packages")):
        for dist in metadata.distributions(path=[site]):
            name = dist.metadata["Name"]
            if name:
                found[canonicalize_name(name)] = dist.version
    return found


def leftovers(keep_wheel):
    """Other wheels of the kept wheel's distribution in its directory (older versions)."""
    if not keep_wheel:
        return []
    directory, name = os.path.split(keep_wheel)
    pattern = os.path.join(directory, name.split("-", 1)[0] + "-*.whl")
    return sorted(path for path in glob.glob(pattern) if path != keep_wheel)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--venv", required=True)
    parser.add_argument("--keep-wheel", default="")
    parser.add_argument("requirements", nargs="*")
    args = parser.parse_args()
    exists = os.path.isfile(os.path.join(args.venv, "bin", "python"))
    versions = installed(args.venv) if exists else {}
    wanted, unsatisfied = {}, []
    for text in args.requirements:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        wanted[name] = versions.get(name)
        if wanted[name] is None or not requirement.specifier.contains(
            wanted[name], prereleases=True
        ):
            unsatisfied.append(text)
    print(
        json.dumps(
            {
                "exists": exists,
                "installed": wanted,
                "unsatisfied": unsatisfied,
                "leftovers": leftovers(args.keep_wheel),
            }
        )
    )


if __name__ == "__main__":
    main()
