# Copyright: the gpu-node project contributors
# SPDX-License-Identifier: Apache-2.0
"""Builds one of the project's Python packages (nvidia_gpu, gpu_node_validate) as a pure-Python
wheel on the controller, for the nodes' virtualenvs.

The builder is standard library only (no setuptools, no network): air-gapped controllers build
it too. The wheel is reproducible: the same sources give the same bytes (sorted entries, fixed
timestamps and permissions, stored without compression so that no zlib version can change a
byte), and its version changes whenever a source file does, so pip on the node replaces an older
copy and removes the files that copy had.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import tempfile
import zipfile
from pathlib import Path

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = """
name: project_wheel
short_description: a package of the project as a reproducible wheel, built on the controller
description:
  - Builds a C(py3-none-any) wheel of the Python package in the given directory (every C(*.py)
    file under it) into O(cache_dir), unless a wheel with the same bytes is already there.
  - The version is O(base_version) with a local label from the files' SHA-256, so it changes
    whenever a source file does.
options:
  _terms:
    description: The package's directory; its name is the import name.
    required: true
  cache_dir:
    description: Directory on the controller for the built wheel (created if missing).
    type: path
    required: true
  base_version:
    description: The release part of the version, before the local label.
    type: str
    default: "1.0.0"
  dist_name:
    description:
      - The distribution's name (what pip lists); the project's own, so that a project of the
        package's name on an index can never be taken for it.
    type: str
    default: gpu-node-nvidia-gpu
"""

RETURN = """
_list:
  description: One dict per term.
  type: list
  elements: dict
  contains:
    path: {description: The wheel on the controller., type: path}
    filename: {description: The wheel's file name., type: str}
    name: {description: The distribution's name (what pip lists)., type: str}
    version: {description: The distribution's version., type: str}
"""

DIST_NAME = "gpu-node-nvidia-gpu"
TAG = "py3-none-any"
# The earliest date a zip entry can hold; every entry gets it, so build time leaves no trace.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644


def package_files(package_dir):
    """{path in the wheel: content} of every *.py file of the package, caches left out."""
    package_dir = Path(package_dir)
    files = {}
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(package_dir)
        if "__pycache__" not in relative.parts:
            files[(Path(package_dir.name) / relative).as_posix()] = path.read_bytes()
    if not files:
        raise ValueError("%s has no *.py files to put in a wheel" % package_dir)
    return files


def version_of(files, base_version="1.0.0"):
    """base_version+g<12 hex>: a PEP 440 local label from each file's path and SHA-256."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(("%s\0%s\n" % (name, hashlib.sha256(files[name]).hexdigest())).encode())
    return "%s+g%s" % (base_version, digest.hexdigest()[:12])


def record_hash(content):
    """The RECORD form of a digest: sha256=<urlsafe base64 without padding>."""
    raw = hashlib.sha256(content).digest()
    return "sha256=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _dist_info(version, files, dist_name=DIST_NAME):
    metadata = (
        "Metadata-Version: 2.1\n"
        "Name: %s\n"
        "Version: %s\n"
        "Summary: A package of the gpu-node project, for its nodes\n"
        "Requires-Python: >=3.8\n" % (dist_name, version)
    )
    wheel = (
        "Wheel-Version: 1.0\n"
        "Generator: gpu-node project_wheel\n"
        "Root-Is-Purelib: true\n"
        "Tag: %s\n" % TAG
    )
    info_dir = "%s-%s.dist-info" % (_escaped(dist_name), version)
    entries = dict(files)
    entries[info_dir + "/METADATA"] = metadata.encode()
    entries[info_dir + "/WHEEL"] = wheel.encode()
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for name, content in entries.items():
        writer.writerow([name, record_hash(content), len(content)])
    writer.writerow([info_dir + "/RECORD", "", ""])
    entries[info_dir + "/RECORD"] = record.getvalue().encode()
    return entries


def _escaped(name):
    return re.sub(r"[-_.]+", "_", name).lower()


def wheel_bytes(files, version, dist_name=DIST_NAME):
    """The wheel: package files sorted, then METADATA, WHEEL and RECORD last."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as wheel:
        for name, content in _dist_info(version, files, dist_name).items():
            entry = zipfile.ZipInfo(name, ZIP_DATE_TIME)
            entry.create_system = 3  # Unix, so that external_attr holds the file mode
            entry.external_attr = FILE_MODE << 16
            wheel.writestr(entry, content)
    return buffer.getvalue()


def build(package_dir, cache_dir, base_version="1.0.0", dist_name=DIST_NAME):
    """Write the package's wheel into cache_dir (only if its bytes differ); describe it."""
    files = package_files(package_dir)
    version = version_of(files, base_version)
    content = wheel_bytes(files, version, dist_name)
    filename = "%s-%s-%s.whl" % (_escaped(dist_name), version, TAG)
    cache_dir = Path(cache_dir).expanduser()
    path = cache_dir / filename
    if not path.is_file() or path.read_bytes() != content:
        cache_dir.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed: parallel runs never see half a wheel.
        handle, partial = tempfile.mkstemp(dir=cache_dir, prefix=".%s." % filename)
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    return {"path": str(path), "filename": filename, "name": dist_name, "version": version}


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        try:
            return [
                build(
                    term,
                    self.get_option("cache_dir"),
                    self.get_option("base_version"),
                    self.get_option("dist_name"),
                )
                for term in terms
            ]
        except (OSError, ValueError) as err:
            raise AnsibleLookupError("cannot build the wheel of %s: %s" % (terms, err)) from err
