"""Per-core bias currents <-> (coarse, fine) codes of the DYNAP-SE2 bias generator.

Every per-core parameter of the chip (leak, threshold, gains, time constants, the four base
weights ...) is a current set by a (coarse 0..5, fine 0..255) code of an N- or P-type generator.
The realised current is ``paramgen_se2[type][coarse][fine] * scale_factor_se2[name]``: rockpool's
measured generator tables (``rockpool.devices.dynapse.lookup.paramgen``) times a per-parameter
scale (``lookup/scaling.py``); this is what rockpool's ``digital_to_analog`` /
``param_to_analog`` compute (``rockpool.devices.dynapse.parameters.biasgen``). The transistor
type is the name's last letter, as rockpool's ``analog_to_param`` reads it.

:func:`bias_code` searches all 6 x 256 codes of the parameter at once and keeps the one whose
realised current is nearest the request (ties: the lowest coarse, then the lowest fine value, the
same choice as rockpool's ``analog_to_digital``). A request outside the generator's range gets the
nearest end of the range and ``clipped=True``. A request of 0 A gets the smallest code, is
flagged clipped, and its relative error is infinite (``None`` in ``to_dict``).

rockpool is imported lazily, inside the functions that read its tables, with its "samna
installation not found" warnings silenced (the root logger is raised to ERROR and given a
temporary handler, so that rockpool's ``logging.warning`` calls neither print nor configure
logging; both are restored afterwards).

Model quantities -> currents. The DPI circuits' nominal relations, as in rockpool's DynapSim
(``rockpool.devices.dynapse.lookup.defaults``: ``default_layout`` and the ``Itau_lambda`` /
``Ipw_lambda`` helpers):

* a DPI time constant ``tau = (U_T / kappa) * C / I_tau``, with ``kappa = (kappa_n + kappa_p) / 2``
  (:func:`leak_current` with ``C_mem``; :func:`synapse_tau_current` with the dendrite's ``C``);
* a pulse width ``t = V_th * C / I_pw`` (:func:`refractory_current` with ``C_ref``,
  :func:`pulse_current` with ``C_pulse``).

Time and weight units, rockpool's DynapSim defaults: one model time step is ``DT_SECONDS`` = 1 ms
(DynapSim's ``dt``), and a model weight of 1.0 is ``WEIGHT_UNIT_CURRENT`` = 10 nA of base weight
current (DynapSim's ``Iscale``: it simulates ``I_w = w * Iscale``).
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

import numpy as np

from ...resources import hardware_dir
from .rockpool_shim import rockpool_import

__all__ = ["BiasCode", "bias_code", "bias_codes", "bias_current", "core_biases", "bias_range",
           "bias_names", "leak_current", "synapse_tau_current", "refractory_current",
           "pulse_current", "tau_seconds", "leak_tau", "synapse_tau", "DT_SECONDS",
           "WEIGHT_UNIT_CURRENT", "U_T", "KAPPA", "V_TH", "C_MEM", "C_REF", "C_PULSE",
           "C_DENDRITE", "C_DELAY", "I_DARK", "MISMATCH", "COARSE_VALUES", "FINE_VALUES"]

COARSE_VALUES = 6
FINE_VALUES = 256

# The circuit constants: hardware/dynapse2.toml's [analog] table, each value with its source
# there (rockpool.devices.dynapse.lookup.defaults.default_layout for the DPI's, DynapSim's nominal
# circuit values); read once, at import, without importing the target loader.
_TOML = hardware_dir() / "dynapse2.toml"


def _analog_constants(path: Path = _TOML) -> dict[str, Any]:
    with open(path, "rb") as f:
        table = tomllib.load(f).get("analog")
    if not isinstance(table, dict):
        raise RuntimeError(f"{path}: the [analog] table of circuit constants is missing")
    return table


_ANALOG = _analog_constants()
U_T = float(_ANALOG["U_T"])                  # thermal voltage "Ut", V
KAPPA_N, KAPPA_P = float(_ANALOG["kappa_n"]), float(_ANALOG["kappa_p"])  # subthreshold slopes
KAPPA = (KAPPA_N + KAPPA_P) / 2              # DynapSim's Itau_lambda averages them
V_TH = float(_ANALOG["V_th"])                # V: pulse-width and delay circuits
C_MEM = float(_ANALOG["C_mem"])              # F
C_REF = float(_ANALOG["C_ref"])
C_PULSE = float(_ANALOG["C_pulse"])
C_DELAY = float(_ANALOG["C_delay"])
C_DENDRITE = {d: float(_ANALOG[f"C_{d}"]) for d in ("ampa", "nmda", "gaba", "shunt")}
I_DARK = float(_ANALOG["I_0"])               # dark current: a DPI at rest, the membrane's reset
#: Mismatch structure (analog.py's ``_Draws``): the share of the log-variance common to a core,
#: and the relative spread of the precise and mismatched delay classes per unit of mismatch.
MISMATCH = {k: float(v) for k, v in _ANALOG["mismatch"].items()}

# DynapSim's dt (rockpool.devices.dynapse.simulation.dynapsim) and Iscale (default_weights)
DT_SECONDS = 1e-3
WEIGHT_UNIT_CURRENT = 1e-8

# samna spells the delay biases SYPD_DLY*, rockpool's scale table SYPD_DYL*
_ROCKPOOL_SPELLING = {f"SYPD_DLY{i}_P": f"SYPD_DYL{i}_P" for i in range(3)}


@dataclass(frozen=True)
class BiasCode:
    """One parameter's code: the request, the chosen (coarse, fine) and what it realises."""

    name: str
    type: str            # generator transistor type, "N" or "P"
    requested: float     # A
    coarse: int
    fine: int
    realised: float      # A
    relative_error: float  # |realised - requested| / requested (inf for a 0 A request)
    clipped: bool        # the request lies outside the generator's range

    def to_dict(self) -> dict[str, Any]:
        rel = self.relative_error if math.isfinite(self.relative_error) else None
        return {"name": self.name, "type": self.type, "requested": self.requested,
                "coarse": self.coarse, "fine": self.fine, "realised": self.realised,
                "relative_error": rel, "clipped": self.clipped}


