"""The data sets eideploy knows, what each looks like, and the one entry point that loads them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cifar import load_cifar
from .dataset import ArrayDataset
from .digits import load_digits
from .dvs import load_cifar10_dvs, load_dvs_gesture
from .errors import DataError
from .fashion_mnist import load_fashion_mnist
from .own import OWN_DATASETS, check_identity, describe_identity, load_own, own_sources
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
    if name in OWN_DATASETS:  # npz: one .npz file, or a directory of train.npz and test.npz;
        # images: a directory of train/ and test/ class folders
        if data_dir is None:
            raise ValueError(f"dataset {name} needs its data: give data.path in the recipe or "
                             "--data-dir PATH")
        return load_own(name, split, own_sources(name, data_dir), T=T)
    if name not in DATASET_INFO:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASET_INFO)}, npz "
                         "(your own arrays), images (your own class folders of images)")
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


def load_recipe_data(data: Mapping[str, Any], split: str, data_dir: str | Path | None = None,
                     *, T: int | None = None) -> ArrayDataset:
    """One split of the data a recipe's ``data`` section names (``Recipe.data`` as a dict);
    ``data_dir`` overrides where it is (for npz: a .npz file or a directory of train.npz and
    test.npz)."""
    name = data.get("dataset")
    if name not in OWN_DATASETS or data_dir is not None:
        return load_dataset(str(name), split, data_dir or data.get("data_dir"), T=T)
    sources = own_sources(name, data.get("path"), data.get("train"), data.get("test"))
    return load_own(name, split, sources, T=T, num_classes=data.get("num_classes"))


def input_shape_of(name: str, dataset: ArrayDataset) -> tuple[int, int, int]:
    """(C, H, W) of one time step as the network sees it: the catalogue's for a shipped data
    set (after its eval transform), the arrays' own for a user's."""
    if name in DATASET_INFO:
        return DATASET_INFO[name].input_shape
    c, h, w = dataset.inputs.shape[-3:]
    return int(c), int(h), int(w)


def dataset_identity(data: Mapping[str, Any], splits: Mapping[str, ArrayDataset],
                     data_dir: str | Path | None = None) -> dict[str, Any]:
    """What a checkpoint records about its data: the name, where it was read (absolute), and
    per split its size (and, for a user's files, the file and its sha256). The splits must
    belong together: one sample shape (DataError naming both files otherwise)."""
    shapes = {split: d.input_shape() for split, d in splits.items()}
    if len(set(shapes.values())) > 1:
        where = ", ".join(f"{split} {(d.source or {}).get('file', d.name)} {shapes[split]}"
                          for split, d in splits.items())
        raise DataError(f"the splits do not belong together: samples of shape {where}; give "
                        "train and test inputs of one shape")
    location = data_dir or data.get("data_dir") or data.get("path")
    return {"name": data.get("dataset"),
            "location": str(Path(location).expanduser().absolute()) if location else None,
            "num_classes": max(d.num_classes for d in splits.values()),
            "splits": {split: {**(d.source or {}), "samples": len(d)}
                       for split, d in splits.items()}}


def _checked_identity(recorded: Any, source: str) -> dict[str, Any] | None:
    """The recorded identity if it has the shape :func:`dataset_identity` writes; a tampered
    one is refused (DataError) rather than followed."""
    if not recorded:
        return None
    splits = recorded.get("splits") if isinstance(recorded, dict) else None
    fields = {"file": str, "sha256": str, "samples": int}
    well_formed = (isinstance(recorded.get("name"), str) and isinstance(splits, dict) and all(
        isinstance(entry, dict) and all(isinstance(entry[k], kind) for k, kind in fields.items()
                                        if k in entry) for entry in splits.values())
        and isinstance(recorded.get("num_classes", 2), int)) if splits is not None else False
    if not well_formed:
        raise DataError(f"{source}: its record of the training data ('data') is malformed; "
                        "re-create the model with 'eideploy train' (or export it again)")
    return dict(recorded)


def load_model_data(recorded: Mapping[str, Any] | None, recipe_data: Mapping[str, Any] | None,
                    split: str, *, data: str | None = None, data_dir: str | Path | None = None,
                    T: int | None = None, source: str = "the model",
                    log: Any = None) -> ArrayDataset:
    """The ``split`` of the data a model was trained on, checked against its recorded identity
    (``recorded``, from the checkpoint or the export): read from where the model's data was
    (the recorded absolute path first), refused with DataError when it differs (another sha256
    or size), or a loud warning when ``data``/``data_dir`` chose other data on purpose.
    ``log`` (a callable) receives one line saying which data was read."""
    recipe_data = dict(recipe_data or {})
    recorded = _checked_identity(recorded, source)
    if recorded and recorded.get("name") not in OWN_DATASETS and not recipe_data.get("data_dir"):
        # an export carries no recipe: the identity says where the data was read
        recipe_data.setdefault("dataset", recorded.get("name"))
        recipe_data["data_dir"] = recorded.get("location")
    name = data or (recorded or {}).get("name") or recipe_data.get("dataset")
    if not name:
        raise ValueError(f"{source}: names no data set; pass --data NAME")
    if name in OWN_DATASETS and data_dir is None and recorded and recorded.get("name") == name:
        files = {s: (recorded.get("splits") or {}).get(s, {}).get("file")
                 for s in ("train", "test")}
        if files["train"] and files["test"]:
            if files["train"] == files["test"]:
                sources = own_sources(name, files["train"])
            else:
                sources = own_sources(name, train=files["train"], test=files["test"])
            dataset = load_own(name, split, sources, T=T,
                               num_classes=recorded.get("num_classes"))
            check_identity(recorded, dataset, split, overridden=False, source=source)
            if log is not None:
                log(f"data: {describe_identity(recorded, split)}")
            return dataset
    if name == recipe_data.get("dataset") or (name in OWN_DATASETS and data_dir is not None):
        dataset = load_recipe_data({**recipe_data, "dataset": name}, split, data_dir, T=T)
    else:
        dataset = load_dataset(name, split, data_dir, T=T)
    check_identity(recorded, dataset, split, overridden=data is not None or data_dir is not None,
                   source=source)
    if log is not None:
        where = (dataset.source or {}).get("file") or data_dir or recipe_data.get("data_dir")
        log(f"data: {name} {split} split: {where or 'its default location'} "
            f"({len(dataset)} samples)")
    return dataset
