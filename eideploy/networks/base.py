"""What every spiking network shares: time folding of the input and the time-averaged readout.

Spec §1 and §6: a static input is repeated ``T`` times (direct encoding, no normalisation), a
sequence ``(B, T, ...)`` (DVS frames) is made time-major, and inside the network time is folded
into the batch as ``(T*B, ...)`` with row ``t*B + b``. The logits are the mean over time of the
readout. Written once here so the E-I and the BN-SNN networks cannot disagree on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..nn import LIF, EILayer, EIOptions, name_ei_layers

__all__ = ["SpikingNetwork", "as_options"]


def as_options(options: EIOptions | dict[str, Any] | None) -> EIOptions:
    """Accept the options record, its plain-data form (a checkpoint's dict) or None (defaults)."""
    if options is None:
        return EIOptions()
    if isinstance(options, EIOptions):
        return options
    if isinstance(options, dict):
        return EIOptions.from_dict(options)
    raise ValueError(f"options must be an EIOptions, a dict or None; got {type(options).__name__}")


class SpikingNetwork(nn.Module):
    """A network run for ``T`` steps on time-folded tensors, returning time-averaged logits.

    Subclasses build their layers, list them in forward order in :meth:`pipeline` and end their
    constructor with :meth:`_finish`, which records ``arch_name``/``arch_kwargs`` (enough to
    rebuild the network through ``build_network``) and names the E-I layers by module path.
    """

    arch_name: str
    arch_kwargs: dict[str, Any]
    options: EIOptions | None

    def __init__(self, in_shape: Sequence[int], num_classes: int, T: int) -> None:
        super().__init__()
        name = type(self).__name__
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"{name}: the number of time steps T must be an integer >= 1, "
                             f"got {T!r}")
        try:
            shape = tuple(int(s) for s in in_shape)
        except TypeError:
            raise ValueError(f"{name}: in_shape must be a sequence of sizes such as (3, 32, 32); "
                             f"got {in_shape!r}") from None
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"{name}: in_shape must be non-empty positive sizes; got {in_shape!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"{name}: num_classes must be an integer >= 1, got {num_classes!r}")
        self.T = T
        self.in_shape = shape
        self.num_classes = num_classes
        self.options = None

    # ---- construction helpers
    def lif(self) -> LIF:
        """An excitatory LIF with this network's T and neuron constants (defaults for BN nets)."""
        return LIF(self.T, self.options)

    def _finish(self, arch_name: str, **extra: Any) -> None:
        self.arch_name = arch_name
        # Lists, not tuples, so the record survives a JSON/YAML round trip unchanged.
        self.arch_kwargs = {"in_shape": list(self.in_shape), "num_classes": self.num_classes,
                            "T": self.T, **extra}
        name_ei_layers(self)

    # ---- input handling (spec §1, §6)
    def expected_input(self) -> str:
        dims = ", ".join(str(s) for s in self.in_shape)
        return f"(B, {dims}) or (B, T={self.T}, {dims})"

    def is_static_input(self, x: torch.Tensor) -> bool:
        """True for a static batch ``(B, *in_shape)``, False for a sequence ``(B, T, *in_shape)``.

        Anything else raises ``ValueError`` naming the network and the shapes it accepts.
        """
        if not torch.is_tensor(x) or not x.is_floating_point():
            got = f"a {x.dtype} tensor" if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"{type(self).__name__} expects a floating-point tensor of shape "
                             f"{self.expected_input()}; got {got}")
        n = len(self.in_shape)
        if x.dim() == n + 1 and tuple(x.shape[1:]) == self.in_shape and x.shape[0] > 0:
            return True
        if (x.dim() == n + 2 and x.shape[1] == self.T and tuple(x.shape[2:]) == self.in_shape
                and x.shape[0] > 0):
            return False
        raise ValueError(f"{type(self).__name__} expects input {self.expected_input()}; "
                         f"got {tuple(x.shape)}")

    def repeat_time(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, ...)`` -> ``(T*B, ...)``: the same rows at every step (direct encoding)."""
        return x.unsqueeze(0).expand(self.T, *x.shape).reshape(-1, *x.shape[1:])

    def fold_time(self, x: torch.Tensor) -> torch.Tensor:
        """Static ``(B, *in_shape)`` -> repeated T times; ``(B, T, *in_shape)`` -> time-major.

        Both come out as ``(T*B, *in_shape)`` with row ``t*B + b``.
        """
        if self.is_static_input(x):
            return self.repeat_time(x)
        return x.transpose(0, 1).reshape(-1, *self.in_shape)

    # ---- the forward pass
    #: Run the stem (the modules before the first LIF) once per sample for static input and repeat
    #: its output T times, instead of running it on T identical copies. Exact for E-I layers,
    #: which act row by row; BatchNorm mixes rows (its running variance would see B instead of
    #: T*B samples), so the BN-SNN baselines keep the reference's T-fold computation.
    share_static_stem: bool = True

    def pipeline(self) -> list[nn.Module]:
        """The top-level modules in forward order, each mapping ``(T*B, ...)`` to ``(T*B, ...)``."""
        raise NotImplementedError

    def forward_folded(self, x: torch.Tensor) -> torch.Tensor:
        """``(T*B, *in_shape)`` -> per-step readout ``(T*B, num_classes)``."""
        for module in self.pipeline():
            x = module(x)
        return x

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step readout ``(T, B, num_classes)``: o[t] of spec §3 before the time average."""
        modules = self.pipeline()
        if self.share_static_stem and self.is_static_input(x):
            stem = next((i for i, m in enumerate(modules) if isinstance(m, LIF)), len(modules))
            if not _initialising(modules[:stem]):
                for module in modules[:stem]:
                    x = module(x)
                if stem < len(modules):  # the first LIF reads the stem's output at every step
                    x, stem = modules[stem].forward_repeated(x), stem + 1
                else:
                    x = self.repeat_time(x)
                for module in modules[stem:]:
                    x = module(x)
                return x.view(self.T, -1, x.shape[-1])
        out = self.forward_folded(self.fold_time(x))
        return out.view(self.T, -1, out.shape[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` = (1/T) sum_t o[t], the input of the cross-entropy."""
        return self.forward_sequence(x).mean(0)


def _initialising(modules: list[nn.Module]) -> bool:
    """Whether ``ei_init`` is running on these modules.

    E-I Init must see all T*B rows (spec §4.2: the T copies count in the across-row variance).
    ``ei_init`` hands each layer its generator for exactly the length of the init pass; reading
    that instead of the ``initialised`` buffer avoids a device-to-host sync on every step.
    """
    return any(m.initialising
               for module in modules for m in module.modules() if isinstance(m, EILayer))
