"""Reading a file a user hands over, without trusting it: the checks every loader starts with.

A path is ``stat``-ed before it is opened: a FIFO would block ``open``, a device such as
``/dev/zero`` would be read without end, and a symbolic link may point anywhere; so only a
regular file no larger than a stated limit is opened (non-blocking, re-checked on the open
descriptor, read to at most the limit). A JSON document is then parsed with NaN and infinities
refused, its nesting depth bounded (a deeply nested file must not exhaust the stack), and every
string checked for control characters (text from a file never reaches a terminal as an escape
sequence).

This module imports nothing from the package, so every layer may use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

__all__ = ["UnsafeFileError", "MAX_JSON_BYTES", "MAX_JSON_DEPTH", "printable", "check_regular",
           "read_bounded", "load_json", "json_depth", "sha256_bounded"]

#: The largest JSON document a loader reads (an export's dynapse2.json of a full board is ~15 MB).
MAX_JSON_BYTES = 64 << 20
#: The deepest nesting a loader accepts (eideploy's own files nest fewer than 10 levels).
MAX_JSON_DEPTH = 64


class UnsafeFileError(ValueError):
    """A file that is not a bounded regular file, or not a plain JSON document; the message
    names the file and what is wrong with it."""


def printable(text: object, limit: int = 200) -> str:
    """``text`` with control characters escaped and cut to ``limit`` characters."""
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
    return out if len(out) <= limit else out[:limit] + "..."


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_regular(path: str | Path, limit: int, *, within: str | Path | None = None,
                  limit_text: str | None = None) -> int:
    """The size of ``path``, a regular file of at most ``limit`` bytes; with ``within``, a file
    (after following links) inside that directory. Raises :class:`UnsafeFileError` otherwise,
    and ``FileNotFoundError`` where nothing is there. Nothing is opened. ``limit_text`` names
    the limit in the message (e.g. "256 kB limit of a recipe")."""
    path = Path(path)
    if within is not None:
        root = os.path.realpath(within)
        real = os.path.realpath(path)
        if os.path.commonpath([root, real]) != root:
            raise UnsafeFileError(f"{printable(path)}: a link that leaves {printable(within)} "
                                  f"(to {printable(real)}); an export's files lie inside it")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UnsafeFileError(f"{printable(path)}: cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFileError(f"{printable(path)}: {_kind(st.st_mode)}, not a regular file")
    if st.st_size > limit:
        raise UnsafeFileError(f"{printable(path)}: {st.st_size} bytes, over the "
                              + (limit_text or f"limit of {limit} bytes for this file"))
    return st.st_size


def _open_regular(path: Path, limit: int, within: str | Path | None,
                  limit_text: str | None = None) -> int:
    """A descriptor of the regular file ``path`` (checked before and after opening)."""
    check_regular(path, limit, within=within, limit_text=limit_text)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise UnsafeFileError(f"{printable(path)}: cannot be opened ({exc.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size > limit:  # swapped after the first check
        os.close(fd)
        raise UnsafeFileError(f"{printable(path)}: changed while it was opened; not a regular "
                              f"file of at most {limit} bytes")
    return fd


def read_bounded(path: str | Path, limit: int, *, within: str | Path | None = None,
                 limit_text: str | None = None) -> bytes:
    """The bytes of the regular file ``path`` (:func:`check_regular`), never more than
    ``limit``."""
    path = Path(path)
    fd = _open_regular(path, limit, within, limit_text)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise UnsafeFileError(f"{printable(path)}: grew over the limit of {limit} bytes while "
                              "it was read")
    return data


def sha256_bounded(path: str | Path, limit: int, *, within: str | Path | None = None) -> str:
    """Hex sha256 of the regular file ``path`` (:func:`check_regular`), read in 1 MiB blocks."""
    path = Path(path)
    fd = _open_regular(path, limit, within)
    digest, total = hashlib.sha256(), 0
    with os.fdopen(fd, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            total += len(block)
            if total > limit:
                raise UnsafeFileError(f"{printable(path)}: grew over the limit of {limit} bytes "
                                      "while it was read")
            digest.update(block)
    return digest.hexdigest()


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text[:40]} overflows a float")
    return value


def json_depth(doc: Any, source: str, limit: int = MAX_JSON_DEPTH) -> int:
    """The nesting depth of a parsed JSON document; raises :class:`UnsafeFileError` past
    ``limit`` or at a string (or key) holding a control character."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if not node.isprintable():
                raise UnsafeFileError(f"{source}: holds a string with control characters "
                                      f"({printable(node, 60)}); eideploy writes none")
            continue
        if not isinstance(node, (dict, list)):
            continue
        deepest = max(deepest, depth)
        if depth > limit:
            raise UnsafeFileError(f"{source}: nested deeper than {limit} levels; not a file "
                                  "eideploy wrote")
        if isinstance(node, dict):
            stack.extend((key, depth) for key in node)
            stack.extend((value, depth + 1) for value in node.values())
        else:
            stack.extend((value, depth + 1) for value in node)
    return deepest


def load_json(path: str | Path, limit: int = MAX_JSON_BYTES, *,
              within: str | Path | None = None, depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON document in the regular file ``path``: at most ``limit`` bytes of UTF-8, no NaN
    or infinity, nested at most ``depth`` levels, no control characters in its strings."""
    path = Path(path)
    data = read_bounded(path, limit, within=within)
    where = printable(path)
    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant,
                         parse_float=_finite_float)
    except RecursionError:
        raise UnsafeFileError(f"{where}: nested deeper than {depth} levels; not a file "
                              "eideploy wrote") from None
    except UnicodeDecodeError as exc:
        raise UnsafeFileError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})"
                              ) from None
    except ValueError as exc:  # JSONDecodeError, or a NaN / Infinity constant
        raise UnsafeFileError(f"{where}: not valid JSON ({printable(exc)})") from None
    json_depth(doc, where, depth)
    return doc
