"""Host events: the input spikes as time-stamped events, and output events back to counts.

* :func:`encode_events`: the host's input spikes ``(T, B, n_in)`` -> time-stamped events, one
  per spike and destination (tag, hops, core mask); one model step is ``biases.DT_SECONDS`` and
  the FPGA clock ticks in microseconds; each sample is followed by ``gap_steps`` silent steps
  during which its output is still counted (the analog chain passes the last step's charge on
  with a delay, ``analog.TAIL_STEPS``). Hops are relative to chip 0 (:func:`host_hops`).
* :func:`decode_counts`: output events (tag + timestamp) -> per-sample readout spike counts via
  ``readout_channels``, and predictions via ``readout_decision`` (ties: the earlier first spike,
  the chip's stand-in for the float readout's higher membrane).

The control tag (rockpool's ``DynapseSamna``: tag 2047 to hops (-7, -7), bounced by the FPGA
with ``x_hop`` -6) marks "all events up to here" and gives the FPGA's time; the router never
allocates it (``target.control_tag``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ....graph.host import readout_decision
from .. import analog
from ..analog import TAIL_STEPS
from ..biases import DT_SECONDS, bias_current
from ..route import layout_positions
from ..samna import MASK_BITS

__all__ = ["DT_US", "GAP_STEPS", "CONTROL_TAG", "CONTROL_HOP", "InputEvents", "encode_events",
           "Decoded", "decode_counts", "tag_and_time", "chip_positions", "host_hops",
           "latency_us", "readout_classes"]

#: One model step (``biases.DT_SECONDS``) in ticks of the FPGA's 1 us clock.
DT_US = int(round(DT_SECONDS * 1e6))
#: Silent steps after each sample's stimulus, still counted as its output (as the analog
#: simulator counts ``T + TAIL_STEPS`` steps). Samples are separated by a drain, not by leak.
GAP_STEPS = TAIL_STEPS
#: rockpool's control event: tag 2047 sent to hops (-7, -7) comes back from the FPGA with
#: ``x_hop`` -6; it marks "all events up to here are read" and gives the FPGA time.
CONTROL_TAG = 2047
CONTROL_HOP = -7
#: The core-shared delay of CAM delay classes 1, 2, 3 (samna's names).
_DELAY_BIASES = ("SYPD_DLY0_P", "SYPD_DLY1_P", "SYPD_DLY2_P")


# --------------------------------------------------------------------------- events
@dataclass(frozen=True)
class InputEvents:
    """Host -> chip events, one row per (spike, destination chip), in time order.

    ``timestamp_us`` never decreases: the events of one step are spaced 1 us apart from the
    step's start (rockpool's ``__raster_to_aer``), or share microseconds when a step holds more
    events than half a step has microseconds. Sample ``b`` starts at
    ``sample_start_us[b]``; samples follow each other every ``period_us`` =
    ``(steps + gap_steps) * dt_us``.
    """

    timestamp_us: np.ndarray
    tag: np.ndarray
    chip: np.ndarray
    core_mask: np.ndarray
    x_hop: np.ndarray
    y_hop: np.ndarray
    sample: np.ndarray
    sample_start_us: np.ndarray
    steps: int
    dt_us: int
    period_us: int

    def __len__(self) -> int:
        return int(self.timestamp_us.size)

    @property
    def end_us(self) -> int:
        """The end of the last sample's period (its gap included)."""
        return int(self.sample_start_us[-1]) + self.period_us if self.sample_start_us.size else 0

    def core_bits(self, index: int) -> list[bool]:
        return [bool(int(self.core_mask[index]) >> k & 1) for k in range(MASK_BITS)]


def chip_positions(config: Mapping[str, Any]) -> dict[int, tuple[int, int]]:
    """Board position of every chip of the configuration's board: the positions written in
    ``dynapse2.json`` for the chips it uses, the target's ``chip_layout`` for the others
    (exports written before the layout was a target parameter used the square grid)."""
    target = config["target"]
    layout = layout_positions(str(target.get("chip_layout", "grid")),
                              int(target["chips_per_board"]))
    positions = dict(enumerate(layout))
    for c in config["chips"]:
        x, y = c["position"]
        positions[int(c["id"])] = (int(x), int(y))
    return positions


