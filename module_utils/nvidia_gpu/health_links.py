"""Health checks of a GPU's links: NVLink state, errors and topology; PCIe generation, width and
replays. Each adds findings (health.Findings) that name the GPU and the likely cause; values that
are UNSUPPORTED or UNREADABLE are skipped (health_gpus.check_unreadable reports the latter)."""

from __future__ import annotations

from .facts_read import known
from .identity import label_of
from .nvml import UNREADABLE


def _expected_peers(facts, expected):
    indices = [g["index"] for g in facts["gpus"]]
    if expected["nvlink_peer_map"] is not None:
        return expected["nvlink_peer_map"]
    pair = expected["nvlink_pair_links"]
    if pair is None:
        return None
    return {a: {b: pair for b in indices if b != a} for a in indices}


def check_nvlink(facts, expected, findings):
    per_gpu = expected["nvlink_links_per_gpu"]
    threshold = expected["nvlink_error_threshold"]
    by_bus = {
        g["pci_bus_id"]: g["index"]
        for g in facts["gpus"]
        if not g["lost"] and known(g["pci_bus_id"])
    }
    some_lost = any(g["lost"] for g in facts["gpus"])
    for gpu in facts["gpus"]:
        if gpu["lost"] or not isinstance(gpu["nvlinks"], list):
            continue
        active = [link for link in gpu["nvlinks"] if link["active"] is True]
        down = [link for link in gpu["nvlinks"] if link["active"] is False]
        # Links to a GPU that fell off the bus are down because of it: that GPU is the finding.
        if some_lost:
            down = [link for link in down if link["remote_pci_bus_id"] in by_bus]
        wanted = (
            None if per_gpu is None else per_gpu - (len(gpu["nvlinks"]) - len(active) - len(down))
        )
        if wanted is not None and len(active) < wanted:
            peers = ", ".join(
                "link %d%s"
                % (
                    link["link"],
                    " to GPU %d" % by_bus[link["remote_pci_bus_id"]]
                    if link["remote_pci_bus_id"] in by_bus
                    else "",
                )
                for link in down
            )
            findings.add(
                "critical",
                "nvlink_active",
                "%s has %d of %d NVLink links up (down: %s): reseat the GPU and check its SXM "
                "mounting screws; NCCL will hang or fall back to PCIe (Xid 74)."
                % (label_of(gpu), len(active), wanted, peers or "missing links"),
                gpu=gpu,
                value=len(active),
                expected=wanted,
            )
        for link in gpu["nvlinks"]:
            errors = {
                name: count
                for name, count in link["errors"].items()
                if known(count) and count > threshold
            }
            if errors:
                findings.add(
                    "warning",
                    "nvlink_errors",
                    "%s NVLink link %d counts errors %s (threshold %d): a marginal connection, "
                    "usually SXM seating or screw torque."
                    % (
                        label_of(gpu),
                        link["link"],
                        ", ".join("%s=%d" % item for item in sorted(errors.items())),
                        threshold,
                    ),
                    gpu=gpu,
                    value=errors,
                    expected="<= %d" % threshold,
                )
    _check_peer_map(facts, expected, findings)


def _check_peer_map(facts, expected, findings):
    peers = _expected_peers(facts, expected)
    if peers is None:
        return
    matrix = facts["link_matrix"]
    answering = {g["index"]: g for g in facts["gpus"] if not g["lost"]}
    for a, row in sorted(peers.items()):
        for b, links in sorted(row.items()):
            if a not in answering or b not in answering:
                continue  # a missing or lost GPU is reported by the inventory checks
            actual = matrix[str(a)][str(b)]
            if actual == UNREADABLE:
                # Only a pair without NVLink gets a PCIe path read: the NVLinks are missing.
                actual = "no NVLink (PCIe path unreadable)"
            if actual != "NV%d" % links:
                findings.add(
                    "critical",
                    "nvlink_topology",
                    "GPU %d reaches GPU %d over %s, the board should give NV%d: an NVLink between "
                    "them is down (seating, SXM screws) or the hardware profile is wrong."
                    % (a, b, actual, links),
                    gpu=answering[a],
                    value=actual,
                    expected="NV%d" % links,
                )


def check_pcie(facts, expected, findings):
    min_gen, min_width = expected["min_pcie_generation"], expected["min_pcie_width"]
    for gpu in facts["gpus"]:
        if gpu["lost"]:
            continue
        pcie = gpu["pcie"]
        reasons = gpu["clock_event_reasons"]
        idle = isinstance(reasons, list) and "gpu_idle" in reasons
        if min_gen is not None and known(pcie["generation"]) and pcie["generation"] < min_gen:
            findings.add(
                "info" if idle else "warning",
                "pcie_generation",
                "%s PCIe link runs at Gen%d, expected Gen%d or better%s."
                % (
                    label_of(gpu),
                    pcie["generation"],
                    min_gen,
                    " (the GPU is idle; GPUs lower the link speed when idle, check again "
                    "under load)"
                    if idle
                    else ": check the slot, riser and BIOS link speed setting",
                ),
                gpu=gpu,
                value=pcie["generation"],
                expected=min_gen,
            )
        if min_width is not None and known(pcie["width"]) and pcie["width"] < min_width:
            findings.add(
                "warning",
                "pcie_width",
                "%s PCIe link is x%d, expected x%d: the card or riser is badly seated, or the slot "
                "is wired narrower." % (label_of(gpu), pcie["width"], min_width),
                gpu=gpu,
                value=pcie["width"],
                expected=min_width,
            )
        replays = pcie["replay_counter"]
        if known(replays) and replays > expected["pcie_replay_threshold"]:
            findings.add(
                "warning",
                "pcie_replays",
                "%s has %d PCIe replays (threshold %d): signal problems on the link (seating, "
                "riser, slot)." % (label_of(gpu), replays, expected["pcie_replay_threshold"]),
                gpu=gpu,
                value=replays,
                expected="<= %d" % expected["pcie_replay_threshold"],
            )
