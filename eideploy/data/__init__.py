"""Data for eideploy: in-memory data sets, batching, and batched on-device augmentation.

Inputs are never mean/std normalised: DeepEISNN's E-I Init divides by E[x], which must be > 0.
"""

from .augment import (
    Compose,
    color_jitter,
    cutout,
    eval_transform,
    horizontal_flip,
    nda_one_of,
    random_crop,
    random_resized_crop,
    random_roll,
    random_rotate,
    resize,
    square_cutout,
    train_augmentation,
)
from .batching import batch_indices, iterate_batches
from .catalog import DATASET_INFO, DatasetInfo, load_dataset
from .dataset import ArrayDataset, to_float
from .errors import DataError, MissingExtraError

__all__ = [
    "DATASET_INFO",
    "ArrayDataset",
    "Compose",
    "DataError",
    "DatasetInfo",
    "MissingExtraError",
    "batch_indices",
    "color_jitter",
    "cutout",
    "eval_transform",
    "horizontal_flip",
    "iterate_batches",
    "load_dataset",
    "nda_one_of",
    "random_crop",
    "random_resized_crop",
    "random_roll",
    "random_rotate",
    "resize",
    "square_cutout",
    "to_float",
    "train_augmentation",
]
