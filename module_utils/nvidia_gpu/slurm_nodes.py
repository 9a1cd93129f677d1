# Copyright: the gpu-node project contributors
# SPDX-License-Identifier: Apache-2.0
"""Slurm node definitions of GPU nodes: what the slurm role writes into slurm.conf and gres.conf.

Each node's definition comes from the node itself (`slurmd -C`, the hardware Slurm will check the
definition against, and the GPUs NVML lists). The controller keeps every node's last definition in
a JSON file and merges the new ones into it, so that a node that is unreachable or left out of a
run (`-l`) keeps its line instead of vanishing from the cluster.

Standard library only, Python 3.8+.
"""

from __future__ import annotations

import json
import re

# slurm.conf names: node and feature names Slurm accepts without quoting.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_VENDOR_PREFIXES = ("tesla ", "nvidia ", "quadro ", "geforce ")
_SLURMD_FIELDS = {
    "CPUs": "cpus",
    "Boards": "boards",
    "SocketsPerBoard": "sockets_per_board",
    "CoresPerSocket": "cores_per_socket",
    "ThreadsPerCore": "threads_per_core",
    "RealMemory": "memory_mb",
}


class SlurmNodeError(ValueError):
    """A definition that cannot be written: the message names the value and what is allowed."""


def gpu_type(name):
    """Slurm's GPU type of an NVML name: 'Tesla V100-SXM2-16GB' is v100, 'NVIDIA H100 PCIe' h100."""
    lowered = str(name).strip().lower()
    for prefix in _VENDOR_PREFIXES:
        if lowered.startswith(prefix):
            lowered = lowered[len(prefix) :]
    first = re.split(r"[-\s]", lowered, maxsplit=1)[0]
    cleaned = re.sub(r"[^a-z0-9]", "", first)
    if not cleaned:
        raise SlurmNodeError("GPU name %r gives no Slurm GPU type: set slurm_gpu_type" % (name,))
    return cleaned


def parse_slurmd_hardware(text):
    """The numbers of `slurmd -C`'s first line as a dict (cpus, boards, ..., memory_mb)."""
    fields = (
        dict(part.split("=", 1) for part in text.strip().splitlines()[0].split() if "=" in part)
        if text.strip()
        else {}
    )
    missing = [key for key in _SLURMD_FIELDS if key not in fields]
    if missing:
        raise SlurmNodeError(
            "slurmd -C printed %r: expected NodeName=... with %s"
            % (text.strip()[:200], ", ".join(missing))
        )
    try:
        return {ours: int(fields[theirs]) for theirs, ours in _SLURMD_FIELDS.items()}
    except ValueError as error:
        raise SlurmNodeError(
            "slurmd -C printed %r: the counts are not whole numbers" % (text.strip()[:200],)
        ) from error


def index_ranges(indices):
    """'0-3' for [0, 1, 2, 3], '0,2-3' for [0, 2, 3]: Slurm's bracket notation, without brackets."""
    parts = []
    ordered = sorted(set(indices))
    start = previous = None
    for index in [*ordered, None]:
        if start is not None and index == previous + 1:
            previous = index
            continue
        if start is not None:
            parts.append(str(start) if start == previous else "%d-%d" % (start, previous))
        start = previous = index
    return ",".join(parts)


def definition(
    name, hardware, gpus, memory_reserve_mb=0, features=(), gpu_type_override="", address=""
):
    """One node's definition: its hardware less a memory reserve, its GPUs grouped by type.

    gpus: NVML facts' GPU entries (index, name; a lost GPU has no name: it is counted under the
    type of the others, since its device file stays and the health check drains the node).
    """
    if not _NAME.match(str(name)):
        raise SlurmNodeError("node name %r: Slurm needs letters, digits, '_', '.', '-'" % (name,))
    bad_features = [f for f in features if not _NAME.match(str(f))]
    if bad_features:
        raise SlurmNodeError(
            "node features %s of %s: a feature is letters, digits, '_', '.', '-'"
            % (bad_features, name)
        )
    if not isinstance(memory_reserve_mb, int) or not 0 <= memory_reserve_mb < hardware["memory_mb"]:
        raise SlurmNodeError(
            "slurm_memory_reserve_mb %r on %s: allowed 0 to %d (the node's %d MB less one)"
            % (memory_reserve_mb, name, hardware["memory_mb"] - 1, hardware["memory_mb"])
        )
    named = [g for g in gpus if g.get("name")]
    fallback = gpu_type_override or (gpu_type(named[0]["name"]) if named else "gpu")
    by_type = {}
    for gpu in sorted(gpus, key=lambda g: g["index"]):
        kind = gpu_type_override or (gpu_type(gpu["name"]) if gpu.get("name") else fallback)
        by_type.setdefault(kind, []).append(int(gpu["index"]))
    return {
        "name": str(name),
        "hardware": dict(hardware, memory_mb=hardware["memory_mb"] - memory_reserve_mb),
        "gpus": [{"type": kind, "indices": indices} for kind, indices in sorted(by_type.items())],
        "features": sorted(set(str(f) for f in features)),
        "address": str(address or ""),
    }


def node_line(node):
    """slurm.conf's NodeName line of a definition."""
    hardware = node["hardware"]
    words = [
        "NodeName=%s" % node["name"],
    ]
    if node.get("address"):
        words.append("NodeAddr=%s" % node["address"])
    words += [
        "CPUs=%d" % hardware["cpus"],
        "Boards=%d" % hardware["boards"],
        "SocketsPerBoard=%d" % hardware["sockets_per_board"],
        "CoresPerSocket=%d" % hardware["cores_per_socket"],
        "ThreadsPerCore=%d" % hardware["threads_per_core"],
        "RealMemory=%d" % hardware["memory_mb"],
    ]
    if node["gpus"]:
        words.append(
            "Gres=" + ",".join("gpu:%s:%d" % (g["type"], len(g["indices"])) for g in node["gpus"])
        )
    if node["features"]:
        words.append("Feature=" + ",".join(node["features"]))
    return " ".join(words)


def gres_lines(node, device_pattern="/dev/nvidia{index}"):
    """gres.conf's lines of a definition: one per GPU type, with its device files."""
    lines = []
    for gpus in node["gpus"]:
        prefix, _, suffix = device_pattern.partition("{index}")
        ranges = index_ranges(gpus["indices"])
        files = prefix + (ranges if ranges.isdigit() else "[%s]" % ranges) + suffix
        lines.append("NodeName=%s Name=gpu Type=%s File=%s" % (node["name"], gpus["type"], files))
    return lines


def merge(known_text, fresh, inventory_names):
    """The definitions of the inventory's nodes, in its order: a fresh one where this run read the
    node, else the one known from earlier runs (known_text: the controller's JSON file, '' when
    there is none), both keyed by inventory name. Nodes without either are listed under 'unknown'
    (never defined yet, and not reachable now): they stay out of slurm.conf until a run reaches
    them. 'state' is the JSON file's new text."""
    try:
        known = json.loads(known_text) if known_text.strip() else {}
    except ValueError:
        known = {}
    if not isinstance(known, dict):
        known = {}
    kept, unknown = {}, []
    for name in inventory_names:
        node = fresh.get(name) or known.get(name)
        if node:
            kept[name] = node
        else:
            unknown.append(name)
    return {
        "nodes": list(kept.values()),
        "unknown": unknown,
        "state": json.dumps(kept, indent=1, sort_keys=True) + "\n",
    }
