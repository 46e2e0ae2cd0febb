"""A user's class folders of images (``dataset: images``): train, evaluate, the data's identity,
and folders that cannot be read refused with a message naming the file (docs/own-data.md)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from test_own_data import write_recipe  # tests/ is on sys.path (pytest prepend)
from typer.testing import CliRunner

from eideploy.cli import app
from eideploy.data import DataError, load_recipe_data

Image = pytest.importorskip("PIL.Image")

runner = CliRunner()
SIDE = 12
CLASSES = ("bottom", "middle", "top")  # sorted: label 0, 1, 2


def write_folder(root: Path, n_train: int = 240, n_test: int = 60, seed: int = 0,
                 rgb: bool = False) -> Path:
    """``root/train/<class>/i.png`` and ``root/test/...``: class k a bright band in rows
    4k..4k+3 of a 12x12 image, with noise."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            k = int(rng.integers(0, len(CLASSES)))
            x = rng.integers(0, 60, (SIDE, SIDE))
            x[4 * k:4 * k + 4, :] += 150
            folder = root / split / CLASSES[k]
            folder.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(x.astype(np.uint8), "L")
            (image.convert("RGB") if rgb else image).save(folder / f"{i:04d}.png")
    return root


def recipe(tmp: Path, data: str) -> Path:
    """The small hardware-aware recipe of the own-data tests, on ``data``."""
    return write_recipe(tmp, data)


def test_image_folders_train_evaluate_and_record_their_identity(tmp_path):
    root = write_folder(tmp_path / "bands")
    res = runner.invoke(app, ["train", str(recipe(tmp_path, f"dataset: images\n  path: {root}")),
                              "-o", str(tmp_path / "run"), "--quiet"])
    assert res.exit_code == 0, res.output
    model = tmp_path / "run" / "model.pt"
    record = torch.load(model, weights_only=True)["data"]
    assert record["name"] == "images" and record["num_classes"] == 3
    assert record["splits"]["test"]["file"] == str((root / "test").absolute())
    assert record["splits"]["train"]["samples"] == 240
    res = runner.invoke(app, ["evaluate", str(model)])
    assert res.exit_code == 0, res.output
    accuracy = float(re.findall(r"([0-9.]+)%", res.output)[0])
    print(f"image folders (3 classes, 12x12 PNG, 240 train / 60 test): evaluate {accuracy:.2f}%")
    assert str((root / "test").absolute()) in res.output and accuracy >= 80.0  # chance 33%
    # one changed pixel in one test image: the data differs from what the model was trained on
    victim = sorted((root / "test" / "top").iterdir())[0]
    pixels = np.asarray(Image.open(victim)).copy()
    pixels[0, 0] ^= 1
    Image.fromarray(pixels, "L").save(victim)
    res = runner.invoke(app, ["evaluate", str(model)])
    assert res.exit_code == 2 and "differs from the data" in res.output


def test_image_folders_read_as_uint8_maps_with_sorted_class_labels(tmp_path):
    root = write_folder(tmp_path / "rgb", n_train=12, n_test=6, rgb=True)
    data = {"dataset": "images", "path": str(root)}
    train = load_recipe_data(data, "train")
    assert train.inputs.shape == (12, 3, SIDE, SIDE) and train.inputs.dtype == torch.uint8
    assert train.num_classes == 3 and set(train.labels.tolist()) <= {0, 1, 2}
    # the label is the band's position: class "top" (2) is bright in rows 8..11
    top = train.inputs[train.labels == 2].float()
    assert bool((top[:, :, 8:12].mean() > top[:, :, 0:4].mean() + 100).item())
    grey = write_folder(tmp_path / "grey", n_train=12, n_test=6)
    assert load_recipe_data({"dataset": "images", "path": str(grey)},
                            "test").inputs.shape == (6, 1, SIDE, SIDE)


def test_bad_image_folders_are_refused_naming_the_file(tmp_path):
    root = write_folder(tmp_path / "bad", n_train=9, n_test=3)
    data = {"dataset": "images", "path": str(root)}
    odd = root / "train" / "top" / "odd.png"
    Image.fromarray(np.zeros((10, 12), np.uint8), "L").save(odd)
    with pytest.raises(DataError, match=r"odd\.png: 12 x 10 pixels.*one size"):
        load_recipe_data(data, "train")
    odd.write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"odd\.png: not a readable image"):
        load_recipe_data(data, "train")
    odd.unlink()
    (root / "test" / "sideways").mkdir()
    Image.fromarray(np.zeros((12, 12), np.uint8), "L").save(root / "test" / "sideways" / "a.png")
    with pytest.raises(DataError, match="'sideways' is not a class of the training split"):
        load_recipe_data(data, "test")
    res = runner.invoke(app, ["train", str(recipe(tmp_path, "dataset: images\n  path: "
                                                  f"{tmp_path / 'missing'}")),
                              "-o", str(tmp_path / "run"), "--quiet"])
    assert res.exit_code == 2 and "no such directory" in res.output
    assert "Traceback" not in res.output
