"""Simulators of mapped graphs: the bit-accurate integer one (docs/integer-semantics.md)."""

from .division import divide, lut_bound, lut_reciprocal, parse_division, reciprocal_lut
from .integer import IntegerResult, IntegerSimulator, accuracy

__all__ = ["IntegerSimulator", "IntegerResult", "accuracy", "divide", "lut_bound",
           "lut_reciprocal", "reciprocal_lut", "parse_division"]
