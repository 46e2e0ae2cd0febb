"""``eideploy export MODEL --target onnx -o model.onnx``: the trained *float* network as ONNX,
checked against onnxruntime before it is kept (docs/onnx.md).

The model is exported by ``torch.onnx.export(..., dynamo=True)``: torch.export traces through the
network's fused autograd functions (the E-I circuit of ``nn/functional.py`` and the multi-step
LIF) into plain ATen operators, which onnxscript translates; the legacy TorchScript exporter
cannot (it stops on the fused functions' ``PythonOp``). The graph takes ``x`` ``(batch,
*in_shape)`` (static input, the same at every step; the batch is dynamic) and returns ``logits``
``(batch, classes)``, the time mean of the readout current, as the torch forward does.

The check runs the written file in onnxruntime on ``samples`` seeded random intensities in
[0, 1) and compares with the torch forward on the same inputs: the largest absolute difference
of the logits and the fraction of equal decisions. A file that onnxruntime cannot load or that
disagrees beyond :data:`TOLERANCE` is not kept. (The *integer* simulator's ONNX form, bit-exact
to the simulator, is ``eideploy.sim.onnx_export``.)
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_bytes
from .export import ExportError

__all__ = ["FloatOnnxResult", "export_float_onnx", "TOLERANCE"]

#: Largest |onnxruntime - torch| logit difference accepted (float32 reassociation: ~2e-6 on
#: the shipped digits model).
TOLERANCE = 1e-4


@dataclass
class FloatOnnxResult:
    """What :func:`export_float_onnx` wrote and measured."""

    path: Path
    samples: int
    max_abs_error: float
    agreement: float
    opset: int

    def summary(self) -> dict[str, Any]:
        return {"samples": self.samples, "max_abs_error": self.max_abs_error,
                "agreement": self.agreement, "opset": self.opset}


def _require() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
        import onnxscript  # noqa: F401  (torch.onnx's dynamo exporter translates with it)
    except ImportError:
        raise ImportError("ONNX export needs onnx, onnxruntime and onnxscript: pip install "
                          "'eideploy[onnx]'") from None
    return onnx, onnxruntime


def export_float_onnx(model: str | Path, out: str | Path, *, overwrite: bool = False,
                      samples: int = 64, seed: int = 0) -> FloatOnnxResult:
    """Export the float network of ``model`` (a ``model.pt``) to the ONNX file ``out`` and
    check it against onnxruntime (module doc); raises ``ExportError`` when they disagree."""
    import torch

    from ..train.checkpoint import load_model

    onnx, ort = _require()
    if Path(model).is_dir():
        raise ExportError(f"{model}: a directory; --target onnx exports the float network of a "
                          "model.pt (a graph directory has no torch model; the integer network "
                          "of an export is written by 'eideploy simulate OUT --onnx')")
    out = Path(out)
    if out.is_dir():
        raise ExportError(f"{out}: is a directory; --target onnx writes one file, e.g. "
                          "-o model.onnx")
    if out.exists() and not overwrite:
        raise ExportError(f"{out}: exists; pass --overwrite to replace it")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    net, _ = load_model(model)
    net.eval()
    in_shape = tuple(int(s) for s in net.in_shape)
    # intensities in [0, 1), as data: an all-zero example sends the tracer down data-dependent
    # branches (an all-zero divisor row) that it cannot export
    example = torch.from_numpy(np.random.default_rng(seed + 1).random((4, *in_shape),
                                                                      dtype=np.float32))
    batch = torch.export.Dim("batch")
    with torch.no_grad():
        net(example)  # a first forward settles the network's lazily cached state
    # torch.onnx reports its progress on stdout and through the logging module: kept quiet,
    # eideploy says what was written and measured
    quiet = logging.getLogger("torch")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(net, (example,), dynamo=True, input_names=["x"],
                                        output_names=["logits"],
                                        dynamic_shapes={"x": {0: batch}}, verbose=False)
    finally:
        quiet.setLevel(level)
    buffer = io.BytesIO()
    program.save(buffer)
    data = buffer.getvalue()
    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto)
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
                default=0)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(seed).random((samples, *in_shape), dtype=np.float32)
    theirs = session.run(["logits"], {"x": x})[0]
    with torch.no_grad():
        ours = net(torch.from_numpy(x)).numpy()
    error = float(np.abs(theirs - ours).max())
    agreement = float((theirs.argmax(1) == ours.argmax(1)).mean())
    if not error <= TOLERANCE:
        raise ExportError(f"{model}: the ONNX form differs from the torch forward by {error:.3g} "
                          f"(tolerance {TOLERANCE:g}) in onnxruntime; nothing written")
    atomic_write_bytes(out, data)
    return FloatOnnxResult(out, samples, error, agreement, int(opset))
