"""Side notes of a pipeline step (which data a command read): one line each on stderr, so that
``--json`` output stays one document, and none at all under the command line's ``--quiet``."""

from __future__ import annotations

import sys

__all__ = ["note", "set_quiet"]

_quiet = False


def set_quiet(quiet: bool) -> None:
    """Silence (or restore) the notes; each command of the command line sets it for itself."""
    global _quiet
    _quiet = bool(quiet)


def note(line: str) -> None:
    """One note on stderr, unless silenced."""
    if not _quiet:
        print(line, file=sys.stderr, flush=True)
