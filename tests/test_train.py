"""Trainer, recipes, checkpoints and distributed training (issue: `eideploy train`)."""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from eideploy.cli import app
from eideploy.data import DataError
from eideploy.networks import build_network
from eideploy.nn import ei_init
from eideploy.train import (
    CheckpointError,
    RecipeError,
    load_model,
    load_recipe,
    recipe_from_dict,
    save_checkpoint,
    train,
)
from eideploy.train.schedule import warmup_cosine
from eideploy.train.threads import SMALL_STEP_FLOPS, choose_threads, step_flops
from eideploy.train.trainer import build_from_recipe

REPO = Path(__file__).resolve().parents[1]


def tiny_recipe(**train_overrides) -> dict:
    return {
        "name": "tiny-digits", "seed": 5,
        "data": {"dataset": "digits", "batch_size": 32, "eval_batch_size": 360},
        "model": {"arch": "ei-mlp", "T": 2, "args": {"widths": [48]}},
        "train": {"epochs": 2, "lr": 0.05, "init_lr": 1e-4, "warmup_epochs": 0.5,
                  **train_overrides},
    }


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = train(recipe_from_dict(tiny_recipe()), out_dir=out, device="cpu", progress=False,
                   log=lambda m: None)
    return out, result


# --------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_reproduces_outputs_bit_for_bit(tmp_path, digits_batch):
    net = build_network("ei-mlp", in_shape=(1, 8, 8), num_classes=10, T=4, widths=[64, 32])
    x = digits_batch.view(-1, 1, 8, 8)
    ei_init(net, net.fold_time(x))
    with torch.no_grad():  # make the weights differ from a fresh init
        for p in net.parameters():
            p.mul_(1.0 + 0.01 * torch.rand_like(p))
    save_checkpoint(tmp_path / "model.pt", net, recipe={"name": "x"}, metrics={"acc": 1.0})
    loaded, data = load_model(tmp_path / "model.pt")
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), loaded(x))
    assert data["format_version"] == 1 and data["architecture"]["name"] == "ei-mlp"
    assert all(bool(m.initialised) for m in loaded.modules() if hasattr(m, "initialised"))


def test_checkpoint_is_plain_data_loadable_with_weights_only(trained_run):
    out, _ = trained_run
    data = torch.load(out / "latest.pt", weights_only=True)
    assert set(data) >= {"format", "architecture", "state_dict", "recipe", "metrics", "trainer"}


@pytest.mark.parametrize("case", ["truncated", "not-torch", "pickle-object", "foreign-dict",
                                  "missing"])
def test_bad_checkpoints_are_refused_naming_the_file(tmp_path, trained_run, case):
    path = tmp_path / f"{case}.pt"
    marker = tmp_path / "executed"
    if case == "truncated":
        path.write_bytes((trained_run[0] / "model.pt").read_bytes()[:3000])
    elif case == "not-torch":
        path.write_text("name: not a model\n")
    elif case == "pickle-object":
        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {marker}",))
        path.write_bytes(pickle.dumps({"format": "eideploy-model", "x": Evil()}))
    elif case == "foreign-dict":
        torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match=str(path.name)):
        load_model(path)
    assert not marker.exists()


def test_nan_weights_are_refused(tmp_path, trained_run):
    data = torch.load(trained_run[0] / "model.pt", weights_only=True)
    key = next(k for k in data["state_dict"] if k.endswith("weight_ee"))
    data["state_dict"][key][0, 0] = float("nan")
    torch.save(data, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="NaN"):
        load_model(tmp_path / "nan.pt")


# --------------------------------------------------------------------------- recipes
def test_recipe_with_a_typo_names_the_key_and_the_allowed_ones(tmp_path):
    bad = tiny_recipe()
    bad["train"]["warmup_epoch"] = 1
    with pytest.raises(RecipeError, match=r"unknown key 'train.warmup_epoch'.*warmup_epochs"):
        recipe_from_dict(bad, "bad.yaml")


