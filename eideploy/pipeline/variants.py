"""The variants a validation compares: each one way of computing the exported network, all
with one interface, ``run(x) -> VariantRun`` (a batch's predictions and per-population states).

:class:`TorchVariant` (the trained model), :class:`GraphVariant` (a float or quantized E-I graph
in the float executor), :class:`IntegerVariant` (the bit-accurate integer simulator, one
division mode), :class:`AnalogVariant` (the analog simulator of ``dynapse2.json``: the nominal
chip or one mismatch draw, optionally scored after the host's readout calibration). A board, or
a virtual board, is one more class with the same two members, ``name`` and ``run``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from ..graph import EIGraph
from ..graph.execute import FloatExecutor
from ..graph.host import readout_decision
from ..sim.integer import IntegerSimulator
from ..targets.dynapse2.analog import (
    AnalogSimulator,
    ReadoutDecoder,
    calibration_factors,
    fit_readout_decoder,
)
from ..train.trainer import predict_batch

__all__ = ["Variant", "VariantRun", "TorchVariant", "GraphVariant", "IntegerVariant",
           "AnalogVariant", "Calibration", "spike_rate_sums", "SPIKING_ROLES"]

SPIKING_ROLES = ("exc", "inh")


@dataclass
class VariantRun:
    """What one variant computes for one batch: the ``predictions`` (B,) and the ``states`` per
    population (``output`` (T, B, *shape), ``divisor``, ...: what the backend exposes; the
    analog simulator keeps none per sample); ``rate_sums``: spikes per model time step per neuron
    summed over the batch; ``saturations`` (integer); ``calibrated``: the predictions after the
    host's readout calibration, ``decoded``: those of the chip's readout decoder (analog
    mismatch draws)."""

    predictions: np.ndarray
    states: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    rate_sums: dict[str, np.ndarray] = field(default_factory=dict)
    saturations: dict[str, int] = field(default_factory=dict)
    calibrated: np.ndarray | None = None
    decoded: np.ndarray | None = None


class Variant(Protocol):
    """One way of computing the exported network: the float model, a graph in the float
    executor, the integer simulator, the analog simulator (a board or a virtual board are two
    more). ``draw``: a mismatch draw, scored in the report's ``analog.mismatch`` summary instead
    of as a variant of its own."""

    name: str
    draw: bool

    def run(self, x: np.ndarray) -> VariantRun: ...


def spike_rate_sums(states: Mapping[str, Mapping[str, np.ndarray]], roles: Mapping[str, str]
                    ) -> dict[str, np.ndarray]:
    """Per E and I population: each neuron's spikes per time step (interneurons: spike counts
    per step), summed over the batch."""
    sums = {}
    for name, state in states.items():
        if roles.get(name) not in SPIKING_ROLES:
            continue
        out = np.asarray(state["output"], dtype=np.float64)  # (T, B, *shape)
        sums[name] = out.reshape(out.shape[0], out.shape[1], -1).mean(axis=0).sum(axis=0)
    return sums


@dataclass
class TorchVariant:
    """The trained model itself (``model.pt``), as ``eideploy evaluate`` runs it."""

    name: str
    model: torch.nn.Module
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    draw: bool = False

    def run(self, x: np.ndarray) -> VariantRun:
        with torch.no_grad():
            xt = torch.from_numpy(x)
            _, predicted = predict_batch(self.model, self.transform(xt) if self.transform
                                         else xt)
        return VariantRun(predicted.numpy())


@dataclass
class GraphVariant:
    """An E-I graph (float or quantized) in the float executor."""

    name: str
    graph: EIGraph
    draw: bool = False

    def __post_init__(self) -> None:
        self.executor = FloatExecutor(self.graph)
        self.roles = {p.name: p.role for p in self.graph.populations}

    def run(self, x: np.ndarray) -> VariantRun:
        ex = self.executor
        logits, states = ex.run(x, return_states=True)
        if ex.readout_mode == "spiking":
            predictions = ex.host.decide(states[ex.readout]["counts"],
                                         states[ex.readout]["membrane"])
        else:
            predictions = ex.host.decide_current(logits)
        return VariantRun(predictions, states, spike_rate_sums(states, self.roles))


@dataclass
class IntegerVariant:
    """The quantized graph in the bit-accurate integer simulator, one division mode."""

    name: str
    graph: EIGraph
    mode: str
    draw: bool = False

    def __post_init__(self) -> None:
        self.sim = IntegerSimulator(self.graph, self.mode)
        self.roles = {p.name: p.role for p in self.graph.populations}

    def run(self, x: np.ndarray) -> VariantRun:
        result = self.sim.run(x, return_states=True)
        return VariantRun(result.predictions(), result.states,
                          spike_rate_sums(result.states, self.roles), dict(result.saturations))


@dataclass
class Calibration:
    """Unlabelled inputs for the host's readout calibration and the nominal chip's mean readout
    counts on them (measured once, on first use); with ``teacher``, the model's class totals on
    the same inputs, each chip's readout decoder as well (``analog.fit_readout_decoder``)."""

    x: np.ndarray
    config: Mapping[str, Any]
    batch_size: int
    teacher: np.ndarray | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # more AnalogSimulator arguments
    _reference: np.ndarray | None = None

    def fit(self, sim: AnalogSimulator) -> tuple[np.ndarray, ReadoutDecoder | None]:
        """This chip's calibration factors and (with a teacher) its readout decoder."""
        if self._reference is None:
            nominal = AnalogSimulator(self.config, batch_size=self.batch_size, **self.options)
            self._reference = nominal.run(self.x).counts.mean(axis=0)
        counts = sim.run(self.x).counts
        decoder = None if self.teacher is None else fit_readout_decoder(counts, self.teacher)
        return calibration_factors(counts, self._reference), decoder


@dataclass
class AnalogVariant:
    """The analog simulator of ``dynapse2.json``: the nominal chip (``mismatch`` 0) or one
    mismatch draw (``draw``, seeded ``seed``), optionally also scored after a readout
    calibration. The simulator is built on the first batch, so its set-up counts in its time."""

    name: str
    config: Mapping[str, Any]
    mismatch: float = 0.0
    seed: int = 0
    batch_size: int = 128
    calibration: Calibration | None = None
    draw: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)  # more AnalogSimulator arguments
    _sim: AnalogSimulator | None = None
    _factors: np.ndarray | None = None
    _decoder: ReadoutDecoder | None = None

    def run(self, x: np.ndarray) -> VariantRun:
        if self._sim is None:
            self._sim = AnalogSimulator(self.config, mismatch=self.mismatch, seed=self.seed,
                                        batch_size=self.batch_size, **self.options)
            if self.calibration is not None:
                self._factors, self._decoder = self.calibration.fit(self._sim)
        result = self._sim.run(x)
        # Hz over the window (T model steps plus the analog chain's tail) times the window:
        # spikes per sample; over T: spikes per model time step, the other variants' unit
        steps = self._sim.graph.T
        rate_sums = {p: np.asarray(hz, dtype=np.float64) * len(x) * result.window / steps
                     for p, hz in result.rates.items()}
        calibrated = None
        if self._factors is not None:
            calibrated = readout_decision(result.counts * self._factors, result.membrane,
                                          result.classes)
        decoded = None if self._decoder is None else self._decoder.predict(result.counts)
        return VariantRun(np.asarray(result.predictions()), rate_sums=rate_sums,
                          calibrated=calibrated, decoded=decoded)
