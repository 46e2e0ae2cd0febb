"""A user's own arrays (``dataset: npz``) and the identity of the data a model was trained on.

Two layouts of ``.npz`` (numpy's zip of arrays, read with ``allow_pickle=False``):

* one file holding ``x_train``, ``y_train``, ``x_test``, ``y_test``;
* one file per split (``train:`` and ``test:`` in the recipe), each holding ``x`` and ``y``.

``x`` is images (N, H, W) or (N, C, H, W), or event tensors (N, T, C, H, W); uint8 (pixels in
0..255, divided by 255 on the device like every shipped image set) or float (finite and
non-negative: DeepEISNN's E-I Init divides by E[x], so inputs are never mean/std normalised).
``y`` is integer class indices 0..num_classes-1. Every check names the file and the key.

The file is hostile input until checked: a regular file, at most :data:`MAX_NPZ_BYTES` on disk
and its members at most as large once unzipped (a zip bomb is refused before it is inflated),
and read once: the sha256 recorded as the data's identity is of the very bytes that were parsed.
"""

from __future__ import annotations

import hashlib
import io
import sys
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..safefile import UnsafeFileError, read_bounded
from .dataset import ArrayDataset
from .errors import DataError
from .image_folder import IMAGES, image_sources, load_image_folder

__all__ = ["MAX_NPZ_BYTES", "NPZ", "IMAGES", "OWN_DATASETS", "NpzSplit", "carve_validation",
           "check_identity", "dataset_arrays", "describe_identity", "load_npz", "load_own",
           "npz_sources", "own_sources", "save_npz"]

NPZ = "npz"
MAX_NPZ_BYTES = 4 << 30  # 4 GiB: CIFAR-10's train split is 150 MiB as uint8
MAX_CLASSES = 100_000


@dataclass(frozen=True)
class NpzSplit:
    """Where one split lives: the file and the names of its two arrays in it."""

    path: Path
    x_key: str
    y_key: str


def npz_sources(path: str | Path | None = None, train: str | Path | None = None,
                test: str | Path | None = None) -> dict[str, NpzSplit]:
    """The file and keys of each split, absolute: one ``path`` (``x_train`` ... ``y_test``), or
    ``train`` and ``test`` files (``x``, ``y`` each). A directory as ``path`` means its
    ``train.npz`` and ``test.npz`` (what ``--data-dir DIR`` gives)."""
    if path is not None:
        where = Path(path).expanduser().absolute()
        if where.is_dir():
            return npz_sources(train=where / "train.npz", test=where / "test.npz")
        return {split: NpzSplit(where, f"x_{split}", f"y_{split}") for split in ("train", "test")}
    if train is None or test is None:
        raise DataError("dataset npz needs data.path (one .npz with x_train, y_train, x_test, "
                        "y_test) or both data.train and data.test (.npz files with x and y)")
    return {split: NpzSplit(Path(p).expanduser().absolute(), "x", "y")
            for split, p in (("train", train), ("test", test))}


def _read_bounded(path: Path) -> bytes:
    """The file's bytes through the one bounded reader (:func:`eideploy.safefile.read_bounded`:
    a regular file, stat-ed before and after opening, read to at most the limit)."""
    try:
        return read_bounded(path, MAX_NPZ_BYTES,
                            limit_text=f"{MAX_NPZ_BYTES >> 30} GiB limit of a data file")
    except FileNotFoundError:
        raise DataError(f"{path}: no such data file; give data.path (or data.train/data.test) "
                        "as an existing .npz file, or --data-dir") from None
    except UnsafeFileError as exc:
        raise DataError(f"{exc}; give a .npz file") from None


def _open_npz(path: Path, raw: bytes) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
    except (zipfile.BadZipFile, OSError, ValueError):
        raise DataError(f"{path}: not a .npz file (numpy's zip of arrays: np.savez(path, "
                        "x_train=..., y_train=..., ...))") from None
    total = sum(member.file_size for member in archive.infolist())
    if total > MAX_NPZ_BYTES:
        raise DataError(f"{path}: its arrays unpack to {total} bytes, over the "
                        f"{MAX_NPZ_BYTES >> 30} GiB limit")
    return archive


