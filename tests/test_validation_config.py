"""The validation tool's config: every bad value refused with the key, the value and what is
allowed (exit 2, no traceback, before torch is imported); defaults that fit the device."""

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from validation_tool import TINY, run_cli, write_config  # first: puts validation/ on sys.path

# isort: split
from gpu_node_validate import config
from gpu_node_validate.errors import ConfigError
from gpu_node_validate.schema import load_json_file

BAD_VALUES = [
    ({"device": "gpu"}, '\'device\' = "gpu": must be one of "auto", "cuda", "cpu"'),
    ({"gemm": {"n": 8}}, "'gemm.n' = 8: must be an integer from 16 to 65536"),
    ({"gemm": {"n": True}}, "'gemm.n' = true: must be an integer"),
    ({"gemm": {"n": 1024.0}}, "'gemm.n' = 1024.0: must be an integer"),
    ({"gemm": {"dtypes": ["fp8"]}}, '\'gemm.dtypes[0]\' = "fp8": must be one of "fp16"'),
    ({"gemm": {"dtypes": ["fp16", "fp16"]}}, '\'gemm.dtypes\' = ["fp16", "fp16"]: must not repeat'),
    ({"gemm": {"size": 3}}, "'gemm.size' is not a known key; allowed here: dtypes, iterations"),
    ({"gemmm": {}}, "'gemmm' is not a known key; allowed here: allreduce, ddp, device"),
    ({"membw": {"size_bytes": 4097 * 4 + 1}}, "'membw.size_bytes' = 16389: must be an integer"),
    (
        {"allreduce": {"sizes_bytes": [1023]}},
        "'allreduce.sizes_bytes[0]' = 1023: must be an "
        "integer from 4 to 68719476736, a multiple of 4",
    ),
    ({"allreduce": {"sizes_bytes": []}}, "'allreduce.sizes_bytes' = []: must be a list of 1 to 64"),
    ({"ddp": {"learning_rate": 0}}, "'ddp.learning_rate' = 0: must be a number above 0"),
    ({"ddp": {"learning_rate": "fast"}}, "'ddp.learning_rate' = \"fast\": must be a number"),
    (
        {"ddp": {"steps": 5, "warmup_steps": 5}},
        "'ddp.warmup_steps' = 5: must be below ddp.steps (5)",
    ),
    ({"threebody": {"masses": [1, 1]}}, "'threebody.masses' = [1, 1]: must be a list of 3 to 3"),
    ({"threebody": {"masses": [1, -1, 1]}}, "'threebody.masses[1]' = -1: must be a number above 0"),
    ({"gloo_socket_ifname": "eth0; rm"}, "'gloo_socket_ifname' = \"eth0; rm\": must be a network"),
    ({"sections": ["gemm", "fft"]}, "'sections[1]' = \"fft\": must be one of"),
    (
        {"expectations": {"ddp_min_speedup": {"four": 3.5}}},
        "'expectations.ddp_min_speedup.four' is not a world size",
    ),
    (
        {"expectations": {"ddp_min_speedup": {"4": 5}}},
        "'expectations.ddp_min_speedup.4' = 5: a speedup on 4 GPUs cannot exceed 4",
    ),
    (
        {"expectations": {"min_fraction_of_peak": {"membw": 1.5}}},
        "'expectations.min_fraction_of_peak.membw' = 1.5: must be a number above 0 and at most 1",
    ),
    (
        {"expectations": {"allreduce_busbw_gbs": {"min_fraction": 0.8}}},
        "'expectations.allreduce_busbw_gbs.expected' is required",
    ),
    (
        {"expectations": {"gpu_models": {"Tesla V100-SXM2-16GB": {"gemm_tflops": {"fp16": -125}}}}},
        "'expectations.gpu_models.Tesla V100-SXM2-16GB.gemm_tflops.fp16' = -125: must be a number",
    ),
    (
        {"expectations": {"apply_thresholds_on_cpu": "yes"}},
        "'expectations.apply_thresholds_on_cpu' = \"yes\": must be true or false",
    ),
]


@pytest.mark.parametrize(("data", "message"), BAD_VALUES)
def test_bad_value_is_named(data, message):
    with pytest.raises(ConfigError) as caught:
        config.validate(data)
    assert "config key " + message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "is not valid JSON: Expecting property name"),
        ('{"seed": 1, "seed": 2}', 'repeats the key "seed"'),
        ('{"threebody": {"dt": NaN}}', "holds NaN, which is not a JSON number"),
        ("[1, 2]", "must hold a JSON object at the top"),
        ('{"gemm": {"n": 100000}}', "config key 'gemm.n' = 100000: must be an integer from 16"),
    ],
)
def test_command_refuses_bad_file_with_exit_2(tmp_path, text, message):
    path = write_config(tmp_path / "c.json", text)
    proc = run_cli("--config", path, "--out", tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "report.json").exists()


