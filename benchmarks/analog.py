"""The analog simulator's integrators against its numpy reference integrator, side by side in one
run, on the same network, inputs and mismatch draw (docs/analog-model.md §5).

The network is an export's ``dynapse2.json`` (default: the shipped digits model, exported to a
temporary directory); the inputs the first ``--samples`` images of its test split. Each pass runs
the reference integrator (one thread: numpy, 10 us steps), the compiled copy of its steps
(``fast``) and the piecewise integrator (the default, 100 us steps with exact spike times) on one
thread, the piecewise one on ``--threads`` threads (default: every core), and the torch backend
(the reference's steps as torch tensors) on one CPU thread and, where torch sees one, on the GPU,
alternately, and
the median CPU and wall time over ``--repeats`` passes is reported, so that a shared machine's
drifts hit every column alike. Each population's spike count is compared with the reference's:
the target is equal counts within 1%.

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
    import torch

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
            for name in ("reference", "fast", "piecewise")}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        sims[f"torch {device}"] = AnalogSimulator(config, mismatch=args.mismatch, seed=0,
                                                  integrator="torch", device=device,
                                                  batch_size=max(args.samples, 1))
    torch.set_num_threads(1)
    data = load_dataset(args.data, "test", args.data_dir, T=sims["fast"].graph.T)
    x = to_float(data.inputs)[:args.samples].numpy()
    t0 = time.perf_counter()
    analog_fast.set_threads(1)
    for name in ("fast", "piecewise", *(f"torch {d}" for d in devices)):
        sims[name].run(x[:1])  # compile (cached on disk after a machine's first run), warm up
    compile_s = time.perf_counter() - t0

    columns = {"reference": ("reference", 1), "fast, 1 thread": ("fast", 1),
               "piecewise, 1 thread": ("piecewise", 1),
               f"piecewise, {args.threads} threads": ("piecewise", args.threads),
               "torch, cpu 1 thread": ("torch cpu", 1)}
    if "cuda" in devices:
        columns[f"torch, {torch.cuda.get_device_name()}"] = ("torch cuda", 1)
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
    runs = {"fast": results["fast, 1 thread"], "piecewise": results["piecewise, 1 thread"],
            "torch": results["torch, cpu 1 thread"]}
    if "cuda" in devices:
        runs["torch on the GPU"] = results[f"torch, {torch.cuda.get_device_name()}"]
    spikes = {pop: {name: float(r.rates[pop].sum()) * r.window * len(x)
                    for name, r in (("reference", ref), *runs.items())} for pop in ref.rates}
    same = {name: float(np.mean(ref.counts == r.counts)) for name, r in runs.items()}
    agree = {name: float(np.mean(ref.predictions() == r.predictions()))
             for name, r in runs.items()}
    seconds = statistics.median(wall["reference"])
    cpu_seconds = statistics.median(cpu["reference"])
    print(f"analog simulator, {len(x)} samples x {ref.window * 1e3:.0f} ms, mismatch "
          f"{args.mismatch:g}; reference dt {sims['fast'].dt * 1e6:g} us, piecewise step "
          f"{sims['piecewise'].step * 1e6:g} us; {sims['fast'].network.size} neurons, "
          f"{sims['fast'].network.slots} synapses; compile {compile_s:.1f} s (once)")
    print(f"{'integrator':<24}{'CPU s':>9}{'wall s':>9}{'speed-up (CPU)':>16}"
          f"{'speed-up (wall)':>17}")
    for column in columns:
        c, w = statistics.median(cpu[column]), statistics.median(wall[column])
        print(f"{column:<24}{c:>9.2f}{w:>9.2f}{cpu_seconds / c:>15.1f}x{seconds / w:>16.1f}x")
    print(f"{'population':<24}{'spikes: reference':>18}{'fast':>10}{'torch':>10}{'piecewise':>11}"
          f"{'rel. diff':>11}")
    for pop, n in spikes.items():
        diff = (n["piecewise"] - n["reference"]) / max(n["reference"], 1e-12)
        print(f"{pop:<24}{n['reference']:>18.0f}{n['fast']:>10.0f}{n['torch']:>10.0f}"
              f"{n['piecewise']:>11.0f}{diff:>+11.2%}")
    for name in runs:
        print(f"{name}: readout counts equal to the reference's neuron by neuron "
              f"{100 * same[name]:.2f}%, the same class {100 * agree[name]:.2f}%")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "samples": len(x), "mismatch": args.mismatch, "compile_s": compile_s,
            "cpu_s": {c: statistics.median(v) for c, v in cpu.items()},
            "wall_s": {c: statistics.median(v) for c, v in wall.items()},
            "spikes": spikes, "readout_counts_equal": same, "same_class": agree}, indent=1))


if __name__ == "__main__":
    main()
