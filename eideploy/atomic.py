"""Atomic writes: a temporary file (or directory) next to the destination, then a rename.

A reader (or a crash) never sees a half-written file or directory: the rename either happened or
it did not.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_write_bytes", "staged_directory"]


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def staged_directory(out_dir: Path, before_replace: Callable[[], None] | None = None
                     ) -> Iterator[Path]:
    """A hidden directory next to ``out_dir``; renamed onto it when the block succeeds, removed
    (with any parent directories it had to create) when it fails. ``before_replace`` runs just
    before the rename (a last check of the destination) and may raise to abort."""
    created: list[Path] = []
    parent = out_dir.parent
    while not parent.exists():
        created.append(parent)
        parent = parent.parent
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        yield stage
        if before_replace is not None:
            before_replace()
        _replace_dir(stage, out_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for path in created:  # innermost first
            try:
                path.rmdir()
            except OSError:
                break
        raise


def _replace_dir(stage: Path, out_dir: Path) -> None:
    """Rename ``stage`` to ``out_dir``; an existing ``out_dir`` is swapped out first and removed
    only after the new one is in place (and put back if that rename fails)."""
    os.chmod(stage, 0o755)  # mkdtemp makes it 0700; an export is an ordinary directory
    if not out_dir.exists():
        os.replace(stage, out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    old.rmdir()
    os.replace(out_dir, old)
    try:
        os.replace(stage, out_dir)
    except BaseException:
        os.replace(old, out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)
