"""CIFAR10-DVS and DVS128-Gesture as (N, T, 2, 48, 48) frames, from tonic's on-disk layouts.

Files are found here rather than through tonic's dataset classes because those download the
data whenever their archive is absent, and nothing may be downloaded at run time. tonic is only
needed to decode CIFAR10-DVS's .aedat4 files; DVS-Gesture's preprocessed .npy files are read with
numpy (allow_pickle=False). Decoded frames are cached in data_dir (see `cache.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .cache import cached_arrays, fingerprint
from .dataset import ArrayDataset
from .errors import DataError, MissingExtraError
from .events import DVS_FRAME_SIDE, events_to_frames, resize_frames, split_per_class

SENSOR_SIDE = 128  # both data sets were recorded with a 128x128 DVS
CIFAR10_DVS_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR10_DVS_TRAIN_FRACTION = 0.9
DVS_GESTURE_CLASSES = 11

# An event reader returns x, y, p arrays in stream (time) order.
EventReader = Callable[[Path], tuple[np.ndarray, np.ndarray, np.ndarray]]


def read_aedat4_events(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode one CIFAR10-DVS .aedat4 file with tonic, whichever field names its version uses."""
    try:
        import tonic.io
    except ImportError as exc:
        raise MissingExtraError(
            "CIFAR10-DVS needs tonic to decode its .aedat4 files: install eideploy[dvs] "
            "(pip install 'eideploy[dvs]').",
            extra="dvs",
        ) from exc
    try:
        events = np.asarray(tonic.io.read_aedat4(str(path)))
    except Exception as exc:  # decoders raise anything from OSError to bare Exception
        raise DataError(f"{path} could not be decoded as AEDAT4 ({exc}); unzip it again.") from exc
    names = events.dtype.names
    if names is None:  # tonic versions that return unstructured (N, 4) rows in t, x, y, p order
        return events[:, 1], events[:, 2], events[:, 3]
    polarity = next((n for n in ("p", "on", "polarity") if n in names), None)
    if polarity is None or "x" not in names or "y" not in names:
        raise DataError(f"{path} decoded to fields {names}, without x, y and a polarity.")
    return events["x"], events["y"], events[polarity]


