"""How to reach a BMC with ipmitool: the access settings, checked, turned into ipmitool's argv,
and a runner for command-line tools. bmc.py reads and judges the sensors. Standard library only,
Python 3.8+.
"""

from __future__ import annotations

import math
import os
import re
import subprocess

INTERFACES = ("lanplus", "open")
ACCESS_KEYS = ("interface", "host", "port", "user", "password_file", "cipher_suite", "privilege")
DEFAULT_PORT = 623
# IPMI 2.0 cipher suites ipmitool can ask for: 3 (HMAC-SHA1, AES-128) where a BMC lacks 17.
CIPHER_SUITES = (0, 1, 2, 3, 6, 7, 8, 11, 12, 15, 16, 17)
PRIVILEGES = ("user", "operator", "administrator")  # reading sensors needs user
MAX_USER_CHARS = 16  # IPMI 2.0
HOST = re.compile(r"[A-Za-z0-9_.:%\[\]-]{1,253}\Z")
USER = re.compile(r"[\x21-\x7e]{1,%d}\Z" % MAX_USER_CHARS)


class BmcError(Exception):
    """The BMC cannot be read, or its access or limits are wrong; the message says which."""


def is_number(value):
    """A finite int or float; True and False are not numbers here."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _refuse(key, value, allowed):
    raise BmcError("BMC access %s %r is not valid; allowed: %s" % (key, value, allowed))


def ipmitool_argv(access):
    """ipmitool's argv up to the command, for access {interface, host, port, user, password_file,
    cipher_suite, privilege}; interface open uses none of the others. The password stays in its
    file (-f), never in argv."""
    if not isinstance(access, dict):
        raise BmcError(
            "BMC access %r is not valid; allowed: a mapping with keys %s"
            % (access, ", ".join(ACCESS_KEYS))
        )
    unknown = sorted(str(k) for k in access if k not in ACCESS_KEYS)
    if unknown:
        raise BmcError(
            "BMC access has unknown key(s) %s; allowed: %s"
            % (", ".join(unknown), ", ".join(ACCESS_KEYS))
        )
    interface = access.get("interface")
    if interface not in INTERFACES:
        _refuse("interface", interface, " or ".join(INTERFACES))
    if interface == "open":  # this node's BMC through the kernel's /dev/ipmi0: no network
        return ["ipmitool", "-I", "open"]  # settings, so a role's defaults for them do no harm
    host = access.get("host")
    if not isinstance(host, str) or not HOST.match(host) or host.startswith("-"):
        _refuse("host", host, "the BMC's host name or IP address (required for lanplus)")
    port = access.get("port", DEFAULT_PORT)
    if port is None:
        port = DEFAULT_PORT
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        _refuse("port", port, "a whole number from 1 to 65535 (default %d)" % DEFAULT_PORT)
    user = access.get("user")
    if not isinstance(user, str) or not USER.match(user):
        _refuse(
            "user", user, "a user name of 1 to %d printable characters, no spaces" % MAX_USER_CHARS
        )
    password_file = access.get("password_file")
    if not isinstance(password_file, str) or not os.path.isabs(password_file):
        _refuse("password_file", password_file, "the absolute path of a file holding the password")
    argv = [
        "ipmitool",
        "-I",
        "lanplus",
        "-H",
        host,
        "-p",
        str(port),
        "-U",
        user,
        "-f",
        password_file,
    ]
    suite = access.get("cipher_suite")
    if suite is not None:
        if isinstance(suite, bool) or suite not in CIPHER_SUITES:
            _refuse(
                "cipher_suite",
                suite,
                "one of %s, or null for ipmitool's choice" % ", ".join(map(str, CIPHER_SUITES)),
            )
        argv += ["-C", str(suite)]
    privilege = access.get("privilege")
    if privilege is not None:
        if privilege not in PRIVILEGES:
            _refuse(
                "privilege",
                privilege,
                "%s, or null for ipmitool's default (administrator)" % ", ".join(PRIVILEGES),
            )
        argv += ["-L", privilege.upper()]
    return argv


def subprocess_runner(timeout_s):
    """run(argv) -> (rc, stdout, stderr) for command-line tools, ending ipmitool after timeout_s."""

    def run(argv):
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                env=dict(os.environ, LC_ALL="C"),  # a decimal point, whatever the locale
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise BmcError("ipmitool did not finish within %s s" % timeout_s) from None
        return done.returncode, done.stdout, done.stderr

    return run


def where(access):
    """The BMC of a checked access, for messages."""
    if access["interface"] == "open":
        return "the local BMC (ipmitool -I open)"
    return "the BMC at %s port %s" % (access["host"], access.get("port") or DEFAULT_PORT)