# ---------------------------------------------------------------- rockpool's tables, lazily
@functools.lru_cache(maxsize=1)
def _rockpool_tables() -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """rockpool's generator tables as {type: (6, 256) array} and its scale factors."""
    try:
        with rockpool_import():
            from rockpool.devices.dynapse.lookup import paramgen_se2, scale_factor_se2
    except ImportError as exc:  # pragma: no cover - rockpool is a core dependency
        raise ImportError("DYNAP-SE2 bias codes need rockpool's generator tables: "
                          "pip install rockpool==3.1.0") from exc
    tables = {t: np.array([paramgen_se2[t][c] for c in range(COARSE_VALUES)], dtype=np.float64)
              for t in ("N", "P")}
    for t, table in tables.items():
        if table.shape != (COARSE_VALUES, FINE_VALUES):
            raise RuntimeError(f"rockpool's {t}-type generator table has shape {table.shape}, "
                               f"expected {(COARSE_VALUES, FINE_VALUES)}")
    return tables, dict(scale_factor_se2)


def _lookup(name: str) -> tuple[str, float, np.ndarray]:
    """(type, scale, realisable currents (6, 256)) of a parameter."""
    tables, scales = _rockpool_tables()
    key = _ROCKPOOL_SPELLING.get(name, name)
    if key not in scales:
        raise ValueError(f"unknown DYNAP-SE2 bias {name!r}; known: {', '.join(sorted(scales))}")
    kind = name[-1]
    if kind not in tables:
        raise ValueError(f"bias {name!r}: its generator type is not fixed (names ending in _N or "
                         "_P have one); it has no (coarse, fine) current table")
    return kind, scales[key], tables[kind] * scales[key]


def bias_names() -> tuple[str, ...]:
    """Every parameter with an N- or P-type current table (rockpool's spelling)."""
    _, scales = _rockpool_tables()
    return tuple(sorted(n for n in scales if n[-1] in ("N", "P")))


def bias_range(name: str) -> tuple[float, float]:
    """Smallest and largest current the parameter's generator realises (A)."""
    currents = _lookup(name)[2]
    return float(currents.min()), float(currents.max())


