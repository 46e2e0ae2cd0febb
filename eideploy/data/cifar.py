"""CIFAR-10 and CIFAR-100 from the archives exactly as downloaded, binary or python version.

The tar.gz archives are read in one streaming pass without extracting anything to disk; an
extracted folder works too. The binary version is preferred because it needs no unpickling; the
python version goes through `safe_pickle`, which refuses anything but plain arrays and lists.
"""

from __future__ import annotations

import pickle
import tarfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .dataset import ArrayDataset
from .errors import DataError
from .safe_pickle import restricted_loads

CIFAR_URL = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar.html",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar.html",
}
_IMAGE_BYTES = 3 * 32 * 32


@dataclass(frozen=True)
class CifarLayout:
    """Where each split lives inside the two official archives of one CIFAR variant."""

    name: str
    title: str
    num_classes: int
    binary_archive: str
    binary_dir: str
    binary_files: dict[str, tuple[str, ...]]
    label_bytes: int  # CIFAR-100 binary records carry (coarse, fine); the fine label is last
    python_archive: str
    python_dir: str
    python_files: dict[str, tuple[str, ...]]
    python_label_key: str


CIFAR_LAYOUTS = {
    "cifar10": CifarLayout(
        name="cifar10",
        title="CIFAR-10",
        num_classes=10,
        binary_archive="cifar-10-binary.tar.gz",
        binary_dir="cifar-10-batches-bin",
        binary_files={
            "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
            "test": ("test_batch.bin",),
        },
        label_bytes=1,
        python_archive="cifar-10-python.tar.gz",
        python_dir="cifar-10-batches-py",
        python_files={
            "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
            "test": ("test_batch",),
        },
        python_label_key="labels",
    ),
    "cifar100": CifarLayout(
        name="cifar100",
        title="CIFAR-100",
        num_classes=100,
        binary_archive="cifar-100-binary.tar.gz",
        binary_dir="cifar-100-binary",
        binary_files={"train": ("train.bin",), "test": ("test.bin",)},
        label_bytes=2,
        python_archive="cifar-100-python.tar.gz",
        python_dir="cifar-100-python",
        python_files={"train": ("train",), "test": ("test",)},
        python_label_key="fine_labels",
    ),
}


def _missing_message(layout: CifarLayout, split: str, directory: Path | None) -> str:
    where = f"in {directory}" if directory is not None else "because no data_dir was given"
    bin_files = ", ".join(layout.binary_files[split])
    py_files = ", ".join(layout.python_files[split])
    target = directory if directory is not None else "a directory of your choice"
    return (
        f"{layout.title} ({split}) not found {where}. Expected there one of: "
        f"{layout.binary_archive}; the folder {layout.binary_dir}/ with {bin_files}; "
        f"{layout.python_archive}; or the folder {layout.python_dir}/ with {py_files}. "
        f"Download {layout.binary_archive} (the binary version) from "
        f"{CIFAR_URL[layout.name]} and put it in {target} (no need to extract it), then pass "
        "that directory as data_dir."
    )


def _read_tar_members(archive: Path, members: Sequence[str]) -> dict[str, bytes]:
    """Read the named members in one forward pass (gzip streams are slow to seek backwards)."""
    wanted = set(members)
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for info in tar:
                name = info.name.removeprefix("./")
                if name in wanted and info.isfile():
                    handle = tar.extractfile(info)
                    if handle is None:  # pragma: no cover - isfile() guarantees a handle
                        continue
                    found[name] = handle.read()
                    if len(found) == len(wanted):
                        break
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{archive} is corrupt or truncated ({exc}); download it again.") from exc
    missing = sorted(wanted - set(found))
    if missing:
        raise DataError(
            f"{archive} does not contain {', '.join(missing)}; it is not the archive its name "
            "says, or the download is incomplete. Download it again."
        )
    return found


