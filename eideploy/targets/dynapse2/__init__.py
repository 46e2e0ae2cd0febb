"""The DYNAP-SE2 target: its resources as data (``Target``) and the design-rule check."""

from .drc import RULES, SPIKE_ENCODINGS, DRCReport, Violation, check, fan_in
from .target import HARDWARE_DIR, Target, TargetError, known_targets, load_target

__all__ = ["Target", "TargetError", "load_target", "known_targets", "HARDWARE_DIR", "check",
           "fan_in", "DRCReport", "Violation", "RULES", "SPIKE_ENCODINGS"]