def bias_codes(name: str, currents: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised search: (coarse, fine, realised) arrays for an array of requested currents."""
    req = np.asarray(currents, dtype=np.float64)
    if not np.all(np.isfinite(req)) or (req.size and float(req.min()) < 0):
        raise ValueError(f"bias {name}: requested currents must be finite and >= 0")
    flat = _lookup(name)[2].ravel()
    idx = np.empty(req.size, dtype=np.int64)
    r = req.ravel()
    for start in range(0, r.size, 1024):  # bounded (1024 x 1536) distance blocks
        block = r[start:start + 1024]
        idx[start:start + block.size] = np.argmin(np.abs(flat[None, :] - block[:, None]), axis=1)
    coarse, fine = np.divmod(idx, FINE_VALUES)
    return (coarse.reshape(req.shape), fine.reshape(req.shape), flat[idx].reshape(req.shape))


def bias_code(name: str, current: float) -> BiasCode:
    """The (coarse, fine) code whose realised current is nearest ``current`` (A)."""
    current = float(current)
    kind, _, table = _lookup(name)
    coarse, fine, realised = bias_codes(name, np.array([current]))
    low, high = float(table.min()), float(table.max())
    real = float(realised[0])
    rel = abs(real - current) / current if current > 0 else math.inf
    return BiasCode(name=name, type=kind, requested=current, coarse=int(coarse[0]),
                    fine=int(fine[0]), realised=real, relative_error=rel,
                    clipped=not low <= current <= high)


def bias_current(name: str, coarse: int, fine: int) -> float:
    """The current (A) a code realises: rockpool's ``param_to_analog`` for that parameter."""
    if not (0 <= int(coarse) < COARSE_VALUES and 0 <= int(fine) < FINE_VALUES):
        raise ValueError(f"bias {name}: code ({coarse}, {fine}) is outside coarse 0..5, "
                         "fine 0..255")
    return float(_lookup(name)[2][int(coarse), int(fine)])


def core_biases(currents: Mapping[str, float]) -> dict[str, BiasCode]:
    """Codes for one core's parameter currents, keyed like ``currents``."""
    return {name: bias_code(name, value) for name, value in currents.items()}


# ---------------------------------------------------------------- model quantities -> currents
def tau_seconds(tau_steps: float, dt: float = DT_SECONDS) -> float:
    """Continuous time constant of the model's discrete leak ``v <- (1 - 1/tau) v + ...``.

    ``exp(-dt / tau_c) = 1 - 1/tau``; ``tau = inf`` (no leak) gives ``inf``.
    """
    if not tau_steps > 1:
        raise ValueError(f"tau must be > 1 time step (tau = 1 forgets everything each step and "
                         f"needs an infinite leak current), got {tau_steps}")
    if math.isinf(tau_steps):
        return math.inf
    return -dt / math.log1p(-1.0 / tau_steps)


def _dpi_current(capacitance: float, tau: float) -> float:
    if not tau > 0:
        raise ValueError(f"time constant must be > 0 s, got {tau}")
    return (U_T / KAPPA) * capacitance / tau  # inf tau -> 0 A


def leak_current(tau_seconds: float) -> float:
    """``SOIF_LEAK_N`` current (A) for a membrane time constant: ``(U_T/kappa) C_mem / tau``."""
    return _dpi_current(C_MEM, tau_seconds)


def synapse_tau_current(tau_seconds: float, dendrite: str = "ampa") -> float:
    """Dendrite time-constant current (A), e.g. ``DEAM_ETAU_P`` for ``"ampa"``.

    ``(U_T/kappa) C_syn / tau`` with the dendrite's capacitance (``C_DENDRITE``).
    """
    if dendrite not in C_DENDRITE:
        raise ValueError(f"unknown dendrite {dendrite!r}; one of {sorted(C_DENDRITE)}")
    return _dpi_current(C_DENDRITE[dendrite], tau_seconds)


def leak_tau(current: float) -> float:
    """Membrane time constant (s) a leak current realises (inverse of :func:`leak_current`)."""
    return (U_T / KAPPA) * C_MEM / current if current > 0 else math.inf


def synapse_tau(current: float, dendrite: str = "ampa") -> float:
    """Dendrite time constant (s) a tau current realises (inverse of synapse_tau_current)."""
    if dendrite not in C_DENDRITE:
        raise ValueError(f"unknown dendrite {dendrite!r}; one of {sorted(C_DENDRITE)}")
    return (U_T / KAPPA) * C_DENDRITE[dendrite] / current if current > 0 else math.inf


def refractory_current(t_ref_seconds: float) -> float:
    """``SOIF_REFR_N`` current (A) for a refractory period: ``V_th C_ref / t_ref``."""
    if not t_ref_seconds > 0:
        raise ValueError(f"refractory period must be > 0 s, got {t_ref_seconds}")
    return V_TH * C_REF / t_ref_seconds


def pulse_current(t_pulse_seconds: float) -> float:
    """``SYPD_EXT_N`` current (A) for a synaptic pulse width: ``V_th C_pulse / t_pulse``."""
    if not t_pulse_seconds > 0:
        raise ValueError(f"pulse width must be > 0 s, got {t_pulse_seconds}")
    return V_TH * C_PULSE / t_pulse_seconds