def _decode_binary(raw: bytes, source: str, layout: CifarLayout) -> tuple[np.ndarray, np.ndarray]:
    record = layout.label_bytes + _IMAGE_BYTES
    if len(raw) == 0 or len(raw) % record != 0:
        raise DataError(
            f"{source} is truncated or corrupt: {len(raw)} bytes is not a whole number of "
            f"{record}-byte {layout.title} records. Download it again."
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
    labels = records[:, layout.label_bytes - 1].astype(np.int64)
    # Each record stores the red plane, then green, then blue, each row-major: already C,H,W.
    images = records[:, layout.label_bytes :].reshape(-1, 3, 32, 32)
    return images, labels


def _get(batch: dict[Any, Any], key: str, source: str) -> Any:
    # Python-2 pickles read with latin1 have str keys; some re-pickled copies have bytes keys.
    for candidate in (key, key.encode("ascii")):
        if candidate in batch:
            return batch[candidate]
    raise DataError(
        f"{source} has no '{key}' entry (it has {sorted(map(str, batch))}); it is not a CIFAR "
        "python batch. Download the archive again."
    )


def _decode_python(raw: bytes, source: str, layout: CifarLayout) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = restricted_loads(raw)
    except pickle.UnpicklingError as exc:
        raise DataError(f"{source} was not loaded: {exc}.") from exc
    except Exception as exc:  # any other failure of a hostile or damaged pickle
        raise DataError(f"{source} is corrupt or truncated ({exc!r}); download it again.") from exc
    if not isinstance(batch, dict):
        raise DataError(f"{source} holds a {type(batch).__name__}, not a CIFAR batch dict.")
    data = np.asarray(_get(batch, "data", source))
    labels = np.asarray(_get(batch, layout.python_label_key, source))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _IMAGE_BYTES:
        raise DataError(f"{source}: 'data' is {data.dtype} {data.shape}, not N x 3072 uint8.")
    if labels.shape != (data.shape[0],) or labels.dtype.kind not in "iu":
        raise DataError(f"{source}: labels {labels.shape} do not match {data.shape[0]} images.")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _sources(layout: CifarLayout, split: str, directory: Path) -> list[tuple[str, Path, str]]:
    """Candidate (kind, location, format) sources, most preferred first, that exist on disk."""
    found = []
    for fmt, folder, archive, files in (
        ("binary", layout.binary_dir, layout.binary_archive, layout.binary_files[split]),
        ("python", layout.python_dir, layout.python_archive, layout.python_files[split]),
    ):
        for candidate in (directory / folder, directory):
            if all((candidate / f).is_file() for f in files):
                found.append(("folder", candidate, fmt))
                break
        if (directory / archive).is_file():
            found.append(("archive", directory / archive, fmt))
    return found


def load_cifar(name: str, split: str, data_dir: Path | None) -> ArrayDataset:
    """(N, 3, 32, 32) uint8 images and their (fine) labels, in file order."""
    layout = CIFAR_LAYOUTS[name]
    if data_dir is None or not data_dir.is_dir():
        raise DataError(_missing_message(layout, split, data_dir))
    sources = _sources(layout, split, data_dir)
    if not sources:
        raise DataError(_missing_message(layout, split, data_dir))
    kind, location, fmt = sources[0]
    if fmt == "binary":
        files, decode, folder = layout.binary_files[split], _decode_binary, layout.binary_dir
    else:
        files, decode, folder = layout.python_files[split], _decode_python, layout.python_dir
    if kind == "archive":
        members = _read_tar_members(location, [f"{folder}/{f}" for f in files])
        blobs = [(f"{location}:{folder}/{f}", members[f"{folder}/{f}"]) for f in files]
    else:
        blobs = [(str(location / f), (location / f).read_bytes()) for f in files]
    parts = [decode(raw, source, layout) for source, raw in blobs]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if labels.min() < 0 or labels.max() >= layout.num_classes:
        raise DataError(
            f"{location} has labels outside 0..{layout.num_classes - 1}; it is not "
            f"{layout.title} ({fmt} version). Check which archive is in {data_dir}."
        )
    return ArrayDataset(
        name=name,
        inputs=torch.from_numpy(np.ascontiguousarray(images)),
        labels=torch.from_numpy(labels),
        num_classes=layout.num_classes,
    )
