"""Accuracy of the shipped digits model in the analog DYNAP-SE2 simulation vs device mismatch.

Exports the model (``eideploy.pipeline.export.export_model``) to a temporary directory, measures the
integer simulator (``exact`` division) on the digits test split, then runs
``eideploy.targets.dynapse2.analog.accuracy_trials`` at 0, 5, 10 and 20% mismatch. Mismatch 0 is
deterministic: it runs once. Prints a markdown table (mean ± sample std over the trials) and
writes ``analog-mismatch.png`` and ``analog-mismatch.json`` to ``--out``
(docs/analog-model.md §7 holds the numbers)::

    OMP_NUM_THREADS=1 python scripts/analog_mismatch.py --trials 10

Each mismatch draw is also decided after a host-side readout calibration (column
"calibrated"): the host runs ``--calibration`` unlabelled training images through the
(mismatched) chip and through the nominal analog simulation (mismatch 0), and scales each readout
neuron's count by the ratio of its nominal to its measured mean count (one number per class,
measured once per chip); the test split is then decided on the scaled counts.

``--per-population`` adds, at 10% mismatch, one row per population with the mismatch limited to
that population's neurons and the synapses onto them: where the accuracy is lost.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LEVELS = (0.0, 0.05, 0.10, 0.20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="mismatch draws per level")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "digits-dynapse2.pt")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--seed", type=int, default=0, help="trial i draws with seed + i")
    parser.add_argument("--calibration", type=int, default=360,
                        help="unlabelled training images for the readout calibration")
    parser.add_argument("--per-population", action="store_true")
    args = parser.parse_args()

    from eideploy.data import load_dataset, to_float
    from eideploy.graph import EIGraph
    from eideploy.graph.execute import readout_decision
    from eideploy.pipeline.export import export_model
    from eideploy.sim.integer import accuracy as integer_accuracy
    from eideploy.targets.dynapse2.analog import (
        DEFAULT_DT,
        TAIL_STEPS,
        AnalogSimulator,
        accuracy_trials,
    )
    from eideploy.targets.dynapse2.config import read_config

    with tempfile.TemporaryDirectory() as tmp:
        export_model(args.model, Path(tmp) / "export", target="dynapse2")
        config = read_config(Path(tmp) / "export" / "dynapse2.json")
        graph = EIGraph.load(Path(tmp) / "export" / "quantized")
    dataset = load_dataset("digits", "test", None, T=graph.T)
    x, y = to_float(dataset.inputs).numpy(), dataset.labels.numpy()
    integer, _ = integer_accuracy(graph, x, y, "exact")
    x_cal = to_float(load_dataset("digits", "train", None, T=graph.T).inputs).numpy()
    x_cal = x_cal[:args.calibration]
    reference = AnalogSimulator(config).run(x_cal).counts.mean(axis=0)  # the chip as designed
    print(f"{args.model.name}: digits test split, {len(y)} samples; integer simulator (exact): "
          f"{integer:.2f}%")

    rows = []
    for level in LEVELS:
        trials = 1 if level == 0 else args.trials
        start = time.perf_counter()
        result = accuracy_trials(config, x, y, mismatch=level, trials=trials, seed=args.seed,
                                 progress=True)
        elapsed = (time.perf_counter() - start) / trials
        calibrated = []
        for i in range(trials):
            chip = AnalogSimulator(config, mismatch=level, seed=args.seed + i)
            scale = reference / np.maximum(chip.run(x_cal).counts.mean(axis=0), 1e-9)
            run = chip.run(x)
            calibrated.append(100.0 * float(np.mean(
                readout_decision(run.counts * scale, run.membrane, run.classes) == y)))
        rows.append({"mismatch": level, "trials": trials, "mean": result.mean,
                     "std": result.std, "per_trial": result.per_trial,
                     "calibrated_mean": float(np.mean(calibrated)),
                     "calibrated_std": float(np.std(calibrated, ddof=1)) if trials > 1 else 0.0,
                     "calibrated_per_trial": calibrated, "seconds_per_trial": elapsed})
    per_population = []
    if args.per_population:
        for name in (p.name for p in graph.populations if p.role != "input"):
            result = accuracy_trials(config, x, y, mismatch=0.10, trials=args.trials,
                                     seed=args.seed, mismatch_populations=[name], progress=True)
            per_population.append({"population": name, "mismatch": 0.10, "mean": result.mean,
                                   "std": result.std, "per_trial": result.per_trial})

    print()
    print("| mismatch | trials | accuracy (mean ± std) | min | max | calibrated readout "
          "(mean ± std) | s per trial |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {100 * row['mismatch']:.0f}% | {row['trials']} | {row['mean']:.2f} ± "
              f"{row['std']:.2f}% | {min(row['per_trial']):.2f}% | {max(row['per_trial']):.2f}% "
              f"| {row['calibrated_mean']:.2f} ± {row['calibrated_std']:.2f}% "
              f"| {row['seconds_per_trial']:.1f} |")
    if per_population:
        print()
        print("| 10% mismatch only in | accuracy (mean ± std) |")
        print("|---|---:|")
        for row in per_population:
            print(f"| {row['population']} | {row['mean']:.2f} ± {row['std']:.2f}% |")

    args.out.mkdir(parents=True, exist_ok=True)
    document = {"model": args.model.name, "split": "digits test", "samples": int(len(y)),
                "integer_exact": integer, "dt": DEFAULT_DT, "tail_steps": TAIL_STEPS,
                "calibration_images": int(len(x_cal)),
                "unset": "derived", "seed": args.seed, "levels": rows,
                "per_population": per_population}
    (args.out / "analog-mismatch.json").write_text(json.dumps(document, indent=1) + "\n")
    plot(rows, integer, args.out / "analog-mismatch.png")
    print(f"\nwrote {args.out / 'analog-mismatch.json'} and {args.out / 'analog-mismatch.png'}")


def plot(rows: list[dict], integer: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    level = np.array([100 * r["mismatch"] for r in rows])
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
    for row in rows:
        ax.scatter(np.full(len(row["per_trial"]), 100 * row["mismatch"]), row["per_trial"],
                   s=12, color="0.6", zorder=2)
    ax.errorbar(level, [r["mean"] for r in rows], yerr=[r["std"] for r in rows], marker="o",
                color="C0", capsize=3, zorder=3, label="analog simulation (mean ± std)")
    ax.errorbar(level, [r["calibrated_mean"] for r in rows],
                yerr=[r["calibrated_std"] for r in rows], marker="s", color="C1", capsize=3,
                zorder=3, label="with host-side readout calibration")
    ax.axhline(integer, color="C2", linestyle="--", label=f"integer simulator ({integer:.2f}%)")
    ax.axhline(10.0, color="0.5", linestyle=":", label="chance (10%)")
    ax.set_xlabel("device mismatch (relative std, %)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_xticks(level)
    ax.set_title("digits on simulated DYNAP-SE2: accuracy vs mismatch", fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


if __name__ == "__main__":
    main()
