"""The switches of the DeepEISNN method, one record shared by every E-I layer of a network.

Each ablation row of the paper's Tables 2 and 3 is one field value here (spec §4-§5), so a recipe
or a checkpoint names the variant it trained as plain data.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from .functional import LIFParameters

INIT_MODES = ("ei", "kaiming-clamped", "kaiming-unconstrained")
STABILISATIONS = ("adaptive", "fixed-eps")
WEI_GRAD_SCALES = ("1/d", "1/sqrt(d)", "none")
INHIBITORY_MODES = ("identity", "floor")
BIAS_MODES = ("free", "per_core", "none")


@dataclass(frozen=True)
class EIOptions:
    """How E-I layers initialise, stabilise, scale gradients and model the interneurons.

    * ``init``: ``ei`` (E-I Init, exponential weights, §4), ``kaiming-clamped`` (Kaiming normal
      weights projected to >= 0: Table 2 row 2) or ``kaiming-unconstrained`` (Kaiming normal, no
      sign constraint ever: Table 2 last row). ``g_I`` comes from the data statistics in all three.
    * ``stabilisation``: ``adaptive`` (per-row minimum positive divisor, §5.1) or ``fixed-eps``
      (divisor + ``eps``: Table 2's failing ablation).
    * ``wei_grad_scale``: gradient factor on ``W_EI``: ``1/d`` (default), ``1/sqrt(d)``, ``none``.
    * ``inhibitory``: ``identity`` (reference) or ``floor`` (paper; ``floor(relu(I)/theta_i)``).
    * ``bias``: ``free`` (reference: one trained b_E per E neuron), ``per_core`` (b_E tied over
      each chunk of ``bias_group`` neurons, the chip's one DC current per core) or ``none``
      (b_E frozen at 0): DYNAP-SE2 has no per-neuron bias (spec/dynapse2.md §3.1).
    """

    init: str = "ei"
    stabilisation: str = "adaptive"
    eps: float = 1e-3
    wei_grad_scale: str = "1/d"
    inhibitory: str = "identity"
    theta_i: float = 1.0
    ei_ratio: int = 4
    tau: float = 2.0
    v_threshold: float = 1.0
    surrogate_alpha: float = 4.0
    bias: str = "free"
    bias_group: int = 256

    def __post_init__(self) -> None:
        for name, allowed in (("init", INIT_MODES), ("stabilisation", STABILISATIONS),
                              ("wei_grad_scale", WEI_GRAD_SCALES),
                              ("inhibitory", INHIBITORY_MODES), ("bias", BIAS_MODES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"EIOptions.{name} = {getattr(self, name)!r} is not one of "
                                 f"{', '.join(allowed)}")
        for name in ("eps", "theta_i", "tau", "v_threshold", "surrogate_alpha"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"EIOptions.{name} must be a positive number, got {value!r}")
        if self.tau < 1:
            raise ValueError(f"EIOptions.tau must be >= 1 (decay = 1 - 1/tau), got {self.tau}")
        if isinstance(self.bias_group, bool) or not isinstance(self.bias_group, int) \
                or self.bias_group < 1:
            raise ValueError("EIOptions.bias_group must be a positive integer, got "
                             f"{self.bias_group!r}")
        if not isinstance(self.ei_ratio, int) or self.ei_ratio < 1:
            raise ValueError("EIOptions.ei_ratio must be a positive integer, got "
                             f"{self.ei_ratio!r}")

    @property
    def nonnegative(self) -> bool:
        """Dale's law: all E-I parameters but b_E are projected to >= 0 after each step."""
        return self.init != "kaiming-unconstrained"

    @property
    def lif(self) -> LIFParameters:
        return LIFParameters(self.tau, self.v_threshold, self.surrogate_alpha)

    def grad_scale(self, fan_in: int) -> float:
        """E-I Prop §5.2: factor on the loss gradient of W_EI for a layer of fan-in ``d``."""
        if self.wei_grad_scale == "1/d":
            return 1.0 / fan_in
        if self.wei_grad_scale == "1/sqrt(d)":
            return 1.0 / math.sqrt(fan_in)
        return 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> EIOptions:
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown E-I option(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known))}")
        return cls(**data)
