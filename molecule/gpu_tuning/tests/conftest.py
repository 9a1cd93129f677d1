"""Fixtures of the gpu_tuning scenario's steps; helpers and constants are in gpu_tuning_node.py
(this directory is on sys.path once pytest has loaded this file)."""

import json

import pytest
from node_gpus import read_back


@pytest.fixture
def gpus(host):
    """Every GPU's settings read back through NVML on the node."""
    return read_back(host)


@pytest.fixture
def locks(host):
    """[graphics lock, memory lock] per GPU as the simulated driver holds them (None: unlocked)."""
    status = json.loads(host.check_output("nvml-sim status --json"))
    return [[gpu["gpu_locked_clocks_mhz"], gpu["mem_locked_clocks_mhz"]] for gpu in status["gpus"]]
