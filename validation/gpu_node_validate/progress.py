"""One short line per step on stderr, flushed at once, so an Ansible async task or a person
watching sees the run move."""

import sys
import time

_START = time.monotonic()


def say(section, message):
    """Print "[section] message" with the seconds since the run started."""
    sys.stderr.write("[%s] %s (%.0f s)\n" % (section, message, time.monotonic() - _START))
    sys.stderr.flush()
