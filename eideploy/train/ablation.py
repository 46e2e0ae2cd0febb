"""The paper's ablations (Tables 2 and 3) in miniature: each switch flipped, a few seeds.

    python -m eideploy.train.ablation models/recipes/digits-deep-mlp.yaml --seeds 3 \
        --out runs/ablation --markdown docs/ablation-table.md

Every variant trains the same recipe with one ``EIOptions`` field changed; the table reports the
best and final test accuracy (mean and spread over seeds) and how many runs collapsed (final
accuracy at chance level or loss not finite), the paper's failure criterion.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

from .recipe import Recipe, load_recipe
from .trainer import train

__all__ = ["VARIANTS", "run_ablation", "markdown_table"]

#: (label, paper row, options override)
VARIANTS: list[tuple[str, str, dict]] = [
    ("full method", "Table 2 row 1", {}),
    ("Kaiming init, clamped >= 0", "Table 2: Kaiming + sign constraint",
     {"init": "kaiming-clamped"}),
    ("Kaiming init, unconstrained", "Table 2: Kaiming w/o constraint",
     {"init": "kaiming-unconstrained"}),
    ("fixed eps = 1e-8", "Table 2: fixed-eps", {"stabilisation": "fixed-eps", "eps": 1e-8}),
    ("fixed eps = 1e-4", "Table 2: fixed-eps", {"stabilisation": "fixed-eps", "eps": 1e-4}),
    ("fixed eps = 1e-1", "Table 2: fixed-eps", {"stabilisation": "fixed-eps", "eps": 1e-1}),
    ("no W_EI gradient scaling", "Table 2 / Table 3: none", {"wei_grad_scale": "none"}),
    ("W_EI gradient scale 1/sqrt(d)", "Table 3", {"wei_grad_scale": "1/sqrt(d)"}),
]


def _variant_recipe(base: Recipe, override: dict, seed: int) -> Recipe:
    options = base.model.options.model_copy(update=override)
    model = base.model.model_copy(update={"options": options})
    return base.model_copy(update={"model": model, "seed": seed})


def run_ablation(base: Recipe, *, seeds: int, out_dir: Path, device: str = "cpu",
                 epochs: int | None = None, only: list[str] | None = None,
                 log=print) -> list[dict]:
    rows = []
    for label, paper, override in VARIANTS:
        if only and not any(word in label for word in only):
            continue
        runs = []
        for k in range(seeds):
            seed = base.seed + k
            recipe = _variant_recipe(base, override, seed)
            run_dir = out_dir / f"{label.replace(' ', '_').replace('/', '')}-seed{seed}"
            t0 = time.perf_counter()
            result = train(recipe, out_dir=run_dir, device=device, epochs=epochs,
                           progress=False, log=lambda m: None)
            losses = [h["train_loss"] for h in result.history]
            chance = 100.0 / (10 if base.data.dataset in ("digits", "fashion-mnist") else 100)
            collapsed = (not all(math.isfinite(v) for v in losses)
                         or result.final_accuracy <= chance * 1.5)
            runs.append({"seed": seed, "best": result.best_accuracy,
                         "final": result.final_accuracy, "collapsed": collapsed,
                         "seconds": time.perf_counter() - t0})
            log(f"{label:32s} seed {seed}: best {result.best_accuracy:6.2f}% final "
                f"{result.final_accuracy:6.2f}%{'  COLLAPSED' if collapsed else ''}")
        rows.append({"variant": label, "paper": paper, "options": override, "runs": runs})
    return rows


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def markdown_table(rows: list[dict]) -> str:
    lines = ["| variant | paper row | best test acc. (%) | final test acc. (%) | collapsed |",
             "|---|---|---|---|---|"]
    for row in rows:
        runs = row["runs"]
        lines.append(f"| {row['variant']} | {row['paper']} | "
                     f"{_mean_sd([r['best'] for r in runs])} | "
                     f"{_mean_sd([r['final'] for r in runs])} | "
                     f"{sum(r['collapsed'] for r in runs)}/{len(runs)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--markdown", type=Path, default=None, help="write the table here")
    parser.add_argument("--only", nargs="*", default=None,
                        help="run only variants whose label contains one of these words")
    args = parser.parse_args(argv)
    base = load_recipe(args.recipe)
    rows = run_ablation(base, seeds=args.seeds, out_dir=args.out, device=args.device,
                        epochs=args.epochs, only=args.only)
    table = markdown_table(rows)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.json").write_text(json.dumps(rows, indent=2))
    if args.markdown:
        args.markdown.write_text(table)


if __name__ == "__main__":
    main()