def latency_us(config: Mapping[str, Any]) -> int:
    """How much later than the model the chip answers: the CAM entries' delays along the
    deepest path (the longest delay of a delay class in use times the number of populations
    with delayed entries), as the analog model lengthens its window
    (``analog.delay_seconds`` of each class's ``SYPD_DLY*`` current). The host counts a
    sample's output that much longer."""
    seconds = getattr(analog, "delay_seconds", None)
    longest, delayed = 0.0, set()
    for chip in config["chips"]:
        for core in chip["cores"]:
            classes = {int(e.get("delay", 0)) for n in core["neurons"] for e in n["cam"]}
            for cls in classes - {0}:
                if seconds is None:
                    continue
                name = _DELAY_BIASES[cls - 1]
                code = core["bias_codes"][name]
                delay = float(seconds(bias_current(name, int(code["coarse"]),
                                                   int(code["fine"]))))
                longest = max(longest, delay)
                delayed |= {str(n["population"]) for n in core["neurons"]
                            if any(int(e.get("delay", 0)) == cls for e in n["cam"])}
    return int(math.ceil(longest * len(delayed) * 1e6))


def host_hops(config: Mapping[str, Any], chip: int) -> tuple[int, int]:
    """Hops of a host event bound for ``chip``: relative to chip 0, so chip 0's inputs carry
    (0, 0). Evidence: rockpool 3.1.0's ``WeightAllocator.input_channel_map``
    (``rockpool/devices/dynapse/hardware/config/allocator.py``) builds the input destinations
    with every input "on" chip 0 (``pre_core_map`` all 0) and hops from ``manhattan(dest,
    source)``, which is (0, 0) for chip 0 and (1, 0) for chip 1 in ``CHIP_POS``; public
    DYNAP-SE2 scripts send to chip k with ``x_hop = k``. (The FPGA's own entry,
    ``CHIP_POS[-1]``, is never used as the source of input hops.)"""
    positions = chip_positions(config)
    if chip not in positions:
        raise ValueError(f"input channels send to chip {chip}, which the board does not have")
    (x, y), (x0, y0) = positions[chip], positions[0]
    return x - x0, y - y0


def _input_routes(config: Mapping[str, Any], n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """Per input channel, its events' (tag, chip, core_mask, x_hop, y_hop) rows: ``offsets``
    (n_in + 1,) into ``rows`` (R, 5)."""
    population = config["graph"]["input"]["population"]
    routes: list[list[tuple[int, int, int, int, int]]] = [[] for _ in range(n_in)]
    for channel in config["input_channels"]:
        if channel["population"] != population or channel.get("tag") is None:
            continue  # a channel that feeds nothing has no tag
        c = int(channel["channel"])
        if not 0 <= c < n_in:
            raise ValueError(f"input channel {c} is outside the {n_in} inputs of {population}")
        for dest in channel["destinations"]:
            chip = int(dest["chip"])
            x_hop, y_hop = host_hops(config, chip)
            if abs(x_hop) > 7 or abs(y_hop) > 7:
                raise ValueError(f"chip {chip} is ({x_hop}, {y_hop}) hops from the host, beyond "
                                 "+-7")
            routes[c].append((int(channel["tag"]), chip, int(dest["core_mask"]), x_hop, y_hop))
    offsets = np.zeros(n_in + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r) for r in routes])
    rows = np.array([row for r in routes for row in r], dtype=np.int64).reshape(-1, 5)
    return offsets, rows