def test_recipe_with_impossible_values_is_refused():
    bad = tiny_recipe(lr=-1)
    with pytest.raises(RecipeError, match=r"train.lr"):
        recipe_from_dict(bad)
    bad = tiny_recipe()
    bad["model"]["options"] = {"stabilisation": "epsilon"}
    with pytest.raises(RecipeError, match="adaptive"):
        recipe_from_dict(bad)
    bad = tiny_recipe()
    bad["model"]["arch"] = "ei-vgg9"
    with pytest.raises(RecipeError, match="ei-vgg8"):
        recipe_from_dict(bad)


def test_missing_data_directory_gives_a_clear_message(tmp_path):
    recipe = tiny_recipe()
    recipe["data"] = {"dataset": "cifar10", "data_dir": str(tmp_path / "nowhere")}
    with pytest.raises(DataError, match="cifar-10"):
        train(recipe_from_dict(recipe), out_dir=tmp_path / "out", device="cpu", progress=False,
              log=lambda m: None)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- schedule + trainer
def test_schedule_warms_up_linearly_then_decays_by_cosine_to_zero():
    lr = [warmup_cosine(i, peak=0.1, init=1e-3, warmup_iters=10, total_iters=110)
          for i in range(111)]
    assert lr[0] == 1e-3
    assert lr[5] == pytest.approx(1e-3 + 0.099 * 0.5)
    assert lr[10] == pytest.approx(0.1)
    assert lr[60] == pytest.approx(0.05)
    assert lr[110] == pytest.approx(0.0, abs=1e-12)


def test_trainer_learns_digits_and_writes_the_run_directory(trained_run):
    out, result = trained_run
    assert result.best_accuracy > 85.0  # 2 epochs of a 48-unit E-I MLP
    for name in ("model.pt", "latest.pt", "recipe.yaml", "metrics.csv", "metrics.json"):
        assert (out / name).is_file(), name
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,train_loss,train_accuracy,test_loss,test_accuracy")
    assert len(lines) == 3
    model, ckpt = load_model(out / "model.pt")
    assert ckpt["metrics"]["best_test_accuracy"] == pytest.approx(result.best_accuracy)


