"""DYNAP-SE2 weight codebooks side by side: ours, the fixed 1:2:4:8 ladder and rockpool's.

One core holds 256 neurons with 64 CAM entries each, and all its synapses share 4 base weights
(16 levels). On the same core-sized matrices, this prints the relative RMSE of the reconstructed
non-zero weights (``||w - w_q|| / ||w||``), the synapses dropped to mask 0 and the time of:

* ``ours``: :func:`eideploy.quant.fit_codebook` (alternating assignment / NNLS, 8 restarts);
* ``ladder``: bases ``s * (1, 2, 4, 8)`` with the best scale ``s`` (:func:`fixed_ladder_codebook`);
* ``ladder max/15``: the same ladder scaled so that its top level is the largest weight;
* ``rockpool``: ``rockpool.devices.dynapse.quantization.autoencoder_quantization`` with its
  defaults (Adam, step 1e-4, stops when the loss stalls for 5 checkpoints of 1000 epochs; or a
  fixed number of epochs with ``--rockpool-epochs``), after ``np.random.seed(seed)`` since it draws
  its initial weights from numpy's global RNG. Only where jax is installed; its time includes jit.

Matrices: ``exponential`` (E-I Init draws W_EE and W_IE from an exponential distribution),
``lognormal`` (a heavy tail), ``trained-mix`` (a core of E neurons whose 64 CAM entries are 48
AMPA inputs, log-normal with 20% pruned to zero, and 8 inhibitory neurons each seen twice, GABA
with W_EI and SHUNT with W_EI * g_I) and, with ``--model model.pt``, the trained weights of a
checkpoint (per E-I layer and kind: W_EE and W_EI, W_EI * g_I rows of 256 E neurons together, W_IE
rows of the I neurons apart; dense layers keep their full fan-in).

    python benchmarks/quantize.py
    python benchmarks/quantize.py --model runs/digits-mlp/model.pt --json quantize.json
    PYTHONPATH=/path/to/jax python benchmarks/quantize.py   # adds rockpool's column
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eideploy.quant import (
    Codebook,
    fit_codebook,
    fixed_ladder_codebook,
    quantization_stats,
    quantize,
    quantize_per_core,
)

NEURONS, CAM_ENTRIES, CORES = 256, 64, 16


@dataclass
class Result:
    matrix: str
    method: str
    relative_rmse: float
    dropped: int
    n_synapses: int
    seconds: float
    bases: list[float]


# ---------------------------------------------------------------- matrices
def synthetic_matrices(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (NEURONS, CAM_ENTRIES)
    ampa = rng.lognormal(np.log(0.05), 0.8, (NEURONS, 48))
    ampa[rng.random(ampa.shape) < 0.2] = 0.0
    w_ei = rng.exponential(0.3, (NEURONS, 8))
    g_i = rng.uniform(1.0, 3.0, 8)
    return {"exponential": rng.exponential(0.1, shape),
            "lognormal": rng.lognormal(np.log(0.1), 1.0, shape),
            "trained-mix": np.concatenate([ampa, w_ei, w_ei * g_i], axis=1)}


def model_matrices(path: Path) -> dict[str, np.ndarray]:
    """Core-sized weight groups of a trained checkpoint (plain tensors, weights_only load)."""
    from eideploy.train.checkpoint import read_checkpoint

    state = read_checkpoint(path)["state_dict"]
    out: dict[str, np.ndarray] = {}
    layers = sorted(k[: -len(".weight_ee")] for k in state if k.endswith(".weight_ee"))
    for layer in layers:
        w_ee = state[f"{layer}.weight_ee"].float().numpy()
        w_ie = state[f"{layer}.weight_ie"].float().numpy()
        w_ei = state[f"{layer}.weight_ei"].float().numpy()
        g_i = state[f"{layer}.gain_i"].float().numpy()
        e_rows = np.concatenate([w_ee.reshape(w_ee.shape[0], -1), w_ei, w_ei * g_i], axis=1)
        for start in range(0, e_rows.shape[0], NEURONS):
            out[f"{layer} E[{start}:]"] = np.abs(e_rows[start:start + NEURONS])
        out[f"{layer} I"] = np.abs(w_ie.reshape(w_ie.shape[0], -1))
    return out


# ---------------------------------------------------------------- methods
def timed(fn: Callable[[], Codebook], repeats: int) -> tuple[Codebook, float]:
    times, codebook = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        codebook = fn()
        times.append(time.perf_counter() - t0)
    assert codebook is not None
    return codebook, float(np.median(times))


def ours_and_ladders(name: str, w: np.ndarray, seed: int, repeats: int) -> list[Result]:
    results = []
    for method, fn in (("ours", lambda: fit_codebook(w, seed=seed)),
                       ("ladder", lambda: fixed_ladder_codebook(w)),
                       ("ladder max/15", lambda: Codebook(float(w.max()) / 15 * 2.0 ** np.arange(4),
                                                          method="ladder"))):
        codebook, seconds = timed(fn, repeats)
        stats = quantization_stats(w, quantize(w, codebook)[1])
        results.append(Result(name, method, stats.relative_rmse, stats.dropped, stats.n_synapses,
                              seconds, [float(b) for b in codebook.bases]))
    return results


def rockpool_result(name: str, w: np.ndarray, seed: int, epochs: int | None) -> Result:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        from rockpool.devices.dynapse.quantization import autoencoder_quantization
        from rockpool.devices.dynapse.quantization.autoencoder.weight_handler import (
            WeightHandler,
        )
    finally:
        root.setLevel(level)
    iscale = 1e-8
    options: dict[str, Any] = {} if epochs is None else {"fixed_epoch": True,
                                                         "num_epoch": epochs}
    np.random.seed(seed)  # its initial encoder/decoder weights come from numpy's global RNG
    t0 = time.perf_counter()
    # rockpool's matrices are (pre, post): our (neurons, synapses) transposed, one cluster (core)
    spec = autoencoder_quantization(n_cluster=1, core_map=np.zeros(w.shape[0], dtype=int),
                                    weights_in=w.T.copy(), weights_rec=None, Iscale=iscale,
                                    **options)
    seconds = time.perf_counter() - t0
    iw = np.array([spec[f"Iw_{k}"][0] for k in range(4)], dtype=np.float64)
    recon = WeightHandler.restore_weight_matrix(4, iw, spec["weights_in"][0],
                                                spec["sign_in"][0]).T / iscale
    stats = quantization_stats(w, np.abs(recon))
    return Result(name, "rockpool", stats.relative_rmse, stats.dropped, stats.n_synapses,
                  seconds, [float(b) for b in iw / iscale])


def sixteen_cores(seed: int) -> float:
    rng = np.random.default_rng(seed)
    groups = {core: rng.exponential(0.1, (NEURONS, CAM_ENTRIES)) for core in range(CORES)}
    t0 = time.perf_counter()
    quantize_per_core(groups, seed)
    return time.perf_counter() - t0


# ---------------------------------------------------------------- report
def table(results: list[Result], methods: list[str]) -> str:
    head = "| matrix | synapses | " + " | ".join(
        f"{m} rel. RMSE | {m} dropped | {m} time" for m in methods) + " |"
    lines = [head, "|" + "---|" * (2 + 3 * len(methods))]
    matrices = list(dict.fromkeys(r.matrix for r in results))
    for matrix in matrices:
        row = {r.method: r for r in results if r.matrix == matrix}
        cells = [matrix, str(next(iter(row.values())).n_synapses)]
        for m in methods:
            r = row.get(m)
            timing = "-" if m == "ladder max/15" else _fmt_time(r.seconds) if r else "-"
            cells += ([f"{100 * r.relative_rmse:.2f}%", str(r.dropped), timing]
                      if r else ["-", "-", "-"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt_time(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.1f} s"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="a trained model.pt: add its weights")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats (median) for ours")
    ap.add_argument("--rockpool-epochs", type=int, default=None,
                    help="fixed epochs for rockpool's quantizer (default: its own stopping rule)")
    ap.add_argument("--no-rockpool", action="store_true", help="skip rockpool even with jax")
    ap.add_argument("--json", type=Path, help="also write the results as JSON")
    args = ap.parse_args(argv)

    matrices = synthetic_matrices(args.seed)
    if args.model:
        matrices.update(model_matrices(args.model))
    have_jax = importlib.util.find_spec("jax") is not None
    run_rockpool = have_jax and not args.no_rockpool

    results: list[Result] = []
    for name, w in matrices.items():
        results += ours_and_ladders(name, w, args.seed, args.repeats)
        if run_rockpool:
            results.append(rockpool_result(name, w, args.seed, args.rockpool_epochs))
    methods = ["ours", "ladder", "ladder max/15"] + (["rockpool"] if run_rockpool else [])
    print(table(results, methods))
    cores_s = sixteen_cores(args.seed)
    print(f"\n{CORES} cores x {NEURONS} x {CAM_ENTRIES} exponential weights, quantize_per_core: "
          f"{_fmt_time(cores_s)}")
    if not have_jax:
        print("rockpool column skipped: its autoencoder_quantization needs jax, which is not "
              "installed (pip install eideploy[jax])")
    if args.json:
        doc = {"python": sys.version.split()[0], "platform": platform.platform(),
               "seed": args.seed, "rockpool_epochs": args.rockpool_epochs,
               "rockpool": run_rockpool, "sixteen_cores_seconds": cores_s,
               "results": [asdict(r) for r in results]}
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
