"""Hostile resume states and run directories, and divergence (issue 15 items 2, 4, 5, 8): a
tampered latest.pt is refused with exit 2 naming its field before any state is applied; a run
directory holding a run is never overwritten without --overwrite; a non-finite loss or weight
stops training with exit 2 naming the iteration and the recipe keys, before it is saved."""

from __future__ import annotations

import math
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from _hostile import assert_refused, invoke, snapshot, tiny_recipe, write_recipe


@pytest.fixture
def run_copy(trained_run, tmp_path) -> tuple[Path, Path]:
    """A copy of the real one-epoch run directory and the tiny recipe, in ``tmp_path``."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    return run, write_recipe(tmp_path / "r.yaml", tiny_recipe())


def _resume_refused(tmp_path: Path, recipe: Path, latest: Path, *needles: str) -> None:
    before = snapshot(tmp_path)
    code, output = invoke(["train", recipe, "--resume", latest, "--no-progress", "--device",
                           "cpu"], tmp_path)
    assert_refused(code, output, *needles)
    assert snapshot(tmp_path) == before  # the run directory is untouched


def _tamper(latest: Path, edit) -> None:
    data = torch.load(latest, weights_only=True)
    edit(data)
    torch.save(data, latest)


def _set(*path: str, value: Any):
    def edit(data: dict[str, Any]) -> None:
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


# ------------------------------------------------------------------ tampered resume state
@pytest.mark.parametrize("edit, needle", [
    (_set("trainer", "next_epoch", value=-1), "trainer.next_epoch"),
    (_set("trainer", "next_epoch", value="1"), "trainer.next_epoch"),
    (_set("trainer", "iteration", value=True), "trainer.iteration"),
    (_set("trainer", "best_accuracy", value=math.nan), "trainer.best_accuracy"),
    (_set("trainer", "history", value=[{"epoch": "one"}]), "trainer.history"),
    (_set("trainer", "history", value=[]), "trainer.history"),
    (_set("trainer", "optimizer", value={"state": {}, "param_groups": "all"}),
     "trainer.optimizer"),
    (_set("trainer", "optimizer", value={"state": {}, "param_groups": []}), "optimizer"),
    (_set("trainer", "rng", value="seeded"), "trainer.rng"),
    (_set("trainer", "rng", "python", value=[1, 2, 3]), "trainer.rng.python"),
    (_set("trainer", "rng", "torch", value=torch.zeros(4)), "trainer.rng.torch"),
    (_set("recipe", "train", "lr", value=math.inf), "train.lr"),
    (_set("recipe", "name", value="../../elsewhere"), "key 'name'"),
    (_set("state_dict", "layers.1.weight_ee", value=torch.ones(16, 64, dtype=torch.bool)),
     "layers.1.weight_ee"),
    (_set("state_dict", "layers.1.gain_e", value=torch.full((16,), math.nan)),
     "layers.1.gain_e"),
])
def test_a_tampered_latest_pt_is_refused_naming_the_field(run_copy, tmp_path, edit, needle):
    run, recipe = run_copy
    _tamper(run / "latest.pt", edit)
    _resume_refused(tmp_path, recipe, run / "latest.pt", "latest.pt", needle)


def test_optimizer_state_that_is_not_finite_is_refused(run_copy, tmp_path):
    run, recipe = run_copy

    def edit(data):
        state = data["trainer"]["optimizer"]["state"]
        first = next(iter(state.values()))
        first["momentum_buffer"] = torch.full_like(first["momentum_buffer"], math.inf)
    _tamper(run / "latest.pt", edit)
    _resume_refused(tmp_path, recipe, run / "latest.pt", "trainer.optimizer.state")


def test_a_next_epoch_past_the_schedule_is_refused(run_copy, tmp_path):
    run, recipe = run_copy

    def edit(data):
        history = data["trainer"]["history"]
        data["trainer"]["history"] = history * 5
        data["trainer"]["next_epoch"] = 5
    _tamper(run / "latest.pt", edit)
    _resume_refused(tmp_path, recipe, run / "latest.pt", "trainer.next_epoch", "past")


def test_resuming_from_model_pt_is_refused(run_copy, tmp_path):
    run, recipe = run_copy
    _resume_refused(tmp_path, recipe, run / "model.pt", "model.pt", "no trainer state")


def test_a_bit_flipped_latest_pt_is_refused(run_copy, tmp_path):
    run, recipe = run_copy
    latest = run / "latest.pt"
    with zipfile.ZipFile(latest) as archive:
        info = next(m for m in archive.infolist() if "/data/" in m.filename and m.file_size > 64)
    raw = bytearray(latest.read_bytes())
    extra = int.from_bytes(raw[info.header_offset + 28: info.header_offset + 30], "little")
    raw[info.header_offset + 30 + len(info.filename.encode()) + extra + 9] ^= 0x01
    latest.write_bytes(bytes(raw))
    _resume_refused(tmp_path, recipe, latest, "latest.pt", "CRC")


# ------------------------------------------------------------------ the run directory
def test_an_existing_run_is_not_overwritten_by_out(run_copy, tmp_path):
    run, recipe = run_copy
    before = snapshot(tmp_path)
    code, output = invoke(["train", recipe, "--out", run, "--no-progress"], tmp_path)
    assert_refused(code, output, "already holds a training run", "--resume", "--overwrite")
    assert snapshot(tmp_path) == before


def test_the_default_run_directory_is_not_overwritten(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe())
    (tmp_path / "runs" / "hostile-tiny").mkdir(parents=True)
    (tmp_path / "runs" / "hostile-tiny" / "metrics.csv").write_text("the user's results\n")
    before = snapshot(tmp_path)
    code, output = invoke(["train", recipe, "--no-progress"], tmp_path)
    assert_refused(code, output, "runs/hostile-tiny", "already holds a training run")
    assert snapshot(tmp_path) == before


def test_out_naming_a_file_is_refused(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe())
    (tmp_path / "notes.txt").write_text("keep\n")
    before = snapshot(tmp_path)
    code, output = invoke(["train", recipe, "--out", tmp_path / "notes.txt", "--no-progress"],
                          tmp_path)
    assert_refused(code, output, "notes.txt", "not a directory")
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_out_in_a_read_only_directory_is_refused(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe())
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        code, output = invoke(["train", recipe, "--out", locked / "run", "--no-progress"],
                              tmp_path)
        assert_refused(code, output, "locked", "writable")
    finally:
        locked.chmod(0o755)


def test_overwrite_replaces_the_run_and_keeps_other_files(run_copy, tmp_path):
    run, recipe = run_copy
    (run / "float.pt").write_bytes(b"an older run's float model")
    (run / "notes.txt").write_text("the user's notes\n")
    code, output = invoke(["train", recipe, "--out", run, "--overwrite", "--no-progress",
                           "--device", "cpu", "--threads", "1"], tmp_path)
    assert code == 0, output
    assert not (run / "float.pt").exists()  # no file of the old run outlives it
    assert (run / "notes.txt").read_text() == "the user's notes\n"
    assert (run / "model.pt").is_file() and (run / "latest.pt").is_file()


# ------------------------------------------------------------------ divergence (item 4)
def _poison_after(monkeypatch, calls: int, name: str) -> None:
    """Make parameter ``name`` NaN after the ``calls``-th optimizer step, as a diverging lr
    would."""
    from eideploy.train import trainer

    original, count = trainer.project_nonnegative_, [0]

    def poisoned(model):
        original(model)
        count[0] += 1
        if count[0] == calls:
            with torch.no_grad():
                dict(model.named_parameters())[name].fill_(math.nan)
    monkeypatch.setattr(trainer, "project_nonnegative_", poisoned)


def test_a_non_finite_loss_stops_training_at_its_iteration(tmp_path, monkeypatch):
    """An overflowing loss (as lr 1e30 gave before the recipe bounds) at the 4th iteration."""
    import torch.nn.functional as functional

    from eideploy.train import trainer

    calls = [0]

    class Overflowing:
        def __getattr__(self, name):
            return getattr(functional, name)

        @staticmethod
        def cross_entropy(*args, **kwargs):
            calls[0] += 1
            loss = functional.cross_entropy(*args, **kwargs)
            return loss * math.inf if calls[0] == 4 else loss

    monkeypatch.setattr(trainer, "F", Overflowing())
    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe())
    code, output = invoke(["train", recipe, "--out", tmp_path / "run", "--no-progress",
                           "--device", "cpu", "--threads", "1"], tmp_path)
    assert_refused(code, output, "diverged at iteration 4", "epoch 1", "the loss is not finite",
                   "(inf)", "train.lr", "train.weight_decay")
    assert not (tmp_path / "run" / "model.pt").exists()
    assert not (tmp_path / "run" / "latest.pt").exists()


@pytest.mark.parametrize("calls, name, needles", [
    # NaN hidden weights can silence the spikes and leave the loss finite: the weight check
    # every 10 iterations names the parameter
    (3, "layers.1.weight_ee", ("by iteration 10", "parameter 'layers.1.weight_ee'")),
    # the epoch's last step (1437 samples / 64 = 23 steps): caught before the checkpoint
    (23, "layers.1.weight_ee", ("by iteration 23", "parameter 'layers.1.weight_ee'")),
])
def test_divergence_stops_training_before_anything_is_saved(tmp_path, monkeypatch, calls, name,
                                                            needles):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe())
    _poison_after(monkeypatch, calls, name)
    code, output = invoke(["train", recipe, "--out", tmp_path / "run", "--no-progress",
                           "--device", "cpu", "--threads", "1"], tmp_path)
    assert_refused(code, output, "diverged", "epoch 1", "train.lr", "train.weight_decay",
                   *needles)
    assert not (tmp_path / "run" / "model.pt").exists()
    assert not (tmp_path / "run" / "latest.pt").exists()
