"""A population readout: several readout neurons per class, decided by their summed counts.

On the analog chip every readout neuron has its own device mismatch, and the readout is where it
costs most: ten neurons whose counts differ by ~20% between the right class and the next are
reordered by per-neuron gains of 10-20% (docs/hardware-aware.md §5). ``replicate_readout(graph,
copies)`` gives every class ``copies`` identical readout neurons (the same incoming weights and
parameters, class-major: neuron ``j`` votes for class ``j // copies``), and
``graph.readout["classes"]`` tells every backend to decide by the class totals
(:func:`eideploy.graph.host.class_totals`). In the float executor, the quantized graph and the
integer simulator the copies are identical, so the decision is the one of a single neuron per
class (the digital chain agrees to the spike with the model); on the chip their mismatch is
independent and averages out, by about ``sqrt(copies)``.

The copies cost neurons, not synapses per neuron: each copy has the same fan-in (within the 64
CAM entries), and a source neuron reaches every copy on a core with one tag (broadcast).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .ir import EIGraph, GraphError, Population, Projection

__all__ = ["replicate_readout", "readout_copies"]

#: The most readout neurons per class (a DYNAP-SE2 core has 256 neurons).
MAX_COPIES = 64


def readout_copies(graph: EIGraph) -> int:
    """Readout neurons per class of ``graph`` (1 unless it has a population readout)."""
    settings = graph.readout_settings
    size = graph.population(settings.population).size
    return size // settings.classes if settings.classes else 1


def replicate_readout(graph: EIGraph, copies: int) -> EIGraph:
    """``graph`` with ``copies`` readout neurons per class (module doc); ``copies = 1`` returns
    ``graph`` itself. The graph's readout must still have one neuron per class."""
    if isinstance(copies, bool) or not isinstance(copies, int) or not 1 <= copies <= MAX_COPIES:
        raise GraphError(f"readout copies must be an integer in 1..{MAX_COPIES}, got {copies!r}")
    if copies == 1:
        return graph
    settings = graph.readout_settings
    readout = graph.population(settings.population)
    if readout_copies(graph) != 1:
        raise GraphError(f"graph {graph.name}: the readout {readout.name} already has "
                         f"{readout_copies(graph)} neurons per class")
    if len(readout.shape) != 1:
        raise GraphError(f"graph {graph.name}: readout {readout.name} has shape "
                         f"{readout.shape}; copies need a dense readout (n,)")
    if graph.projections_from(readout.name):
        raise GraphError(f"graph {graph.name}: readout {readout.name} projects onward; copies "
                         "would change what its targets receive")
    classes = readout.size
    populations = [_replicated_population(p, copies) if p is readout else p
                   for p in graph.populations]
    projections = [_replicated_projection(p, readout, copies) if p.target == readout.name
                   else p for p in graph.projections]
    out = dataclasses.replace(graph, populations=populations, projections=projections,
                              readout={**graph.readout, "classes": classes},
                              meta={**graph.meta, "readout_copies": copies})
    out.validate()
    return out


def _replicated_population(pop: Population, copies: int) -> Population:
    arrays = {}
    for key, value in pop.arrays.items():
        value = np.asarray(value)
        flat = value.reshape(-1)
        if flat.size == pop.size:  # per neuron (= per channel for a dense population)
            arrays[key] = np.repeat(flat, copies)
        elif flat.size == 1:
            arrays[key] = value
        else:
            raise GraphError(f"population {pop.name}: {key} has {flat.size} values, neither one "
                             f"nor one per neuron ({pop.size})")
    return dataclasses.replace(pop, shape=(pop.size * copies,), params=dict(pop.params),
                               arrays=arrays)


def _replicated_projection(proj: Projection, readout: Population, copies: int) -> Projection:
    if proj.op in ("dense", "pointwise"):
        return dataclasses.replace(proj, weight=np.repeat(proj.weight, copies, axis=0),
                                   attrs=dict(proj.attrs))
    if proj.op == "sparse" and proj.indices is not None:
        indices = np.asarray(proj.indices)
        copy = np.arange(copies)
        targets = (indices[:, :1] * copies + copy[None, :]).reshape(-1)
        sources = np.repeat(indices[:, 1], copies)
        return dataclasses.replace(proj, weight=np.repeat(proj.weight, copies),
                                   indices=np.stack([targets, sources], axis=1),
                                   attrs=dict(proj.attrs))
    raise GraphError(f"projection {proj.name} into readout {readout.name} is {proj.op!r}; "
                     "copies need dense, pointwise or sparse projections")