def test_command_refuses_missing_file_bad_sections_and_unusable_out(tmp_path):
    good = write_config(tmp_path / "c.json", {})
    (tmp_path / "file").write_text("")
    cases = [
        (
            ["--config", tmp_path / "absent.json", "--out", tmp_path],
            "cannot read the config file %s" % (tmp_path / "absent.json"),
        ),
        (
            ["--config", good, "--out", tmp_path, "--sections", "gemm,fft"],
            "--sections 'gemm,fft': allowed are gemm, membw, allreduce, ddp, threebody",
        ),
        (["--config", good, "--out", tmp_path / "file" / "sub"], "cannot create the directory"),
        (["--out", tmp_path], "bad input: --config is required (unless --merge)"),
    ]
    for args, message in cases:
        proc = run_cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr
        assert "Traceback" not in proc.stderr


def test_defaults_follow_the_device():
    cpu = config.resolve(config.validate({}), "cpu", 0)
    assert cpu["ddp"]["world_sizes"] == [1, 2]
    assert cpu["allreduce"]["world_size"] == 2
    assert cpu["gemm"]["dtypes"] == ["fp32", "fp64"]
    gpu = config.resolve(config.validate({}), "cuda", 4)
    assert gpu["ddp"]["world_sizes"] == [1, 2, 3, 4]
    assert gpu["ddp"]["global_batch"] % 12 == 0
    assert gpu["allreduce"]["world_size"] == 4
    assert gpu["allreduce"]["sizes_bytes"][-1] == 1 << 30
    eight = config.resolve(config.validate({}), "cuda", 8)
    assert eight["ddp"]["world_sizes"] == [1, 2, 4, 8]
    assert eight["ddp"]["global_batch"] % 8 == 0


def test_file_values_win_and_cross_checks_name_the_key():
    resolved = config.resolve(config.validate({"gemm": {"n": 64}, "seed": 7}), "cuda", 2)
    assert (resolved["gemm"]["n"], resolved["gemm"]["iterations"], resolved["seed"]) == (64, 20, 7)
    with pytest.raises(ConfigError) as caught:
        config.resolve(
            config.validate({"ddp": {"world_sizes": [1, 3], "global_batch": 8}}), "cpu", 0
        )
    assert "'ddp.global_batch' = 8: must split evenly over every world size" in str(caught.value)
    busbw = config.resolve(
        config.validate({"expectations": {"allreduce_busbw_gbs": {"expected": 120}}}), "cuda", 4
    )["expectations"]["allreduce_busbw_gbs"]
    assert busbw["min_fraction"] == 0.8


def test_tiny_test_config_is_valid():
    config.resolve(config.validate(TINY), "cpu", 0)


# Generated configs: keys mostly real (so values get checked deep down), values of every JSON kind.
SECTION_KEYS = {
    name: sorted(schema.fields)
    for name, schema in config.SCHEMA.fields.items()
    if hasattr(schema, "fields")
}
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(["auto", "cuda", "cpu", "fp16", "fp64", "gemm", "lo"]),
)
# free keys without the characters of key paths ("a.b[0]"), so the test can follow a path
FREE_KEYS = st.text(alphabet="abcdefgxyz0123456789 -_", min_size=1, max_size=5)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(FREE_KEYS, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def generated_configs(draw):
    data = {}
    for key in draw(
        st.lists(st.sampled_from([*config.SCHEMA.fields, "bogus"]), max_size=4, unique=True)
    ):
        if key in SECTION_KEYS:
            fields = st.sampled_from([*SECTION_KEYS[key], "bogus"])
            data[key] = draw(st.dictionaries(fields, JSON_VALUES, max_size=4))
        else:
            data[key] = draw(JSON_VALUES)
    return data


def _exists(data, path):
    """Whether a key path of an error message names a place in data (or its missing key)."""
    node = data
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part.startswith("["):
            node = node[int(part[1:-1])]
        elif part in node:
            node = node[part]
        else:
            return last
    return True


# derandomized and without a database, as the project's other property tests: CI runs the same
# examples every time
@settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(generated_configs())
def test_generated_configs_are_accepted_or_refused_by_name(data):
    try:
        checked = config.validate(json.loads(json.dumps(data)))
    except ConfigError as err:
        assert str(err).startswith("config key '%s' " % err.path)
        assert err.path and _exists(data, err.path), str(err)
        return
    assert config.validate(checked) == checked
    try:
        resolved = config.resolve(checked, "cpu", 0)
    except ConfigError as err:
        assert err.path.startswith("ddp.")
        return
    assert set(resolved) >= set(config.SECTIONS)


def test_load_refuses_oversized_and_non_utf8(tmp_path):
    big = tmp_path / "big.json"
    big.write_bytes(b"{" + b" " * (1 << 20) + b"}")
    with pytest.raises(ConfigError, match="larger than 1048576 bytes"):
        load_json_file(big)
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"gloo_socket_ifname": "\xe9"}')
    with pytest.raises(ConfigError, match="is not UTF-8"):
        load_json_file(latin)
