"""The one exception the data sub-package raises for problems a user can fix."""

from __future__ import annotations


class DataError(ValueError):
    """A data set is missing, incomplete or corrupt.

    The message is one paragraph meant for the user, not a traceback: it names the data set, the
    directory or file involved, what was expected there and where to get it. It subclasses
    ValueError so that callers that only know "bad input" still catch it, and so the CLI can map
    it to exit code 2 without importing this module.
    """


class MissingExtraError(ImportError):
    """An optional dependency of one data set is not installed.

    Raised only when that data set is asked for, so `import eideploy.data` never needs the
    extras. `extra` is the pip extra that provides it, e.g. "vision" for `eideploy[vision]`.
    """

    def __init__(self, message: str, extra: str) -> None:
        super().__init__(message)
        self.extra = extra
