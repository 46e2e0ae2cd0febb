"""Throughput of the bit-accurate integer simulator against the float torch forward of the same
network, side by side in one run.

The network is the shipped hardware-sized digits model (``models/digits-dynapse2.pt``): its torch
model (as ``eideploy evaluate`` runs it, spiking readout decided by spike count) against the
integer simulator of its export's quantized graph (every division mode asked for). Both see the
same batches of the digits test split; the unit is samples x time steps per second. The two are
run alternately (float, integer, float, ...) and the median over ``--repeats`` passes is
reported, so that a shared machine's drifts hit both columns alike. Target: the integer simulator
at least as fast as the float forward (ratio <= 1).

    python benchmarks/simulate.py                       # 1 thread, batch 360, exact lut:8 shift
    python benchmarks/simulate.py --batch 64 --threads 2 --json simulate.json
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
    parser.add_argument("--batch", type=int, default=360, help="samples per forward")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--division", nargs="+", default=["exact", "lut:8", "shift"])
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO))
    from eideploy.data import load_dataset, to_float
    from eideploy.graph import EIGraph
    from eideploy.pipeline.export import export_model
    from eideploy.sim.integer import IntegerSimulator
    from eideploy.train import load_model
    from eideploy.train.trainer import predict_batch

    model, _ = load_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        export_model(args.model, Path(tmp) / "out", target="dynapse2")
        graph = EIGraph.load(Path(tmp) / "out" / "quantized")
    data = load_dataset("digits", "test", None, T=graph.T)
    x = to_float(data.inputs)[:args.batch]
    x_np = x.numpy()
    batch, steps = len(x), graph.T
    sims = {m: IntegerSimulator(graph, m) for m in args.division}

    def torch_pass() -> None:
        with torch.no_grad():
            predict_batch(model, x)

    runners = {"float torch": torch_pass,
               **{f"integer {m}": (lambda s=s: s.run(x_np).predictions()) for m, s in sims.items()}}
    for run in runners.values():  # warm-up: caches, lazy imports, allocator
        run()
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(args.repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    median = {k: statistics.median(v) for k, v in times.items()}
    reference = median["float torch"]
    rows = []
    print(f"digits test, batch {batch}, T = {steps}, {args.threads} thread(s), median of "
          f"{args.repeats} alternating passes")
    print(f"{'forward':<22}{'seconds':>10}{'samples x steps / s':>22}{'vs float':>10}")
    for name, seconds in median.items():
        rate = batch * steps / seconds
        ratio = seconds / reference
        rows.append({"forward": name, "seconds": seconds, "samples_steps_per_s": rate,
                     "ratio_to_float": ratio})
        print(f"{name:<22}{seconds:>10.4f}{rate:>22.0f}{ratio:>9.2f}x")
    worst = max(r["ratio_to_float"] for r in rows if r["forward"] != "float torch")
    print(f"slowest integer mode / float torch: {worst:.2f}x (target <= 1x: "
          f"{'met' if worst <= 1 else 'NOT met'})")
    if args.json:
        Path(args.json).write_text(json.dumps({"batch": batch, "T": steps,
                                               "threads": args.threads, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
