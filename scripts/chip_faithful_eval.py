"""A model as the analog chip would run it: integer simulator and analog simulator side by side.

Compiles the model as the exporter does (``compile_graph``; the same configuration
``eideploy export`` writes to ``dynapse2.json``), then prints the integer simulator's accuracy
(``exact`` division) and the analog simulator's at each mismatch level over ``--trials`` draws
(trial ``i``: seed ``i``), uncalibrated and, as a separate line, after the host-side readout
calibration on ``--calibrate`` unlabelled training images. ``--json`` writes the numbers::

    OMP_NUM_THREADS=1 python scripts/chip_faithful_eval.py models/digits-dynapse2.pt --trials 10
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--levels", type=float, nargs="+", default=[0.0, 0.1, 0.2])
    parser.add_argument("--calibrate", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from eideploy.data import load_dataset, to_float
    from eideploy.graph.lowering import lower
    from eideploy.sim.integer import accuracy as integer_accuracy
    from eideploy.targets.dynapse2.analog import accuracy_trials
    from eideploy.targets.dynapse2.compile import compile_graph
    from eideploy.targets.dynapse2.config import read_config, write_config
    from eideploy.targets.dynapse2.target import resolve_target
    from eideploy.train.checkpoint import load_model

    model, _ = load_model(args.model)
    compiled = compile_graph(lower(model), resolve_target("dynapse2"))
    with tempfile.TemporaryDirectory() as tmp:
        write_config(compiled.config, Path(tmp) / "dynapse2.json")
        config = read_config(Path(tmp) / "dynapse2.json")
    data = load_dataset("digits", "test", None, T=model.T)
    x, y = to_float(data.inputs).numpy(), data.labels.numpy()
    if args.limit:
        x, y = x[:args.limit], y[:args.limit]
    integer, _ = integer_accuracy(compiled.qgraph.graph, x, y, "exact")
    x_cal = None
    if args.calibrate:
        x_cal = to_float(load_dataset("digits", "train", None, T=model.T).inputs).numpy()
        x_cal = x_cal[:args.calibrate]
    print(f"{args.model}: {len(y)} test images; integer simulator (exact) {integer:.2f}%")
    rows = {"model": str(args.model), "integer": integer, "analog": []}
    for level in args.levels:
        trials = 1 if level == 0 else args.trials
        t0 = time.perf_counter()
        acc = accuracy_trials(config, x, y, mismatch=level, trials=trials, calibration=x_cal)
        line = (f"mismatch {100 * level:g}%: {acc.mean:.2f} +- {acc.std:.2f}% "
                f"(min {min(acc.per_trial):.2f}, {trials} draws)")
        if acc.calibrated_per_trial is not None:
            line += f"; with readout calibration {acc.calibrated_mean:.2f} +- " \
                    f"{acc.calibrated_std:.2f}%"
        print(line + f" [{(time.perf_counter() - t0) / trials:.1f} s/draw]", flush=True)
        rows["analog"].append({"mismatch": level, "mean": acc.mean, "std": acc.std,
                               "per_trial": acc.per_trial,
                               "calibrated": acc.calibrated_per_trial})
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(f"per-trial means: {[round(float(np.mean(r['per_trial'])), 2) for r in rows['analog']]}")


if __name__ == "__main__":
    main()
