"""Running an export on a DYNAP-SE2 board through SynSense's samna, or on the virtual board.

Split by concern, each stage a plain function so that all but the last are tested without a
board:

* ``discovery``: is a usable samna installed (recognised without importing it: PyPI's samna is
  a stub that installs packages on import), does it see a board; deadlines on samna calls.
* ``configuration``: ``dynapse2.json`` -> samna's ``Dynapse2Configuration``, clean (built from
  defaults, never the board's last state), through the one entry builder that writes
  ``samna.json`` too; the leaky configuration that drains the chip between samples.
* ``events``: input spikes -> time-stamped host events (hops relative to chip 0), output events
  -> readout counts and predictions.
* ``runner``: the session (rockpool's ``DynapseSamna`` calls, end markers of *this* batch),
  :func:`run_on_board`, the echo test :func:`echo_check`, monitoring of hidden populations.
* ``virtual``: a virtual board that answers the same calls from the applied configuration
  alone (``eideploy run --device virtual``).
"""

from __future__ import annotations

from ...._lazy import lazy_exports

# Loaded on first use: ``eideploy run`` without samna answers from ``discovery`` alone, before
# the simulator and the compiler stack are imported.
_EXPORTS = {
    "configuration": ("SAMNA_FIELDS", "blank_configuration", "config_to_samna_configuration",
                      "drain_seconds", "leaky_configuration"),
    "discovery": ("BITFILE_ENV", "BoardError", "BoardUnavailable", "SamnaStatus", "check_board",
                  "find_samna"),
    "events": ("CONTROL_HOP", "CONTROL_TAG", "DT_US", "GAP_STEPS", "Decoded", "InputEvents",
               "decode_counts", "encode_events", "host_hops"),
    "runner": ("BOARD_METHODS", "MODEL_METHODS", "BoardResult", "EchoResult", "echo_check",
               "monitor_plan", "run_on_board"),
    "virtual": ("RoutingReport", "VirtualBoard", "virtual_samna"),
}
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
__all__ = [name for names in _EXPORTS.values() for name in names]