def test_resume_continues_exactly(tmp_path):
    kwargs = {"device": "cpu", "progress": False, "log": lambda m: None}
    straight = train(recipe_from_dict(tiny_recipe()), out_dir=tmp_path / "a", **kwargs)
    train(recipe_from_dict(tiny_recipe()), out_dir=tmp_path / "b", stop_after=1, **kwargs)
    resumed = train(recipe_from_dict(tiny_recipe()), out_dir=tmp_path / "b",
                    resume=tmp_path / "b" / "latest.pt", **kwargs)
    for (k, a), b in zip(straight.model.state_dict().items(),
                         resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert [h["test_accuracy"] for h in resumed.history] == \
        [h["test_accuracy"] for h in straight.history]
    assert resumed.final_accuracy == straight.final_accuracy


# --------------------------------------------------------------------------- threads
def test_thread_choice_follows_the_work_per_step():
    below, at = SMALL_STEP_FLOPS * 0.99, SMALL_STEP_FLOPS
    assert choose_threads(below, available=8).threads == 1
    assert choose_threads(at, available=8).threads == 8  # torch's default from the threshold up
    assert choose_threads(below, available=8, requested=3).threads == 3  # --threads overrides
    assert choose_threads(at, available=8, requested=1).threads == 1
    assert choose_threads(None, available=8, device="cuda").threads == 8
    with pytest.raises(ValueError, match="--threads 0"):
        choose_threads(at, available=8, requested=0)


@pytest.mark.parametrize("recipe_name, batch, small", [("digits-mlp", 32, True),
                                                       ("fashion-cnn", 128, False)])
def test_shipped_recipes_fall_on_the_measured_side_of_the_thread_rule(recipe_name, batch, small):
    """digits-mlp (2 x 256 units, batch 32) took 35.6 s for 2 epochs with 2 threads on a busy
    machine and 1.5 s with 1; fashion-cnn's step is 10 GFLOP, 1.5x faster on 2 idle cores."""
    recipe = load_recipe(REPO / "models" / "recipes" / f"{recipe_name}.yaml")
    shape = (1, 8, 8) if recipe.data.dataset == "digits" else (1, 28, 28)
    model = build_from_recipe(recipe, shape, 10)
    x = torch.rand(4, *shape)
    ei_init(model, x)
    rng = torch.get_rng_state()
    flops = step_flops(model, x[:1], batch)
    assert torch.equal(torch.get_rng_state(), rng) and model.training  # counting draws nothing
    # one linear layer's forward: 2 FLOP per weight per sample and time step
    assert flops >= 2 * 64 * 256 * recipe.model.T * batch
    assert (flops < SMALL_STEP_FLOPS) == small


def test_training_logs_its_thread_count_and_restores_the_callers(tmp_path):
    caller = torch.get_num_threads()
    torch.set_num_threads(2)  # the caller's setting; the rule takes 1 for this tiny MLP
    try:
        logs: list[str] = []
        train(recipe_from_dict(tiny_recipe()), out_dir=tmp_path, device="cpu", progress=False,
              log=logs.append, epochs=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(caller)
    assert any(m.startswith("1 intra-op thread(s): ") and "GFLOP forward per step <" in m
               for m in logs), logs


def test_training_imports_no_stage_above_it():
    """Layer order (DESIGN §1): train/ may use targets (QAT), never the pipeline, validation,
    reports or the command line."""
    import ast

    above = ("eideploy.pipeline", "eideploy.validate", "eideploy.export", "eideploy.cli",
             "eideploy.report")
    for path in (REPO / "eideploy" / "train").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                name = ("eideploy.train." if node.level == 1 else
                        "eideploy." if node.level == 2 else "") + (node.module or "")
                names = [name] + [f"{name}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            bad = [n for n in names if n.startswith(above)]
            assert not bad, f"{path.name} imports {bad}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_hold_identical_weights(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
           str(REPO / "tests" / "dist_worker.py"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    start = torch.load(tmp_path / "model.pt", weights_only=True)["metrics"]
    assert start["epochs"] == 1
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    assert float(r0["layers.1.weight_ee"].abs().sum()) > 0


# --------------------------------------------------------------------------- CLI
runner = CliRunner()


def test_cli_train_threads_option_overrides_the_rule(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe()))
    res = runner.invoke(app, ["train", str(recipe), "--epochs", "1", "--threads", "1",
                              "--out", str(tmp_path / "run"), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "1 intra-op thread(s): set by --threads" in res.output
    assert (tmp_path / "run" / "model.pt").is_file()


def test_cli_typo_recipe_exits_2_with_message(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndata: {dataset: digits}\nmodel: {arch: ei-mlp, widths: [8]}\n"
                   "train: {epochs: 1, lr: 0.1}\n")
    res = runner.invoke(app, ["train", str(bad)])
    assert res.exit_code == 2
    assert "unknown key 'model.widths'" in res.output and "Traceback" not in res.output


def test_cli_corrupt_resume_exits_2(tmp_path):
    bad = tmp_path / "latest.pt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    res = runner.invoke(app, ["train", str(REPO / "models/recipes/digits-mlp.yaml"),
                              "--resume", str(bad)])
    assert res.exit_code == 2
    assert "latest.pt" in res.output


def test_cli_evaluate_reports_the_accuracy_of_a_trained_model(trained_run):
    out, result = trained_run
    res = runner.invoke(app, ["evaluate", str(out / "model.pt")])
    assert res.exit_code == 0, res.output
    assert "digits test accuracy" in res.output


def test_shipped_digits_recipe_loads():
    recipe = load_recipe(REPO / "models/recipes/digits-mlp.yaml")
    assert recipe.data.dataset == "digits" and recipe.model.arch == "ei-mlp"
