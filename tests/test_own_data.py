"""A user's own arrays (``dataset: npz``): train, export to DYNAP-SE2, simulate in integers, and
the data's identity recorded in the model and checked by every command that reads data again."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from eideploy.cli import app
from eideploy.data import DataError, load_recipe_data
from eideploy.train import load_recipe
from eideploy.train.recipe import RecipeError, recipe_from_dict

runner = CliRunner()
SIDE, CLASSES = 12, 3  # 12x12: no shipped recipe uses this shape


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 12, 12) uint8 images whose class k is a bright band in rows 4k..4k+3, with noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    x = rng.integers(0, 60, (n, SIDE, SIDE))
    for k in range(CLASSES):
        x[y == k, 4 * k:4 * k + 4, :] += 150
    return x.astype(np.uint8), y.astype(np.int64)


def write_npz(path: Path, n_train: int = 480, n_test: int = 120, seed: int = 0) -> Path:
    x_train, y_train = blobs(n_train, seed)
    x_test, y_test = blobs(n_test, seed + 1)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def write_recipe(tmp: Path, data: str) -> Path:
    recipe = tmp / "own.yaml"
    recipe.write_text(f"""name: own-blobs
seed: 7
data:
  {data}
  batch_size: 32
  eval_batch_size: 120
model:
  arch: ei-hw-mlp
  T: 8
  args:
    widths: [48]
  options:
    inhibitory: floor
    theta_i: 0.25
train:
  epochs: 3
  lr: 0.05
  init_lr: 1.0e-4
  warmup_epochs: 0
target:
  fan_in: 48
  fan_in_inh: 8
  connectivity: random
  qat_epochs: 1
