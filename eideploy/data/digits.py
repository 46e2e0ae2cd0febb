"""The 8x8 handwritten digits: a real data set that ships with eideploy, so every test and
tutorial can use it offline without scikit-learn.

``digits_8x8.npz`` holds the 1797 samples of the UCI "Optical Recognition of Handwritten Digits"
set (Alpaydin & Kaynak 1998, CC BY 4.0; source and licence in ``digits_8x8.txt`` beside it) in
scikit-learn's order (``sklearn.datasets.load_digits``), and the split, which must be exactly
reproducible: the indices of scikit-learn's stratified 80/20 ``train_test_split`` with
random_state=0, stored rather than recomputed, give 1437 train / 360 test samples.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

import numpy as np
import torch

from .dataset import ArrayDataset

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
DIGITS_FILE = "digits_8x8.npz"


@lru_cache(maxsize=1)
def digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images uint8 (1797, 8, 8) in 0..16, labels int64 (1797,), sorted test indices (360,))."""
    with files(__package__).joinpath(DIGITS_FILE).open("rb") as f, \
            np.load(f, allow_pickle=False) as npz:
        return (npz["images"], npz["labels"].astype(np.int64),
                npz["test_index"].astype(np.int64))


def load_digits(split: str) -> ArrayDataset:
    """(N, 1, 8, 8) float32 = pixel / 16, so values lie in [0, 1] like every other data set."""
    images, labels, test_index = digits_arrays()
    test = np.zeros(len(labels), dtype=bool)
    test[test_index] = True
    chosen = np.flatnonzero(test if split != "train" else ~test)
    return ArrayDataset(
        name="digits",
        inputs=torch.from_numpy((images[chosen] / 16.0).astype(np.float32)[:, None, :, :]),
        labels=torch.from_numpy(labels[chosen]),
        num_classes=10,
    )
