"""Shared fixtures: a real batch of scikit-learn's 8x8 digits (offline, ships with sklearn)."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def digits_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    d = load_digits()
    return (torch.tensor(d.data / 16.0, dtype=torch.float32),
            torch.tensor(d.target, dtype=torch.long))


@pytest.fixture
def digits_batch(digits_arrays) -> torch.Tensor:
    return digits_arrays[0][:256].clone()


@pytest.fixture
def digits_labels(digits_arrays) -> torch.Tensor:
    return digits_arrays[1][:256].clone()


@pytest.fixture(scope="session")
def tiny():
    """The small fictional target of hardware/tiny.toml."""
    from eideploy.targets.dynapse2 import load_target

    return load_target("tiny")


@pytest.fixture(scope="session")
def dynapse2():
    """The DYNAP-SE2 Stack board of hardware/dynapse2.toml."""
    from eideploy.targets.dynapse2 import load_target

    return load_target("dynapse2")


@pytest.fixture(scope="session")
def quantized_digits(tmp_path_factory):
    """The shipped hardware-sized digits model exported once per session: its quantized graph,
    with the export directory in ``meta["export_dir"]``."""
    from pathlib import Path

    from eideploy.graph import EIGraph
    from eideploy.pipeline.export import export_model

    model = Path(__file__).resolve().parents[1] / "models" / "digits-dynapse2.pt"
    if not model.is_file():
        pytest.skip(f"{model} is not shipped in this checkout")
    out = tmp_path_factory.mktemp("digits-export") / "export"
    export_model(model, out, target="dynapse2")
    graph = EIGraph.load(out / "quantized")
    graph.meta["export_dir"] = str(out)
    return graph


@pytest.fixture(scope="session")
def digits_one_chip_export(tmp_path_factory):
    """The shipped digits model exported for a one-chip board, once per session (the board and
    the virtual board tests read it; none writes into it)."""
    from pathlib import Path

    from eideploy.pipeline.export import export_model

    model = Path(__file__).resolve().parents[1] / "models" / "digits-dynapse2.pt"
    out = tmp_path_factory.mktemp("digits-one-chip") / "out"
    export_model(model, out, target="dynapse2", chips=1)
    return out