""")
    return recipe


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("own")
    data = write_npz(tmp / "blobs.npz")
    recipe = write_recipe(tmp, f"dataset: npz\n  path: {data}")
    res = runner.invoke(app, ["train", str(recipe), "-o", str(tmp / "run"), "--quiet"])
    assert res.exit_code == 0, res.output
    return tmp / "run" / "model.pt", data


def test_model_records_the_identity_of_its_data(trained):
    model, data = trained
    record = torch.load(model, map_location="cpu", weights_only=True)["data"]
    import hashlib

    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    assert record["name"] == "npz" and record["num_classes"] == CLASSES
    assert record["splits"]["train"] == {"file": str(data.absolute()), "sha256": digest,
                                         "samples": 480}
    assert record["splits"]["test"]["samples"] == 120


def test_exported_and_integer_simulated_model_is_well_above_chance(trained, tmp_path):
    model, data = trained
    out = tmp_path / "exp"
    res = runner.invoke(app, ["export", str(model), "--target", "dynapse2", "-o", str(out)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["simulate", str(out), "--division", "exact"])
    assert res.exit_code == 0, res.output
    assert str(data.absolute()) in res.output  # says which data it read
    accuracy = float(re.findall(r"accuracy ([0-9.]+)%", res.output)[0])
    assert accuracy >= 80.0, res.output  # chance is 33%


def test_evaluate_says_which_data_and_matches_training(trained):
    model, data = trained
    res = runner.invoke(app, ["evaluate", str(model)])
    assert res.exit_code == 0, res.output
    assert str(data.absolute()) in res.output and "120 samples" in res.output
    assert float(re.findall(r"([0-9.]+)%", res.output)[0]) >= 80.0


def test_changed_data_file_is_refused_and_an_override_only_warns(trained, tmp_path):
    model, data = trained
    original = data.read_bytes()
    try:
        write_npz(data, seed=5)  # same shapes, other content
        res = runner.invoke(app, ["evaluate", str(model)])
        assert res.exit_code == 2, res.output
        assert "differs from the data" in res.output and "sha256" in res.output
    finally:
        data.write_bytes(original)
    other = write_npz(tmp_path / "other.npz", seed=9)
    res = runner.invoke(app, ["evaluate", str(model), "--data-dir", str(other)])
    assert res.exit_code == 0, res.output
    assert "WARNING" in res.output and str(other.absolute()) in res.output


def test_separate_train_and_test_files_load_with_x_and_y(tmp_path):
    x, y = blobs(50, 1)
    np.savez(tmp_path / "tr.npz", x=x[:, None], y=y)  # (N, C, H, W) also accepted
    np.savez(tmp_path / "te.npz", x=x[:10].astype(np.float32) / 255, y=y[:10])
    data = {"dataset": "npz", "train": str(tmp_path / "tr.npz"), "test": str(tmp_path / "te.npz")}
    train = load_recipe_data(data, "train")
    test = load_recipe_data(data, "test")
    assert train.inputs.shape == (50, 1, SIDE, SIDE) and train.inputs.dtype == torch.uint8
    assert test.inputs.shape == (10, 1, SIDE, SIDE) and test.inputs.dtype == torch.float32


def test_event_tensors_keep_their_frames(tmp_path):
    x = np.random.default_rng(0).poisson(0.3, (20, 5, 2, 6, 6)).astype(np.float32)
    np.savez(tmp_path / "ev.npz", x_train=x, y_train=np.arange(20) % 2, x_test=x[:4],
             y_test=np.arange(4) % 2)
    data = {"dataset": "npz", "path": str(tmp_path / "ev.npz")}
    assert load_recipe_data(data, "train", T=5).inputs.shape == (20, 5, 2, 6, 6)
    with pytest.raises(DataError, match="model.T"):
        load_recipe_data(data, "train", T=4)


def _bad_file(tmp_path: Path, case: str) -> tuple[Path, str]:
    x, y = blobs(30, 0)
    arrays = {"x_train": x, "y_train": y, "x_test": x[:6], "y_test": y[:6]}
    key = {"missing": "y_test", "shape": "x_train", "object": "x_test", "labels": "y_train",
           "float labels": "y_test", "negative": "x_train"}[case]
    if case == "missing":
        del arrays[key]
    elif case == "shape":
        arrays[key] = x.reshape(30, -1)
    elif case == "object":
        arrays[key] = np.array([object()] * 6, dtype=object)
    elif case == "labels":
        arrays[key] = y + 5
    elif case == "float labels":
        arrays[key] = y[:6].astype(np.float32)
    else:
        arrays[key] = x.astype(np.float32) - 10.0
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path, key


@pytest.mark.parametrize("case", ["missing", "shape", "object", "labels", "float labels",
                                  "negative"])
def test_bad_npz_is_refused_with_exit_2_naming_the_file_and_the_key(tmp_path, case):
    path, key = _bad_file(tmp_path, case)
    recipe = write_recipe(tmp_path, f"dataset: npz\n  path: {path}\n  num_classes: 3")
    res = runner.invoke(app, ["train", str(recipe), "-o", str(tmp_path / "run"), "--quiet"])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert f"'{key}'" in text and "bad.npz" in text, res.output
    assert "Traceback" not in res.output


def test_hostile_files_are_refused_before_loading(tmp_path):
    data = {"dataset": "npz", "path": str(tmp_path)}  # a directory without train.npz
    with pytest.raises(DataError, match="no such data file"):
        load_recipe_data(data, "train")
    (tmp_path / "fake.npz").write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="not a .npz file"):
        load_recipe_data({"dataset": "npz", "path": str(tmp_path / "fake.npz")}, "train")


@pytest.mark.parametrize("data, message", [
    ({"dataset": "npz"}, "needs data.path"),
    ({"dataset": "npz", "path": "a.npz", "train": "b.npz"}, "not both"),
    ({"dataset": "digits", "path": "a.npz"}, "only apply to dataset: npz"),
])
def test_recipe_data_section_checks_the_npz_keys(data, message):
    with pytest.raises(RecipeError, match=message):
        recipe_from_dict({"name": "x", "data": data, "model": {"arch": "ei-mlp"},
                          "train": {"epochs": 1, "lr": 0.1}})


def test_shipped_recipes_still_load():
    assert load_recipe("digits-mlp").data.path is None


def test_validation_split_chooses_the_checkpoint_and_the_test_split_is_read_once(tmp_path):
    import json

    from eideploy.train import train

    data = write_npz(tmp_path / "blobs.npz")
    recipe = load_recipe(write_recipe(tmp_path, f"dataset: npz\n  path: {data}\n"
                                                "  validation_split: 0.1"))
    result = train(recipe, out_dir=tmp_path / "run", progress=False, log=lambda _: None)
    assert result.selected_on == "validation"
    assert all("validation_accuracy" in row and "test_accuracy" not in row
               for row in result.history)
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["test_accuracy"] == result.best_accuracy >= 80.0
    assert "best_validation_accuracy" in summary
    # the identity keeps the file's whole training split, not the part left after carving
    record = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["data"]
    assert record["splits"]["train"]["samples"] == 480


def test_validation_split_is_seeded_and_disjoint():
    from eideploy.data import ArrayDataset, carve_validation

    whole = ArrayDataset("npz", torch.arange(100.0)[:, None, None, None],
                         torch.arange(100) % 3, 3)
    train_a, val_a = carve_validation(whole, 0.1, seed=3)
    train_b, val_b = carve_validation(whole, 0.1, seed=3)
    assert len(train_a) == 90 and len(val_a) == 10
    assert torch.equal(val_a.inputs, val_b.inputs)
    kept = set(train_a.inputs.flatten().tolist()) | set(val_a.inputs.flatten().tolist())
    assert len(kept) == 100


def test_any_torch_dataset_is_saved_in_the_layout_training_reads(tmp_path):
    from torch.utils.data import TensorDataset

    from eideploy.data import save_npz

    x, y = blobs(40, 2)
    train = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    path = save_npz(tmp_path / "mine.npz", train, (x[:8], y[:8]))
    loaded = load_recipe_data({"dataset": "npz", "path": str(path)}, "train")
    assert torch.equal(loaded.inputs[:, 0], torch.from_numpy(x))
    assert torch.equal(loaded.labels, torch.from_numpy(y))


def test_train_and_test_of_different_shapes_are_refused(tmp_path):
    x, y = blobs(30, 0)
    np.savez(tmp_path / "mixed.npz", x_train=x, y_train=y, x_test=x[:6, :8, :8], y_test=y[:6])
    recipe = write_recipe(tmp_path, f"dataset: npz\n  path: {tmp_path / 'mixed.npz'}")
    res = runner.invoke(app, ["train", str(recipe), "-o", str(tmp_path / "run"), "--quiet"])
    assert res.exit_code == 2 and "do not belong together" in res.output, res.output


def test_a_fifo_in_place_of_the_file_is_refused_without_blocking(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.npz")
    with pytest.raises(DataError, match="not a regular file"):
        load_recipe_data({"dataset": "npz", "path": str(tmp_path / "pipe.npz")}, "train")


def test_separate_files_train_export_and_calibrate_the_analog_readout(tmp_path):
    x, y = blobs(300, 3)
    np.savez(tmp_path / "tr.npz", x=x[:240], y=y[:240])
    np.savez(tmp_path / "te.npz", x=x[240:], y=y[240:])
    recipe = write_recipe(tmp_path, f"dataset: npz\n  train: {tmp_path / 'tr.npz'}\n"
                                    f"  test: {tmp_path / 'te.npz'}")
    res = runner.invoke(app, ["train", str(recipe), "-o", str(tmp_path / "run"), "--quiet"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "exp"
    res = runner.invoke(app, ["export", str(tmp_path / "run" / "model.pt"), "--target",
                              "dynapse2", "-o", str(out)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["simulate", str(out), "--backend", "analog", "--trials", "1",
                              "--mismatch", "0.1", "--calibrate", "16"])
    assert res.exit_code == 0, res.output
    assert str(tmp_path / "te.npz") in res.output
