"""Fixtures of the hostile-input suite (see _hostile.py): a small E-I model's checkpoint record
to tamper with, and a real one-epoch run directory."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from _hostile import REPO, tiny_recipe


@pytest.fixture(scope="session")
def model_record() -> dict[str, Any]:
    """The checkpoint dict of the shipped, trained hardware-aware digits model (an E-I MLP with
    connectivity masks), read by the same safe path as any user's file."""
    return torch.load(REPO / "models" / "digits-dynapse2.pt", map_location="cpu",
                      weights_only=True)


@pytest.fixture
def record(model_record) -> dict[str, Any]:
    """A fresh deep copy of :func:`model_record` to tamper with."""
    return copy.deepcopy(model_record)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A real run directory (one epoch of :func:`tiny_recipe`): model.pt, latest.pt, ..."""
    from eideploy.train import recipe_from_dict, train

    out = tmp_path_factory.mktemp("run") / "tiny"
    train(recipe_from_dict(tiny_recipe()), out_dir=out, device="cpu", progress=False,
          log=lambda m: None, threads=1)
    return out


