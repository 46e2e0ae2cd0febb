"""An export directory's ``manifest.json``, read without trusting it: the one check every
command that reads an export (``inspect``, ``simulate``, ``validate``, ``run``) starts with.

The manifest lists every file of the export with its size and sha256. Reading it: the directory
is not a staging directory left by an interrupted export (``.NAME.partial-*``); the manifest is
a regular file of bounded size inside the directory, a JSON object of the expected schema; every
listed path is a plain relative path inside the directory (no absolute path, no ``..``, no link
that leaves it), names a regular file of the listed size, and hashes to the listed sha256. A
file that differs is refused, naming it; a missing file is reported (``inspect`` describes a
partial copy) or refused (:func:`verify_export`, for commands that use the files).

This module imports only :mod:`eideploy.atomic` and :mod:`eideploy.safefile`, so every layer
may use it (the board runner checks an export before it opens a board).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from .atomic import is_staging_name
from .safefile import UnsafeFileError, check_regular, load_json, printable, sha256_bounded

__all__ = ["EXPORT_FORMAT", "EXPORT_FORMAT_VERSION", "EXPORT_FILES", "MAX_MANIFEST_BYTES",
           "MAX_EXPORT_FILE_BYTES", "ExportDirError", "export_directory", "read_manifest",
           "verify_export"]

EXPORT_FORMAT = "eideploy-export"
EXPORT_FORMAT_VERSION = 1
#: Every file of an export directory, in the order the manifest lists them.
EXPORT_FILES = ("graph.json", "weights.npz", "quantized/graph.json", "quantized/weights.npz",
                "dynapse2.json", "samna.json", "report.json", "report.md", "mapping.png")
MAX_MANIFEST_BYTES = 1 << 20
#: The largest file an export lists (a four-chip samna.json is about 50 MB).
MAX_EXPORT_FILE_BYTES = 1 << 30
_MAX_FILES = 256
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FIX = "export the model again ('eideploy export MODEL -o DIR --overwrite')"


class ExportDirError(ValueError):
    """An export directory that cannot be trusted; the message names the file and the field."""


def export_directory(out_dir: str | Path) -> Path:
    """``out_dir`` checked to be a directory that is not a staging directory."""
    out_dir = Path(out_dir)
    name = Path(os.path.abspath(out_dir)).name
    if is_staging_name(name):
        raise ExportDirError(f"{printable(out_dir)}: a staging directory left by an interrupted "
                             f"export, not an export; {_FIX}")
    if not out_dir.is_dir():
        raise ExportDirError(f"{printable(out_dir)}: not an export directory (no such "
                             "directory); give a directory written by 'eideploy export'")
    return out_dir


def _field(source: str, where: str, message: str) -> ExportDirError:
    return ExportDirError(f"{source}: field '{where}' {message}; {_FIX}")


def _check(doc: Any, key: str, kinds: type | tuple[type, ...], source: str,
           where: str = "", optional: bool = False) -> Any:
    path = f"{where}.{key}" if where else key
    if not isinstance(doc, dict) or key not in doc:
        if optional:
            return None
        raise _field(source, path, "is missing")
    value = doc[key]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in (
            kinds if isinstance(kinds, tuple) else (kinds,))):
        names = kinds.__name__ if isinstance(kinds, type) else "/".join(k.__name__
                                                                           for k in kinds)
        raise _field(source, path, f"must be {names}, got {printable(repr(value), 80)}")
    return value


def _relative(path: str, source: str, where: str) -> str:
    """A listed path: relative, POSIX, no ``..``, no empty or ``.`` parts."""
    pure = PurePosixPath(path)
    if (not path or path.startswith("/") or "\\" in path or pure.is_absolute()
            or any(part in ("", ".", "..") for part in path.split("/"))):
        raise _field(source, where, f"is {printable(repr(path), 80)}: a listed file must be a "
                                    "relative path inside the export directory (no absolute "
                                    "path, no '..')")
    return path


def _check_schema(manifest: Any, source: str) -> list[dict[str, Any]]:
    if not isinstance(manifest, dict):
        raise ExportDirError(f"{source}: not an eideploy export manifest (a JSON object of "
                             f"format {EXPORT_FORMAT!r}); {_FIX}")
    if manifest.get("format") != EXPORT_FORMAT:
        raise ExportDirError(f"{source}: not an eideploy export manifest (format "
                             f"{printable(repr(manifest.get('format')), 80)})")
    version = _check(manifest, "format_version", int, source)
    if not 1 <= version <= EXPORT_FORMAT_VERSION:
        raise _field(source, "format_version", f"is {version}; this eideploy reads 1.."
                                               f"{EXPORT_FORMAT_VERSION}")
    _check(manifest, "graph", str, source)
    _check(manifest, "seed", int, source)
    src = _check(manifest, "source", dict, source)
    _check(src, "kind", str, source, "source")
    digest = _check(src, "sha256", str, source, "source")
    if not _SHA256.match(digest):
        raise _field(source, "source.sha256", "must be 64 lower-case hex digits")
    for key in ("file", "name", "architecture"):
        _check(src, key, str, source, "source", optional=True)
    target = _check(manifest, "target", dict, source)
    _check(target, "name", str, source, "target")
    chips = _check(target, "chips", int, source, "target")
    if not 1 <= chips <= 64:
        raise _field(source, "target.chips", f"is {chips}, not a number of chips (1..64)")
    versions = _check(manifest, "versions", dict, source)
    for key, value in versions.items():
        if value is not None and not isinstance(value, str):
            raise _field(source, f"versions.{key}", f"must be a string or null, got "
                                                    f"{printable(repr(value), 80)}")
    _check(manifest, "summary", dict, source, optional=True)
    files = _check(manifest, "files", list, source)
    if len(files) > _MAX_FILES:
        raise _field(source, "files", f"lists {len(files)} files; an export has "
                                      f"{len(EXPORT_FILES)}")
    seen: set[str] = set()
    for i, entry in enumerate(files):
        where = f"files[{i}]"
        if not isinstance(entry, dict):
            raise _field(source, where, "must be an object {path, bytes, sha256}")
        path = _relative(_check(entry, "path", str, source, where), source, f"{where}.path")
        if path in seen or path == "manifest.json":
            raise _field(source, f"{where}.path", f"lists {path!r} twice")
        seen.add(path)
        size = _check(entry, "bytes", int, source, where)
        if not 0 <= size <= MAX_EXPORT_FILE_BYTES:
            raise _field(source, f"{where}.bytes", f"is {size}, outside 0.."
                                                   f"{MAX_EXPORT_FILE_BYTES}")
        if not _SHA256.match(_check(entry, "sha256", str, source, where)):
            raise _field(source, f"{where}.sha256", "must be 64 lower-case hex digits")
    return files


def read_manifest(out_dir: str | Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The manifest of the export directory ``out_dir`` and each listed file's state: ``ok`` or
    ``missing``. A file whose size or sha256 differs from the manifest, that is not a regular
    file, or that lies outside the directory is refused (:class:`ExportDirError`)."""
    out_dir = export_directory(out_dir)
    path = out_dir / "manifest.json"
    source = printable(path)
    try:
        manifest = load_json(path, MAX_MANIFEST_BYTES, within=out_dir)
    except FileNotFoundError:
        raise ExportDirError(f"{printable(out_dir)}: not an export directory (no manifest.json "
                             "beside graph.json, dynapse2.json and the other files it lists); "
                             "give a model.pt or a directory written by 'eideploy export'"
                             ) from None
    except UnsafeFileError as exc:
        raise ExportDirError(str(exc)) from None
    files = _check_schema(manifest, source)
    state: dict[str, str] = {}
    for entry in files:
        name = entry["path"]
        file = out_dir / name
        if not os.path.lexists(file):
            state[name] = "missing"
            continue
        try:
            size = check_regular(file, MAX_EXPORT_FILE_BYTES, within=out_dir)
            if size != entry["bytes"]:
                raise ExportDirError(f"{printable(file)}: {size} bytes, but manifest.json lists "
                                     f"{entry['bytes']}: the file was changed or cut after the "
                                     f"export; {_FIX}")
            digest = sha256_bounded(file, entry["bytes"], within=out_dir)
        except FileNotFoundError:
            state[name] = "missing"
            continue
        except UnsafeFileError as exc:
            raise ExportDirError(f"{exc}; {_FIX}") from None
        if digest != entry["sha256"]:
            raise ExportDirError(f"{printable(file)}: its sha256 differs from the one "
                                 f"manifest.json lists: the file was changed after the export; "
                                 f"{_FIX}")
        state[name] = "ok"
    return manifest, state


def verify_export(out_dir: str | Path, required: Iterable[str] = EXPORT_FILES
                  ) -> dict[str, Any]:
    """The manifest of ``out_dir`` (:func:`read_manifest`) with every ``required`` file listed,
    present and unchanged; raises :class:`ExportDirError` naming the first that is not."""
    manifest, state = read_manifest(out_dir)
    for name in required:
        if name not in state:
            raise ExportDirError(f"{printable(Path(out_dir) / 'manifest.json')}: does not list "
                                 f"{name}, which every export has; {_FIX}")
        if state[name] != "ok":
            raise ExportDirError(f"{printable(Path(out_dir) / name)}: missing (manifest.json "
                                 f"lists it); {_FIX}")
    return manifest
