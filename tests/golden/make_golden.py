"""Write the golden vectors of the integer simulator (docs/integer-semantics.md).

Run only when the integer semantics change on purpose (and say so in the commit)::

    .venv/bin/python tests/golden/make_golden.py

Each fixture is a tiny quantized E-I graph (``<name>/graph.json`` + ``weights.npz``), its inputs
(``<name>/inputs.npz``) and, per division mode, every population's integer states and spikes,
the readout's counts and membranes (``<name>/expected.npz``, keys ``mode/population/quantity``)
and the saturation counts (``<name>/saturations.json``). ``tests/test_golden.py`` reproduces
them exactly from the stored files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from eideploy.graph.ir import EIGraph, Population, Projection  # noqa: E402
from eideploy.sim.integer import IntegerSimulator  # noqa: E402

MODES = ("exact", "lut:8", "lut:4:newton", "shift")


def _sparse(rng: np.random.Generator, name: str, source: Population, target: Population,
            kind: str, fan_in: int, scale: float) -> Projection:
    pairs = [(t, s) for t in range(target.size)
             for s in sorted(rng.choice(source.size, size=min(fan_in, source.size),
                                        replace=False))]
    weight = np.round(rng.exponential(scale, len(pairs)), 6)
    return Projection(name, source.name, target.name, kind, "sparse", weight,
                      np.array(pairs, dtype=np.int64))


def tiny_div() -> tuple[EIGraph, np.ndarray]:
    """input(4) -> inh(1) -> exc(2) (AMPA, SHUNT) -> readout(2): the hand-checked trace of
    docs/integer-semantics.md, spike input."""
    pops = [Population("input", "input", (4,)),
            Population("inh", "inh", (1,), params={"response": "floor", "theta_i": 0.25}),
            Population("exc", "exc", (2,), params={"tau": 2.0, "v_threshold": 1.0}),
            Population("out", "readout", (2,))]

    def sparse(name, source, target, kind, pairs, weight):
        return Projection(name, source, target, kind, "sparse", np.asarray(weight, float),
                          np.array(pairs, dtype=np.int64))

    everything = [(0, i) for i in range(4)] + [(1, i) for i in range(4)]
    projs = [sparse("ie", "input", "inh", "exc", [(0, i) for i in range(4)], [1.0] * 4),
             sparse("ee", "input", "exc", "exc", everything,
                    [0.3, 0.1, 0.2, 0.05, 0.05, 0.2, 0.1, 0.3]),
             sparse("div", "inh", "exc", "div", [(0, 0), (1, 0)], [0.01, 0.01]),
             sparse("out", "exc", "out", "exc", [(0, 0), (1, 1)], [1.0, 1.0])]
    graph = EIGraph("tiny-div", 4, pops, projs, {"population": "input", "encoding": "spikes"},
                    {"population": "out", "mode": "spiking", "classes": 2, "theta_out": 1.0},
                    {"stabilisation": "fixed-eps", "eps": 0.05})
    x = np.array([[[0, 0, 0, 1], [1, 0, 1, 0], [0, 1, 1, 1], [1, 1, 0, 0]],
                  [[1, 1, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 0, 1]]], dtype=float)
    return graph, x


def two_layer(seed: int = 7) -> tuple[EIGraph, np.ndarray]:
    """input(16, IF-encoded pixels) -> [inh(4), exc(12) with AMPA, GABA, SHUNT, g_E, b_E,
    tau 4] -> [inh(3), exc(8), tau 2] -> readout(3) with subtractive inhibition."""
    rng = np.random.default_rng(seed)
    inp = Population("input", "input", (16,))
    inh1 = Population("l1.inh", "inh", (4,), params={"response": "floor", "theta_i": 0.5})
    exc1 = Population("l1.exc", "exc", (12,), params={"tau": 4.0, "v_threshold": 1.0},
                      arrays={"gain_e": np.round(rng.uniform(0.5, 2.0, 12), 4),
                              "bias": np.round(rng.normal(0.0, 0.05, 12), 4)})
    inh2 = Population("l2.inh", "inh", (3,), params={"response": "floor", "theta_i": 0.25})
    exc2 = Population("l2.exc", "exc", (8,), params={"tau": 2.0, "v_threshold": 0.75})
    inh3 = Population("l3.inh", "inh", (2,), params={"response": "floor", "theta_i": 0.5})
    out = Population("out", "readout", (3,))
    projs = [_sparse(rng, "l1.ie", inp, inh1, "exc", 8, 0.3),
             _sparse(rng, "l1.ee", inp, exc1, "exc", 10, 0.25),
             _sparse(rng, "l1.sub", inh1, exc1, "sub", 4, 0.05),
             _sparse(rng, "l1.div", inh1, exc1, "div", 4, 0.02),
             _sparse(rng, "l2.ie", exc1, inh2, "exc", 6, 0.4),
             _sparse(rng, "l2.ee", exc1, exc2, "exc", 8, 0.35),
             _sparse(rng, "l2.sub", inh2, exc2, "sub", 3, 0.08),
             _sparse(rng, "l2.div", inh2, exc2, "div", 3, 0.03),
             _sparse(rng, "l3.ie", exc2, inh3, "exc", 5, 0.4),
             _sparse(rng, "l3.ee", exc2, out, "exc", 6, 0.5),
             _sparse(rng, "l3.sub", inh3, out, "sub", 2, 0.1)]
    graph = EIGraph("two-layer", 6, [inp, inh1, exc1, inh2, exc2, inh3, out], projs,
                    {"population": "input", "encoding": "if", "threshold": 1.0, "phase": 0.5},
                    {"population": "out", "mode": "spiking", "classes": 3, "theta_out": 1.0},
                    {"stabilisation": "fixed-eps", "eps": 0.03})
    x = np.round(rng.uniform(0, 1, (5, 16)), 3)
    return graph, x


def saturating() -> tuple[EIGraph, np.ndarray]:
    """A divisor at its 1-LSB floor and heavy weights: the dividend, quotient and membrane
    clamp at their widths (docs/integer-semantics.md §6), every clamp counted."""
    graph, _ = tiny_div()
    graph.name = "saturating"
    graph.division = {"stabilisation": "fixed-eps", "eps": 1e-9}
    for proj in graph.projections:
        if proj.name == "div":
            proj.weight[:] = 1e-9
        if proj.name == "ee":
            proj.weight[:] = proj.weight * 40
    x = np.array([[[1, 1, 1, 1]] * 4, [[0, 0, 0, 0]] * 4, [[1, 0, 0, 0]] * 4], dtype=float)
    return graph, x


FIXTURES = {"tiny-div": tiny_div, "two-layer": two_layer, "saturating": saturating}


def expected(graph: EIGraph, x: np.ndarray) -> tuple[dict[str, np.ndarray], dict]:
    arrays: dict[str, np.ndarray] = {}
    saturations: dict[str, dict[str, int]] = {}
    for mode in MODES:
        result = IntegerSimulator(graph, mode).run(x, return_states=True)
        for pop, state in result.states.items():
            for quantity, value in state.items():
                arrays[f"{mode}/{pop}/{quantity}"] = np.asarray(value, dtype=np.int64)
        arrays[f"{mode}/counts"] = result.counts.astype(np.int64)
        arrays[f"{mode}/membrane"] = result.membrane.astype(np.int64)
        saturations[mode] = dict(sorted(result.saturations.items()))
    return arrays, saturations


def main() -> None:
    for name, build in FIXTURES.items():
        graph, x = build()
        directory = HERE / name
        graph.save(directory)
        np.savez_compressed(directory / "inputs.npz", x=x)
        arrays, saturations = expected(graph, x)
        np.savez_compressed(directory / "expected.npz", **arrays)
        (directory / "saturations.json").write_text(json.dumps(saturations, indent=1) + "\n")
        print(f"{name}: {len(arrays)} arrays, saturation events "
              f"{ {m: sum(s.values()) for m, s in saturations.items()} }")


if __name__ == "__main__":
    main()
