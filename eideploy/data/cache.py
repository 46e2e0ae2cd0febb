"""A cache, inside the user's data directory, of data sets that are slow to decode.

TinyImageNet is 110k JPEGs and CIFAR10-DVS 10k event files that must be binned into frames:
minutes per run. The decoded arrays are stored next to the source data (never elsewhere) as an
uncompressed .npz read back with allow_pickle=False. The file name carries a fingerprint of the
source files' names and sizes, so replacing the data invalidates the cache.
"""

from __future__ import annotations

import hashlib
import warnings
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ..atomic import atomic_write

CACHE_DIR_NAME = ".eideploy-cache"
CACHE_FORMAT_VERSION = 1


def fingerprint(files: Iterable[Path], root: Path) -> str:
    """Short hash of relative paths and sizes: cheap to compute, changes when the data does."""
    digest = hashlib.sha1(f"v{CACHE_FORMAT_VERSION}".encode())
    for path in sorted(files):
        digest.update(f"{path.relative_to(root)}\0{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:12]


def cached_arrays(
    data_dir: Path, key: str, build: Callable[[], tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """Return (inputs, labels) from `data_dir/.eideploy-cache/<key>.npz`, building it if absent.

    A read-only data directory only costs the rebuild; it is not an error.
    """
    path = data_dir / CACHE_DIR_NAME / f"{key}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                return stored["inputs"], stored["labels"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # a damaged cache is rebuilt below
    inputs, labels = build()
    try:  # atomic: a crash never leaves a half-written cache
        atomic_write(path, lambda fh: np.savez(fh, inputs=inputs, labels=labels))
    except OSError as exc:
        warnings.warn(f"could not cache {key} in {path.parent}: {exc}", stacklevel=2)
    return inputs, labels
