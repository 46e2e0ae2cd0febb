"""The analog simulator's compiled integrator against its numpy reference integrator, side by side
in one run, on the same network, inputs and mismatch draw (docs/analog-model.md §5).

The network is an export's ``dynapse2.json`` (default: the shipped digits model, exported to a
temporary directory); the inputs the first ``--samples`` images of its test split. Each pass runs
the reference integrator (one thread: numpy), the compiled one on one thread, and the compiled
one on ``--threads`` threads (default: every core), alternately, and the median CPU and wall time
over ``--repeats`` passes is reported, so that a shared machine's drifts hit every column alike.
The spike counts are compared neuron by neuron: the issue asks for equal counts within 1%.

    python benchmarks/analog.py                              # digits, 64 samples, 10% mismatch
    python benchmarks/analog.py --export out/fashion --data fashion-mnist --samples 32
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(REPO / "models" / "digits-dynapse2.pt"))
    parser.add_argument("--export", help="an export directory (default: export --model)")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--mismatch", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(REPO))
    import numpy as np

    from eideploy.data import load_dataset, to_float
    from eideploy.pipeline.export import export_model
    from eideploy.targets.dynapse2 import analog_fast
    from eideploy.targets.dynapse2.analog import AnalogSimulator
    from eideploy.targets.dynapse2.config import read_config

    if not analog_fast.available():
        sys.exit("benchmarks/analog.py: numba is not installed (pip install numba)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.export) if args.export else Path(tmp) / "out"
        if not args.export:
            export_model(args.model, out, target="dynapse2")
        config = read_config(out / "dynapse2.json")
    sims = {name: AnalogSimulator(config, mismatch=args.mismatch, seed=0, integrator=name)
            for name in ("reference", "fast")}
    data = load_dataset(args.data, "test", args.data_dir, T=sims["fast"].graph.T)
    x = to_float(data.inputs)[:args.samples].numpy()
    t0 = time.perf_counter()
    analog_fast.set_threads(1)
    sims["fast"].run(x[:1])  # compile (cached on disk after the first run on a machine)
    compile_s = time.perf_counter() - t0

    columns = {"reference": ("reference", 1), "fast, 1 thread": ("fast", 1),
               f"fast, {args.threads} threads": ("fast", args.threads)}
    cpu: dict[str, list[float]] = {c: [] for c in columns}
    wall: dict[str, list[float]] = {c: [] for c in columns}
    results = {}
    for _ in range(args.repeats):
        for column, (name, threads) in columns.items():
            analog_fast.set_threads(threads)
            c0, w0 = time.process_time(), time.perf_counter()
            results[column] = sims[name].run(x)
            cpu[column].append(time.process_time() - c0)
            wall[column].append(time.perf_counter() - w0)
    analog_fast.set_threads(os.cpu_count())

    ref = results["reference"]
    fast = results["fast, 1 thread"]
    rows = []
    for pop in ref.rates:
        a, b = float(ref.rates[pop].sum()), float(fast.rates[pop].sum())
        rows.append((pop, a * ref.window * len(x), b * ref.window * len(x),
                     abs(a - b) / max(a, 1e-12)))
    same = float(np.mean(ref.counts == fast.counts))
    seconds = statistics.median(wall["reference"])
    print(f"analog simulator, {len(x)} samples x {ref.window * 1e3:.0f} ms, mismatch "
          f"{args.mismatch:g}, dt {sims['fast'].dt * 1e6:g} us; {sims['fast'].network.size} "
          f"neurons, {sims['fast'].network.slots} synapses; compile {compile_s:.1f} s (once)")
    print(f"{'integrator':<24}{'CPU s (median)':>16}{'wall s (median)':>17}{'speed-up (wall)':>17}")
    for column in columns:
        c, w = statistics.median(cpu[column]), statistics.median(wall[column])
        print(f"{column:<24}{c:>16.2f}{w:>17.2f}{seconds / w:>16.1f}x")
    print(f"{'population':<24}{'spikes, reference':>18}{'spikes, fast':>15}{'rel. diff':>11}")
    for pop, a, b, diff in rows:
        print(f"{pop:<24}{a:>18.0f}{b:>15.0f}{diff:>11.2e}")
    print(f"readout counts equal neuron by neuron: {100 * same:.2f}%")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "samples": len(x), "mismatch": args.mismatch, "compile_s": compile_s,
            "cpu_s": {c: statistics.median(v) for c, v in cpu.items()},
            "wall_s": {c: statistics.median(v) for c, v in wall.items()},
            "spikes": {p: {"reference": a, "fast": b} for p, a, b, _ in rows},
            "readout_counts_equal": same}, indent=1))


if __name__ == "__main__":
    main()
