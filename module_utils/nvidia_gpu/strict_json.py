"""A JSON file that a person may have edited, read strictly: for the boot-time config file.

Python's json module takes more than JSON (NaN, Infinity), keeps the last of repeated keys without
a word, and fails with a RecursionError on deep nesting. parse() refuses all of those, and the
sizes, text and nesting that no file written by the project holds, with a message that names
the file and the key path of the value ("request.overrides[0].power_limit: NaN is not ...").
Whatever the bytes, it returns JSON values or raises FileRefused.

Standard library only, Python 3.8+.
"""

from __future__ import annotations

import codecs
import json
import math
import os
import re
import stat

from .nvml import GpuError

# The boot config file is a few KiB nested 5 levels deep (request.overrides[0].clocks.
# graphics_mhz); beyond these bounds it is not such a file, and no later check (nor a journal
# line quoting a value) meets a pathological size.
MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 16
MAX_TEXT_CHARS = 4096
MAX_NUMBER_DIGITS = 20
# Characters that would break a journal line or cannot be written out: C0/C1 controls, line and
# paragraph separators (str.splitlines splits there), unpaired surrogates (a \udcff escape).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


class FileRefused(GpuError):
    """The file cannot be used: the message names it and, for a value, the value's key path."""


class TooLarge(FileRefused):
    """The file is readable but larger than any file of its kind: its content is wrong."""


def shown(value, limit=60):
    """A value from the file as messages quote it: JSON, ASCII only, cut at limit characters."""
    try:
        text = json.dumps(value, ensure_ascii=True, sort_keys=True, default=repr)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def path_text(path):
    """('request', 'overrides', 0, 'clocks') -> 'request.overrides[0].clocks'."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += "[%d]" % part
        elif _PLAIN_KEY.match(part):
            text += ("." if text else "") + part
        else:
            text += "[%s]" % shown(part, 40)
    return text or "the top level"


def read(path, kind):
    """The file's bytes; FileRefused when it is not a readable regular file, TooLarge when it
    is not of sane size for kind (what the file should be, e.g. "a file the gpu_tuning role
    wrote")."""
    try:
        # O_NONBLOCK: a FIFO (or a device) named by mistake must not hold the boot forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (OSError, ValueError) as error:
        raise FileRefused("%s cannot be read: %s" % (path, _reason(error))) from error
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        regular = False
    if not regular:
        os.close(fd)
        raise FileRefused("%s cannot be read: it is not a regular file" % path)
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read(MAX_FILE_BYTES + 1)
        except OSError as error:
            raise FileRefused("%s cannot be read: %s" % (path, _reason(error))) from error
    if len(data) > MAX_FILE_BYTES:
        raise TooLarge("%s is larger than %d bytes: not %s" % (path, MAX_FILE_BYTES, kind))
    return data


def _reason(error):
    return getattr(error, "strerror", None) or str(error)


class _Object(dict):
    """A JSON object as read; `repeated` lists the keys it gave more than once."""

    repeated = ()


def _object(pairs):
    mapping = _Object(pairs)
    if len(mapping) != len(pairs):
        seen, repeated = set(), set()
        for key, _value in pairs:
            (repeated if key in seen else seen).add(key)
        mapping.repeated = sorted(repeated)
    return mapping


class _BadNumber:
    """A number JSON text may spell but this file may not hold; refused with its key path."""

    def __init__(self, spelled, why):
        self.spelled = spelled if len(spelled) <= 30 else spelled[:27] + "..."
        self.why = why


def _constant(name):  # NaN, Infinity, -Infinity: Python's json accepts them, JSON does not
    return _BadNumber(name, "is not a JSON number (only finite numbers are)")


def _float(spelled):
    number = float(spelled)
    if not math.isfinite(number):
        return _BadNumber(spelled, "is too large to be a number")
    return number


def _int(spelled):
    if len(spelled.lstrip("-")) > MAX_NUMBER_DIGITS:
        return _BadNumber(spelled, "has more than %d digits" % MAX_NUMBER_DIGITS)
    return int(spelled)


def parse(path, data):
    """JSON values from the file's bytes: UTF-8 without BOM, finite numbers, no repeated keys,
    clean text, nested at most MAX_DEPTH levels. FileRefused names the file and the key path."""
    if data.startswith(codecs.BOM_UTF8):
        raise FileRefused(
            "%s starts with a byte order mark (BOM); save it as UTF-8 without BOM" % path
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise FileRefused(
            "%s is not UTF-8 text: byte 0x%02x at offset %d"
            % (path, data[error.start], error.start)
        ) from error
    if not text.strip():
        raise FileRefused("%s is empty" % path)
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object,
            parse_constant=_constant,
            parse_float=_float,
            parse_int=_int,
        )
    except RecursionError as error:
        raise FileRefused(
            "%s nests arrays or objects more than %d levels deep" % (path, MAX_DEPTH)
        ) from error
    except ValueError as error:
        raise FileRefused("%s is not valid JSON: %s" % (path, error)) from error
    try:
        _check_values(value)
    except GpuError as error:
        raise FileRefused("%s: %s" % (path, error)) from error
    return value


def _check_text(path, text):
    if len(text) > MAX_TEXT_CHARS:
        raise GpuError(
            "%s: text of %d characters; at most %d" % (path_text(path), len(text), MAX_TEXT_CHARS)
        )
    bad = _UNPRINTABLE.search(text)
    if bad:
        raise GpuError(
            "%s: text %s holds a control character, line separator or unpaired surrogate "
            "(U+%04X)" % (path_text(path), shown(text, 40), ord(bad.group()))
        )


def _check_values(value):
    """Walk every value (without recursion) in file order; raise GpuError at the first that no
    valid file holds, naming its key path."""
    pending = [((), value)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, _BadNumber):
            raise GpuError("%s: %s %s" % (path_text(path), value.spelled, value.why))
        if isinstance(value, str):
            _check_text(path, value)
            continue
        if not isinstance(value, (dict, list)):
            continue
        if len(path) >= MAX_DEPTH:
            raise GpuError("%s: nested more than %d levels deep" % (path_text(path), MAX_DEPTH))
        if isinstance(value, dict):
            if getattr(value, "repeated", ()):
                raise GpuError(
                    "%s: key(s) %s given more than once"
                    % (path_text(path), ", ".join(shown(key, 40) for key in value.repeated))
                )
            for key in value:
                _check_text((*path, key), key)
            children = [((*path, key), item) for key, item in value.items()]
        else:
            children = [((*path, number), item) for number, item in enumerate(value)]
        pending.extend(reversed(children))
