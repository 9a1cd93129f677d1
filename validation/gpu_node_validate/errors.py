"""The two kinds of problem that stop a run before any measurement (exit 2 and exit 3)."""


class ConfigError(Exception):
    """Bad input: the message names the key, the value and what is allowed (exit 2)."""

    def __init__(self, path, message):
        super().__init__("config key '%s' %s" % (path, message) if path else message)
        self.path = path


class EnvironmentProblem(Exception):
    """The node cannot run the tool as asked: torch missing, CUDA requested but absent (exit 3)."""