def read_gesture_npy(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One tonic DVSGesture sample: an (N, 4) array with columns x, y, p, t."""
    try:
        events = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npy event file ({exc}).") from exc
    if events.ndim != 2 or events.shape[1] != 4:
        raise DataError(f"{path} holds an array of shape {events.shape}, not (N, 4) x,y,p,t.")
    return events[:, 0], events[:, 1], events[:, 2]


def frames_from_files(
    files: list[Path], read_events: EventReader, frames_number: int
) -> np.ndarray:
    """Decode, bin and resize each file: (len(files), T, 2, 48, 48) float32."""
    out = np.empty((len(files), frames_number, 2, DVS_FRAME_SIDE, DVS_FRAME_SIDE), dtype=np.float32)
    for i, path in enumerate(files):
        x, y, p = read_events(path)
        try:
            frames = events_to_frames(x, y, p, frames_number, SENSOR_SIDE, SENSOR_SIDE)
        except ValueError as exc:
            raise DataError(f"{path}: {exc}; it is not a 128x128 DVS recording.") from exc
        out[i] = resize_frames(frames).numpy()
    return out


def _cifar10_dvs_missing(directory: Path | None, detail: str = "") -> DataError:
    where = directory if directory is not None else "the data_dir you pass"
    return DataError(
        f"CIFAR10-DVS not found in {where}{detail}. Expected tonic's layout there: "
        f"CIFAR10DVS/<class>/*.aedat4 for the ten classes {', '.join(CIFAR10_DVS_CLASSES)}. "
        "Get it once with tonic (`tonic.datasets.CIFAR10DVS(save_to=DIR)` downloads "
        "CIFAR10DVS.zip and unpacks the class archives), or download CIFAR10DVS.zip from "
        "tonic's mirror and unzip it and the ten <class>.zip inside it into "
        f"{where}/CIFAR10DVS, then pass {where} as data_dir."
    )


def cifar10_dvs_files(data_dir: Path | None) -> tuple[Path, list[Path], np.ndarray]:
    """(root, files, labels) with files sorted by name inside each class, classes in order."""
    if data_dir is None:
        raise _cifar10_dvs_missing(None)
    for root in (data_dir / "CIFAR10DVS", data_dir):
        if all((root / c).is_dir() for c in CIFAR10_DVS_CLASSES):
            break
    else:
        raise _cifar10_dvs_missing(data_dir)
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(CIFAR10_DVS_CLASSES):
        # Name order is spikingjelly's DatasetFolder order, which fixes the 9:1 split.
        class_files = sorted((root / name).glob("*.aedat4"))
        if not class_files:
            raise _cifar10_dvs_missing(data_dir, f" ({root / name} has no .aedat4 files)")
        files += class_files
        labels += [label] * len(class_files)
    return root, files, np.asarray(labels, dtype=np.int64)


def load_cifar10_dvs(
    split: str, data_dir: Path | None, frames_number: int, read_events: EventReader | None = None
) -> ArrayDataset:
    """CIFAR10-DVS frames, split 9:1 per class deterministically (first 90% of each class train)."""
    root, files, labels = cifar10_dvs_files(data_dir)
    train_idx, test_idx = split_per_class(
        labels, len(CIFAR10_DVS_CLASSES), CIFAR10_DVS_TRAIN_FRACTION
    )
    chosen = train_idx if split == "train" else test_idx
    chosen_files = [files[i] for i in chosen]
    reader = read_events if read_events is not None else read_aedat4_events
    key = f"cifar10-dvs-{split}-T{frames_number}-{fingerprint(chosen_files, root)}"
    inputs, chosen_labels = cached_arrays(
        root, key, lambda: (frames_from_files(chosen_files, reader, frames_number), labels[chosen])
    )
    return ArrayDataset(
        name="cifar10-dvs",
        inputs=torch.from_numpy(inputs),
        labels=torch.from_numpy(chosen_labels),
        num_classes=len(CIFAR10_DVS_CLASSES),
    )


def load_dvs_gesture(split: str, data_dir: Path | None, frames_number: int) -> ArrayDataset:
    """DVS128-Gesture frames on the official split (tonic's ibmGestureTrain / ibmGestureTest)."""
    folder = "ibmGestureTrain" if split == "train" else "ibmGestureTest"
    files: list[Path] = []
    root = None
    if data_dir is not None:
        for root in (data_dir / "DVSGesture", data_dir):
            files = sorted((root / folder).rglob("*.npy"))
            if files:
                break
    if not files or root is None:
        where = data_dir if data_dir is not None else "the data_dir you pass"
        raise DataError(
            f"DVS128-Gesture ({split}) not found in {where}. Expected tonic's layout there: "
            f"DVSGesture/{folder}/<user_lighting>/<label>.npy. Get it once with tonic "
            "(`tonic.datasets.DVSGesture(save_to=DIR, train=True)` and `train=False` download "
            "ibmGestureTrain.tar.gz and ibmGestureTest.tar.gz and extract them), or download "
            f"those two archives from tonic's mirror and extract them into {where}/DVSGesture, "
            f"then pass {where} as data_dir."
        )
    try:
        labels = np.asarray([int(f.stem) for f in files], dtype=np.int64)
    except ValueError as exc:
        raise DataError(
            f"{root / folder} has .npy files not named <label>.npy ({exc}); it is not tonic's "
            "DVSGesture layout."
        ) from exc
    if labels.min() < 0 or labels.max() >= DVS_GESTURE_CLASSES:
        raise DataError(f"{root / folder} has labels outside 0..10; it is not DVS128-Gesture.")
    key = f"dvs-gesture-{split}-T{frames_number}-{fingerprint(files, root)}"
    inputs, labels = cached_arrays(
        root, key, lambda: (frames_from_files(files, read_gesture_npy, frames_number), labels)
    )
    return ArrayDataset(
        name="dvs-gesture",
        inputs=torch.from_numpy(inputs),
        labels=torch.from_numpy(labels),
        num_classes=DVS_GESTURE_CLASSES,
    )
