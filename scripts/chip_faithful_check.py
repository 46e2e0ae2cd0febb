"""The training-side chip model (``eideploy.nn.chip``) against the analog simulator.

Compiles a model as the exporter does, runs the same test images through the analog simulator
(``AnalogSimulator``) and through ``nn.chip.run_chip`` with the same weights and bias currents,
and prints per population the mean spikes per neuron per image of each and their correlation
over neurons, the two accuracies and the decision agreement::

    OMP_NUM_THREADS=1 python scripts/chip_faithful_check.py models/digits-dynapse2.pt --limit 360
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--limit", type=int, default=360)
    parser.add_argument("--substeps", type=int, default=10)
    parser.add_argument("--mismatch", type=float, default=0.0)
    args = parser.parse_args()

    from eideploy.data import load_dataset, to_float
    from eideploy.nn.chip import draw_mismatch, readout_scores, run_chip
    from eideploy.targets.dynapse2.analog import AnalogSimulator
    from eideploy.targets.dynapse2.config import read_config, write_config
    from eideploy.targets.dynapse2.target import resolve_target
    from eideploy.train.checkpoint import load_model
    from eideploy.train.chip_faithful import (
        chip_constants,
        chip_layers,
        compile_for_chip,
    )
    from eideploy.train.qat import attach_quantizers

    model, _ = load_model(args.model)
    model.eval()
    target = resolve_target("dynapse2")
    attach_quantizers(model, target, seed=0)
    config = compile_for_chip(model, target)
    with tempfile.TemporaryDirectory() as tmp:
        write_config(config, Path(tmp) / "dynapse2.json")
        config = read_config(Path(tmp) / "dynapse2.json")
    data = load_dataset("digits", "test", None, T=model.T)
    x = to_float(data.inputs)[:args.limit]
    y = data.labels[:args.limit].numpy()
    sim = AnalogSimulator(config, mismatch=args.mismatch)
    result = sim.run(x.numpy())
    chip, pops = chip_constants(config, substeps=args.substeps)
    with torch.no_grad():
        layers = chip_layers(model, pops)
        spikes = model.encode_input(x).reshape(model.T, len(x), -1)
        mm = draw_mismatch(layers, args.mismatch) if args.mismatch > 0 else None
        run = run_chip(spikes, layers, chip, mm)
    names = [n for n in result.rates]
    ours = {}
    exc_names = [n for n in names if not n.endswith(".inh")]
    inh_names = [n for n in names if n.endswith(".inh")]
    for i, counts in enumerate(run.counts):
        ours[exc_names[i]] = counts["exc"].mean(0).numpy()
        ours[inh_names[i]] = counts["inh"].mean(0).numpy()
    print(f"{args.model.name}: {len(y)} test images, mismatch {args.mismatch:g}, "
          f"{args.substeps} substeps per step")
    print("| population | analog spikes/neuron/image | chip model | correlation over neurons |")
    print("|---|---:|---:|---:|")
    for name in names:
        a = result.rates[name] * result.window
        b = ours[name]
        r = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
        print(f"| {name} | {a.mean():.2f} | {b.mean():.2f} | {r:.3f} |")
    pred_a = result.predictions()
    pred_c = readout_scores(run).argmax(1).numpy()
    ca, cc = result.counts.astype(float), run.counts[-1]["exc"].numpy()
    r = float(np.corrcoef(ca.ravel(), cc.ravel())[0, 1])
    print(f"readout counts per image and class: correlation {r:.3f}")
    agree = 100 * np.mean(pred_a == pred_c)
    print(f"accuracy: analog {100 * np.mean(pred_a == y):.2f}%, chip model "
          f"{100 * np.mean(pred_c == y):.2f}%, decisions agree on {agree:.1f}%")


if __name__ == "__main__":
    main()
