"""Specification of eideploy.data: loaders, batching and batched augmentation."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from eideploy.data import (
    DATASET_INFO,
    ArrayDataset,
    DataError,
    batch_indices,
    color_jitter,
    cutout,
    eval_transform,
    horizontal_flip,
    iterate_batches,
    load_dataset,
    random_crop,
    random_resized_crop,
    random_roll,
    random_rotate,
    to_float,
    train_augmentation,
)
from eideploy.data.cache import CACHE_DIR_NAME
from eideploy.data.dvs import CIFAR10_DVS_CLASSES, load_cifar10_dvs
from eideploy.data.events import events_to_frames, resize_frames, split_per_class
from eideploy.data.fashion_mnist import FASHION_MNIST_DEBIAN_DIR
from eideploy.data.idx import read_idx
from eideploy.data.safe_pickle import restricted_loads

# ----------------------------------------------------------------------------- helpers


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)


def _labels(n: int, num_classes: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, num_classes, size=n).astype(np.int64)


def _binary_records(images: np.ndarray, labels: np.ndarray, cifar100: bool) -> bytes:
    """CIFAR's binary layout: label byte(s) then the R, G and B planes, row-major."""
    out = bytearray()
    for image, label in zip(images, labels, strict=True):
        if cifar100:
            out += bytes([int(label) % 20, int(label)])  # (coarse, fine)
        else:
            out += bytes([int(label)])
        out += image.tobytes()
    return bytes(out)


def _python_batch(images: np.ndarray, labels: np.ndarray, label_key: str) -> bytes:
    # bytes keys and protocol 2, as a CIFAR batch re-pickled by Python 2 tools would have
    batch = {b"data": images.reshape(len(images), -1), label_key.encode(): labels.tolist()}
    return pickle.dumps(batch, protocol=2)


