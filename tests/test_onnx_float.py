"""`eideploy export MODEL --target onnx`: the trained float network as ONNX (torch.onnx's dynamo
exporter), checked against onnxruntime on the 8x8 digits (docs/onnx.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from eideploy.cli import app

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

MODEL = Path(__file__).resolve().parents[1] / "models" / "digits-dynapse2.pt"
runner = CliRunner()


def test_float_onnx_of_the_digits_model_matches_torch_in_onnxruntime(tmp_path, digits_arrays):
    import onnxruntime as ort

    from eideploy.train.checkpoint import load_model

    out = tmp_path / "digits.onnx"
    res = runner.invoke(app, ["export", str(MODEL), "--target", "onnx", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "100.00% same class" in res.output
    x, y = digits_arrays
    x = x.reshape(-1, 1, 8, 8)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    theirs = session.run(["logits"], {"x": x.numpy()})[0]
    net, _ = load_model(MODEL)
    with torch.no_grad():
        ours = net.eval()(x).numpy()
    error = float(np.abs(theirs - ours).max())
    agree = float((theirs.argmax(1) == ours.argmax(1)).mean())
    acc_onnx = 100 * float((theirs.argmax(1) == y.numpy()).mean())
    acc_torch = 100 * float((ours.argmax(1) == y.numpy()).mean())
    print(f"float ONNX on {len(x)} digits: max |onnxruntime - torch| {error:.2e}, "
          f"{100 * agree:.2f}% same class, accuracy {acc_onnx:.2f}% (torch {acc_torch:.2f}%)")
    assert error < 1e-4 and agree == 1.0 and acc_onnx == acc_torch > 95.0
    # an existing file is kept unless --overwrite
    res = runner.invoke(app, ["export", str(MODEL), "--target", "onnx", "-o", str(out)])
    assert res.exit_code == 2 and "--overwrite" in res.output


def test_float_onnx_without_onnxscript_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    res = runner.invoke(app, ["export", str(MODEL), "--target", "onnx", "-o",
                              str(tmp_path / "m.onnx")])
    assert res.exit_code == 3 and "eideploy[onnx]" in res.output
    assert not (tmp_path / "m.onnx").exists()
