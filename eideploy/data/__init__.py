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
from .catalog import (
    DATASET_INFO,
    DatasetInfo,
    dataset_identity,
    input_shape_of,
    load_dataset,
    load_model_data,
    load_recipe_data,
)
from .dataset import ArrayDataset, to_float
from .errors import DataError, MissingExtraError
from .own import (
    NPZ,
    carve_validation,
    dataset_arrays,
    describe_identity,
    load_npz,
    npz_sources,
    save_npz,
)

__all__ = [
    "DATASET_INFO",
    "ArrayDataset",
    "Compose",
    "DataError",
    "DatasetInfo",
    "MissingExtraError",
    "NPZ",
    "batch_indices",
    "carve_validation",
    "color_jitter",
    "cutout",
    "dataset_arrays",
    "dataset_identity",
    "describe_identity",
    "eval_transform",
    "horizontal_flip",
    "input_shape_of",
    "iterate_batches",
    "load_dataset",
    "load_model_data",
    "load_npz",
    "load_recipe_data",
    "nda_one_of",
    "npz_sources",
    "random_crop",
    "random_resized_crop",
    "random_roll",
    "random_rotate",
    "resize",
    "save_npz",
    "square_cutout",
    "to_float",
    "train_augmentation",
]
