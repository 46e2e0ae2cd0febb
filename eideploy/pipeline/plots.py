"""Plots of a validation or simulation: firing rates, spike rasters and the divisors of Eq. 14.

* ``rates.png``: per population, every neuron's rate in each variant against its rate in the
  quantized graph (the diagonal is agreement), with the Pearson r in the legend;
* ``raster.png``: one sample's spikes, one panel per population and variant (time step x neuron;
  interneuron spike counts as marker size);
* ``divisors.png``: the histogram of ``D = I_div + eps`` per population, with the floor ``eps``;
* ``cost.png``: synaptic events per sample by target layer and dendrite (integer simulator), and
  accuracy against energy per inference for every simulator variant measured.

Each figure is drawn on its own ``Figure`` with the Agg canvas (no pyplot state) and saved without
metadata, so the bytes depend only on the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_rates", "plot_raster", "plot_divisors", "plot_cost", "pearson", "REFERENCE"]

REFERENCE = "quantized graph"
DPI = 100
_DENDRITE_COLOURS = {"ampa": "#1b9e77", "gaba": "#d95f02", "shunt": "#7570b3",
                     "nmda": "#e7298a"}
_COLOURS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d"]


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation; ``None`` when either side is constant (undefined), 1 for two equal
    constant vectors."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return 1.0 if a.size and np.array_equal(a, b) else None
    return float(np.corrcoef(a, b)[0, 1])


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    return path


def plot_rates(rates: Mapping[str, Mapping[str, np.ndarray]], path: str | Path) -> Path:
    """Scatter of per-neuron rates of each variant against the quantized graph's."""
    reference = rates.get(REFERENCE) or next(iter(rates.values()), {})
    pops = list(reference)
    fig = _figure(4.2 * max(len(pops), 1), 4.2)
    if not pops:
        fig.text(0.5, 0.5, "no spiking populations", ha="center")
        return _save(fig, path)
    others = [v for v in rates if v != REFERENCE]
    for i, pop in enumerate(pops):
        ax = fig.add_subplot(1, len(pops), i + 1)
        ref = np.asarray(reference[pop], dtype=np.float64)
        top = max(float(ref.max()), 1e-9)
        for colour, variant in zip(_COLOURS, others, strict=False):
            if pop not in rates[variant]:
                continue
            value = np.asarray(rates[variant][pop], dtype=np.float64)
            top = max(top, float(value.max()))
            r = pearson(ref, value)
            label = f"{variant} (r={'n/a' if r is None else f'{r:.3f}'})"
            ax.scatter(ref, value, s=6, alpha=0.6, color=colour, label=label)
        ax.plot([0, top], [0, top], color="#888888", linewidth=0.8, linestyle="--")
        ax.set_title(pop, fontsize=9)
        ax.set_xlabel("quantized graph rate (per step)", fontsize=8)
        if i == 0:
            ax.set_ylabel("variant rate (per step)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper left", frameon=False)
    fig.suptitle("Per-neuron firing rates against the quantized graph", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_raster(raster: Mapping[str, Mapping[str, np.ndarray]], path: str | Path,
                title: str = "Spikes of one sample") -> Path:
    """One panel per (population, variant): dots at (time step, neuron) where it spiked."""
    variants = list(raster)
    pops = list(next(iter(raster.values()), {}))
    fig = _figure(max(3.6 * len(variants), 6.0), 2.4 * max(len(pops), 1))
    if not pops:
        fig.text(0.5, 0.5, "no spiking populations", ha="center")
        return _save(fig, path)
    for row, pop in enumerate(pops):
        for col, variant in enumerate(variants):
            ax = fig.add_subplot(len(pops), len(variants), row * len(variants) + col + 1)
            spikes = np.asarray(raster[variant].get(pop, np.zeros((0, 0))), dtype=np.float64)
            t, n = np.nonzero(spikes)
            binary = spikes.max(initial=0) <= 1  # spikes; else interneuron counts
            sizes = 12.0 if binary else 2 + 4 * np.minimum(spikes[t, n], 4)
            ax.scatter(t, n, s=sizes, color="#222222", marker="|" if binary else "o",
                       linewidths=0.8)
            ax.set_xlim(-0.5, spikes.shape[0] - 0.5 if spikes.size else 0.5)
            ax.set_ylim(-0.5, spikes.shape[1] - 0.5 if spikes.size else 0.5)
            ax.tick_params(labelsize=6)
            ax.set_title(f"{pop}: {variant} ({int(spikes.sum())} spikes)", fontsize=8)
            if row == len(pops) - 1:
                ax.set_xlabel("time step", fontsize=7)
            if col == 0:
                ax.set_ylabel("neuron", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_divisors(divisors: Mapping[str, np.ndarray], summary: Mapping[str, Mapping[str, float]],
                  path: str | Path) -> Path:
    """Histogram of the divisor values per population (log x), the floor eps marked."""
    pops = [p for p, v in divisors.items() if np.asarray(v).size]
    fig = _figure(4.2 * max(len(pops), 1), 3.4)
    if not pops:
        fig.text(0.5, 0.5, "no divisive inhibition in this network", ha="center")
        return _save(fig, path)
    for i, pop in enumerate(pops):
        ax = fig.add_subplot(1, len(pops), i + 1)
        values = np.asarray(divisors[pop], dtype=np.float64)
        low, high = max(values.min(), 1e-12), max(values.max(), values.min() * 1.01, 1e-11)
        ax.hist(values, bins=np.geomspace(low, high * 1.0001, 40), color="#7570b3")
        ax.set_xscale("log")
        eps = summary.get(pop, {}).get("eps")
        if eps:
            ax.axvline(eps, color="#d95f02", linestyle="--", linewidth=1, label=f"eps = {eps:g}")
            ax.legend(fontsize=7, frameon=False)
        ax.set_title(pop, fontsize=9)
        ax.set_xlabel("D = I_div + eps (model units)", fontsize=8)
        ax.set_ylabel("count (samples x steps x neurons)", fontsize=7)
        ax.tick_params(labelsize=7)
    fig.suptitle("Divisors of Eq. 14 in the integer simulator (exact)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _layer(population: str) -> str:
    """A population's layer: its name without the role suffix (``layers.1.exc`` -> ``layers.1``)."""
    head, _, tail = population.rpartition(".")
    return head if head and tail in ("exc", "inh", "readout") else population


def plot_cost(cost: Mapping[str, Any], path: str | Path) -> Path:
    """Left: synaptic events per sample onto each layer, stacked by dendrite (the integer
    simulator's count, ``cost["integer"]["projections"]``). Right: accuracy against energy per
    inference (nominal figures) of each variant in ``cost["variants"]``; mismatch draws
    as small points around their mean."""
    fig = _figure(10.0, 4.0)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    stacks: dict[str, dict[str, float]] = {}
    for proj in cost["integer"]["projections"]:
        layer = stacks.setdefault(_layer(proj["target"]), {})
        layer[proj["dendrite"]] = layer.get(proj["dendrite"], 0.0) + float(proj["events"])
    layers = list(stacks)
    dendrites = sorted({d for layer in stacks.values() for d in layer},
                       key=lambda d: list(_DENDRITE_COLOURS).index(d)
                       if d in _DENDRITE_COLOURS else len(_DENDRITE_COLOURS))
    bottom = np.zeros(len(layers))
    for dendrite in dendrites:
        heights = np.array([stacks[layer].get(dendrite, 0.0) for layer in layers])
        left.bar(range(len(layers)), heights, bottom=bottom, label=dendrite.upper(),
                 color=_DENDRITE_COLOURS.get(dendrite, "#888888"))
        bottom += heights
    left.set_xticks(range(len(layers)), layers, fontsize=7)
    left.set_ylabel("synaptic events per sample", fontsize=8)
    left.set_title("Synaptic events onto each layer (integer simulator)", fontsize=9)
    left.tick_params(labelsize=7)
    left.legend(fontsize=7, frameon=False)
    variants = cost.get("variants") or {}
    draws = {k: v for k, v in variants.items() if k.startswith("analog draw")}
    colours = iter(_COLOURS)
    for name, v in variants.items():
        if name in draws:
            continue
        right.scatter([v["nj"] / 1000], [v["accuracy"]], s=30, color=next(colours, "#222222"),
                      label=name)
    if draws:
        energy = np.array([v["nj"] / 1000 for v in draws.values()])
        accuracy = np.array([v["accuracy"] for v in draws.values()])
        colour = next(colours, "#222222")
        right.scatter(energy, accuracy, s=10, color=colour, alpha=0.5)
        ddof = 1 if len(draws) > 1 else 0  # the sample std, as the report's mismatch summary
        right.errorbar([energy.mean()], [accuracy.mean()], xerr=[energy.std(ddof=ddof)],
                       yerr=[accuracy.std(ddof=ddof)], fmt="s",
                       color=colour, markersize=5, label=f"analog, mismatch ({len(draws)} draws)")
    if not variants:
        right.text(0.5, 0.5, "no variant measured", ha="center", transform=right.transAxes)
    else:
        right.legend(fontsize=6, frameon=False, loc="best")
    right.set_xlabel("energy per inference (uJ, nominal unverified figures)", fontsize=8)
    right.set_ylabel("accuracy %", fontsize=8)
    right.set_title("Accuracy against energy, each from its own spikes", fontsize=9)
    right.tick_params(labelsize=7)
    fig.tight_layout()
    return _save(fig, path)
