"""Packaging: the shipped resources are found by name, and a wheel built from the sdist works
from any directory in a fresh virtual environment (issue 16)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from eideploy import resources
from eideploy.data.digits import digits_arrays, load_digits
from eideploy.train import load_recipe
from eideploy.train.recipe import RecipeError

REPO = Path(__file__).resolve().parents[1]
TORCH_PIN = "torch==2.13.0"  # as scripts/setup.sh: an unpinned torch pulls a multi-GB GPU build


def test_shipped_resources_are_listed_by_name():
    assert {"dynapse2", "tiny"} <= set(resources.shipped_targets())
    assert resources.target_path("dynapse2").name == "dynapse2.toml"
    assert {"digits-mlp", "digits-dynapse2", "fashion-dynapse2"} <= set(resources.shipped_recipes())
    assert "digits-dynapse2" in resources.shipped_models()
    assert resources.shipped_models()["digits-dynapse2"].is_file()
    with pytest.raises(resources.ResourceError, match="dynapse2, tiny"):
        resources.target_path("nonesuch")


def test_recipe_by_name_or_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # away from the repository: the name must not depend on the cwd
    by_name = load_recipe("digits-mlp")
    by_path = load_recipe(REPO / "models" / "recipes" / "digits-mlp.yaml")
    assert by_name == by_path and by_name.name == "digits-mlp"
    # A file that exists wins over the shipped recipe of the same name.
    (tmp_path / "digits-mlp").write_text(
        (REPO / "models/recipes/digits-mlp.yaml").read_text().replace("epochs: 30", "epochs: 7"))
    assert load_recipe("digits-mlp").train.epochs == 7
    with pytest.raises(RecipeError, match="shipped recipes .*digits-mlp"):
        load_recipe("no-such-recipe")
    with pytest.raises(RecipeError, match="no such recipe file"):
        load_recipe("missing/digits-mlp.yaml")


def test_shipped_digits_equal_scikit_learns():
    """The shipped file is scikit-learn's copy of the UCI digits, pixel for pixel, and the stored
    split is its stratified 80/20 train_test_split(random_state=0)."""
    sk = pytest.importorskip("sklearn.datasets")
    from sklearn.model_selection import train_test_split

    images, labels, test_index = digits_arrays()
    bunch = sk.load_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, bunch.images)
    np.testing.assert_array_equal(labels, bunch.target)
    _, test = train_test_split(np.arange(1797), test_size=0.2, random_state=0,
                               stratify=bunch.target)
    np.testing.assert_array_equal(test_index, np.sort(test))
    train_set, test_set = load_digits("train"), load_digits("test")
    assert (len(train_set.labels), len(test_set.labels)) == (1437, 360)
    # stratified: every class holds 20% of its samples out, to within one sample
    for c in range(10):
        n = int((labels == c).sum())
        assert abs(int((test_set.labels == c).sum()) - 0.2 * n) <= 1


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 900
         ) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (f"{' '.join(cmd)} exited {proc.returncode}\n"
                                  f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}")
    return proc


@pytest.mark.slow
def test_wheel_from_sdist_works_from_any_directory(tmp_path):
    """Build the sdist and, from it, the wheel; install the wheel into a fresh venv (torch pinned
    first); then, from a directory outside the repository, export the shipped model to dynapse2,
    simulate the export and train a shipped recipe by name for one epoch."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["OMP_NUM_THREADS"] = "1"
    dist = tmp_path / "dist"
    # python -m build with no format builds the sdist, then the wheel from the unpacked sdist.
    _run([sys.executable, "-m", "build", "-o", str(dist), str(REPO)], cwd=tmp_path, env=env)
    sdist, = dist.glob("eideploy-*.tar.gz")
    wheel, = dist.glob("eideploy-*.whl")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[-1] for n in tar.getnames()}
    assert {"hardware/dynapse2.toml", "models/digits-dynapse2.pt",
            "models/recipes/digits-mlp.yaml", "setup.py", "tests/golden/make_golden.py"} <= names
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
    assert {"eideploy/py.typed", "eideploy/_hardware/dynapse2.toml",
            "eideploy/_models/digits-dynapse2.pt", "eideploy/_models/recipes/digits-mlp.yaml",
            "eideploy/data/digits_8x8.npz"} <= names

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, env=env)
    py, cli = venv / "bin" / "python", venv / "bin" / "eideploy"
    _run([str(py), "-m", "pip", "install", "-q", TORCH_PIN], cwd=tmp_path, env=env)
    _run([str(py), "-m", "pip", "install", "-q", str(wheel)], cwd=tmp_path, env=env)

    work = tmp_path / "elsewhere"
    work.mkdir()
    located = _run([str(py), "-c", "import eideploy.resources as r; "
                    "print(r.shipped_models()['digits-dynapse2'])"], cwd=work, env=env)
    model = Path(located.stdout.strip())
    assert model.is_file() and str(venv) in str(model)  # the wheel's copy, not the repository's

    listing = _run([str(cli), "models"], cwd=work, env=env)
    assert "digits-dynapse2" in listing.stdout and "digits-mlp" in listing.stdout
    _run([str(cli), "export", str(model), "--target", "dynapse2", "-o", "OUT"], cwd=work, env=env)
    assert (work / "OUT" / "dynapse2.json").is_file()
    help_text = _run([str(cli), "simulate", "--help"], cwd=work, env=env).stdout
    if "--json" in help_text:  # the JSON output of issue 16 item 3, once the command has it
        sim = _run([str(cli), "simulate", "OUT", "--json"], cwd=work, env=env)
        assert isinstance(json.loads(sim.stdout), dict)
    else:
        _run([str(cli), "simulate", "OUT"], cwd=work, env=env)
    _run([str(cli), "train", "digits-mlp", "--epochs", "1", "--out", "run"], cwd=work, env=env)
    metrics = json.loads((work / "run" / "metrics.json").read_text())
    assert metrics  # a run directory with its record, written from outside the repository
