"""The E-I graph (IR): populations and projections in numpy, with JSON + npz serialisation,
lowering from torch (``lower``), explicit synapses (``unroll_conv``) and the float executor."""

from .execute import FloatExecutor, accuracy, run
from .ir import GRAPH_FORMAT_VERSION, KINDS, OPS, ROLES, EIGraph, GraphError, Population, Projection
from .lower import lower, unroll_conv

__all__ = ["EIGraph", "Population", "Projection", "GraphError", "GRAPH_FORMAT_VERSION", "KINDS",
           "OPS", "ROLES", "lower", "unroll_conv", "run", "accuracy", "FloatExecutor"]
