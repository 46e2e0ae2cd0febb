"""TinyImageNet-200 from the extracted official zip, kept at its native 64x64 in memory.

The reference trains at 32x32 (RandomResizedCrop(32) / Resize(32)); that resizing is a batched
augmentation or eval transform on the device (`augment.py`), so the 64x64 pixels stay available
for both and are decoded once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .cache import cached_arrays, fingerprint
from .dataset import ArrayDataset
from .errors import DataError, MissingExtraError

TINYIMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINYIMAGENET_FOLDER = "tiny-imagenet-200"
_SIDE = 64


def _missing(split: str, directory: Path | None, detail: str = "") -> DataError:
    where = directory if directory is not None else "the data_dir you pass"
    return DataError(
        f"TinyImageNet ({split}) not found in {where}{detail}. Expected there the folder "
        f"{TINYIMAGENET_FOLDER}/ holding wnids.txt, train/<wnid>/images/*.JPEG, "
        f"val/images/*.JPEG and val/val_annotations.txt. Download {TINYIMAGENET_URL}, unzip it "
        f"in {where} and pass that directory as data_dir."
    )


def _root(split: str, data_dir: Path | None) -> Path:
    if data_dir is None:
        raise _missing(split, None)
    for candidate in (data_dir / TINYIMAGENET_FOLDER, data_dir):
        if (candidate / "wnids.txt").is_file():
            return candidate
    raise _missing(split, data_dir, " (no wnids.txt)")


def _labelled_files(root: Path, split: str) -> list[tuple[Path, int]]:
    wnids = [w.strip() for w in (root / "wnids.txt").read_text().splitlines() if w.strip()]
    # torchvision's ImageFolder numbers classes in sorted folder order; so does the reference.
    label_of = {wnid: i for i, wnid in enumerate(sorted(wnids))}
    if split == "train":
        files = []
        for wnid in sorted(wnids):
            images = sorted((root / "train" / wnid / "images").glob("*.JPEG"))
            if not images:
                raise _missing(split, root.parent, f" (no images in train/{wnid}/images)")
            files += [(path, label_of[wnid]) for path in images]
        return files
    annotations = root / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise _missing(split, root.parent, " (no val/val_annotations.txt)")
    files = []
    for line_no, line in enumerate(annotations.read_text().splitlines(), start=1):
        fields = line.split("\t")
        if not line.strip():
            continue
        if len(fields) < 2 or fields[1] not in label_of:
            raise DataError(
                f"{annotations} line {line_no} names no class of wnids.txt: {line!r}. "
                "The folder is damaged; unzip the official archive again."
            )
        path = root / "val" / "images" / fields[0]
        if not path.is_file():
            raise DataError(f"{path}, listed in {annotations}, is missing; unzip again.")
        files.append((path, label_of[fields[1]]))
    return files


def _decode(files: list[tuple[Path, int]]) -> tuple[np.ndarray, np.ndarray]:
    try:
        from PIL import Image
    except ImportError as exc:
        raise MissingExtraError(
            "TinyImageNet needs pillow to decode its JPEGs: install eideploy[vision] "
            "(pip install 'eideploy[vision]').",
            extra="vision",
        ) from exc
    inputs = np.empty((len(files), 3, _SIDE, _SIDE), dtype=np.uint8)
    for i, (path, _) in enumerate(files):
        try:
            with Image.open(path) as image:
                # A few TinyImageNet images are greyscale; the network wants 3 channels.
                pixels = np.asarray(image.convert("RGB"))
        except OSError as exc:
            raise DataError(f"{path} is not a readable image ({exc}); unzip again.") from exc
        if pixels.shape != (_SIDE, _SIDE, 3):
            raise DataError(f"{path} is {pixels.shape[1]}x{pixels.shape[0]}, not 64x64.")
        inputs[i] = pixels.transpose(2, 0, 1)
    labels = np.fromiter((label for _, label in files), dtype=np.int64, count=len(files))
    return inputs, labels


def load_tinyimagenet(split: str, data_dir: Path | None) -> ArrayDataset:
    """(N, 3, 64, 64) uint8; "test" is the official val folder (the test folder has no labels)."""
    root = _root(split, data_dir)
    files = _labelled_files(root, split)
    key = f"tinyimagenet-{split}-{fingerprint((p for p, _ in files), root)}"
    inputs, labels = cached_arrays(root, key, lambda: _decode(files))
    return ArrayDataset(
        name="tinyimagenet",
        inputs=torch.from_numpy(inputs),
        labels=torch.from_numpy(labels),
        num_classes=200,
    )
