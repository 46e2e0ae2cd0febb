"""Time to compile and export a network that fills a 4-chip DYNAP-SE2 board.

The network is an E-I graph built by hand (no training), the size hardware-aware training aims at:
4096 neurons in 16 cores, every neuron using all 64 CAM entries:

* ``input``: 1024 spike channels (integrate-and-fire encoded on the host);
* ``l1``: 512 interneurons (64 AMPA inputs each) and 1024 E neurons (48 AMPA + 8 GABA + 8 SHUNT);
* ``l2``: 512 interneurons and 1536 E neurons, wired the same way from ``l1``;
* ``out``: 256 interneurons and a spiking readout of 256 neurons (56 AMPA + 8 GABA).

Connections are sparse and random inside a window around each target's position (a receptive
field), so that the sources reaching one core stay within the 2048 tags and each neuron's targets
within 3 chips, as a trained hardware-sized network's would.

Every stage of ``compile_graph`` and of the writing is timed by wrapping the function the pipeline
calls (DRC, unroll = ``to_sparse``, place, quantize (without the unroll), route, biases, config,
then report (``pipeline.report``: build, Markdown), graphs, dynapse2.json, samna.json,
mapping.png), inside one real ``export_graph``.

    python benchmarks/export.py                  # writes to a temporary directory
    python benchmarks/export.py --out /tmp/board --repeat 3 --json export.json
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from eideploy.graph.ir import EIGraph, Population, Projection
from eideploy.pipeline.export import export_graph
from eideploy.targets.dynapse2 import load_target


# --------------------------------------------------------------------------- the network
def windowed(n_target: int, n_source: int, k: int, window: int, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray]:
    """k distinct sources per target, drawn from a window of ``window`` sources centred on the
    target's relative position; weights log-normal (a trained network's heavy tail)."""
    window = min(window, n_source)
    centre = (np.arange(n_target) + 0.5) * n_source / n_target
    start = np.clip(np.round(centre - window / 2).astype(np.int64), 0, n_source - window)
    picks = np.argsort(rng.random((n_target, window)), axis=1)[:, :k]
    sources = np.sort(start[:, None] + picks, axis=1).reshape(-1)
    targets = np.repeat(np.arange(n_target), k)
    weight = rng.lognormal(-1.5, 0.6, size=targets.size).astype(np.float32)
    return weight, np.stack([targets, sources], axis=1).astype(np.int64)


def board_graph(seed: int = 0) -> EIGraph:
    rng = np.random.default_rng(seed)
    inh = {"response": "floor", "theta_i": 1.0}
    lif = {"tau": 2.0, "v_threshold": 1.0, "neuron": "lif"}
    sizes = {"input": 1024, "l1.inh": 512, "l1.exc": 1024, "l2.inh": 512, "l2.exc": 1536,
             "out.inh": 256, "out.readout": 256}

    def exc(name: str, layer: str) -> Population:
        n = sizes[name]
        return Population(name, "exc", (n,), layer, dict(lif),
                          {"gain_e": np.ones(n, np.float32), "bias": np.zeros(n, np.float32)})

    pops = [Population("input", "input", (sizes["input"],)),
            Population("l1.inh", "inh", (sizes["l1.inh"],), "l1", dict(inh)), exc("l1.exc", "l1"),
            Population("l2.inh", "inh", (sizes["l2.inh"],), "l2", dict(inh)), exc("l2.exc", "l2"),
            Population("out.inh", "inh", (sizes["out.inh"],), "out", dict(inh)),
            Population("out.readout", "readout", (sizes["out.readout"],), "out",
                       {"mode": "spiking", "v_threshold": 1.0})]
    plan = []
    for layer, source in (("l1", "input"), ("l2", "l1.exc")):
        plan += [(f"{layer}.ee", source, f"{layer}.exc", "exc", 48, 256),
                 (f"{layer}.ie", source, f"{layer}.inh", "exc", 64, 256),
                 (f"{layer}.sub", f"{layer}.inh", f"{layer}.exc", "sub", 8, 128)]
    plan += [("out.ee", "l2.exc", "out.readout", "exc", 56, 512),
             ("out.ie", "l2.exc", "out.inh", "exc", 64, 512),
             ("out.sub", "out.inh", "out.readout", "sub", 8, 128)]
    projs = []
    for name, source, target, kind, k, window in plan:
        weight, indices = windowed(sizes[target], sizes[source], k, window, rng)
        projs.append(Projection(name, source, target, kind, "sparse", weight, indices))
        if kind == "sub" and target != "out.readout":  # the same interneurons divide: SHUNT
            gain = rng.uniform(0.5, 2.0, size=sizes[source]).astype(np.float32)
            projs.append(Projection(name.replace(".sub", ".div"), source, target, "div",
                                    "sparse", weight * gain[indices[:, 1]], indices.copy()))
    return EIGraph("board-4096", 8, pops, projs, {"population": "input", "encoding": "if"},
                   {"population": "out.readout", "mode": "spiking", "classes": 256},
                   {"stabilisation": "adaptive", "eps": 1e-3})


# --------------------------------------------------------------------------- stage timers
STAGES = [  # (label, module, attribute)
    ("DRC", "eideploy.targets.dynapse2.compile", "check"),
    ("unroll (to_sparse)", "eideploy.targets.dynapse2.quantize", "to_sparse"),
    ("place", "eideploy.targets.dynapse2.compile", "place"),
    ("quantize", "eideploy.targets.dynapse2.compile", "quantize_graph"),
    ("route", "eideploy.targets.dynapse2.compile", "route"),
    ("biases", "eideploy.targets.dynapse2.compile", "_bias_codes"),
    ("config", "eideploy.targets.dynapse2.compile", "build_config"),
    # pipeline/export.py calls the writers by the names it imported: they are wrapped there
    ("report", "eideploy.pipeline.export", "build_report"),
    ("write report.md", "eideploy.pipeline.export", "report_markdown"),
    ("write graphs", "eideploy.graph.ir", "EIGraph.save"),
    ("write dynapse2.json", "eideploy.pipeline.export", "write_config"),
    ("write samna.json", "eideploy.pipeline.export", "samna_json"),
    ("write mapping.png", "eideploy.pipeline.export", "plot_mapping"),
]


def install_timers(seconds: dict[str, float]) -> Callable[[], None]:
    """Wrap each stage's function where the pipeline looks it up; returns the undo."""
    undo = []
    for label, module_name, attribute in STAGES:
        owner: Any = importlib.import_module(module_name)
        path = attribute.split(".")
        for part in path[:-1]:
            owner = getattr(owner, part)
        original = getattr(owner, path[-1])

        def timed(*args, _f=original, _label=label, **kwargs):
            start = time.perf_counter()
            try:
                return _f(*args, **kwargs)
            finally:
                seconds[_label] = seconds.get(_label, 0.0) + time.perf_counter() - start

        setattr(owner, path[-1], functools.wraps(original)(timed))
        undo.append((owner, path[-1], original))
    return lambda: [setattr(o, a, f) for o, a, f in undo]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="export directory (default: a temporary one)")
    parser.add_argument("--repeat", type=int, default=1, help="exports to time (the best "
                                                              "is reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    graph = board_graph(args.seed)
    build = time.perf_counter() - start
    target = load_target("dynapse2")
    temp = None if args.out else Path(tempfile.mkdtemp(prefix="eideploy-export-bench-"))
    out = args.out or temp / "out"
    runs = []
    try:
        for _ in range(max(1, args.repeat)):
            seconds: dict[str, float] = {}
            undo = install_timers(seconds)
            try:
                start = time.perf_counter()
                result = export_graph(graph, out, target=target, seed=args.seed, overwrite=True)
                total = time.perf_counter() - start
            finally:
                undo()
            seconds["unroll (to_sparse)"] = seconds.get("unroll (to_sparse)", 0.0)
            seconds["quantize"] -= seconds["unroll (to_sparse)"]  # to_sparse runs inside it
            runs.append((total, seconds, result))
        cold = runs[0][0]
        total, seconds, result = min(runs, key=lambda r: r[0])
        sizes = {f["path"]: f["bytes"] for f in result.manifest["files"]}
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)

    s = result.summary()
    print(f"eideploy export benchmark: {platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} CPU(s), numpy {np.__version__}")
    print(f"graph: {s['neurons']} neurons in {s['cores']} cores on {s['chips']} chips, "
          f"{s['synapses']} synapses, worst fan-in {s['worst_fan_in']['entries']}/"
          f"{s['worst_fan_in']['limit']}, tags {s['tags']['used']} ({s['tags']['mode']}), "
          f"built in {build:.2f} s")
    print(f"compile + export: {total:.2f} s (best of {len(runs)}; the first, with rockpool's "
          f"import, {cold:.2f} s; target < 10 s)")
    accounted = 0.0
    for label, _, _ in STAGES:
        accounted += seconds.get(label, 0.0)
        print(f"  {label:<22} {seconds.get(label, 0.0):7.3f} s")
    print(f"  {'other (hashes, I/O)':<22} {total - accounted:7.3f} s")
    print("files: " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sizes.items()))
    if args.json:
        args.json.write_text(json.dumps({"total_s": total, "first_s": cold, "stages_s": seconds,
                                         "summary": s, "bytes": sizes}, indent=1,
                                        default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
