"""User-facing errors: one clear message, no traceback unless --verbose."""


class UserError(Exception):
    """Bad input, flags or files: the message says what is wrong and where."""


class DataError(UserError, ValueError):
    """A data file is malformed; the message names the file, the line and what was expected."""

    def __init__(self, path: str, line: int | None, message: str):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path, self.line = path, line


class CheckpointError(UserError, ValueError):
    """A checkpoint cannot be loaded: missing, unexpected or wrongly shaped weights, or an unsafe format."""


class ConfigError(UserError, ValueError):
    """Flags or a configuration that cannot work together."""
