"""Every kind of bad input to the boot-time command, through the real command: exit status 2,
a message naming the file and the key path, and no GPU changed."""

import json
import os
import time

import pytest
from boot_tool import BOOT, QUIET, apply, run, write_config

RECORDED = [{"index": i, "uuid": "GPU-%08x-0000-0000-0000-000000000000" % i} for i in range(4)]
OVERRIDE = {"gpus": [1], "power_limit": 250, "clocks": {"strategy": "locked", "graphics_mhz": 1005}}


def content(**changes):
    """JSON text of a file that is valid but for changes (top-level keys; None removes one)."""
    data = {
        "format": 1,
        "profile": "quiet",
        "request": dict(QUIET, overrides=[OVERRIDE, {"gpus": [2], "persistence_mode": False}]),
        "gpus": RECORDED,
    }
    data.update(changes)
    return json.dumps({key: value for key, value in data.items() if value is not None})


def request(**changes):
    return content(request=dict(QUIET, **changes))


def gpus_with(number, entry):
    return content(gpus=[*RECORDED[:number], entry, *RECORDED[number + 1 :]])


BAD_FILES = [
    # bytes and text
    (b"\xff\xfe{}", "is not UTF-8 text: byte 0xff at offset 0"),
    (content().encode("utf-16"), "is not UTF-8 text: byte 0xff at offset 0"),
    (b"", "is empty"),
    (b" \n\t", "is empty"),
    (b"\xef\xbb\xbf" + content().encode(), "starts with a byte order mark (BOM)"),
    ("{not json", "is not valid JSON"),
    (content()[:-1], "is not valid JSON"),
    ("[" * 100000 + "]" * 100000, "nests arrays or objects more than 16 levels deep"),
    (b"{" + b" " * (1024 * 1024) + b"}", "is larger than 1048576 bytes"),
    # numbers Python's json reads but JSON has not
    (request(power_limit=200).replace("200", "NaN"), "request.power_limit: NaN is not a JSON"),
    (request(power_limit=200).replace("200", "Infinity"), "request.power_limit: Infinity is not"),
    (
        content().replace('"power_limit": 250', '"power_limit": -Infinity'),
        "request.overrides[0].power_limit: -Infinity is not a JSON number",
    ),
    (request(power_limit=200).replace("200", "1e400"), "request.power_limit: 1e400 is too large"),
    (request(power_limit=200).replace("200", "9" * 5000), "has more than 20 digits"),
    (gpus_with(2, {"index": 2, "uuid": RECORDED[2]["uuid"], "name": float("nan")}), "gpus[2].name"),
    # repeated keys (Python's json keeps the last one without a word)
    (
        content().replace('"format": 1', '"format": 1, "format": 1'),
        'the top level: key(s) "format"',
    ),
    (
        content().replace('"graphics_mhz": 1005}', '"graphics_mhz": 1005, "graphics_mhz": 2}', 1),
        'request.clocks: key(s) "graphics_mhz" given more than once',
    ),
    (
        content().replace('"gpus": [1], ', '"gpus": [1], "gpus": [0], '),
        'request.overrides[0]: key(s) "gpus" given more than once',
    ),
    (
        content().replace('"index": 3, ', '"index": 3, "index": 4, '),
        'gpus[3]: key(s) "index" given more than once',
    ),
    # nesting and text
    (request(gpus=[[[[[[[[[[[[[[[[["all"]]]]]]]]]]]]]]]]]), "nested more than 16 levels deep"),
    (content(comment="x" * 5000), "comment: text of 5000 characters; at most 4096"),
    (content(profile="quiet\u2028loud"), 'profile: text "quiet\\u2028loud" holds a control'),
    (content(profile="\udcff"), 'profile: text "\\udcff" holds a control character'),
    (gpus_with(0, {"index": 0, "uuid": "GPU-0\nGPU-1"}), "gpus[0].uuid: text"),
    (request(foo=1).replace('"foo"', '"f\\u0000o"'), 'request["f\\u0000o"]: text'),
    # the top level
    ("[]", "must hold a JSON object"),
    ('"gpus"', "must hold a JSON object"),
    ("null", "must hold a JSON object"),
    (content(x=1), "unknown key(s) x; allowed: comment, format, profile, request, gpus"),
    (content(format=None), "format null is not supported"),
    (content(format=2), "format 2 is not supported; this command reads format 1"),
    (content(format=True), "format true is not supported"),
    (content(format="1"), 'format "1" is not supported'),
    (content(format=1.5), "format 1.5 is not supported"),
    (content(comment=5), "comment 5 must be text"),
    (content(profile={"name": "quiet"}), 'profile {"name": "quiet"} must be text'),
    # request and its clocks
    (content(request=None), "request must be a mapping of nvidia_gpu_settings options, not null"),
    (content(request=["power_limit", 200]), "request must be a mapping"),
    (request(power_limt=200), "request has unknown option(s) power_limt"),
    (request(clocks=[1005]), "request.clocks must be a mapping"),
    (request(clocks="auto"), "request.clocks must be a mapping"),
    (
        request(clocks={"strategy": "auto", "graphics_mhz": 1005, "foo": 1}),
        "request.clocks has unknown key(s) foo",
    ),
    (request(overrides={"gpus": [1]}), "request.overrides must be a list"),
    # overrides and their clocks
    (request(overrides=[OVERRIDE, 7]), "request.overrides[1] must be a mapping"),
    (request(overrides=[dict(OVERRIDE, foo=1)]), "request.overrides[0] has unknown key(s) foo"),
    (
        request(overrides=[dict(OVERRIDE, snap_clocks=True)]),
        "request.overrides[0] has unknown key(s) snap_clocks",
    ),
    (
        request(overrides=[dict(OVERRIDE, clocks={"graphics_mhz": 1005, "foo": 1})]),
        "request.overrides[0].clocks has unknown key(s) foo",
    ),
    (
        request(overrides=[dict(OVERRIDE, clocks=[1005])]),
        "request.overrides[0].clocks must be a mapping",
    ),
    (request(overrides=[dict(OVERRIDE, power_limit="NaN")]), "request.overrides[0].power_limit"),
    # gpus, the GPUs recorded with the request
    (content(gpus=None), "gpus must list the GPUs present when the file was written, not null"),
    (content(gpus=[]), "gpus must list the GPUs present when the file was written, not []"),
    (content(gpus={"0": RECORDED[0]}), "gpus must list the GPUs"),
    (
        gpus_with(1, "GPU-1"),
        'gpus[1] must be a mapping with index, uuid and (optional) name, not "GPU-1"',
    ),
    (
        gpus_with(0, dict(RECORDED[0], bus="x")),
        "gpus[0] has unknown key(s) bus; allowed: index, uuid, name, slot, serial",
    ),
    (
        gpus_with(0, dict(RECORDED[0], slot="0000:1A:00.0")),
        'gpus[0].slot "0000:1A:00.0" is not a PCI address; allowed: domain:bus:device.function',
    ),
    (gpus_with(0, dict(RECORDED[0], slot=7)), "gpus[0].slot 7 is not a PCI address"),
    (gpus_with(0, dict(RECORDED[0], serial="")), 'gpus[0].serial "" is not a board serial'),
    (gpus_with(0, dict(RECORDED[0], serial="a\tb")), "gpus[0].serial"),
    (
        content(gpus=[dict(gpu, slot="0000:1a:00.0") for gpu in RECORDED]),
        "gpus[1] repeats slot 0000:1a:00.0 of an earlier GPU",
    ),
    (gpus_with(0, {"index": 0}), "gpus[0] needs index and uuid"),
    (gpus_with(0, dict(RECORDED[0], index=-1)), "gpus[0].index -1 is not a GPU index"),
    (gpus_with(0, dict(RECORDED[0], index=True)), "gpus[0].index true is not a GPU index"),
    (gpus_with(0, dict(RECORDED[0], index="0")), 'gpus[0].index "0" is not a GPU index'),
    (gpus_with(0, dict(RECORDED[0], index=0.0)), "gpus[0].index 0.0 is not a GPU index"),
    (gpus_with(0, dict(RECORDED[0], uuid="abc")), 'gpus[0].uuid "abc" is not a GPU UUID'),
    (gpus_with(0, dict(RECORDED[0], uuid=None)), "gpus[0].uuid null is not a GPU UUID"),
    (gpus_with(0, dict(RECORDED[0], name=["V100"])), 'gpus[0].name ["V100"] must be text'),
    (gpus_with(1, dict(RECORDED[1], uuid=RECORDED[0]["uuid"])), "gpus[1] repeats UUID"),
]


