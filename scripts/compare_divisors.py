"""Train one hardware recipe with both divisors and print float vs exported accuracy.

The chip realises ``I_div + leak`` (``target.divisor: chip``); the paper's adaptive
stabilisation (``target.divisor: adaptive``) replaces zero divisors by the row's smallest positive
one, which the chip cannot compute. This trains the same recipe under each, for a few seeds, and
prints a markdown table of the numbers in docs/hardware-aware.md:

    python scripts/compare_divisors.py models/recipes/digits-dynapse2.yaml --seeds 2025 1 2

Run directories: ``runs/<recipe>-<divisor>-s<seed>``. Set ``OMP_NUM_THREADS=1`` on a shared or
small CPU: these networks are too small to gain from a second thread.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from eideploy.pipeline.train import train_and_summarise
from eideploy.train import load_recipe

COLUMNS = (("float", "torch_accuracy", "float model (torch)"),
           ("float", "exported_accuracy", "float model, exported"),
           ("model", "torch_accuracy", "after QAT (torch, float weights)"),
           ("model", "exported_accuracy", "after QAT, exported"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    args = parser.parse_args()
    base = load_recipe(args.recipe)
    if base.target is None:
        parser.error(f"{args.recipe} has no target section")
    seeds = args.seeds or [base.seed]
    results: dict[str, list[dict]] = {}
    for divisor in ("chip", "adaptive"):
        for seed in seeds:
            recipe = base.model_copy(update={
                "seed": seed, "target": base.target.model_copy(update={"divisor": divisor})})
            out = args.runs / f"{base.name}-{divisor}-s{seed}"
            result = train_and_summarise(recipe, out_dir=out, progress=False, log=lambda m: None)
            hardware = json.loads((result.run_dir / "metrics.json").read_text())["hardware"]
            results.setdefault(divisor, []).append(hardware)
            print(f"{divisor} seed {seed}: " + ", ".join(
                f"{label} {hardware[key][field]:.2f}%" for key, field, label in COLUMNS
                if key in hardware and hardware[key][field] is not None), flush=True)
    print()
    print("| divisor | " + " | ".join(label for _, _, label in COLUMNS) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    for divisor, runs in results.items():
        cells = []
        for key, field, _ in COLUMNS:
            values = [r[key][field] for r in runs if key in r and r[key][field] is not None]
            if not values:
                cells.append("n/a")
            elif len(values) == 1:
                cells.append(f"{values[0]:.2f}")
            else:
                cells.append(f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}")
        name = "chip (I_div + leak)" if divisor == "chip" else "adaptive (paper)"
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
