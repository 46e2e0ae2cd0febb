"""The E-I graph (IR): populations and projections in numpy, with JSON + npz serialisation."""

from .ir import GRAPH_FORMAT_VERSION, KINDS, OPS, ROLES, EIGraph, GraphError, Population, Projection

__all__ = ["EIGraph", "Population", "Projection", "GraphError", "GRAPH_FORMAT_VERSION", "KINDS",
           "OPS", "ROLES"]
