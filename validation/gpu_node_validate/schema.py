"""Strict JSON reading and small declarative validators for the config file.

Every validator is a callable (path, value) -> normalised value that raises ConfigError naming
the key path, the value given and what is allowed. No torch here: a bad config is refused
(exit 2) before the heavy imports.
"""

import json
import math
import re

from .errors import ConfigError

MAX_FILE_BYTES = 1024 * 1024


def show(value):
    """A value as it appeared in the file, shortened for a one-line message."""
    text = json.dumps(value, sort_keys=True, allow_nan=True)
    return text if len(text) <= 80 else text[:77] + "..."


def _no_repeated_keys(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ConfigError("", 'the file repeats the key "%s" in one object' % key)
        seen[key] = value
    return seen


def _no_nan(token):
    raise ConfigError("", "the file holds %s, which is not a JSON number" % token)


def load_json_file(path):
    """The file's top-level object; ConfigError for anything JSON does not allow or Python's json
    would accept silently (repeated keys, NaN, Infinity)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise ConfigError("", "cannot read the config file %s: %s" % (path, err.strerror)) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError("", "the config file %s is larger than %d bytes" % (path, MAX_FILE_BYTES))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError("", "the config file %s is not UTF-8: %s" % (path, err.reason)) from None
    try:
        data = json.loads(text, object_pairs_hook=_no_repeated_keys, parse_constant=_no_nan)
    except json.JSONDecodeError as err:
        raise ConfigError(
            "", "the config file %s is not valid JSON: %s (line %d)" % (path, err.msg, err.lineno)
        ) from None
    except RecursionError:
        raise ConfigError("", "the config file %s nests too deeply" % path) from None
    if not isinstance(data, dict):
        raise ConfigError("", "the config file %s must hold a JSON object at the top" % path)
    return data


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and (
        not isinstance(value, float) or math.isfinite(value)
    )


class Int:
    def __init__(self, low, high, multiple_of=1):
        self.low, self.high, self.multiple_of = low, high, multiple_of

    def describe(self):
        text = "an integer from %d to %d" % (self.low, self.high)
        return text + (", a multiple of %d" % self.multiple_of if self.multiple_of > 1 else "")

    def __call__(self, path, value):
        if not _is_int(value) or not self.low <= value <= self.high or value % self.multiple_of:
            raise ConfigError(path, "= %s: must be %s" % (show(value), self.describe()))
        return value


class Num:
    """A finite number; low is exclusive when above_low (a fraction of 0 means nothing)."""

    def __init__(self, low, high, above_low=True):
        self.low, self.high, self.above_low = low, high, above_low

    def describe(self):
        return "a number %s %g and at most %g" % (
            "above" if self.above_low else "from",
            self.low,
            self.high,
        )

    def __call__(self, path, value):
        ok = _is_number(value) and value <= self.high
        ok = ok and (value > self.low if self.above_low else value >= self.low)
        if not ok:
            raise ConfigError(path, "= %s: must be %s" % (show(value), self.describe()))
        return float(value)


class Str:
    def __init__(self, max_len=200, pattern=None, meaning="a non-empty string"):
        self.max_len, self.pattern, self.meaning = max_len, pattern, meaning

    def __call__(self, path, value):
        ok = isinstance(value, str) and 0 < len(value) <= self.max_len
        ok = ok and (self.pattern is None or re.fullmatch(self.pattern, value))
        if not ok:
            raise ConfigError(
                path,
                "= %s: must be %s of at most %d characters"
                % (show(value), self.meaning, self.max_len),
            )
        return value


class Choice:
    def __init__(self, *values):
        self.values = values

    def __call__(self, path, value):
        if not isinstance(value, str) or value not in self.values:
            raise ConfigError(
                path,
                "= %s: must be one of %s" % (show(value), ", ".join(map(json.dumps, self.values))),
            )
        return value


class Bool:
    def __call__(self, path, value):
        if not isinstance(value, bool):
            raise ConfigError(path, "= %s: must be true or false" % show(value))
        return value


class Nullable:
    def __init__(self, inner):
        self.inner = inner

    def __call__(self, path, value):
        return None if value is None else self.inner(path, value)


class ListOf:
    def __init__(self, item, min_len=1, max_len=64, unique=True):
        self.item, self.min_len, self.max_len, self.unique = item, min_len, max_len, unique

    def __call__(self, path, value):
        if not isinstance(value, list) or not self.min_len <= len(value) <= self.max_len:
            raise ConfigError(
                path,
                "= %s: must be a list of %d to %d items"
                % (show(value), self.min_len, self.max_len),
            )
        items = [self.item("%s[%d]" % (path, i), v) for i, v in enumerate(value)]
        if self.unique and len(set(map(json.dumps, items))) != len(items):
            raise ConfigError(path, "= %s: must not repeat an item" % show(value))
        return items


def _check_object(path, value):
    if not isinstance(value, dict):
        raise ConfigError(path, "= %s: must be a JSON object" % show(value))


def _join(path, key):
    return "%s.%s" % (path, key) if path else key


class Obj:
    """An object with known keys; unknown keys are refused with the list of allowed ones."""

    def __init__(self, fields, required=()):
        self.fields, self.required = fields, required

    def __call__(self, path, value):
        _check_object(path, value)
        for key in value:
            if key not in self.fields:
                raise ConfigError(
                    _join(path, key),
                    "is not a known key; allowed here: %s" % ", ".join(sorted(self.fields)),
                )
        for key in self.required:
            if key not in value:
                raise ConfigError(_join(path, key), "is required")
        return {key: self.fields[key](_join(path, key), v) for key, v in value.items()}


class MapOf:
    """An object whose keys are free (GPU model names, world sizes), checked by key_check."""

    def __init__(self, key_check, item, max_len=256):
        self.key_check, self.item, self.max_len = key_check, item, max_len

    def __call__(self, path, value):
        _check_object(path, value)
        if len(value) > self.max_len:
            raise ConfigError(
                path, "has %d entries: at most %d allowed" % (len(value), self.max_len)
            )
        result = {}
        for key, v in value.items():
            self.key_check(_join(path, key), key)
            result[key] = self.item(_join(path, key), v)
        return result


def world_size_key(path, key):
    """A world size written as a JSON object key ("4")."""
    if not re.fullmatch(r"[1-9][0-9]{0,3}", key):
        raise ConfigError(path, 'is not a world size: keys here must be GPU counts such as "4"')


def model_name_key(path, key):
    if not 0 < len(key) <= 200 or not key.isprintable():
        raise ConfigError(path, "is not a GPU model name (printable, 1 to 200 characters)")
