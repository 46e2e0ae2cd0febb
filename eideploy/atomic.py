"""Files written whole or not at all, and the project's one JSON normaliser and one file hash.

Atomic writes: a temporary file (or directory) next to the destination, then a rename. A reader
(or a crash) never sees a half-written file or directory: the rename either happened or it did
not. Every writer in the package goes through :func:`atomic_write` (bytes, text, npz archives,
torch checkpoints alike) and every directory through :func:`staged_directory`.

This module imports nothing from the package, so every layer may use it.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = ["atomic_write", "atomic_write_bytes", "staged_directory", "sha256_file", "json_plain",
           "FILE_MODE", "is_staging_name", "remove_stale_stages"]

#: Permissions of every file eideploy writes (``mkstemp`` alone would make them 0600).
FILE_MODE = 0o644
#: Permissions of every directory eideploy publishes with :func:`staged_directory`.
DIR_MODE = 0o755


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None],
                 mode: int = FILE_MODE) -> None:
    """Call ``write(fh)`` on a temporary file next to ``path``, then rename it to ``path``.

    On any error (or interruption) the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def json_plain(value: Any, digits: int | None = None) -> Any:
    """JSON-native data: dict keys as strings, tuples and arrays as lists, numpy scalars as Python
    numbers, paths as POSIX strings, so that a document round-trips through JSON unchanged.

    With ``digits``, floats are rounded to that many significant digits and NaN / infinities
    become ``None`` (the stable, last-bit-blind floats of report files).
    """
    if isinstance(value, dict):
        return {str(k): json_plain(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_plain(v, digits) for v in value]
    if isinstance(value, np.ndarray):
        return [json_plain(v, digits) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        x = float(value)
        if digits is None:
            return x
        return float(f"{x:.{digits}g}") if math.isfinite(x) else None
    if isinstance(value, Path):
        return value.as_posix()
    return value


#: ``.NAME.partial-PID-XXXX`` (a directory being written) and ``.NAME.old-PID-XXXX`` (the one it
#: replaces, for an instant); names without the PID were written by earlier versions.
_STAGING = re.compile(r"^\.(?P<name>.+)\.(?P<kind>partial|old)-(?:(?P<pid>\d+)-)?[A-Za-z0-9_]+$")
#: A staging directory without a PID in its name is stale once untouched this long (seconds).
LEGACY_STALE_S = 600.0


def is_staging_name(name: str) -> bool:
    """Whether ``name`` is that of a staging directory of :func:`staged_directory` (an export
    interrupted while it was written, never a finished one)."""
    return _STAGING.match(name) is not None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return pid > 0  # a process of another user holds it (or a PID no system has)
    return True


def remove_stale_stages(out_dir: Path) -> list[Path]:
    """Remove the staging directories of ``out_dir`` that a killed process left next to it:
    those whose PID names no running process (or, without a PID, untouched for
    :data:`LEGACY_STALE_S`). A live export's stage is left alone. Returns what was removed."""
    parent = out_dir.parent
    removed = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _STAGING.match(entry.name)
        if match is None or match["name"] != out_dir.name:
            continue
        if match["pid"] is not None:
            stale = not _alive(int(match["pid"]))
        else:
            try:
                stale = time.time() - entry.lstat().st_mtime > LEGACY_STALE_S
            except OSError:
                continue
        if not stale:
            continue
        if entry.is_symlink() or not entry.is_dir():
            entry.unlink(missing_ok=True)
        else:
            shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _stage_prefix(out_dir: Path, kind: str) -> str:
    return f".{out_dir.name}.{kind}-{os.getpid()}-"


@contextmanager
def staged_directory(out_dir: Path,
                     before_replace: Callable[[], Iterable[str] | None] | None = None
                     ) -> Iterator[Path]:
    """A hidden directory next to ``out_dir``; renamed onto it when the block succeeds, removed
    (with any parent directories it had to create) when it fails. ``before_replace`` runs just
    before the rename (a last check of the destination) and may raise to abort; it may return
    the names of entries of the existing ``out_dir`` to carry over into the new one (those the
    new one does not have itself: what a user or another command put there).

    Stages that a killed process left for the same ``out_dir`` are removed first
    (:func:`remove_stale_stages`): a signal that cannot be caught (SIGKILL) leaves one behind,
    and only the next export to the same place can clean it."""
    created: list[Path] = []
    parent = out_dir.parent
    while not parent.exists():
        created.append(parent)
        parent = parent.parent
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_stages(out_dir)
    stage = Path(tempfile.mkdtemp(prefix=_stage_prefix(out_dir, "partial"), dir=out_dir.parent))
    try:
        yield stage
        carry = before_replace() if before_replace is not None else None
        _replace_dir(stage, out_dir, carry or ())
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for path in created:  # innermost first
            try:
                path.rmdir()
            except OSError:
                break
        raise


def _replace_dir(stage: Path, out_dir: Path, carry: Iterable[str] = ()) -> None:
    """Rename ``stage`` to ``out_dir``; an existing ``out_dir`` is swapped out first and removed
    only after the new one is in place (and put back if that rename fails). The entries named
    in ``carry`` move (renamed, not copied) from the old directory into the new one first,
    unless the new one has an entry of that name; they move back if the swap fails."""
    # mkdtemp makes the stage 0700 and a plain open() follows the umask: what eideploy
    # publishes is ordinary (before any carried entry joins, whose modes are the user's)
    for path in [stage, *stage.rglob("*")]:
        if not path.is_symlink():
            os.chmod(path, DIR_MODE if path.is_dir() else FILE_MODE)
    if not out_dir.exists():
        os.replace(stage, out_dir)
        return
    moved = []
    try:
        for name in dict.fromkeys(carry):
            if Path(name).name != name or name in (".", ".."):
                continue  # a plain entry name only: nothing outside out_dir moves
            source, destination = out_dir / name, stage / name
            if (source.exists() or source.is_symlink()) and not (
                    destination.exists() or destination.is_symlink()):
                os.replace(source, destination)
                moved.append(name)
        old = Path(tempfile.mkdtemp(prefix=_stage_prefix(out_dir, "old"), dir=out_dir.parent))
        old.rmdir()
        os.replace(out_dir, old)
        try:
            os.replace(stage, out_dir)
        except BaseException:
            os.replace(old, out_dir)
            raise
    except BaseException:
        for name in moved:  # the stage is removed by the caller: give the entries back first
            os.replace(stage / name, out_dir / name)
        raise
    shutil.rmtree(old, ignore_errors=True)
