"""Fashion-MNIST from its four IDX files, by default where Debian's package installs them."""

from __future__ import annotations

from pathlib import Path

import torch

from .dataset import ArrayDataset
from .errors import DataError
from .idx import read_idx

# `apt-get install dataset-fashion-mnist` puts the four gzipped IDX files here.
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def load_fashion_mnist(split: str, data_dir: Path | None) -> ArrayDataset:
    """(N, 1, 28, 28) uint8 images and int64 labels; 60000 train, 10000 test."""
    directory = data_dir if data_dir is not None else FASHION_MNIST_DEBIAN_DIR
    image_stem, label_stem = _FILES[split]
    image_path, label_path = _find(directory, image_stem), _find(directory, label_stem)
    if image_path is None or label_path is None:
        raise DataError(
            f"Fashion-MNIST ({split}) not found in {directory}: expected {image_stem}.gz and "
            f"{label_stem}.gz there (gzipped or uncompressed). On Debian/Ubuntu run "
            f"`apt-get install dataset-fashion-mnist`, which installs them in "
            f"{FASHION_MNIST_DEBIAN_DIR}; otherwise download them from "
            "https://github.com/zalandoresearch/fashion-mnist and pass their directory as "
            "data_dir."
        )
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype.itemsize != 1:
        raise DataError(f"{image_path} holds {images.dtype} {images.shape}, not N x 28 x 28 bytes.")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(
            f"{label_path} holds {labels.shape} labels for {images.shape[0]} images in "
            f"{image_path}; the two files do not belong together."
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{label_path} has labels outside 0..9; it is not Fashion-MNIST.")
    return ArrayDataset(
        name="fashion-mnist",
        inputs=torch.from_numpy(images.astype("uint8")[:, None, :, :].copy()),
        labels=torch.from_numpy(labels.astype("int64")),
        num_classes=10,
    )
