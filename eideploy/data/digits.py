"""scikit-learn's 8x8 handwritten digits: a real data set that ships with the library.

It is the one data set every test and tutorial can use offline, so the split must be exactly
reproducible: stratified 80/20 with random_state=0 gives 1437 train / 360 test samples.
"""

from __future__ import annotations

import numpy as np
import torch

from .dataset import ArrayDataset

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


def load_digits(split: str) -> ArrayDataset:
    """(N, 1, 8, 8) float32 = pixel / 16, so values lie in [0, 1] like every other data set."""
    # Imported here: scikit-learn takes about half a second to import and only this loader uses it.
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)),
        test_size=DIGITS_TEST_FRACTION,
        random_state=DIGITS_SPLIT_SEED,
        stratify=labels,
    )
    chosen = np.sort(train_idx if split == "train" else test_idx)
    return ArrayDataset(
        name="digits",
        inputs=torch.from_numpy(np.ascontiguousarray(images[chosen])),
        labels=torch.from_numpy(labels[chosen]),
        num_classes=10,
    )
