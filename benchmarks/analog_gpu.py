"""The analog simulator's torch backend on a GPU against the CPU integrators, side by side in one
run, from a prepared case: the shipped digits model's network without mismatch and its five
10%-mismatch draws stacked into one (``analog.run_draws``), with the host's input events for the
360 test images. The case is a plain ``.npz`` (``analog.network_arrays``), so the GPU machine needs
torch, numpy and scipy only (numba for the piecewise column), not rockpool, pydantic or typer.

    python benchmarks/analog_gpu.py prepare    # here: writes benchmarks/cases/analog_digits.npz
    python benchmarks/analog_gpu.py run --out DIR             # on the GPU machine (gpu_check.sh)
    python benchmarks/analog_gpu.py run --device cpu --samples 16       # the same steps, on CPU

``run`` times, on the same inputs: the torch backend on ``--device`` (every sample in one batch;
the five draws in one simulation), the numpy reference integrator (one thread) and the piecewise
integrator (numba, every core), and checks that the torch backend fires the reference's spikes:
its readout counts on the first ``REFERENCE_SAMPLES`` images equal those the reference integrator
gave when the case was prepared.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CASE = REPO / "benchmarks" / "cases" / "analog_digits.npz"
DRAWS = 5
MISMATCH = 0.1
#: Images whose reference counts the case stores (the numpy reference takes ~60 ms per image and
#: draw on one core).
REFERENCE_SAMPLES = 32


def prepare(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(REPO))
    from eideploy.data import load_dataset, to_float
    from eideploy.pipeline.export import export_model
    from eideploy.targets.dynapse2 import analog
    from eideploy.targets.dynapse2.config import read_config

    with tempfile.TemporaryDirectory() as tmp:
        export_model(REPO / "models" / "digits-dynapse2.pt", Path(tmp) / "out", target="dynapse2")
        config = read_config(Path(tmp) / "out" / "dynapse2.json")
    nominal = analog.AnalogSimulator(config)
    draws = [analog.AnalogSimulator(config, mismatch=MISMATCH, seed=i) for i in range(DRAWS)]
    data = load_dataset("digits", "test", None, T=nominal.graph.T)
    spikes = nominal.host.spikes(to_float(data.inputs).numpy())
    spikes = np.broadcast_to(spikes, (nominal.graph.T, *spikes.shape[1:]))
    spikes = np.ascontiguousarray(spikes.reshape(nominal.graph.T, spikes.shape[1], -1), bool)
    out: dict[str, np.ndarray] = {
        "spikes": spikes, "labels": data.labels.numpy().reshape(-1),
        "dt": np.array(nominal.dt), "window": np.array(nominal.window),
        "readout": np.array([nominal.network.populations[nominal.readout].start,
                             nominal.network.populations[nominal.readout].stop]),
        "classes": np.array(nominal.host.classes or 0), "draws": np.array(DRAWS),
        "neurons": np.array(nominal.network.size)}
    for case, net in (("nominal", nominal.network),
                      ("draws", analog.stack_networks([s.network for s in draws]))):
        for key, value in analog.network_arrays(net).items():
            out[f"{case}/{key}"] = value
        t0 = time.perf_counter()
        counts, _, _ = analog._simulate(net, spikes[:, :REFERENCE_SAMPLES], nominal.dt,
                                        nominal.window, False)
        out[f"{case}/reference_counts"] = counts.astype(np.int32)
        print(f"{case}: reference counts of {REFERENCE_SAMPLES} images in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
    CASE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(CASE, **out)
    print(f"wrote {CASE} ({CASE.stat().st_size / 1024:.0f} KiB)")


def run(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(REPO))
    import torch

    from eideploy.graph.host import readout_decision
    from eideploy.targets.dynapse2 import analog, analog_fast, analog_torch

    with np.load(CASE, allow_pickle=False) as f:
        case = {k: f[k] for k in f.files}
    device = analog_torch.resolve_device(args.device)
    spikes = case["spikes"][:, :args.samples]
    labels = case["labels"][:args.samples]
    dt, window = float(case["dt"]), float(case["window"])
    lo, hi = (int(v) for v in case["readout"])
    classes = int(case["classes"]) or None
    n = int(case["neurons"])
    checked = min(REFERENCE_SAMPLES, spikes.shape[1])
    rows, doc = [], {"device": str(device), "samples": int(spikes.shape[1]), "cases": {}}
    if device.type == "cuda":
        doc["gpu"] = torch.cuda.get_device_name(device)
    for name in ("nominal", "draws"):
        net = analog.network_from_arrays({k.split("/", 1)[1]: v for k, v in case.items()
                                          if k.startswith(f"{name}/")})
        analog_torch.simulate(net, spikes[:, :2], dt, window, False, device=device)  # warm up
        t0 = time.perf_counter()
        counts, membrane, _ = analog_torch.simulate(net, spikes, dt, window, False,
                                                    device=device)
        seconds = time.perf_counter() - t0
        draws = net.size // n
        same = bool(np.array_equal(counts[:checked].astype(np.int32),
                                   case[f"{name}/reference_counts"][:checked]))
        accuracy = [100.0 * float(np.mean(readout_decision(
            counts[:, d * n + lo:d * n + hi], membrane[:, d * n + lo:d * n + hi], classes)
            == labels)) for d in range(draws)]
        timings = {"torch": seconds}
        t0 = time.perf_counter()
        analog._simulate(net, spikes[:, :args.cpu_samples], dt, window, False)
        timings["reference, 1 thread"] = ((time.perf_counter() - t0) * spikes.shape[1]
                                          / min(args.cpu_samples, spikes.shape[1]))
        if analog_fast.available():
            from eideploy.targets.dynapse2 import analog_piecewise

            analog_piecewise.simulate(net, spikes[:, :2], dt, window, False)  # compile
            t0 = time.perf_counter()
            analog_piecewise.simulate(net, spikes, dt, window, False)
            timings[f"piecewise, {os.cpu_count()} threads"] = time.perf_counter() - t0
        doc["cases"][name] = {"draws": draws, "neurons": net.size, "seconds": timings,
                              "reference_counts_equal": same, "accuracy": accuracy}
        for column, value in timings.items():
            rows.append(f"| {name} ({draws} draw{'s' * (draws > 1)}, {net.size} neurons) | "
                        f"{column} | {value:.2f} | {value / timings['torch']:.2f}x |")
        print(f"{name}: torch on {device} fires the reference's spikes on the first {checked} "
              f"images: {same}; accuracy per draw {', '.join(f'{a:.2f}%' for a in accuracy)}",
              flush=True)
    table = "\n".join([
        f"analog simulator, {spikes.shape[1]} digits test images x {window * 1e3:.0f} ms; torch "
        f"backend on {doc.get('gpu', device)}; the reference integrator timed on "
        f"{min(args.cpu_samples, spikes.shape[1])} images and scaled", "",
        "| case | integrator | seconds | torch's speed-up over it |", "|---|---|---:|---:|",
        *rows])
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "analog_gpu.json").write_text(json.dumps(doc, indent=1))
        (out / "analog_gpu.md").write_text(table + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare", help="build the case file (needs the package installed)")
    runner = sub.add_parser("run", help="time the torch backend against the CPU integrators")
    runner.add_argument("--device", default="auto")
    runner.add_argument("--samples", type=int, default=360)
    runner.add_argument("--cpu-samples", type=int, default=32,
                        help="images the numpy reference is timed on (its time is scaled)")
    runner.add_argument("--out", help="also write analog_gpu.json and analog_gpu.md here")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    prepare(args) if args.command == "prepare" else run(args)


if __name__ == "__main__":
    main()
