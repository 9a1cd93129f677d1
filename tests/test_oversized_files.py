"""Every JSON file the node's tools read is refused above strict_json.MAX_FILE_BYTES, with a
message that names the file and what it should have been; an oversized GPU inventory is a
damaged one (its content is wrong: on_corrupt=replace may overwrite it), not an unreadable one."""

import os
import sys

import pytest
from conftest import MODULE_UTILS

sys.path.insert(0, str(MODULE_UTILS))
from nvidia_gpu import boot_config, burn_in_config, gpu_inventory, health_config
from nvidia_gpu.strict_json import MAX_FILE_BYTES

OVERSIZED = b"{" + b" " * MAX_FILE_BYTES + b"}"


@pytest.mark.parametrize(
    ("load", "error", "kind"),
    [
        (boot_config.load, boot_config.ConfigError, "a file the gpu_tuning role wrote"),
        (health_config.load, health_config.HealthConfigError, "a file the gpu_health role wrote"),
        (burn_in_config.load, burn_in_config.BurnInConfigError, "a burn-in parameter file"),
        (gpu_inventory.load, gpu_inventory.InventoryError, "a GPU inventory this module wrote"),
    ],
)
def test_an_oversized_file_is_refused_naming_what_it_should_be(tmp_path, load, error, kind):
    path = tmp_path / "file.json"
    path.write_bytes(OVERSIZED)
    with pytest.raises(error) as refused:
        load(str(path))
    assert str(refused.value) == "%s is larger than %d bytes: not %s" % (path, MAX_FILE_BYTES, kind)


def test_an_oversized_inventory_is_replaceable_and_a_fifo_is_not(tmp_path):
    path = tmp_path / "gpu_inventory.fact"
    path.write_bytes(OVERSIZED)
    with pytest.raises(gpu_inventory.InventoryError) as refused:
        gpu_inventory.load(str(path))
    assert refused.value.replaceable
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(gpu_inventory.InventoryError, match="not a regular file") as refused:
        gpu_inventory.load(str(fifo))
    assert not refused.value.replaceable
