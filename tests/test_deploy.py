"""The deployment object (eideploy.pipeline.deploy): the shipped digits model deployed once,
run by every backend on the digits test split, saved as an export the command line reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from eideploy.cli import app
from eideploy.data import load_dataset, to_float
from eideploy.pipeline.deploy import BACKENDS, Deployment, deploy
from eideploy.pipeline.export import export_model
from eideploy.targets.dynapse2.analog import AnalogSimulator
from eideploy.targets.dynapse2.config import read_config

MODEL = Path(__file__).resolve().parents[1] / "models" / "digits-dynapse2.pt"
#: eideploy evaluate / simulate on the 360 test images: model, float graph, quantized graph and
#: integer simulator (exact division) all at 97.78% (352 of 360)
CLI_ACCURACY = 100.0 * 352 / 360


@pytest.fixture(scope="module")
def deployed() -> Deployment:
    return deploy(MODEL, target="dynapse2")


@pytest.fixture(scope="module")
def digits_test(deployed) -> tuple[np.ndarray, np.ndarray]:
    test = load_dataset("digits", "test", T=deployed.graph.T)
    return to_float(test.inputs).numpy(), test.labels.numpy()


@pytest.mark.parametrize("backend", ["torch", "float", "quantized", "integer"])
def test_every_digital_backend_scores_what_the_command_line_prints(backend, deployed,
                                                                    digits_test):
    x, y = digits_test
    assert len(y) == 360
    assert deployed.accuracy(x, y, backend=backend) == pytest.approx(CLI_ACCURACY)


def test_each_backend_computes_what_the_stage_before_it_computes(deployed, digits_test):
    x, _ = digits_test
    # the float graph is the trained model; the integer simulator is the quantized graph
    assert np.array_equal(deployed.predict(x, backend="float"),
                          deployed.predict(x, backend="torch"))
    integer = deployed.predict(x, backend="integer")
    assert integer.shape == (360,)
    assert np.array_equal(integer, deployed.predict(x, backend="quantized"))
    # quantization moves 2 of 360 decisions (each way, so the accuracy stays)
    assert int((integer != deployed.predict(x, backend="float")).sum()) <= 2
    # one batch or many: the same predictions
    assert np.array_equal(integer, deployed.predict(x, backend="integer", batch_size=50))


def test_predict_takes_torch_tensors_as_numpy_arrays(deployed, digits_test):
    import torch

    x, _ = digits_test
    expected = deployed.predict(x[:20], backend="integer")
    assert np.array_equal(deployed.predict(torch.from_numpy(x[:20]), backend="integer"),
                          expected)


def test_the_export_has_eight_readout_neurons_per_class(deployed):
    assert deployed.readout_copies == 8
    settings = deployed.graph.readout_settings
    assert deployed.graph.population(settings.population).size == 8 * settings.classes


def test_analog_is_the_simulator_of_the_saved_configuration(deployed, digits_test, tmp_path):
    x, y = digits_test
    nominal = deployed.predict(x[:40], backend="analog")
    assert 100.0 * np.mean(nominal == y[:40]) >= 90.0  # 95.0% measured (38 of 40)
    out = deployed.save(tmp_path / "export")
    from_file = AnalogSimulator(read_config(out / "dynapse2.json")).run(x[:40]).predictions()
    assert np.array_equal(nominal, np.asarray(from_file))
    # a mismatch draw is the simulator's seeded draw
    drawn = deployed.predict(x[:10], backend="analog", mismatch=0.1, seed=3)
    sim = AnalogSimulator(deployed.config, mismatch=0.1, seed=3)
    assert np.array_equal(drawn, np.asarray(sim.run(x[:10]).predictions()))


def test_the_virtual_board_answers_as_the_nominal_chip(deployed, digits_test):
    x, y = digits_test
    board = deployed.predict(x[:6], backend="board")
    assert np.array_equal(board, deployed.predict(x[:6], backend="analog"))
    assert int((board == y[:6]).sum()) >= 5  # 5 of 6 measured


def test_save_writes_the_export_of_eideploy_export_and_inspect_accepts_it(deployed, tmp_path):
    out = deployed.save(tmp_path / "deployed")
    reference = export_model(MODEL, tmp_path / "cli").out_dir
    for name in ("manifest.json", "dynapse2.json", "report.json"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    res = CliRunner().invoke(app, ["inspect", str(out), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["kind"] == "export" and set(doc["files"].values()) == {"ok"}
    assert json.loads((out / "report.json").read_text())["summary"]["neurons"] == \
        deployed.report()["summary"]["neurons"]


def test_a_graph_deploys_too_and_saves_without_a_model(deployed, digits_test, tmp_path):
    from_graph = deploy(deployed.graph)  # it has its 8 copies per class already
    assert from_graph.readout_copies == 1
    x, _ = digits_test
    assert np.array_equal(from_graph.predict(x, backend="integer"),
                          deployed.predict(x, backend="integer"))
    with pytest.raises(ValueError, match="needs a trained model"):
        from_graph.predict(x[:2], backend="torch")
    out = from_graph.save(tmp_path / "graph-export")
    assert json.loads((out / "manifest.json").read_text())["source"]["kind"] == "graph"


def test_an_unknown_backend_or_input_is_refused_with_the_choices(deployed):
    with pytest.raises(ValueError, match="choose one of " + ", ".join(BACKENDS)):
        deployed.predict(np.zeros((1, 1, 8, 8), np.float32), backend="gpu")
    with pytest.raises(TypeError, match="model.pt"):
        deploy(42)


def test_saving_refuses_a_model_file_changed_since_it_was_deployed(tmp_path):
    model = tmp_path / "model.pt"
    shutil.copyfile(MODEL, model)
    d = deploy(model)
    with model.open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ValueError, match="changed since it was deployed"):
        d.save(tmp_path / "export")
    assert not (tmp_path / "export").exists()