def _array(path: Path, archive: zipfile.ZipFile, key: str) -> np.ndarray:
    names = [n.removesuffix(".npy") for n in archive.namelist()]
    if key not in names:
        raise DataError(f"{path}: missing key '{key}' (keys present: "
                        f"{', '.join(sorted(names)) or 'none'}); the file needs x_train, "
                        "y_train, x_test, y_test (one file) or x, y (data.train/data.test)")
    try:
        with archive.open(f"{key}.npy") as fh:
            return np.lib.format.read_array(io.BytesIO(fh.read()), allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "object" in str(exc).lower():
            raise DataError(f"{path}: key '{key}' is an object array (Python objects, loaded "
                            "only by unpickling, which eideploy never does); save numbers: "
                            "np.asarray(..., dtype=np.uint8 or np.float32)") from None
        raise DataError(f"{path}: key '{key}' is not a readable numpy array ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: key '{key}' is corrupt ({type(exc).__name__})") from None


def _inputs(path: Path, key: str, x: np.ndarray) -> torch.Tensor:
    if x.ndim not in (3, 4, 5) or 0 in x.shape:
        raise DataError(f"{path}: key '{key}' has shape {x.shape}; expected images (N, H, W) "
                        "or (N, C, H, W), or event tensors (N, T, C, H, W), none empty")
    if x.dtype == np.uint8:
        tensor = torch.from_numpy(np.ascontiguousarray(x))
    elif x.dtype.kind == "f" or x.dtype == np.bool_:
        values = x.astype(np.float32)
        if not np.isfinite(values).all():
            raise DataError(f"{path}: key '{key}' holds NaN or infinite values")
        if (values < 0).any():
            raise DataError(f"{path}: key '{key}' holds negative values (min "
                            f"{float(values.min()):.4g}); E-I networks need non-negative "
                            "inputs (E-I Init divides by E[x]): scale to [0, 1], do not "
                            "mean/std normalise")
        tensor = torch.from_numpy(values)
    else:
        raise DataError(f"{path}: key '{key}' has dtype {x.dtype}; use uint8 pixels (0..255) "
                        "or float values >= 0")
    return tensor[:, None] if x.ndim == 3 else tensor


def _labels(path: Path, key: str, y: np.ndarray, n: int, num_classes: int | None
            ) -> torch.Tensor:
    if y.dtype.kind not in "iu" or y.ndim != 1:
        raise DataError(f"{path}: key '{key}' has dtype {y.dtype} and shape {y.shape}; expected "
                        "1-d integer class indices")
    if y.shape[0] != n:
        raise DataError(f"{path}: key '{key}' has {y.shape[0]} labels for {n} inputs")
    low, high = int(y.min()), int(y.max())
    limit = num_classes if num_classes is not None else MAX_CLASSES
    if low < 0 or high >= limit:
        raise DataError(f"{path}: key '{key}' has labels in {low}..{high}, outside "
                        f"0..{limit - 1}" + (" (data.num_classes)" if num_classes else "")
                        + "; labels are class indices from 0")
    return torch.from_numpy(y.astype(np.int64))


def load_npz(split: str, sources: Mapping[str, NpzSplit], *, T: int | None = None,
             num_classes: int | None = None) -> ArrayDataset:
    """One split of a user's ``.npz`` data, checked; ``source`` of the result holds the file,
    its sha256 and the split's size (see :func:`check_identity`). ``num_classes`` defaults to
    the largest label + 1; event tensors must have ``T`` frames when ``T`` is given."""
    source = sources[split]
    raw = _read_bounded(source.path)
    archive = _open_npz(source.path, raw)
    x = _inputs(source.path, source.x_key, _array(source.path, archive, source.x_key))
    if x.dim() == 5 and T is not None and x.shape[1] != T:
        raise DataError(f"{source.path}: key '{source.x_key}' holds {x.shape[1]} frames per "
                        f"sample (N, T, C, H, W) but model.T is {T}; set model.T: {x.shape[1]}")
    y = _labels(source.path, source.y_key, _array(source.path, archive, source.y_key),
                int(x.shape[0]), num_classes)
    classes = num_classes if num_classes is not None else int(y.max()) + 1
    return ArrayDataset(NPZ, x, y, max(classes, 2), source={
        "file": str(source.path), "sha256": hashlib.sha256(raw).hexdigest(),
        "samples": int(y.shape[0])})


#: A user's own data: arrays (``dataset: npz``) or class folders of images (``dataset: images``,
#: :mod:`eideploy.data.image_folder`).
OWN_DATASETS = (NPZ, IMAGES)


def own_sources(name: str, path: str | Path | None = None, train: str | Path | None = None,
                test: str | Path | None = None) -> dict[str, Any]:
    """Where each split of a user's own data lives (:func:`npz_sources` or
    :func:`~eideploy.data.image_folder.image_sources`, by ``name``)."""
    if name == IMAGES:
        return image_sources(path, train, test)
    return npz_sources(path, train, test)


def load_own(name: str, split: str, sources: Mapping[str, Any], *, T: int | None = None,
             num_classes: int | None = None) -> ArrayDataset:
    """One split of a user's own data (``npz`` arrays or ``images`` folders), checked."""
    if name != IMAGES:
        return load_npz(split, sources, T=T, num_classes=num_classes)
    dataset = load_image_folder(split, dict(sources))
    if num_classes is not None:
        if num_classes < dataset.num_classes:
            raise DataError(f"{sources[split].classes_from}: {dataset.num_classes} class "
                            f"folders, more than data.num_classes = {num_classes}")
        dataset.num_classes = num_classes
    return dataset


def describe_identity(identity: Mapping[str, Any] | None, split: str) -> str:
    """``npz test split: /abs/data.npz (120 samples, sha256 1a2b3c4d5e6f...)``, or the name."""
    if not identity:
        return "unknown data"
    entry = (identity.get("splits") or {}).get(split) or {}
    where = entry.get("file") or identity.get("location") or "its default location"
    detail = [f"{entry['samples']} samples"] if "samples" in entry else []
    if entry.get("sha256"):
        detail.append(f"sha256 {str(entry['sha256'])[:12]}...")
    return (f"{identity.get('name')} {split} split: {where}"
            + (f" ({', '.join(detail)})" if detail else ""))


def check_identity(recorded: Mapping[str, Any] | None, dataset: ArrayDataset, split: str, *,
                   overridden: bool, source: str) -> None:
    """Refuse (DataError, exit 2) data that differs from what the model was trained on: another
    file content (sha256) or another number of samples in the split. With ``overridden`` (the
    user gave --data or --data-dir) the difference is a loud warning on stderr instead."""
    if not recorded or recorded.get("name") != dataset.name:
        return
    entry = (recorded.get("splits") or {}).get(split) or {}
    found = dataset.source or {}
    problems = []
    if entry.get("sha256") and found.get("sha256") and entry["sha256"] != found["sha256"]:
        problems.append(f"its sha256 is {found['sha256'][:12]}..., the model's data had "
                        f"{entry['sha256'][:12]}...")
    if "samples" in entry and entry["samples"] != len(dataset):
        problems.append(f"it has {len(dataset)} samples, the model's data had "
                        f"{entry['samples']}")
    if not problems:
        return
    where = found.get("file") or "the data found"
    message = (f"{where} ({dataset.name} {split} split) differs from the data {source} was "
               f"trained on ({describe_identity(recorded, split)}): {'; '.join(problems)}")
    if not overridden:
        raise DataError(message + ". Restore that data, or give --data-dir to evaluate on "
                        "other data on purpose")
    print(f"WARNING: {message}. Evaluating on it because --data/--data-dir was given.",
          file=sys.stderr)


def carve_validation(dataset: ArrayDataset, fraction: float, seed: int
                     ) -> tuple[ArrayDataset, ArrayDataset | None]:
    """(training part, validation part): a seeded ``fraction`` of ``dataset`` held out for
    choosing the best checkpoint, so that the test split is looked at once, at the end.
    ``fraction`` 0 returns the data set whole and None. A generator of its own draws the split,
    so the global random stream (and with it every shipped model's training) is unchanged."""
    if fraction <= 0:
        return dataset, None
    n = len(dataset)
    held = min(n - 1, max(1, round(fraction * n)))
    if held < 1:
        raise DataError(f"{dataset.name}: {n} training samples cannot give a validation split")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    keep, val = order[held:].sort().values, order[:held].sort().values

    def part(index: torch.Tensor) -> ArrayDataset:
        return ArrayDataset(dataset.name, dataset.inputs[index], dataset.labels[index],
                            dataset.num_classes, dataset.source)

    return part(keep), part(val)


def dataset_arrays(dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) numpy arrays of any map-style ``torch.utils.data.Dataset`` whose items are
    ``(input, label)`` pairs (tensors, arrays or numbers), stacked in index order."""
    try:
        n = len(dataset)
    except TypeError:
        raise DataError("a data set to save needs a length (a map-style torch Dataset)") from None
    if n < 1:
        raise DataError("the data set is empty")
    xs, ys = [], []
    for i in range(n):
        item = dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise DataError(f"item {i} is not an (input, label) pair")
        x, y = item
        xs.append(x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x))
        ys.append(int(y))
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def save_npz(path: str | Path, train: Any, test: Any) -> Path:
    """Write two torch Datasets (or ``(x, y)`` array pairs) as one ``.npz`` in the layout
    ``dataset: npz`` reads (``x_train``, ``y_train``, ``x_test``, ``y_test``), checked as
    training will read it; returns the path. Training from a file rather than the objects
    gives the model a data identity (sha256) that later commands can check."""
    arrays = {}
    for split, part in (("train", train), ("test", test)):
        x, y = part if isinstance(part, tuple) else dataset_arrays(part)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = np.asarray(x), np.asarray(y)
    path = Path(path)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    for split in ("train", "test"):
        load_npz(split, npz_sources(path))
    return path