@pytest.mark.parametrize("data, message", BAD_FILES)
def test_any_file_content_is_refused_with_its_path(machine, data, message):
    path = machine.root / "bad.json"
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8", errors="surrogatepass")
    result = apply(machine, path, wait=0)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("nothing changed: %s" % path), result.stderr
    assert message in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert machine.state() == [BOOT] * 4


@pytest.mark.parametrize("kind", ["directory", "fifo", "unreadable name"])
def test_a_path_that_is_not_a_file_is_refused_at_once(machine, kind):
    path = machine.root / "not-a-file"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # opened for reading, a FIFO would wait for a writer forever
    else:
        path = os.fsdecode(bytes(machine.root) + b"/\xff.json")
    started = time.monotonic()
    result = apply(machine, path, wait=0)
    assert time.monotonic() - started < 10
    assert result.returncode == 2
    expected = "No such file" if kind == "unreadable name" else "it is not a regular file"
    assert expected in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert machine.state() == [BOOT] * 4


@pytest.mark.parametrize(
    "wait",
    ["nan", "NaN", "inf", "-inf", "-1", "1e9", "1e2", "0x10", "1_0", "\u0661", "+5", "", "3601"],
)
def test_a_wait_that_is_not_seconds_in_range_is_refused(machine, wait):
    path = write_config(machine, gpus=RECORDED)
    started = time.monotonic()
    result = run(machine, "apply", "--config", path, "--wait=" + wait)  # "-1" is no option
    assert time.monotonic() - started < 10
    assert result.returncode == 2
    assert "argument --wait: %s is not valid; allowed: seconds from 0 to 3600" % ascii(wait) in (
        result.stderr
    ), result.stderr
    assert machine.state() == [BOOT] * 4


@pytest.mark.parametrize(
    "args, message",
    [
        (("apply", "--wait"), "argument --wait: expected one argument"),
        (("apply", "--config"), "argument --config: expected one argument"),
        (("apply", "--bogus"), "unrecognized arguments: --bogus"),
        (("reset",), "invalid choice: 'reset'"),
        (("check", "a", "b"), "unrecognized arguments: b"),
    ],
)
def test_bad_arguments_are_usage_errors(machine, args, message):
    result = run(machine, *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert machine.state() == [BOOT] * 4
