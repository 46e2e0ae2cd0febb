"""What the host does around a mapped network: input encoding and the readout decision.

Every backend that runs a graph (the float executor, the integer simulator, the analog model of
the chip, the board and the virtual board) receives the same spikes from the host and decides a
class the same way. These are the host's two jobs, here once, so that no backend has to build a
:class:`~eideploy.graph.execute.FloatExecutor` just to encode its inputs.

Encodings (``graph.input_settings.encoding``, spec §1 and ``eideploy.nn.encoding``): ``direct`` and
``spikes`` pass the input as given; ``if`` integrates the intensities in an integrate-and-fire
encoder with the same float32 operations as the torch model (so the same spikes); ``bernoulli``
draws from numpy's generator seeded by ``graph.input_settings.seed`` per batch (the same
statistics as torch's draws, not the same spikes).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .ir import READOUT_MODES, EIGraph

__all__ = ["ENCODINGS", "READOUT_MODES", "Host", "class_totals", "if_encode",
           "readout_decision"]

#: Input encodings the host runs: analog values or spikes as given, or encoded here.
ENCODINGS = ("direct", "spikes", "if", "bernoulli")


def if_encode(x_seq: np.ndarray, threshold: float = 1.0, phase: float = 0.5) -> np.ndarray:
    """Integrate-and-fire encoding of ``(T, B, ...)`` intensities: ``u = u + x[t]``,
    ``s = u >= threshold``, ``u = u - threshold s``, ``u[-1] = phase`` (``nn.encoding``)."""
    dtype = x_seq.dtype.type
    u = np.full(x_seq.shape[1:], phase, dtype=dtype)
    spikes = np.empty_like(x_seq)
    for t in range(x_seq.shape[0]):
        u = u + x_seq[t]
        s = (u >= dtype(threshold)).astype(dtype)
        u = u - s * dtype(threshold)
        spikes[t] = s
    return spikes


def class_totals(values: np.ndarray, classes: int | None = None, reduce: Any = np.sum
                 ) -> np.ndarray:
    """Per class, ``reduce`` (the sum) of its readout neurons' ``values`` along the last axis.

    A population readout has ``copies = size // classes`` neurons per class, class-major (neuron
    ``j`` votes for class ``j // copies``; ``graph.readout["classes"]``); with one neuron per
    class (``classes`` None or the size) the values are returned as they are."""
    values = np.asarray(values)
    size = values.shape[-1]
    if classes is None or classes == size:
        return values
    if classes < 1 or size % classes:
        raise ValueError(f"{size} readout neurons cannot be split into {classes} classes")
    return reduce(values.reshape(*values.shape[:-1], classes, size // classes), axis=-1)


def readout_decision(counts: np.ndarray, membrane: np.ndarray, classes: int | None = None,
                     tiebreak: Any = np.sum) -> np.ndarray:
    """The class with the most spikes (summed over its readout neurons when there are several
    per class, :func:`class_totals`); among equal counts, the highest ``membrane`` (reduced
    per class by ``tiebreak``)."""
    counts = class_totals(counts, classes)
    membrane = class_totals(membrane, classes, tiebreak)
    top = counts.max(axis=-1, keepdims=True)
    return np.where(counts == top, membrane, -np.inf).argmax(axis=-1)


class Host:
    """The host's side of one graph: the input it encodes and the readout it decides from.

    ``input`` is the input population, ``settings`` the graph's input settings, ``readout`` the
    readout population's name, ``readout_mode`` / ``theta_out`` the readout's settings.

    ``fold(x)``: ``(B, *in_shape)`` -> ``(1, B, ...)`` (the same input at every step);
    ``(B, T, *in_shape)`` -> ``(T, B, ...)``. ``encode(folded)``: intensities -> the ``(T, B,
    ...)`` spikes the host sends. ``spikes(x)`` is both.
    """

    def __init__(self, graph: EIGraph, dtype: type = np.float32) -> None:
        self.graph = graph
        self.dtype = np.dtype(dtype).type
        self.settings = settings = graph.input_settings
        if settings.encoding not in ENCODINGS:
            raise ValueError(f"graph {graph.name}: input encoding {settings.encoding!r} is not "
                             f"one of {', '.join(ENCODINGS)}")
        self.encoding = settings.encoding
        self.input = graph.population(settings.population)
        readout = graph.readout_settings
        self.readout = readout.population
        self.readout_mode = readout.mode
        self.theta_out = readout.theta_out
        self.classes = readout.classes

    def decide(self, counts: np.ndarray, membrane: np.ndarray, tiebreak: Any = np.sum
               ) -> np.ndarray:
        """:func:`readout_decision` with this graph's classes."""
        return readout_decision(counts, membrane, self.classes, tiebreak)

    def decide_current(self, logits: np.ndarray) -> np.ndarray:
        """The class of a ``current`` readout: the largest time-averaged current (a class's
        readout neurons averaged, so one neuron per class gives its own value)."""
        return class_totals(logits, self.classes, np.mean).argmax(axis=-1)

    def fold(self, x: Any) -> np.ndarray:
        arr = np.asarray(x, dtype=self.dtype)
        shape, steps = tuple(self.input.shape), self.graph.T
        if arr.ndim == len(shape) + 1 and arr.shape[1:] == shape and arr.shape[0] > 0:
            return arr[None]
        if (arr.ndim == len(shape) + 2 and arr.shape[1] == steps and arr.shape[2:] == shape
                and arr.shape[0] > 0):
            return np.ascontiguousarray(arr.swapaxes(0, 1))
        dims = ", ".join(str(s) for s in shape)
        raise ValueError(f"graph {self.graph.name} expects input (B, {dims}) or "
                         f"(B, T={steps}, {dims}); got {arr.shape}")

    def encode(self, folded: np.ndarray) -> np.ndarray:
        if self.encoding in ("direct", "spikes"):
            return folded
        seq = np.broadcast_to(folded, (self.graph.T, *folded.shape[1:]))
        if self.encoding == "if":
            return if_encode(np.ascontiguousarray(seq), self.settings.threshold,
                             self.settings.phase)
        rng = np.random.default_rng(self.settings.seed)
        return (rng.random(seq.shape) < np.clip(seq, 0, 1)).astype(self.dtype)

    def spikes(self, x: Any) -> np.ndarray:
        """The ``(T, B, ...)`` spikes (or values, for ``direct``) the host sends for batch ``x``."""
        return self.encode(self.fold(x))