def _write_tar_gz(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _fake_cifar(root: Path, name: str, fmt: str, packed: bool) -> dict[str, tuple]:
    """Write a tiny CIFAR-10/100 in one of the four downloadable forms; return the truth."""
    cifar100 = name == "cifar100"
    num_classes = 100 if cifar100 else 10
    if cifar100:
        folder = "cifar-100-binary" if fmt == "binary" else "cifar-100-python"
        files = {"train": ["train"], "test": ["test"]}
    else:
        folder = "cifar-10-batches-bin" if fmt == "binary" else "cifar-10-batches-py"
        files = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    suffix = ".bin" if fmt == "binary" else ""
    label_key = "fine_labels" if cifar100 else "labels"
    members: dict[str, bytes] = {}
    truth = {}
    seed = 0
    for split, names in files.items():
        split_images, split_labels = [], []
        for file_name in names:
            seed += 1
            images, labels = _images(3, seed), _labels(3, num_classes, seed)
            if fmt == "binary":
                blob = _binary_records(images, labels, cifar100)
            else:
                blob = _python_batch(images, labels, label_key)
            members[f"{folder}/{file_name}{suffix}"] = blob
            split_images.append(images)
            split_labels.append(labels)
        truth[split] = (np.concatenate(split_images), np.concatenate(split_labels))
    if packed:
        archive = {
            ("cifar10", "binary"): "cifar-10-binary.tar.gz",
            ("cifar10", "python"): "cifar-10-python.tar.gz",
            ("cifar100", "binary"): "cifar-100-binary.tar.gz",
            ("cifar100", "python"): "cifar-100-python.tar.gz",
        }[(name, fmt)]
        _write_tar_gz(root / archive, members)
    else:
        for member, blob in members.items():
            (root / member).parent.mkdir(parents=True, exist_ok=True)
            (root / member).write_bytes(blob)
    return truth


class _RunsShellCommand:
    """A pickle payload that would create a file through os.system if it were ever called."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ----------------------------------------------------------------------------- records


def test_to_float_scales_uint8_and_keeps_float():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8)
    assert torch.allclose(to_float(x), torch.tensor([0.0, 0.2, 1.0]))
    y = torch.tensor([0.25])
    assert to_float(y) is y


def test_array_dataset_reports_length_and_sample_shape():
    ds = ArrayDataset("toy", torch.zeros(5, 3, 4, 4), torch.zeros(5, dtype=torch.int64), 2)
    assert len(ds) == 5
    assert ds.input_shape() == (3, 4, 4)
    with pytest.raises(ValueError, match="4 labels"):
        ArrayDataset("toy", torch.zeros(5, 1), torch.zeros(4, dtype=torch.int64), 2)


# ----------------------------------------------------------------------------- digits


def test_digits_split_is_stratified_1437_360_with_pixels_in_unit_range():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert (len(train), len(test)) == (1437, 360)
    assert len(train) + len(test) == 1797
    assert train.input_shape() == test.input_shape() == (1, 8, 8)
    assert train.inputs.dtype == torch.float32
    for ds in (train, test):
        assert ds.inputs.min() >= 0.0 and ds.inputs.max() <= 1.0
        assert set(ds.labels.tolist()) == set(range(10))
    assert train.inputs.max() == 1.0  # pixel / 16 reaches 16 / 16
    # stratified: every class is 20% (+-1) test
    train_counts = torch.bincount(train.labels, minlength=10)
    test_counts = torch.bincount(test.labels, minlength=10)
    fraction = test_counts / (train_counts + test_counts)
    assert torch.all((fraction - 0.2).abs() < 0.01)
    # deterministic
    assert torch.equal(load_dataset("digits", "test").inputs, test.inputs)


def test_unknown_dataset_and_split_are_value_errors_listing_choices():
    with pytest.raises(ValueError, match="known: digits, fashion-mnist, cifar10"):
        load_dataset("mnist", "train")
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_dataset("digits", "validation")


# ----------------------------------------------------------------------------- fashion-mnist


@pytest.mark.skipif(
    not (FASHION_MNIST_DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist is not installed "
    "(apt-get install dataset-fashion-mnist)",
)
def test_fashion_mnist_loads_60000_train_and_10000_test_uint8_images():
    train = load_dataset("fashion-mnist", "train")
    test = load_dataset("fashion-mnist", "test")
    assert (len(train), len(test)) == (60000, 10000)
    assert train.inputs.shape == (60000, 1, 28, 28) and train.inputs.dtype == torch.uint8
    # Fashion-MNIST is balanced: 6000 and 1000 per class
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10


def test_fashion_mnist_missing_directory_names_the_files_and_the_package(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", "train", tmp_path / "nowhere")
    message = str(err.value)
    assert "train-images-idx3-ubyte.gz" in message
    assert "dataset-fashion-mnist" in message
    assert "\n" not in message


def test_idx_reader_round_trips_and_rejects_truncated_and_foreign_files(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = bytes([0, 0, 8, 3]) + np.array(data.shape, dtype=">u4").tobytes() + data.tobytes()
    (tmp_path / "ok-idx3-ubyte.gz").write_bytes(gzip.compress(raw))
    (tmp_path / "ok-idx3-ubyte").write_bytes(raw)
    assert np.array_equal(read_idx(tmp_path / "ok-idx3-ubyte.gz"), data)
    assert np.array_equal(read_idx(tmp_path / "ok-idx3-ubyte"), data)
    (tmp_path / "short-idx3-ubyte").write_bytes(raw[:-5])
    with pytest.raises(DataError, match="short-idx3-ubyte is truncated"):
        read_idx(tmp_path / "short-idx3-ubyte")
    (tmp_path / "foreign").write_bytes(b"PK\x03\x04zipdata")
    with pytest.raises(DataError, match="foreign is not an IDX file"):
        read_idx(tmp_path / "foreign")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(raw)[:20])
    with pytest.raises(DataError, match="cut.gz"):
        read_idx(tmp_path / "cut.gz")


# ----------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("fmt", ["binary", "python"])
@pytest.mark.parametrize("packed", [True, False], ids=["tar.gz", "extracted"])
def test_cifar_loaders_round_trip_pixels_and_labels_exactly(tmp_path, name, fmt, packed):
    truth = _fake_cifar(tmp_path, name, fmt, packed)
    for split in ("train", "test"):
        ds = load_dataset(name, split, tmp_path)
        images, labels = truth[split]
        assert ds.inputs.dtype == torch.uint8 and ds.inputs.shape == images.shape
        assert np.array_equal(ds.inputs.numpy(), images)  # channel planes and row order intact
        assert np.array_equal(ds.labels.numpy(), labels)  # CIFAR-100: the fine label
        assert ds.num_classes == (100 if name == "cifar100" else 10)
    assert len(load_dataset(name, "train", tmp_path)) == (15 if name == "cifar10" else 3)


def test_cifar_folder_can_be_given_directly(tmp_path):
    truth = _fake_cifar(tmp_path, "cifar10", "binary", packed=False)
    ds = load_dataset("cifar10", "test", tmp_path / "cifar-10-batches-bin")
    assert np.array_equal(ds.inputs.numpy(), truth["test"][0])


def test_cifar_missing_directory_names_the_archive_to_download(tmp_path):
    missing = tmp_path / "no-such-dir"
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", "train", missing)
    message = str(err.value)
    assert "cifar-10-binary.tar.gz" in message and str(missing) in message
    assert "data_batch_1.bin" in message and "\n" not in message
    with pytest.raises(DataError, match="cifar-100-binary.tar.gz"):
        load_dataset("cifar100", "test", tmp_path)  # exists, but empty
    with pytest.raises(DataError, match="no data_dir was given"):
        load_dataset("cifar10", "test")


def test_cifar_truncated_archive_and_records_name_the_file(tmp_path):
    _fake_cifar(tmp_path, "cifar10", "binary", packed=True)
    archive = tmp_path / "cifar-10-binary.tar.gz"
    archive.write_bytes(archive.read_bytes()[:300])
    with pytest.raises(DataError, match="cifar-10-binary.tar.gz"):
        load_dataset("cifar10", "train", tmp_path)
    archive.unlink()
    _fake_cifar(tmp_path, "cifar10", "binary", packed=False)
    batch = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
    batch.write_bytes(batch.read_bytes()[:-7])
    with pytest.raises(DataError, match="test_batch.bin is truncated"):
        load_dataset("cifar10", "test", tmp_path)


def test_restricted_unpickler_refuses_os_system_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({b"data": _RunsShellCommand(marker)})
    with pytest.raises(pickle.UnpicklingError, match="system"):
        restricted_loads(payload)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(payload)
    with pytest.raises(DataError, match="refusing to load global"):
        load_dataset("cifar10", "test", tmp_path)
    assert not marker.exists()


def test_restricted_unpickler_reads_numpy_arrays_of_every_pickle_protocol():
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        loaded = restricted_loads(pickle.dumps({"a": array, "b": [1, 2]}, protocol=protocol))
        assert np.array_equal(loaded["a"], array) and loaded["b"] == [1, 2]


# ----------------------------------------------------------------------------- TinyImageNet


def test_tinyimagenet_reads_folder_layout_with_sorted_wnid_labels(tmp_path):
    image_module = pytest.importorskip("PIL.Image", reason="pillow (eideploy[vision]) missing")
    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n02", "n01"]  # wnids.txt is not sorted; labels follow sorted order (ImageFolder)
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    rng = np.random.default_rng(0)
    pixels = {}
    for wnid in wnids:
        (root / "train" / wnid / "images").mkdir(parents=True)
        for k in range(2):
            array = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            path = root / "train" / wnid / "images" / f"{wnid}_{k}.JPEG"
            image_module.fromarray(array).save(path, format="PNG")  # lossless for the check
            pixels[path.name] = array
    image_module.fromarray(np.full((64, 64), 7, np.uint8), mode="L").save(
        root / "val" / "images" / "val_0.JPEG", format="PNG"
    )
    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn02\t0\t0\t10\t10\n")
    train = load_dataset("tinyimagenet", "train", tmp_path)
    assert train.inputs.shape == (4, 3, 64, 64) and train.labels.tolist() == [0, 0, 1, 1]
    assert np.array_equal(train.inputs[0].numpy(), pixels["n01_0.JPEG"].transpose(2, 0, 1))
    val = load_dataset("tinyimagenet", "test", tmp_path)
    assert val.labels.tolist() == [1] and torch.all(val.inputs == 7)  # greyscale -> 3 channels
    assert (root / CACHE_DIR_NAME).is_dir()  # decoded once, cached inside data_dir
    x, _ = next(iterate_batches(val, 8, shuffle=False, augment=eval_transform("tinyimagenet")))
    assert x.shape == (1, 3, 32, 32) and torch.allclose(x, torch.full_like(x, 7 / 255))


def test_tinyimagenet_missing_folder_says_what_to_unzip_where(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("tinyimagenet", "train", tmp_path)
    assert "tiny-imagenet-200" in str(err.value) and "wnids.txt" in str(err.value)


# ----------------------------------------------------------------------------- DVS


def test_events_are_binned_by_count_like_spikingjelly_split_by_number():
    # 10 events into 3 frames: 10 // 3 = 3 per frame, the last frame takes the remainder (4)
    x = np.arange(10) % 4
    y = np.zeros(10, dtype=int)
    p = np.array([0, 1, 1, 0, 0, 0, 1, 1, 1, 1])
    frames = events_to_frames(x, y, p, 3, height=2, width=4)
    assert frames.shape == (3, 2, 2, 4) and frames.dtype == np.float32
    assert frames.sum(axis=(1, 2, 3)).tolist() == [3, 3, 4]
    assert frames[0, 0, 0].tolist() == [1, 0, 0, 0]  # event 0: x=0, OFF
    assert frames[0, 1, 0].tolist() == [0, 1, 1, 0]  # events 1, 2: ON
    assert frames[1, 0, 0].tolist() == [1, 1, 0, 1]  # events 3..5 at x=3,0,1: OFF
    assert frames[2, 1, 0].tolist() == [1, 1, 1, 1]  # events 6..9 at x=2,3,0,1: ON
    assert frames[:, :, 1].sum() == 0  # nothing at y=1
    # fewer events than frames: all land in the last frame
    few = events_to_frames(np.array([1]), np.array([1]), np.array([1]), 4, 2, 2)
    assert few.sum(axis=(1, 2, 3)).tolist() == [0, 0, 0, 1]
    with pytest.raises(ValueError, match="outside"):
        events_to_frames(np.array([5]), np.array([0]), np.array([0]), 1, 2, 4)


def test_resizing_frames_to_48_keeps_the_event_mass_in_proportion():
    frames = np.random.default_rng(0).poisson(2.0, size=(3, 2, 128, 128)).astype(np.float32)
    small = resize_frames(frames)
    assert small.shape == (3, 2, 48, 48) and small.min() >= 0
    ratio = small.sum() / frames.sum()
    assert abs(ratio.item() - (48 / 128) ** 2) < 0.01


def test_cifar10_dvs_split_is_first_ceil_90_percent_of_each_class():
    labels = np.array([0] * 20 + [1] * 11 + [0] * 0)
    train, test = split_per_class(labels, 2, 0.9)
    assert train.tolist() == list(range(18)) + list(range(20, 30))  # ceil(9.9) = 10 of class 1
    assert test.tolist() == [18, 19, 30]
    assert set(train).isdisjoint(test)


def _write_fake_events(path: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    events = np.stack(
        [rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n), np.arange(n)],
        axis=1,
    )
    with open(path, "wb") as handle:  # np.save would append .npy to the .aedat4 name
        np.save(handle, events)


def test_cifar10_dvs_loader_splits_per_class_and_caches_in_data_dir(tmp_path):
    root = tmp_path / "CIFAR10DVS"
    for c, name in enumerate(CIFAR10_DVS_CLASSES):
        (root / name).mkdir(parents=True)
        for k in range(11):
            _write_fake_events(root / name / f"cifar10_{name}_{k}.aedat4", 50, 100 * c + k)

    def read_npy(path: Path):
        events = np.load(path)
        return events[:, 0], events[:, 1], events[:, 2]

    train = load_cifar10_dvs("train", tmp_path, 5, read_events=read_npy)
    test = load_cifar10_dvs("test", tmp_path, 5, read_events=read_npy)
    assert train.inputs.shape == (100, 5, 2, 48, 48) and len(test) == 10  # ceil(9.9) = 10 of 11
    assert torch.bincount(test.labels).tolist() == [1] * 10
    assert torch.all(train.inputs >= 0)
    expected_mass = 50 * (48 / 128) ** 2
    assert torch.allclose(train.inputs.sum(dim=(1, 2, 3, 4)), torch.tensor(expected_mass), rtol=0.2)

    def must_not_read(path: Path):
        raise AssertionError("the second load must come from the cache")

    again = load_cifar10_dvs("test", tmp_path, 5, read_events=must_not_read)
    assert torch.equal(again.inputs, test.inputs)
    assert len(list((root / CACHE_DIR_NAME).glob("*.npz"))) == 2


def test_dvs_gesture_loads_tonic_npy_layout_on_the_official_split(tmp_path):
    for folder, count in (("ibmGestureTrain", 3), ("ibmGestureTest", 2)):
        user = tmp_path / "DVSGesture" / folder / "user01_led"
        user.mkdir(parents=True)
        for label in range(count):
            _write_fake_events(user / f"{label}.npy", 40, label)
    train = load_dataset("dvs-gesture", "train", tmp_path, T=4)
    test = load_dataset("dvs-gesture", "test", tmp_path)
    assert train.inputs.shape == (3, 4, 2, 48, 48) and train.labels.tolist() == [0, 1, 2]
    assert test.inputs.shape == (2, 16, 2, 48, 48)  # default T of DVS-Gesture
    assert train.num_classes == 11


def test_dvs_missing_data_names_the_layout(tmp_path):
    with pytest.raises(DataError, match="CIFAR10DVS/<class>/.aedat4|CIFAR10DVS/<class>/\\*.aedat4"):
        load_dataset("cifar10-dvs", "train", tmp_path)
    with pytest.raises(DataError, match="ibmGestureTest"):
        load_dataset("dvs-gesture", "test", tmp_path)


# ----------------------------------------------------------------------------- batching


def test_batch_shards_of_two_ranks_are_disjoint_and_cover_the_data():
    shards = [
        torch.cat(
            batch_indices(
                10,
                3,
                shuffle=True,
                generator=torch.Generator().manual_seed(7),
                rank=rank,
                world_size=2,
            )
        )
        for rank in range(2)
    ]
    assert set(shards[0].tolist()).isdisjoint(shards[1].tolist())
    assert sorted(shards[0].tolist() + shards[1].tolist()) == list(range(10))


def test_uneven_data_gives_every_rank_the_same_number_of_batches():
    per_rank = [
        batch_indices(11, 2, shuffle=False, generator=None, rank=r, world_size=2) for r in (0, 1)
    ]
    assert [len(b) for b in per_rank] == [3, 3]  # 12 padded indices, 6 per rank
    seen = torch.cat([torch.cat(b) for b in per_rank]).tolist()
    assert sorted(set(seen)) == list(range(11)) and len(seen) == 12  # index 0 wraps around
    dropped = [
        batch_indices(11, 2, shuffle=False, generator=None, rank=r, world_size=2, drop_last=True)
        for r in (0, 1)
    ]
    assert [[len(b) for b in d] for d in dropped] == [[2, 2], [2, 2]]  # 5 per rank, last cut


def test_iterate_batches_yields_float_inputs_with_their_labels():
    inputs = torch.arange(6, dtype=torch.uint8).view(6, 1, 1, 1) * 50
    ds = ArrayDataset("toy", inputs, torch.arange(6), 6)
    seen = []
    for x, y in iterate_batches(ds, 4, shuffle=True, generator=torch.Generator().manual_seed(0)):
        assert x.dtype == torch.float32
        assert torch.allclose(x.view(-1), y.float() * 50 / 255)
        seen += y.tolist()
    assert sorted(seen) == list(range(6))
    doubled = list(iterate_batches(ds, 6, shuffle=False, augment=lambda x, g: 2 * x))
    assert torch.allclose(doubled[0][0].view(-1), torch.arange(6) * 100 / 255)


# ----------------------------------------------------------------------------- augmentation


def _batch(shape, seed=0):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("name", "shape", "out_shape"),
    [
        ("cifar10", (16, 3, 32, 32), (16, 3, 32, 32)),
        ("tinyimagenet", (16, 3, 64, 64), (16, 3, 32, 32)),
        ("cifar10-dvs", (8, 4, 2, 48, 48), (8, 4, 2, 48, 48)),
        ("dvs-gesture", (8, 4, 2, 48, 48), (8, 4, 2, 48, 48)),
    ],
)
def test_train_pipelines_keep_shape_and_range_and_are_seed_deterministic(name, shape, out_shape):
    augment = train_augmentation(name)
    x = _batch(shape)
    first = augment(x, torch.Generator().manual_seed(3))
    second = augment(x, torch.Generator().manual_seed(3))
    other = augment(x, torch.Generator().manual_seed(4))
    assert first.shape == out_shape
    assert first.min() >= 0.0 and first.max() <= 1.0
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_pipelines_match_the_spec_per_data_set():
    assert train_augmentation("digits") is None and eval_transform("digits") is None
    assert train_augmentation("fashion-mnist") is None and eval_transform("fashion-mnist") is None
    assert eval_transform("cifar100") is None
    assert set(DATASET_INFO) == {
        "digits", "fashion-mnist", "cifar10", "cifar100", "tinyimagenet", "cifar10-dvs",
        "dvs-gesture",
    }  # fmt: skip
    native = {"tinyimagenet": (2, 3, 64, 64)}
    for name, info in DATASET_INFO.items():
        shape = native.get(name, (2, *info.input_shape))
        transform = eval_transform(name)
        x = _batch(shape)
        y = transform(x, None) if transform is not None else x
        assert tuple(y.shape[1:]) == info.input_shape, name
    with pytest.raises(ValueError, match="known"):
        train_augmentation("imagenet")


def test_horizontal_flip_mirrors_exactly_the_chosen_samples():
    x = _batch((64, 3, 8, 8))
    assert torch.equal(horizontal_flip(x, None, p=1.0), x.flip(-1))
    assert torch.equal(horizontal_flip(x, None, p=0.0), x)
    out = horizontal_flip(x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, s.flip(-1)) for o, s in zip(out, x, strict=True)])
    kept = torch.tensor([torch.equal(o, s) for o, s in zip(out, x, strict=True)])
    assert torch.all(flipped ^ kept) and 10 < flipped.sum() < 54


def test_random_crop_with_pad_4_shows_zero_borders_sometimes_and_shifts_at_most_4():
    x = torch.ones(256, 3, 32, 32)
    out = random_crop(x, torch.Generator().manual_seed(0), pad=4)
    assert out.shape == x.shape
    assert torch.all(out[:, :, 4:28, 4:28] == 1)  # the centre is never padding
    border_zero = (out == 0).flatten(1).any(dim=1)
    assert 200 < border_zero.sum() < 256  # only the 1/81 unshifted crops have no zeros
    zero_rows = (out[:, 0] == 0).all(dim=2).sum(dim=1)
    assert zero_rows.max() == 4


def test_cutout_fills_a_rectangle_with_red_c_over_255_and_zero_green_blue():
    x = torch.full((400, 3, 32, 32), 0.5)
    out = cutout(x, torch.Generator().manual_seed(1))
    changed = (out != x).any(dim=1)  # (B, H, W)
    hit = changed.flatten(1).any(dim=1)
    assert 150 < hit.sum() < 250  # p = 0.5
    assert torch.all(out[:, 1:][changed[:, None].expand(-1, 2, -1, -1)] == 0)
    for image, mask in zip(out[hit], changed[hit], strict=True):
        red = image[0][mask]
        assert torch.all(red == red[0])  # one value c / 255 per rectangle
        c = red[0] * 255
        assert torch.isclose(c, c.round()) and 0 <= c <= 255
        area = mask.sum() / 1024
        assert 0.005 < area <= 0.4  # int() truncation of the sides can shrink 2% a bit
        rows, cols = mask.any(dim=1), mask.any(dim=0)
        assert mask.sum() == rows.sum() * cols.sum()  # a rectangle


def test_resized_crop_of_the_full_image_is_a_plain_bilinear_resize():
    x = _batch((4, 3, 16, 16))
    out = random_resized_crop(x, None, size=8, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    expected = torch.nn.functional.interpolate(x, size=(8, 8), mode="bilinear")
    assert torch.allclose(out, expected, atol=1e-5)
    same = random_resized_crop(x, None, size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.allclose(same, x, atol=1e-5)


def test_roll_is_a_per_sample_torch_roll_within_5_pixels():
    x = _batch((6, 2, 2, 12, 12))
    out = random_roll(x, torch.Generator().manual_seed(0))
    for o, s in zip(out, x, strict=True):
        matches = [
            (dy, dx)
            for dy in range(-5, 6)
            for dx in range(-5, 6)
            if torch.equal(o, torch.roll(s, (dy, dx), dims=(-2, -1)))
        ]
        assert len(matches) == 1


def test_rotation_keeps_the_centre_and_blanks_the_corners():
    x = torch.ones(32, 2, 48, 48)
    out = random_rotate(x, torch.Generator().manual_seed(0), degrees=30)
    assert torch.all(out[:, :, 16:32, 16:32] == 1)
    assert out[:, :, 0, 0].eq(0).float().mean() > 0.8  # almost every angle cuts the corner
    assert torch.equal(random_rotate(x, None, degrees=0.0), x)


def test_color_jitter_with_zero_strength_is_the_identity_through_hsv():
    x = _batch((8, 3, 8, 8))
    out = color_jitter(x, None, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
    assert torch.allclose(out, x, atol=1e-5)
    jittered = color_jitter(x, torch.Generator().manual_seed(0))
    assert jittered.min() >= 0 and jittered.max() <= 1 and not torch.allclose(jittered, x)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_generator_drives_augmentation_of_a_cuda_batch_identically():
    x = _batch((16, 3, 64, 64))
    augment = train_augmentation("tinyimagenet")
    on_cpu = augment(x, torch.Generator().manual_seed(5))
    on_gpu = augment(x.cuda(), torch.Generator().manual_seed(5))
    assert on_gpu.device.type == "cuda"
    assert torch.allclose(on_gpu.cpu(), on_cpu, atol=1e-4)
