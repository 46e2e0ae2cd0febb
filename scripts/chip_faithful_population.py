"""What several readout neurons per class would buy, measured in the chip model.

Each class's readout neuron is repeated ``k`` times (same synapses, its own mismatch draw), the
host sums the ``k`` counts per class; accuracy over mismatch draws on the digits test split.
A graph change (a readout population of ``k * classes`` neurons decided by summed counts) would
be needed to deploy it; this script only measures it::

    OMP_NUM_THREADS=1 python scripts/chip_faithful_population.py models/digits-dynapse2.pt
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--mismatch", type=float, nargs="+", default=[0.1, 0.2])
    parser.add_argument("--core-fraction", type=float, default=0.25)
    parser.add_argument("--draws", type=int, default=3)
    args = parser.parse_args()

    from eideploy.data import load_dataset, to_float
    from eideploy.nn.chip import draw_mismatch, readout_scores, run_chip
    from eideploy.targets.dynapse2.target import resolve_target
    from eideploy.train.checkpoint import load_model
    from eideploy.train.chip_faithful import chip_constants, chip_layers, compile_for_chip
    from eideploy.train.qat import attach_quantizers

    model, _ = load_model(args.model)
    model.eval()
    target = resolve_target("dynapse2")
    attach_quantizers(model, target, seed=0)
    chip, pops = chip_constants(compile_for_chip(model, target))
    test = load_dataset("digits", "test", None, T=model.T)
    x, y = to_float(test.inputs), test.labels
    spikes = model.encode_input(x).reshape(model.T, len(x), -1)
    print("| mismatch (log-normal, relative std) | readout neurons per class | accuracy "
          "(mean +- std over draws) |")
    print("|---:|---:|---:|")
    for m in args.mismatch:
        log_var = math.log1p(m * m)
        s_core = math.sqrt(args.core_fraction * log_var)
        s_dev = math.sqrt((1 - args.core_fraction) * log_var)
        for k in args.copies:
            with torch.no_grad():
                layers = chip_layers(model, pops)
                last = layers[-1]
                rep = lambda t, k=k: t.repeat_interleave(k, 0)  # noqa: E731
                exc = dataclasses.replace(last.exc, **{f: rep(getattr(last.exc, f)) for f in (
                    "leak", "gain", "threshold", "dc", "refractory", "core")})
                layers[-1] = dataclasses.replace(last, w_exc=rep(last.w_exc),
                                                 w_sub=rep(last.w_sub), exc=exc)
                accs = []
                for d in range(args.draws):
                    gen = torch.Generator().manual_seed(100 + d)
                    mm = draw_mismatch(layers, s_dev, s_core, gen)
                    run = run_chip(spikes, layers, chip, mm)
                    scores = readout_scores(run).view(len(y), -1, k).sum(-1)
                    accs.append(100.0 * float((scores.argmax(1) == y).float().mean()))
            print(f"| {100 * m:g}% | {k} | {np.mean(accs):.2f} +- {np.std(accs, ddof=1):.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
