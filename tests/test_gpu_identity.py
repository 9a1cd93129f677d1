"""How a GPU is named and selected, from a device.Gpu or from a plain dict (facts, results, the
boot config file): the same label and the same selector answer either way."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "module_utils"))

from nvidia_gpu.device import Gpu
from nvidia_gpu.identity import gpu_label, label_of
from nvidia_gpu.nvml import GpuError
from nvidia_gpu.selection import names_a_gpu

UUID = "GPU-3f1c0a52-0000-4000-8000-00000000000a"
NAME = "Tesla V100-SXM2-16GB"


def gpu_object(index=2, lost=False):
    if lost:
        return Gpu(index, error="the GPU has fallen off the bus (Xid 79)")
    gpu = Gpu(index, handle=object())
    gpu.uuid, gpu.name = UUID, NAME
    return gpu


def gpu_dict(index=2, lost=False):
    if lost:
        return {"index": index, "lost": True, "uuid": UUID}
    return {"index": index, "lost": False, "uuid": UUID, "name": NAME}


def test_labels_from_index_uuid_and_name():
    assert gpu_label(2) == "GPU 2"
    assert gpu_label(2, UUID) == "GPU 2 (%s)" % UUID
    assert gpu_label(2, UUID, NAME) == "GPU 2 (%s, %s)" % (NAME, UUID)
    assert gpu_label(2, "unknown", "unknown") == "GPU 2"


@pytest.mark.parametrize("make", [gpu_object, gpu_dict])
def test_an_object_and_a_dict_get_the_same_label(make):
    assert label_of(make()) == "GPU 2 (%s)" % UUID
    assert label_of(make(), with_name=True) == "GPU 2 (%s, %s)" % (NAME, UUID)
    assert label_of(make(lost=True)) == "GPU 2"


def test_messages_from_a_gpu_name_model_and_uuid():
    assert gpu_object().label == "GPU 2 (%s, %s)" % (NAME, UUID)
    assert gpu_object(lost=True).label == "GPU 2"


@pytest.mark.parametrize("make", [gpu_object, gpu_dict])
@pytest.mark.parametrize(
    "item, matches",
    [("all", True), (2, True), ("2", True), (3, False), (UUID.lower(), True), ("*v100*", True)],
)
def test_an_object_and_a_dict_are_selected_alike(make, item, matches):
    assert names_a_gpu(item, [make()]) is matches


def test_a_bad_selector_item_is_refused():
    with pytest.raises(GpuError, match=r"GPU selector 2\.5 is not valid"):
        names_a_gpu(2.5, [gpu_dict()])
