"""Measure each export choice for the analog chip in the analog simulator (docs/analog-model.md §7).

Compiles one float E-I graph (an export's ``graph.json`` + ``weights.npz``, or a ``model.pt``)
under several operating points (``compile.AnalogPolicy``) and synapse equations, runs each in
``AnalogSimulator`` without mismatch or with ``--mismatch`` over seeds, and prints accuracy, the
agreement with the integer simulator and the spikes per neuron per model step. The quantized graph
does not depend on the policy, so the integer reference is computed once. Variants run in
parallel processes (``--jobs``), each single-threaded.

    OMP_NUM_THREADS=1 python scripts/analog_ablation.py --model models/digits-dynapse2.pt \\
        --data digits --variants today,today-dpi,export,no-delay,t-ref-step --jobs 2
    python scripts/analog_ablation.py --graph out/fashion --data fashion-mnist --limit 1000 \\
        --variants export --mismatch 0.1 --trials 5 --out fashion.json

Variants (each one change from ``export``, the default policy, unless said): ``today`` (the
policy before the full DPI was modelled, ``LINEAR_POLICY``, with the linear synapse),
``today-dpi`` (that policy under the full DPI), ``export`` / ``export-linear`` (the default
policy under the full / linear DPI), ``no-delay``, ``delay-X`` (excitation delay X ms),
``t-ref-step`` (E refractory one step), ``t-ref-X``, ``pulse-X``, ``tau-X`` (AMPA and GABA
tau_syn X ms), ``unit-X`` (weight unit X nA), ``shunt-off`` (SHUNT gain at the smallest code),
``cmem-X`` (the simulated chip's membrane capacitance X pF while the export still assumes the
target file's ``C_mem``: what a chip whose capacitance differs from the model's does),
``cmemx-X`` (export and chip both at X pF: what the export does once the file says X).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def policy_of(variant: str) -> tuple[Any, str, dict[str, dict[str, float]],
                                     tuple[float | None, float | None]]:
    """(AnalogPolicy, synapse equation, overrides, (exported, simulated) C_mem or None) of a
    variant name (module doc); ``+`` joins changes, e.g. ``export+delay-0.3+t_ref-1``."""
    from eideploy.targets.dynapse2 import compile as C

    policy, synapse, overrides, c_mem = C.DEFAULT_POLICY, "dpi", {}, (None, None)
    for part in variant.split("+"):
        if part in ("today", "today-dpi"):
            policy, synapse = C.LINEAR_POLICY, "dpi" if part == "today-dpi" else "linear"
        elif part == "export":
            pass
        elif part == "export-linear" or part == "linear":
            synapse = "linear"
        elif part == "no-delay":
            policy = dataclasses.replace(policy, excitation_delay=0.0)
        elif part == "t-ref-step":
            policy = dataclasses.replace(policy, t_ref_exc=1e-3)
        elif part == "thr-model":
            policy = dataclasses.replace(policy, exc_threshold=None)
        elif part == "shunt-off":
            overrides = {"exc": {"DESC_IGAIN_P": 1e-15}}
        else:
            key, _, value = part.partition("-")
            try:
                x = float(value)
            except ValueError:
                raise SystemExit(f"unknown variant {variant!r} (see the module doc)") from None
            if key == "delay":
                policy = dataclasses.replace(policy, excitation_delay=x * 1e-3)
            elif key in ("t_ref", "tref"):
                policy = dataclasses.replace(policy, t_ref_exc=x * 1e-3)
            elif key == "pulse":
                policy = dataclasses.replace(policy, t_pulse=x * 1e-3)
            elif key == "tau":
                t_syn = dict(policy.t_syn)
                t_syn.update(ampa=x * 1e-3, nmda=x * 1e-3, gaba=x * 1e-3)
                policy = dataclasses.replace(policy, t_syn=tuple(t_syn.items()))
            elif key == "thr":  # E threshold current, pA
                policy = dataclasses.replace(policy, exc_threshold=x * 1e-12)
            elif key == "unit":
                policy = dataclasses.replace(policy, weight_unit=x * 1e-9)
            elif key == "cmem":
                c_mem = (c_mem[0], x * 1e-12)
            elif key == "cmemx":
                c_mem = (x * 1e-12, x * 1e-12)
            else:
                raise SystemExit(f"unknown variant {variant!r} (see the module doc)")
    return policy, synapse, overrides, c_mem


_STATE: dict[str, Any] = {}


def _patch_tables(path: str | None) -> None:
    """Offline machines without rockpool: read its generator tables from ``path`` (.npz with N
    and P, and a .json of scale factors beside it), as ``--save-tables`` wrote them."""
    if not path:
        return
    from eideploy.targets.dynapse2 import biases

    arrays = np.load(path)
    scales = json.loads(Path(path).with_suffix(".json").read_text())
    tables = ({"N": arrays["N"], "P": arrays["P"]}, scales)
    biases._rockpool_tables = lambda: tables  # noqa: SLF001 - a read-only stand-in


def _load(graph_dir: str, copies: int) -> Any:
    from eideploy.graph.ir import EIGraph
    from eideploy.graph.readout import replicate_readout

    return replicate_readout(EIGraph.load(graph_dir), copies)


def _init(graph_dir: str, x: np.ndarray, tables: str | None, copies: int) -> None:
    _patch_tables(tables)
    _STATE.update(graph=_load(graph_dir, copies), x=x, configs={})


def _job(args: tuple[str, float, int]) -> dict[str, Any]:
    from eideploy.targets.dynapse2.analog import AnalogSimulator
    from eideploy.targets.dynapse2.compile import compile_graph
    from eideploy.targets.dynapse2.target import resolve_target

    variant, mismatch, seed = args
    from eideploy.targets.dynapse2 import biases

    policy, synapse, overrides, (export_c_mem, chip_c_mem) = policy_of(variant)
    start = time.perf_counter()
    file_c_mem = biases.C_MEM
    try:
        if variant not in _STATE["configs"]:
            biases.C_MEM = file_c_mem if export_c_mem is None else export_c_mem
            _STATE["configs"][variant] = compile_graph(
                _STATE["graph"], resolve_target("dynapse2"), seed=0, policy=policy).config
        # the chip's capacitance, which the codes above may not have been chosen for
        biases.C_MEM = file_c_mem if chip_c_mem is None else chip_c_mem
        sim = AnalogSimulator(_STATE["configs"][variant], mismatch=mismatch, seed=seed,
                              synapse=synapse, overrides=overrides or None)
        result = sim.run(_STATE["x"])
    finally:
        biases.C_MEM = file_c_mem
    steps = sim.graph.T
    return {"variant": variant, "mismatch": mismatch, "seed": seed, "synapse": synapse,
            "policy": dataclasses.asdict(policy), "predictions": result.predictions().tolist(),
            "spikes_per_step": {k: float(v.mean() * result.window / steps)
                                for k, v in result.rates.items()},
            "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--graph", help="a float graph directory (graph.json, weights.npz)")
    parser.add_argument("--model", help="or a model.pt, exported first")
    parser.add_argument("--data", default="digits", help="data set name (test split)")
    parser.add_argument("--arrays", help="or an .npz with x and y (test inputs and labels)")
    parser.add_argument("--limit", type=int, default=None, help="first N test samples")
    parser.add_argument("--variants", default="today,today-dpi,export")
    parser.add_argument("--mismatch", type=float, default=0.0)
    parser.add_argument("--trials", type=int, default=1, help="seeds 0..trials-1 at --mismatch")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--readout-copies", type=int, default=1,
                        help="readout neurons per class (eideploy.graph.readout)")
    parser.add_argument("--tables", help="rockpool's generator tables saved by --save-tables")
    parser.add_argument("--save-tables", help="write rockpool's generator tables here (.npz)")
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args()

    from eideploy.graph.ir import EIGraph
    from eideploy.sim.integer import IntegerSimulator
    from eideploy.targets.dynapse2 import biases
    from eideploy.targets.dynapse2.compile import compile_graph
    from eideploy.targets.dynapse2.target import resolve_target

    if args.save_tables:
        tables, scales = biases._rockpool_tables()  # noqa: SLF001
        np.savez(args.save_tables, N=tables["N"], P=tables["P"])
        Path(args.save_tables).with_suffix(".json").write_text(json.dumps(scales))
        return
    _patch_tables(args.tables)
    graph_dir = args.graph
    if graph_dir is None:
        import tempfile

        from eideploy.pipeline.export import export_model

        graph_dir = tempfile.mkdtemp()
        export_model(args.model, graph_dir, target="dynapse2", overwrite=True)
    if args.arrays:
        arrays = np.load(args.arrays)
        x, y = arrays["x"], arrays["y"]
    else:
        from eideploy.data import load_dataset, to_float

        graph = EIGraph.load(graph_dir)
        dataset = load_dataset(args.data, "test", T=graph.T)
        x, y = to_float(dataset.inputs).numpy(), dataset.labels.numpy()
    x, y = x[:args.limit], np.asarray(y[:args.limit]).reshape(-1)
    graph = _load(graph_dir, args.readout_copies)
    quantized = compile_graph(graph, resolve_target("dynapse2"), seed=0).qgraph.graph
    integer = IntegerSimulator(quantized).run(x).predictions()
    print(f"integer (exact): {100 * np.mean(integer == y):.2f}% on {len(y)} samples", flush=True)
    seeds = range(args.trials) if args.mismatch > 0 else [0]
    jobs = [(v, args.mismatch, s) for v in args.variants.split(",") for s in seeds]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(args.jobs, initializer=_init, initargs=(graph_dir, x, args.tables,
                                                             args.readout_copies)) as pool:
        rows = []
        for row in pool.imap_unordered(_job, jobs):
            predicted = np.asarray(row.pop("predictions"))
            row["accuracy"] = 100.0 * float(np.mean(predicted == y))
            row["agreement"] = 100.0 * float(np.mean(predicted == integer))
            rows.append(row)
            if args.out:
                with open(args.out + ".rows", "a") as f:
                    f.write(json.dumps(row) + "\n")
            print(f"{row['variant']:>14} mismatch {row['mismatch']:g} seed {row['seed']}: "
                  f"{row['accuracy']:.2f}% (agrees {row['agreement']:.1f}%) "
                  f"{ {k: round(v, 2) for k, v in row['spikes_per_step'].items()} } "
                  f"{row['seconds']:.0f}s", flush=True)
    summary = {}
    for variant in args.variants.split(","):
        acc = [r["accuracy"] for r in rows if r["variant"] == variant]
        std = float(np.std(acc, ddof=1)) if len(acc) > 1 else 0.0
        summary[variant] = {"mean": float(np.mean(acc)), "std": std, "trials": len(acc)}
        print(f"{variant:>14}: {np.mean(acc):.2f} +- {std:.2f}% ({len(acc)} draws)")
    if args.out:
        Path(args.out).write_text(json.dumps(
            {"integer": 100 * float(np.mean(integer == y)), "samples": int(len(y)),
             "mismatch": args.mismatch, "rows": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
