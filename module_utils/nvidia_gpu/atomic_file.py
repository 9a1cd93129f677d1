"""Writing a file so that no reader ever sees half of it: a temporary file in the same directory,
then a rename over the old one. For what other programs read while we write: the status file and
the metrics node_exporter serves, the burn-in report, the record of locked clocks.

Standard library only, Python 3.8+.
"""

from __future__ import annotations

import contextlib
import os
import tempfile


def write_text(path, text, mode=0o644, make_directory=True):
    """Replace path's content with text (UTF-8); OSError when it cannot be written, and then
    no temporary file is left behind. A temporary name starts with a dot and does not end like
    path, so collectors that read *.prom or *.json never pick it up."""
    directory = os.path.dirname(os.path.abspath(path))
    if make_directory:
        os.makedirs(directory, mode=0o755, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
