"""The E-I graph (IR): populations and projections in numpy, with JSON + npz serialisation,
lowering from torch (``lower``), explicit synapses (``unroll_conv``) and the float executor.

Names are imported from their modules on first use (PEP 562): the IR and the executor need only
numpy, and reading a graph must not load torch, which only lowering needs.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "execute": ("FloatExecutor", "accuracy", "run"),
    "ir": ("GRAPH_FORMAT_VERSION", "KINDS", "OPS", "ROLES", "EIGraph", "GraphError",
           "Population", "Projection", "DivisionSettings", "ReadoutSettings", "InputSettings"),
    "lowering": ("lower",),
    "unroll": ("unroll_conv",),
}

__all__ = ["EIGraph", "Population", "Projection", "GraphError", "GRAPH_FORMAT_VERSION", "KINDS",
           "OPS", "ROLES", "DivisionSettings", "ReadoutSettings", "InputSettings", "lower",
           "unroll_conv", "run", "accuracy", "FloatExecutor"]
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
