"""The data sets eideploy knows, what each looks like, and the one entry point that loads them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .cifar import load_cifar
from .dataset import ArrayDataset
from .digits import load_digits
from .dvs import load_cifar10_dvs, load_dvs_gesture
from .fashion_mnist import load_fashion_mnist
from .tinyimagenet import load_tinyimagenet

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """What a model built for a data set needs to know without loading it.

    Attributes:
        input_shape: (C, H, W) of one time step as the network sees it, i.e. after the eval
            transform (TinyImageNet is resized 64 -> 32). Static images are repeated T times by
            the model; event data sets deliver T frames of this shape per sample.
        num_classes: number of classes.
        default_T: time steps of the paper's configuration (spec §7 table).
        event_data: True when samples are (T, C, H, W) frames rather than one image.
        needs_data_dir: True when the files must be supplied by the user.
        extra: the pip extra (eideploy[extra]) the loader needs, or None.
    """

    input_shape: tuple[int, int, int]
    num_classes: int
    default_T: int
    event_data: bool = False
    needs_data_dir: bool = True
    extra: str | None = None


DATASET_INFO: dict[str, DatasetInfo] = {
    "digits": DatasetInfo((1, 8, 8), 10, default_T=4, needs_data_dir=False),
    "fashion-mnist": DatasetInfo((1, 28, 28), 10, default_T=4, needs_data_dir=False),
    "cifar10": DatasetInfo((3, 32, 32), 10, default_T=4),
    "cifar100": DatasetInfo((3, 32, 32), 100, default_T=4),
    "tinyimagenet": DatasetInfo((3, 32, 32), 200, default_T=4, extra="vision"),
    "cifar10-dvs": DatasetInfo((2, 48, 48), 10, default_T=10, event_data=True, extra="dvs"),
    # tonic is not needed to read DVS-Gesture's .npy files, only to download them once.
    "dvs-gesture": DatasetInfo((2, 48, 48), 11, default_T=16, event_data=True),
}


def load_dataset(
    name: str, split: str, data_dir: str | Path | None = None, *, T: int | None = None
) -> ArrayDataset:
    """Load one split of a data set into memory.

    Args:
        name: one of DATASET_INFO's keys.
        split: "train" or "test" (TinyImageNet's "test" is its labelled official val folder).
        data_dir: where the files are; digits ignores it and fashion-mnist defaults to the
            Debian package's directory.
        T: frames per sample for event data sets (default: the paper's T); static images
            ignore it because the model repeats them T times itself.

    Raises:
        ValueError: unknown name or split.
        DataError: the files are missing or corrupt (the message says what to get and where).
        MissingExtraError: an optional dependency is missing (the message names the extra).
    """
    if name not in DATASET_INFO:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASET_INFO)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for {name}; use 'train' or 'test'")
    directory = Path(data_dir).expanduser() if data_dir is not None else None
    info = DATASET_INFO[name]
    frames_number = T if T is not None else info.default_T
    if info.event_data and frames_number < 1:
        raise ValueError(f"T must be >= 1 for {name}, got {frames_number}")
    if name == "digits":
        return load_digits(split)
    if name == "fashion-mnist":
        return load_fashion_mnist(split, directory)
    if name in ("cifar10", "cifar100"):
        return load_cifar(name, split, directory)
    if name == "tinyimagenet":
        return load_tinyimagenet(split, directory)
    if name == "cifar10-dvs":
        return load_cifar10_dvs(split, directory, frames_number)
    return load_dvs_gesture(split, directory, frames_number)
