"""The DYNAP-SE2 target: its resources as data (``Target``), the design-rule check, placement,
quantization, routing, the configuration model and the compiler that chains them."""

from .compile import CompiledNetwork, DoesNotFit, compile_graph, core_bias_currents
from .config import (
    CONFIG_FORMAT,
    CONFIG_FORMAT_VERSION,
    ConfigError,
    build_config,
    config_bytes,
    config_to_graph,
    read_config,
    write_config,
)
from .drc import RULES, SPIKE_ENCODINGS, DRCReport, Violation, check, fan_in
from .place import CoreAssignment, MappingError, ParameterGroup, Placement, place
from .quantize import QuantizedGraph, quantize_graph, to_sparse
from .route import CamTable, Routing, chip_positions, route
from .target import HARDWARE_DIR, Target, TargetError, known_targets, load_target, resolve_target

__all__ = ["Target", "TargetError", "load_target", "resolve_target", "known_targets",
           "HARDWARE_DIR", "check",
           "fan_in", "DRCReport", "Violation", "RULES", "SPIKE_ENCODINGS",
           "MappingError", "ParameterGroup", "CoreAssignment", "Placement", "place",
           "QuantizedGraph", "quantize_graph", "to_sparse",
           "CamTable", "Routing", "route", "chip_positions",
           "CONFIG_FORMAT", "CONFIG_FORMAT_VERSION", "ConfigError", "build_config",
           "config_bytes", "write_config", "read_config", "config_to_graph",
           "DoesNotFit", "CompiledNetwork", "compile_graph", "core_bias_currents"]
