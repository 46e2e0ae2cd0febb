"""Training-step time with 1 thread against torch's default, by the forward FLOPs of a step.

The measurement behind ``eideploy.train.threads.SMALL_STEP_FLOPS``: for E-I networks from a few
MFLOP to tens of GFLOP per step (the shipped recipes and wider or narrower variants), one
training step (forward, cross-entropy, backward, SGD, Dale's-law projection) is timed with 1
thread and with ``--threads`` threads, alternately, and the medians are printed with their ratio.
A ratio below 1 means the extra threads slow the step down. Run it on an idle machine for the
threshold (where threads start to pay) and beside a busy one for the cost of a wrong choice:

    python benchmarks/train_threads.py                 # 2 threads vs 1, ~1 min on 2 idle cores
    python benchmarks/train_threads.py --threads 4 --json threads.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from eideploy.networks import build_network
from eideploy.nn import EIOptions, ei_init, project_nonnegative_
from eideploy.train.threads import SMALL_STEP_FLOPS, step_flops

# (label, arch, one sample's shape, batch, architecture arguments)
CASES = [
    ("mlp 64 (digits)", "ei-mlp", (1, 8, 8), 32, {"widths": [64]}),
    ("digits-mlp", "ei-mlp", (1, 8, 8), 32, {"widths": [256, 256]}),
    ("digits-deep-mlp", "ei-mlp", (1, 8, 8), 32, {"widths": [128] * 8}),
    ("mlp 512x2 (28x28, B=128)", "ei-mlp", (1, 28, 28), 128, {"widths": [512, 512]}),
    ("mlp 1024x2 (28x28, B=128)", "ei-mlp", (1, 28, 28), 128, {"widths": [1024, 1024]}),
    ("cnn 8-P-16-P (B=32)", "ei-cnn", (1, 28, 28), 32, {"layers": [8, "P", 16, "P"]}),
    ("cnn 16-P-32-P-64-P (B=32)", "ei-cnn", (1, 28, 28), 32,
     {"layers": [16, "P", 32, "P", 64, "P"]}),
    ("cnn 16-P-32-P-64-P (B=128)", "ei-cnn", (1, 28, 28), 128,
     {"layers": [16, "P", 32, "P", 64, "P"]}),
    ("fashion-cnn (B=128)", "ei-cnn", (1, 28, 28), 128, {"layers": [32, "P", 64, "P", 128, "P"]}),
]


def one_step(model, opt, x, y) -> float:
    t0 = time.perf_counter()
    loss = F.cross_entropy(model(x).float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    project_nonnegative_(model)
    return time.perf_counter() - t0


def measure(arch, shape, batch, args, threads: int, budget_s: float) -> dict:
    torch.manual_seed(0)
    model = build_network(arch, in_shape=shape, num_classes=10, T=4, options=EIOptions(), **args)
    x, y = torch.rand(batch, *shape), torch.randint(0, 10, (batch,))
    ei_init(model, x, seed=0)
    flops = step_flops(model, x[:1], batch)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    torch.set_num_threads(1)
    first = one_step(model, opt, x, y)  # warm-up
    iters = int(min(40, max(4, budget_s / 2 / max(first, 1e-4))))
    times = {1: [], threads: []}
    for i in range(iters):  # alternate, so that drifts of a shared machine hit both alike
        for n in ((1, threads) if i % 2 == 0 else (threads, 1)):
            torch.set_num_threads(n)
            times[n].append(one_step(model, opt, x, y))
    one, many = statistics.median(times[1]), statistics.median(times[threads])
    return {"flops": flops, "one_thread_ms": 1e3 * one, "threads_ms": 1e3 * many,
            "speedup": one / many, "iters": iters}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=6.0, help="seconds per case, about")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = []
    print(f"| network | forward GFLOP/step | 1 thread ms | {args.threads} threads ms | "
          f"speedup | rule |")
    print("|---|---|---|---|---|---|")
    for label, arch, shape, batch, net_args in CASES:
        row = {"network": label, **measure(arch, shape, batch, net_args, args.threads,
                                           args.budget)}
        rows.append(row)
        rule = 1 if row["flops"] < SMALL_STEP_FLOPS else args.threads
        print(f"| {label} | {row['flops'] / 1e9:.3g} | {row['one_thread_ms']:.2f} | "
              f"{row['threads_ms']:.2f} | {row['speedup']:.2f}x | {rule} |", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