def encode_events(config: Mapping[str, Any], spikes_in: np.ndarray, dt_us: int = DT_US, *,
                  gap_steps: int = GAP_STEPS, start_us: int = 0) -> InputEvents:
    """The events the host sends for input spikes ``(T, B, n_in)`` (or ``(T, B, *in_shape)``),
    as ``graph.host.Host(graph).spikes`` gives them (a count per step: that many events).

    Model step ``t`` of sample ``b`` starts at ``start_us + b * period_us + t * dt_us``; every
    spike goes to each destination chip of its channel (``input_channels``: tag, core mask; hops
    from the host, module doc). Raises ``ValueError`` for a shape that does not match the
    configuration's input or negative or fractional counts.
    """
    spikes = np.asarray(spikes_in)
    if spikes.ndim < 3:
        raise ValueError(f"input spikes must be (T, B, n_in), got shape {spikes.shape}")
    steps, batch = spikes.shape[:2]
    spikes = spikes.reshape(steps, batch, -1)
    population = config["graph"]["input"]["population"]
    shape = next(p["shape"] for p in config["graph"]["populations"] if p["name"] == population)
    n_in = int(math.prod(int(s) for s in shape))
    if spikes.shape[2] != n_in:
        raise ValueError(f"input spikes have {spikes.shape[2]} channels, the configuration's "
                         f"input {population} has {n_in}")
    if dt_us < 1 or gap_steps < 0:
        raise ValueError(f"dt_us must be >= 1 and gap_steps >= 0, got {dt_us}, {gap_steps}")
    counts = np.rint(spikes).astype(np.int64)
    if np.any(counts < 0) or not np.allclose(counts, spikes):
        raise ValueError("input spikes must be non-negative integer counts per step")
    offsets, rows = _input_routes(config, n_in)
    period_us = (steps + gap_steps) * dt_us
    # sample-major, then step, then channel, then destination
    per_channel = np.diff(offsets)
    events_per_cell = np.ascontiguousarray(counts.transpose(1, 0, 2)) * per_channel  # (B, T, n)
    flat = events_per_cell.reshape(-1)
    cells = np.flatnonzero(flat)
    cell_of_event = np.repeat(cells, flat[cells])
    b, rest = np.divmod(cell_of_event, steps * n_in)
    t, c = np.divmod(rest, n_in)
    # k-th event of its cell -> the cell's spike k // routes, route k % routes
    first = np.concatenate(([0], np.cumsum(flat[cells])[:-1])) if cells.size else cells
    k = np.arange(cell_of_event.size) - np.repeat(first, flat[cells])
    row = offsets[c] + k % np.maximum(per_channel[c], 1)
    # rank of each event within its step (events sorted by (b, t) already)
    step_key = b * steps + t
    step_first = np.searchsorted(step_key, step_key, side="left")
    rank = np.arange(step_key.size) - step_first
    # A step's events go out 1 us apart from its start, as close to simultaneous as the FPGA's
    # 1 us clock allows. A step with more events than the first half of the step holds (a
    # 784-pixel input) shares each microsecond among several events, which the FPGA sends back
    # to back in order; they still all arrive in the first half of the step.
    budget = max(dt_us // 2, 1)
    in_step = np.bincount(step_key, minlength=batch * steps)[step_key] if rank.size else rank
    offset = np.where(in_step > budget, rank * budget // np.maximum(in_step, 1), rank)
    sample_start = start_us + np.arange(batch, dtype=np.int64) * period_us
    timestamps = sample_start[b] + t * dt_us + offset
    return InputEvents(timestamps.astype(np.int64), rows[row, 0], rows[row, 1], rows[row, 2],
                       rows[row, 3], rows[row, 4], b.astype(np.int64), sample_start,
                       int(steps), int(dt_us), int(period_us))


@dataclass(frozen=True)
class Decoded:
    """Readout spike ``counts`` (B, classes), ``predictions`` (B,), the ``first_spike_us``
    of each class relative to its sample's start (inf: none) and the number of ``ignored``
    events (a tag that is no readout's, or a time outside every sample's window)."""

    counts: np.ndarray
    predictions: np.ndarray
    first_spike_us: np.ndarray
    ignored: int


def tag_and_time(event: Any) -> tuple[int, int]:
    """A samna ``NormalGridEvent`` (``event.event.tag``) or a plain record (``event.tag``)."""
    inner = getattr(event, "event", None)
    tag = inner.tag if inner is not None and hasattr(inner, "tag") else event.tag
    return int(tag), int(event.timestamp)


def readout_classes(config: Mapping[str, Any]) -> int:
    """The number of classes the host decides between: one more than the largest ``class`` of
    ``readout_channels`` (several readout neurons, each with its tag, may vote for one)."""
    return 1 + max((int(r["class"]) for r in config["readout_channels"]), default=-1)


def decode_counts(config: Mapping[str, Any], events: Iterable[Any], sent: InputEvents, *,
                  window_us: int | None = None) -> Decoded:
    """Per-sample readout counts of output ``events`` (each with ``tag`` and ``timestamp`` in
    us, or samna's ``event.tag``): an event of a readout tag counts for the sample whose window
    ``[start, start + window_us)`` holds it (by default the whole period, gap included: a spike
    driven by the last step may leave a little late). Predictions: most spikes, ties to the
    class whose first spike came earliest (``readout_decision``)."""
    readouts = sorted(config["readout_channels"], key=lambda r: int(r["class"]))
    classes = readout_classes(config)
    class_of = {int(r["tag"]): int(r["class"]) for r in readouts}
    starts = sent.sample_start_us
    batch = starts.size
    window = sent.period_us if window_us is None else int(window_us)
    counts = np.zeros((batch, classes), dtype=np.int64)
    first = np.full((batch, classes), np.inf)
    ignored = 0
    for event in events:
        tag, stamp = tag_and_time(event)
        k = class_of.get(tag)
        b = int(np.searchsorted(starts, stamp, side="right")) - 1
        if k is None or b < 0 or stamp - int(starts[b]) >= window:
            ignored += 1
            continue
        counts[b, k] += 1
        first[b, k] = min(first[b, k], stamp - int(starts[b]))
    predictions = readout_decision(counts, -first) if batch else np.zeros(0, dtype=np.int64)
    return Decoded(counts, predictions.astype(np.int64), first, ignored)
