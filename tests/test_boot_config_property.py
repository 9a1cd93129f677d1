"""Generated config files and arguments for the boot-time command `gpu-tuning`.

Whatever a config file holds - random bytes, random JSON, or a valid file with one node replaced,
one key added, removed or repeated, or one byte changed - boot_config.load either accepts it or
raises ConfigError whose message names the file and, for a problem with a value, the value's key
path; nothing else may come out. Parsing needs no NVML, so the real parser runs in-process on a
temporary file. The --wait argument gets the same treatment at the argparse layer: any text is
either seconds in the documented range or a usage error (exit status 2) that names --wait.

Seeded (derandomize) and bounded, so `make test` is repeatable; the counters below print how many
inputs ran and what became of them (pytest -s).
"""

import collections
import contextlib
import copy
import io
import json
import math
import re
import sys

import pytest
from conftest import MODULE_UTILS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(MODULE_UTILS))
from nvidia_gpu import boot_cli
from nvidia_gpu.boot_config import ConfigError, load
from nvidia_gpu.strict_json import path_text

NAME = "Tesla V100-SXM2-16GB"
UUIDS = ["GPU-%08x-1111-2222-3333-444455556666" % number for number in range(4)]
# A valid file that uses every level: request, its clocks, overrides with their clocks, gpus.
VALID = {
    "comment": "written by the gpu_tuning role",
    "format": 1,
    "profile": "quiet",
    "request": {
        "gpus": ["all"],
        "persistence_mode": True,
        "power_limit": 200,
        "clocks": {"strategy": "auto", "graphics_mhz": 1005},
        "compute_mode": "default",
        "snap_clocks": True,
        "overrides": [
            {
                "gpus": [3, UUIDS[2]],
                "power_limit": 250,
                "clocks": {"strategy": "locked", "graphics_mhz": 1200, "graphics_min_mhz": 900},
            },
            {"gpus": ["*V100*"], "persistence_mode": False, "reset_clocks": False},
        ],
    },
    "gpus": [{"index": index, "uuid": uuid, "name": NAME} for index, uuid in enumerate(UUIDS)],
}
# Messages about a relation between values rather than one value: they need not name the path
# of the value that was replaced.
RELATIONS = re.compile(
    r"No setting requested|gives no GPU any setting|matches no GPU|repeats (index|UUID|slot)|"
    r"mutually exclusive|needs gpus|needs graphics_mhz|takes no MHz values|applies only to|"
    r"must not be empty|selects no GPU"
)
SETTINGS = dict(derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
SEEN = collections.Counter()


def paths(value, path=()):
    """Every key path in value, the top level first."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*path, key))
    elif isinstance(value, list):
        for number, item in enumerate(value):
            yield from paths(item, (*path, number))


ALL_PATHS = list(paths(VALID))
NODE_PATHS = [path for path in ALL_PATHS if path]


def node(data, path):
    for part in path:
        data = data[part]
    return data


DICT_PATHS = [path for path in ALL_PATHS if isinstance(node(VALID, path), dict)]
KEYED_PATHS = [path for path in NODE_PATHS if isinstance(path[-1], str)]
ALLOWED_KEYS = {path: set(node(VALID, path)) for path in DICT_PATHS}
ALLOWED_KEYS[()] |= {"comment", "profile"}
for dict_path in DICT_PATHS:  # every option the level may hold, not only those VALID uses
    if dict_path == ("request",):
        ALLOWED_KEYS[dict_path] |= {"reset_clocks"}
    if dict_path[:2] == ("request", "overrides") and len(dict_path) == 3:
        ALLOWED_KEYS[dict_path] |= {"gpus", "persistence_mode", "power_limit", "clocks"}
        ALLOWED_KEYS[dict_path] |= {"reset_clocks", "compute_mode"}
    if dict_path[-1:] == ("clocks",):
        ALLOWED_KEYS[dict_path] |= {"strategy", "graphics_mhz", "graphics_min_mhz", "memory_mhz"}

# JSON values, with the words and numbers this file uses so that mutations reach deep checks.
WORDS = st.sampled_from(
    [
        "all",
        "default",
        "auto",
        "locked",
        "application",
        "*V100*",
        "7",
        "0",
        "",
        "GPU-x",
        NAME,
        *UUIDS,
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5000),
    st.integers(),
    st.floats(),  # NaN and Infinity included: json.dumps writes them as such
    st.text(max_size=12),
    WORDS,
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), WORDS), children, max_size=4),
    ),
    max_leaves=12,
)


def write(tmp_path, content):
    path = tmp_path / "gpu-tuning.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "replace"))
    return path


def outcome(path):
    """'accepted' or the ConfigError's message; anything else raised fails the test."""
    try:
        load(path)
    except ConfigError as error:
        message = str(error)
        assert message.startswith(str(path)), message
        assert "\n" not in message, message
        SEEN["refused"] += 1
        return message
    SEEN["accepted"] += 1
    return "accepted"


def names_path(message, path):
    """True when message names path or one of its ancestors below the top level."""
    return any(path_text(path[:depth]) in message for depth in range(len(path), 0, -1))


def test_the_valid_file_is_accepted(tmp_path):
    assert outcome(write(tmp_path, json.dumps(VALID))) == "accepted"


@settings(max_examples=400, **SETTINGS)
@given(content=st.binary(max_size=200))
def test_random_bytes(tmp_path, content):
    SEEN["random bytes"] += 1
    outcome(write(tmp_path, content))


@settings(max_examples=400, **SETTINGS)
@given(value=VALUES)
def test_random_json(tmp_path, value):
    SEEN["random JSON"] += 1
    outcome(write(tmp_path, json.dumps(value)))


@settings(max_examples=300, **SETTINGS)
@given(request=VALUES, gpus=st.one_of(VALUES, st.just(VALID["gpus"])))
def test_random_request_and_gpus(tmp_path, request, gpus):
    SEEN["random request/gpus"] += 1
    outcome(write(tmp_path, json.dumps(dict(VALID, request=request, gpus=gpus))))


@settings(max_examples=1000, **SETTINGS)
@given(where=st.sampled_from(NODE_PATHS), value=VALUES)
def test_one_node_replaced(tmp_path, where, value):
    SEEN["node replaced"] += 1
    data = copy.deepcopy(VALID)
    node(data, where[:-1])[where[-1]] = value
    message = outcome(write(tmp_path, json.dumps(data)))
    if message == "accepted" or RELATIONS.search(message):
        return
    SEEN["replaced: refused naming the path"] += 1
    assert names_path(message, where), (where, value, message)
    old = node(VALID, where)
    if isinstance(old, (dict, list)) and not isinstance(value, type(old)):
        # A container replaced by another shape: the refusal names that very path.
        assert path_text(where) in message, (where, value, message)


@settings(max_examples=400, **SETTINGS)
@given(where=st.sampled_from(DICT_PATHS), key=st.text(max_size=10), value=VALUES)
def test_unknown_key_added(tmp_path, where, key, value):
    if key in ALLOWED_KEYS[where]:
        return
    SEEN["unknown key added"] += 1
    data = copy.deepcopy(VALID)
    node(data, where)[key] = value
    message = outcome(write(tmp_path, json.dumps(data)))
    assert message != "accepted", (where, key)
    if where:
        assert message.startswith("%s: %s" % (tmp_path / "gpu-tuning.json", path_text(where)))
    # Refused for the unknown key, or for a value inside it that no file may hold (named by
    # its own path: a control character in the key, NaN in its value, ...).
    assert (
        re.search(r"unknown (key|option)\(s\) .*%s" % re.escape(key), message)
        or path_text((*where, key)) in message
    ), (where, key, message)


def dumps_repeating(value, parent, pair, path=()):
    """JSON text of value, with pair added once more to the object at path parent."""
    if isinstance(value, dict):
        pairs = list(value.items()) + ([pair] if path == parent else [])
        return "{%s}" % ", ".join(
            "%s: %s" % (json.dumps(key), dumps_repeating(item, parent, pair, (*path, key)))
            for key, item in pairs
        )
    if isinstance(value, list):
        return "[%s]" % ", ".join(
            dumps_repeating(item, parent, pair, (*path, number))
            for number, item in enumerate(value)
        )
    return json.dumps(value)


@settings(max_examples=300, **SETTINGS)
@given(where=st.sampled_from(KEYED_PATHS), value=VALUES)
def test_key_repeated(tmp_path, where, value):
    """A key given twice (Python's json would keep the last one without a word)."""
    SEEN["key repeated"] += 1
    text = dumps_repeating(VALID, where[:-1], (where[-1], value))
    message = outcome(write(tmp_path, text))
    assert "%s: key(s) %s given more than once" % (
        path_text(where[:-1]),
        json.dumps(where[-1]),
    ) in (message), message


@settings(max_examples=200, **SETTINGS)
@given(where=st.sampled_from(KEYED_PATHS))
def test_key_removed(tmp_path, where):
    SEEN["key removed"] += 1
    data = copy.deepcopy(VALID)
    del node(data, where[:-1])[where[-1]]
    outcome(write(tmp_path, json.dumps(data)))


@settings(max_examples=300, **SETTINGS)
@given(
    where=st.sampled_from(NODE_PATHS),
    levels=st.integers(1, 40),
    value=SCALARS,
)
def test_deep_nesting(tmp_path, where, levels, value):
    SEEN["nested deeper"] += 1
    data = copy.deepcopy(VALID)
    for _ in range(levels):
        value = [value]
    node(data, where[:-1])[where[-1]] = value
    message = outcome(write(tmp_path, json.dumps(data)))
    if len(where) + levels > 16:
        assert "nested more than 16 levels deep" in message, message


@settings(max_examples=400, **SETTINGS)
@given(position=st.integers(0, 10**6), garbage=st.binary(min_size=1, max_size=4))
def test_bytes_changed(tmp_path, position, garbage):
    SEEN["bytes changed"] += 1
    content = json.dumps(VALID).encode()
    position %= len(content)
    outcome(write(tmp_path, content[:position] + garbage + content[position + len(garbage) :]))


# ---- the numeric argument --wait, at the argparse layer ----

WAIT_TEXT = st.one_of(
    st.text(max_size=12),
    st.integers().map(str),
    st.floats().map(repr),
    st.sampled_from(["nan", "inf", "-inf", "-1", "1e9", "0x10", "1_0", "\u0661", "+5", " 5"]),
    st.from_regex(r"\A[0-9]{1,5}(\.[0-9]{1,3})?\Z"),
)


def parse(argv):
    """(namespace or None, exit status or None, what argparse printed)."""
    printed = io.StringIO()
    with contextlib.redirect_stderr(printed), contextlib.redirect_stdout(printed):
        try:
            return boot_cli.parser("gpu-tuning", "/nonexistent").parse_args(argv), None, ""
        except SystemExit as stop:
            return None, stop.code, printed.getvalue()


@settings(max_examples=500, **SETTINGS)
@given(text=WAIT_TEXT)
def test_wait_is_seconds_in_range_or_a_usage_error(text):
    SEEN["--wait values"] += 1
    args, status, printed = parse(["apply", "--wait", text])
    if args is None:
        SEEN["--wait refused"] += 1
        assert status == 2 and "--wait" in printed and "Traceback" not in printed, printed
        return
    lowest, highest = boot_cli.WAIT_RANGE_S
    assert math.isfinite(args.wait) and lowest <= args.wait <= highest, (text, args.wait)
    assert re.match(r"[0-9]+(\.[0-9]+)?\Z", text), text  # ASCII digits only


ARGUMENTS = st.lists(
    st.one_of(
        st.sampled_from(["apply", "check", "--wait", "--config", "--structure-only", "-h"]),
        st.sampled_from(["5", "-1", "nan", "x.json", "--", "--wait=3", "--wait=-3", "--bogus"]),
        st.text(max_size=6),
    ),
    max_size=6,
)


@settings(max_examples=400, **SETTINGS)
@given(argv=ARGUMENTS)
def test_any_arguments_parse_or_exit_2(argv):
    SEEN["argument lists"] += 1
    args, status, printed = parse(argv)
    assert "Traceback" not in printed
    if args is None:
        assert status in (0, 2), (argv, status, printed)
        assert status == 0 or "error:" in printed
    elif args.command == "apply":
        assert 0 <= args.wait <= boot_cli.WAIT_RANGE_S[1]


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    print("\ngenerated inputs:", dict(SEEN))
