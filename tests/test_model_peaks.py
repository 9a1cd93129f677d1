"""The peaks table is held to the model table, and the validation run's expectations are built
from it and the hardware profile (filter_plugins/validation.py) in the config's own format."""

import importlib.util
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT / "module_utils"))
sys.path.insert(0, str(PROJECT / "validation"))

from gpu_node_validate import config  # noqa: E402
from nvidia_gpu import model_peaks, models  # noqa: E402

spec = importlib.util.spec_from_file_location(
    "validation_filter", PROJECT / "filter_plugins" / "validation.py"
)
validation_filter = importlib.util.module_from_spec(spec)
spec.loader.exec_module(validation_filter)


def test_every_peak_belongs_to_a_known_model_and_orders_its_types():
    for device_id, peaks in model_peaks.PEAKS.items():
        assert device_id in models.MODELS
        tflops = peaks["gemm_tflops"]
        # Lower precision is never slower; fp64 never faster than fp32.
        assert tflops["fp16"] >= tflops["fp32"] >= tflops["fp64"] > 0
        assert tflops.get("bf16", tflops["fp16"]) == tflops["fp16"]
        assert peaks["memory_bandwidth_gbs"] > 100
    assert set(model_peaks.THREEBODY_REFERENCE) <= set(model_peaks.PEAKS)


def test_peaks_are_keyed_by_the_name_nvml_reports():
    table = model_peaks.peaks_by_name()
    assert table["Tesla V100-SXM2-16GB"]["gemm_tflops"]["fp16"] == 125.0
    # the seed's 1M x 50k fp64 steps in 59 s on one V100
    assert table["Tesla V100-SXM2-16GB"]["threebody_config_steps_per_s"]["fp64"] == pytest.approx(
        8.47e8, rel=1e-3
    )
    assert "bf16" in table["NVIDIA A100-SXM4-80GB"]["gemm_tflops"]


def test_the_t180_profile_gives_a_config_the_tool_accepts():
    expectations = validation_filter.validation_expectations(
        {"allreduce_busbw_gbs": 110, "topology": "NV2 between every pair",
         "ddp_min_speedup": {2: 1.9, 4: 3.7}}
    )  # fmt: skip
    checked = config.validate({"expectations": expectations})["expectations"]
    assert checked["allreduce_busbw_gbs"]["expected"] == 110.0
    assert checked["ddp_min_speedup"] == {"2": 1.9, "4": 3.7}
    assert "Tesla V100-SXM2-16GB" in checked["gpu_models"]


def test_a_profile_without_bars_judges_only_the_peaks():
    expectations = validation_filter.validation_expectations({})
    assert set(expectations) == {"gpu_models", "ddp_min_speedup"}
    assert expectations["ddp_min_speedup"] == {}
    config.validate({"expectations": expectations})


@pytest.mark.parametrize(
    "profile, named",
    [
        ({"allreduce_busbw_gbs": "fast"}, "hardware_allreduce_busbw_gbs 'fast'"),
        ({"ddp_min_speedup": [3.7]}, "hardware_ddp_min_speedup [3.7]"),
        ({"ddp_min_speedup": {"four": 3.7}}, "hardware_ddp_min_speedup {'four': 3.7}"),
    ],
)
def test_bad_profile_values_are_named(profile, named):
    with pytest.raises(AnsibleFilterError, match=named.replace("[", r"\[").replace("]", r"\]")):
        validation_filter.validation_expectations(profile)
