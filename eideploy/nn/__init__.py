"""Training core: the DeepEISNN E-I circuit, E-I Init and E-I Prop."""

from .constraints import constraint_violations, project_nonnegative_
from .functional import LIFParameters
from .init import DEFAULT_INIT_SEED, ei_init, is_initialised
from .layers import LIF, EIConv2d, EILayer, EILinear, inhibitory_count, name_ei_layers
from .options import EIOptions

__all__ = [
    "EIOptions", "LIFParameters", "EILayer", "EILinear", "EIConv2d", "LIF", "ei_init",
    "is_initialised", "project_nonnegative_", "constraint_violations", "inhibitory_count",
    "name_ei_layers", "DEFAULT_INIT_SEED",
]
