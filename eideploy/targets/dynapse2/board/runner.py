"""Running an export on a DYNAP-SE2 board (``eideploy run``): the session, the run, the echo test.

The samna calls are those of rockpool 3.1.0's ``DynapseSamna``
(``rockpool/devices/dynapse/hardware/interface/samna.py``) and ``find_dynapse_boards``
(``.../hardware/interface/utils.py``): ``samna.device.get_all_devices()``, ``open_device``,
``configure_opal_kelly(bitfile)``, ``get_model()``, ``apply_configuration()``,
``clear_error_queue()``, ``grid_bus_write_events`` / ``input_interface_write_events(0, ...)``,
``read_events()``, ``close_device``. Every blocking call runs under a deadline
(``discovery.bounded``), so a silent board raises :class:`BoardError` instead of hanging.

One sample at a time, as ``DynapseSamna.evolve`` runs one record: apply the network's clean
configuration, read the FPGA's time, write the sample's events starting ``offset_us`` later
followed by an end marker, read until *that* marker comes back, then drain the chip
(``configuration.leaky_configuration`` for ``configuration.drain_seconds``, timed by the FPGA's
own clock) so that the next sample starts from rest.

End markers. A control event (tag 2047, hops (-7, -7)) comes back from the FPGA at its
timestamp; rockpool writes three because one can get lost, so two of every three come back
after the read that waited for the first. A read that stops at the first control event it sees
therefore stops at a stale one, the next batch's events are read in part, and nothing says so
(the defect this module had). Here each batch's markers are stamped with the batch's end time,
a read ends only at a marker with that time or later, and every control event written is
counted until it is back (:class:`Session`): stale markers are recognised and skipped.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ....graph.host import Host
from ..biases import DT_SECONDS
from ..energy import board_energy
from ..samna import MASK_BITS, monitor_tags
from .configuration import (
    config_to_samna_configuration,
    drain_seconds,
    leaky_configuration,
    new_object,
)
from .discovery import (
    BoardError,
    bitfile,
    bounded,
    find_board,
    find_samna,
    import_samna,
    unavailable,
)
from .events import (
    CONTROL_HOP,
    CONTROL_TAG,
    DT_US,
    GAP_STEPS,
    InputEvents,
    decode_counts,
    encode_events,
    latency_us,
    readout_classes,
    tag_and_time,
)
from .virtual import VirtualBoard, virtual_samna

__all__ = ["BOARD_METHODS", "MODEL_METHODS", "BoardResult", "Session", "run_on_board",
           "monitor_plan", "MonitorPlan", "EchoResult", "echo_check", "OFFSET_US"]

#: Methods called on an opened board (``Dynapse2Interface``) and on its model (``Dynapse2Model``).
BOARD_METHODS = ("configure_opal_kelly", "get_model", "grid_bus_write_events",
                 "input_interface_write_events", "read_events")
MODEL_METHODS = ("apply_configuration", "clear_error_queue")
#: A sample's events start this long after the FPGA time read before it (rockpool's ``evolve``
#: default ``offset = 100e-3``): the time to hand the events over USB.
OFFSET_US = 100_000


# --------------------------------------------------------------------------- results
@dataclass
class BoardResult:
    """One run on the board: ``accuracy`` in percent (as ``graph.execute.accuracy``), the
    ``predictions`` and readout ``counts`` per sample, mean ``rates`` in Hz per population the
    host observes (the input it sends, over the stimulus; the readout and monitored populations,
    over the counting window), the events sent and received and the wall-clock ``seconds``.
    ``routing``: the virtual board's routing report (None on a real board); ``energy``: energy
    and latency per inference from the events seen (``energy.board_energy``, as a dict)."""

    accuracy: float
    predictions: np.ndarray
    counts: np.ndarray
    rates: dict[str, float]
    events_sent: int
    events_received: int
    seconds: float
    device: str = ""
    ignored_events: int = 0
    notes: list[str] = field(default_factory=list)
    routing: dict[str, Any] | None = None
    energy: dict[str, Any] | None = None


# --------------------------------------------------------------------------- the session
class Session:
    """An opened board, driven as rockpool's ``DynapseSamna`` drives it (module doc)."""

    def __init__(self, samna: Any, device: Any, timeout_s: float, poll_s: float,
                 need_bitfile: bool = True) -> None:
        self.samna, self.sm = samna, samna.dynapse2
        self.timeout_s, self.poll_s = timeout_s, poll_s
        self.outstanding = 0  # control events written and not yet back
        self.fpga_us = 0  # the latest FPGA time a control event brought back
        self.board = bounded("opening the board", timeout_s, samna.device.open_device, device)
        if self.board is None:
            raise unavailable("samna could not open the DYNAP-SE2 board (is another process "
                              "using it?)")
        try:
            if hasattr(self.board, "configure_opal_kelly"):
                path = bitfile() if need_bitfile else ""
                if not bounded("configuring the FPGA", timeout_s,
                               self.board.configure_opal_kelly, path):
                    raise BoardError("samna could not configure the board's FPGA (Opal Kelly)")
            self.model = self.board.get_model()
        except BaseException:
            try:
                self.close()
            except Exception:  # the first error is the one to report
                pass
            raise

    def apply(self, configuration: Any) -> None:
        self.model.clear_error_queue()
        bounded("applying the configuration", self.timeout_s, self.model.apply_configuration,
                configuration)

    def event(self, core: list[bool], x_hop: int, y_hop: int, tag: int, timestamp: int) -> Any:
        dest = new_object(self.sm.Dynapse2Destination, core=core, x_hop=x_hop, y_hop=y_hop,
                          tag=tag)
        return new_object(self.sm.NormalGridEvent, event=dest, timestamp=int(timestamp))

    def control(self, timestamp: int, n: int = 3) -> list[Any]:
        """``n`` control events stamped ``timestamp`` (several: one can get lost, rockpool's
        ``__control_sequence``); counted as outstanding until they come back."""
        self.outstanding += n
        return [self.event([True] * MASK_BITS, CONTROL_HOP, CONTROL_HOP, CONTROL_TAG, timestamp)
                for _ in range(n)]

    @staticmethod
    def is_control(event: Any) -> bool:
        """rockpool's ``__if_control_event``: the control tag, bounced with ``x_hop`` + 1."""
        inner = getattr(event, "event", event)
        return (int(inner.tag) == CONTROL_TAG and int(inner.x_hop) == CONTROL_HOP + 1
                and int(inner.y_hop) == CONTROL_HOP)

    def poll_until(self, end_us: int | None, seconds: float, what: str) -> list[Any]:
        """Output events read until a control event stamped ``end_us`` or later comes back
        (``None``: until every outstanding control event is back); earlier (stale) markers are
        skipped. Raises :class:`BoardError` after ``seconds``."""
        out: list[Any] = []
        deadline = time.monotonic() + seconds
        while True:
            done = False
            for event in self.board.read_events() or []:
                if not self.is_control(event):
                    out.append(event)
                    continue
                stamp = int(event.timestamp)
                self.outstanding = max(self.outstanding - 1, 0)
                self.fpga_us = max(self.fpga_us, stamp)
                done = done or (end_us is not None and stamp >= end_us)
            if done or (end_us is None and self.outstanding == 0):
                return out
            if time.monotonic() >= deadline:
                raise BoardError(
                    f"the board did not answer within {seconds:g} s while {what}: the control "
                    f"event it waits for never came back ({len(out)} output events read, "
                    f"{self.outstanding} control events outstanding); unplug and replug the "
                    "board")
            time.sleep(self.poll_s)

    def now_us(self) -> int:
        """The FPGA's current time: three control events bounced at once (rockpool's
        ``current_timestamp``), waiting for every control event still outstanding."""
        self.board.input_interface_write_events(0, self.control(0))
        self.poll_until(None, self.timeout_s, "reading the FPGA's time")
        return self.fpga_us

    def run_batch(self, sent: InputEvents, deadline_s: float) -> list[Any]:
        """Write ``sent`` and its end markers; the output events up to *this* batch's end."""
        events = [self.event(sent.core_bits(i), int(sent.x_hop[i]), int(sent.y_hop[i]),
                             int(sent.tag[i]), int(sent.timestamp_us[i]))
                  for i in range(len(sent))]
        events += self.control(sent.end_us)
        bounded("writing events", self.timeout_s, self.board.grid_bus_write_events, events)
        return self.poll_until(sent.end_us, deadline_s, "reading a batch's output")

    def wait_us(self, duration_us: int) -> None:
        """Wait ``duration_us`` of the FPGA's clock: a control event stamped that much after
        its current time comes back when the time has passed."""
        end = self.now_us() + int(duration_us)
        bounded("writing events", self.timeout_s, self.board.grid_bus_write_events,
                self.control(end, 1))
        self.poll_until(end, duration_us * 1e-6 + self.timeout_s, "draining the chip")

    def close(self) -> None:
        bounded("closing the board", self.timeout_s, self.samna.device.close_device, self.board)


# --------------------------------------------------------------------------- monitoring
@dataclass(frozen=True)
class MonitorPlan:
    """Host-bound monitoring entries ``{(chip, core, neuron): tag}`` for the populations
    asked for, and back from a tag to ``(population, index)``."""

    entries: dict[tuple[int, int, int], int]
    neuron_of_tag: dict[int, tuple[str, int]]
    sizes: dict[str, int]


def monitor_plan(config: Mapping[str, Any], populations: Sequence[str]) -> MonitorPlan:
    """Give every neuron of ``populations`` a monitoring SRAM entry (the reserved entry 0: all
    cores, hops (-7, -7)) with a tag of its own among the host's: the tags no readout holds,
    the control tag excepted. Raises ``ValueError`` where this does not fit: an unknown
    population, a target without a reserved monitoring entry, or more neurons than tags."""
    target = config["target"]
    readout = monitor_tags(config)
    placed: dict[str, dict[int, tuple[int, int, int]]] = {}
    for chip in config["chips"]:
        for core in chip["cores"]:
            for neuron in core["neurons"]:
                key = (int(chip["id"]), int(core["id"]), int(neuron["id"]))
                placed.setdefault(str(neuron["population"]), {})[int(neuron["index"])] = key
    unknown = [p for p in populations if p not in placed]
    if unknown:
        raise ValueError(f"--monitor {', '.join(unknown)}: no such on-chip population; the "
                         f"export places {', '.join(placed)}")
    if populations and int(target.get("sram_reserved", 0)) < 1:
        raise ValueError(f"--monitor: target {target.get('name')!r} keeps no SRAM entry for "
                         "monitoring (sram_reserved = 0): every entry routes the network")
    wanted = [(p, i, key) for p in populations for i, key in sorted(placed[p].items())
              if key not in readout]
    control = target.get("control_tag")
    free = [t for t in range(int(target["tags"])) if t != control and t not in readout.values()]
    if len(wanted) > len(free):
        raise ValueError(f"--monitor {', '.join(populations)}: {len(wanted)} neurons need host "
                         f"tags of their own, but only {len(free)} are left beside the readout "
                         "and control tags; monitor fewer populations")
    entries = {key: tag for (_, _, key), tag in zip(wanted, free, strict=False)}
    neuron_of = {tag: (p, i) for (p, i, _), tag in zip(wanted, free, strict=False)}
    for r in config["readout_channels"]:
        key = (int(r["chip"]), int(r["core"]), int(r["neuron"]))
        for p, members in placed.items():
            for i, k in members.items():
                if k == key and p in populations:
                    neuron_of[int(r["tag"])] = (p, i)
    return MonitorPlan(entries, neuron_of, {p: len(placed[p]) for p in populations})


# --------------------------------------------------------------------------- running
def _open(samna: Any | None, board_index: int, timeout_s: float, poll_s: float
          ) -> tuple[Session, str]:
    if samna is None:  # a real board: never import a stub
        status = find_samna()
        if not status.usable:
            raise unavailable(status.detail)
        samna = import_samna(timeout_s)
        need_bitfile = True
    else:  # a samna-like namespace given by the caller (the virtual board)
        need_bitfile = False
    device = find_board(samna, board_index, timeout_s)
    session = Session(samna, device, timeout_s, poll_s, need_bitfile)
    return session, str(getattr(device, "device_type_name", "DYNAP-SE2"))


def _virtual(config: Mapping[str, Any]) -> Any:
    """A virtual board of the export's size, its chips in rockpool's row (``CHIP_POS``)."""
    return virtual_samna(VirtualBoard(int(config["target"]["chips_per_board"])))


def _prepare(out_dir: Path, samna: Any, virtual: bool
             ) -> tuple[Mapping[str, Any], Any, Host, Any]:
    """The export's configuration, graph and host encoding, and the samna to use. Without a
    samna given, a real one is required before anything is read (never the stub).

    Everything is checked before any board (or the virtual board) is opened: the manifest
    lists every file of the export, each present and unchanged (``exportdir.verify_export``;
    a missing manifest or a staging directory refused), and ``dynapse2.json`` holds only values
    the *shipped* target allows (``config.read_config``); what ``validate`` refuses, ``run``
    refuses."""
    if samna is None and not virtual:
        status = find_samna()
        if not status.usable:
            raise unavailable(status.detail)
    from ....exportdir import verify_export
    from ..config import config_to_graph, read_config  # the compiler stack: only when used

    verify_export(out_dir)
    path = out_dir / "dynapse2.json"
    config = read_config(path)
    graph = config_to_graph(config, source=str(path))
    return config, graph, Host(graph), _virtual(config) if virtual else samna


def _inputs(host: Host, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x)
    in_shape = tuple(host.input.shape)
    if x.ndim == 2 and x.shape[1] == host.input.size and len(in_shape) > 1:
        x = x.reshape(len(x), *in_shape)  # flat samples, as some loaders give them
    labels = np.asarray(y).reshape(-1)
    if len(labels) != len(x) or len(labels) == 0:
        raise ValueError(f"run_on_board: {len(x)} inputs and {len(labels)} labels")
    return x, labels


def run_on_board(out_dir: Path, x: np.ndarray, y: np.ndarray, *, samna: Any = None,
                 virtual: bool = False, board_index: int = 0, progress: bool = True,
                 reset: bool = True,
                 monitor: Sequence[str] = (), gap_steps: int = GAP_STEPS,
                 offset_us: int = OFFSET_US, timeout_s: float = 20.0,
                 poll_s: float = 1e-3) -> BoardResult:
    """Run the export in ``out_dir`` on a DYNAP-SE2 board on inputs ``x`` (``(B, *in_shape)``
    or ``(B, T, *in_shape)``, as the float executor takes) with labels ``y``.

    ``samna``: a samna-like namespace (``virtual.virtual_samna``); ``virtual``: a
    ``virtual.VirtualBoard`` with the export's chips in rockpool's row; by default the
    vendor's samna and a connected board. One sample at a time (module doc); ``reset=False``
    skips the drain and applies the configuration once (samples then follow ``gap_steps``
    apart: the behaviour this module had, kept to show what it costs). ``monitor`` names
    hidden populations whose spikes are recorded too (:func:`monitor_plan`). Raises
    :class:`BoardUnavailable` (no real samna, no board, no bitfile) before touching any data,
    :class:`BoardError` when the board stops answering, ``ConfigError`` / ``ValueError`` for a
    bad export or request.
    """
    started = time.perf_counter()
    config, graph, host, samna = _prepare(Path(out_dir), samna, virtual)
    x, labels = _inputs(host, x, y)
    plan = monitor_plan(config, list(monitor))
    readout_pop = host.readout
    session, device = _open(samna, board_index, timeout_s, poll_s)
    notes: list[str] = []
    counts = np.zeros((len(labels), readout_classes(config)), dtype=np.int64)
    predictions = np.zeros(len(labels), dtype=np.int64)
    monitored = {p: 0 for p in plan.sizes}
    sent_total = received_total = ignored_total = input_spikes = 0
    drain_us = int(math.ceil(drain_seconds() * 1e6))
    monitored_before = 0
    # the output is counted over the stimulus, gap_steps and the chip's delays
    latency = latency_us(config)
    window_us = (graph.T + gap_steps) * DT_US + latency
    extra_steps = -(-latency // DT_US)
    try:
        network = config_to_samna_configuration(config, session.sm, monitor=plan.entries)
        leaky = leaky_configuration(session.sm, config) if reset else None
        session.apply(network)
        for b in range(len(labels)):
            spikes = host.spikes(x[b:b + 1])
            spikes = np.broadcast_to(spikes, (graph.T, *spikes.shape[1:]))
            input_spikes += int(np.rint(spikes).sum())
            start = session.now_us() + offset_us
            sent = encode_events(config, spikes, DT_US, gap_steps=gap_steps + extra_steps,
                                 start_us=start)
            duration_s = (sent.end_us - start + offset_us) * 1e-6
            received = session.run_batch(sent, duration_s + timeout_s)
            decoded = decode_counts(config, received, sent, window_us=window_us)
            counts[b], predictions[b] = decoded.counts[0], decoded.predictions[0]
            readout_seen = 0
            for event in received:
                tag, _ = tag_and_time(event)
                hit = plan.neuron_of_tag.get(tag)
                if hit is not None:
                    monitored[hit[0]] += 1
                    readout_seen += hit[0] == readout_pop
            sent_total += len(sent)
            received_total += len(received)
            # monitored hidden neurons' events are expected, not ignored
            ignored_total += decoded.ignored - (sum(monitored.values()) - monitored_before
                                                - readout_seen)
            monitored_before = sum(monitored.values())
            if reset:
                session.apply(leaky)
                session.wait_us(drain_us)
                session.apply(network)
            if progress and ((b + 1) % 50 == 0 or b + 1 == len(labels)):
                print(f"board: {b + 1}/{len(labels)} samples, {sent_total} events sent, "
                      f"{received_total} received", file=sys.stderr, flush=True)
    finally:
        try:
            session.apply(leaky_configuration(session.sm, config))
        except Exception as exc:  # the result (or the first error) matters more
            notes.append(f"discharging the board failed: {exc}")
        try:
            session.close()
        except Exception as exc:
            notes.append(f"closing the board failed: {exc}")
    accuracy = 100.0 * float(np.mean(predictions == labels))
    window_s = window_us * 1e-6
    n_samples, n_readout = counts.shape[0], len(config["readout_channels"])
    rates = {host.input.name: input_spikes / (n_samples * host.input.size * graph.T
                                              * DT_SECONDS),
             readout_pop: float(counts.sum()) / (n_samples * n_readout * window_s)}
    for p, spikes_seen in monitored.items():
        if p != readout_pop:
            rates[p] = spikes_seen / (n_samples * plan.sizes[p] * window_s)
    if ignored_total:
        notes.append(f"{ignored_total} output event(s) had no readout tag or fell outside every "
                     "sample's window")
    report = getattr(session.board, "routing_report", None)
    routing = report() if callable(report) else None
    energy = board_energy(config, samples=n_samples, events_sent=sent_total,
                          events_received=received_total, routing=routing,
                          latency_us=graph.T * DT_US + latency)
    return BoardResult(accuracy, predictions, counts, rates, sent_total, received_total,
                       time.perf_counter() - started, device, ignored_total, notes, routing,
                       energy.to_dict())


# --------------------------------------------------------------------------- echo test
@dataclass
class EchoResult:
    """Per input channel (those with a tag): the first-layer neurons its CAM entries name
    (``expected``), those that spiked while only it was driven (``responded``), and the
    channels whose expected targets stayed silent (``silent``)."""

    channels: int
    expected: dict[int, set[tuple[str, int]]]
    responded: dict[int, set[tuple[str, int]]]
    silent: list[int]
    unexpected: int
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.silent


def echo_check(out_dir: Path, *, samna: Any = None, virtual: bool = False,
               board_index: int = 0, burst: int = 20,
               burst_us: int = 50, timeout_s: float = 20.0, poll_s: float = 1e-3,
               channels: Iterable[int] | None = None) -> EchoResult:
    """The board smoke test: for every input channel in turn, ``burst`` events ``burst_us``
    apart on its routes, with the first layer (every population an input tag reaches)
    monitored; a channel passes when at least one neuron its CAM entries name on an
    excitatory dendrite spikes. One spike alone is below threshold by design (the compiler
    scales weights so that a neuron integrates several), hence the burst. The chip is drained
    between channels. Raises as :func:`run_on_board`."""
    started = time.perf_counter()
    config, _graph, _host, samna = _prepare(Path(out_dir), samna, virtual)
    by_tag = {int(c["tag"]): c for c in config["input_channels"] if c.get("tag") is not None}
    expected: dict[int, set[tuple[str, int]]] = {int(c["channel"]): set()
                                                 for c in by_tag.values()}
    first_layer: set[str] = set()
    for chip in config["chips"]:
        for core in chip["cores"]:
            for neuron in core["neurons"]:
                for entry in neuron["cam"]:
                    channel = by_tag.get(int(entry["tag"]))
                    if channel is not None and entry["dendrite"] in ("ampa", "nmda"):
                        expected[int(channel["channel"])].add((str(neuron["population"]),
                                                                int(neuron["index"])))
                        first_layer.add(str(neuron["population"]))
    wanted = sorted(expected) if channels is None else sorted(set(channels) & set(expected))
    plan = monitor_plan(config, sorted(first_layer))
    session, _device = _open(samna, board_index, timeout_s, poll_s)
    responded: dict[int, set[tuple[str, int]]] = {}
    unexpected = 0
    drain_us = int(math.ceil(drain_seconds() * 1e6))
    try:
        network = config_to_samna_configuration(config, session.sm, monitor=plan.entries)
        leaky = leaky_configuration(session.sm, config)
        for c in wanted:
            session.apply(network)
            spikes = np.zeros((burst, 1, len(config["input_channels"])))
            spikes[:, 0, c] = 1
            start = session.now_us() + OFFSET_US
            sent = encode_events(config, spikes, burst_us, gap_steps=GAP_STEPS * DT_US
                                 // burst_us, start_us=start)
            received = session.run_batch(sent, (sent.end_us - start) * 1e-6 + timeout_s)
            hits = {plan.neuron_of_tag[t] for t, _ in map(tag_and_time, received)
                    if t in plan.neuron_of_tag}
            responded[c] = hits & expected[c]
            unexpected += len(hits - expected[c])
            session.apply(leaky)
            session.wait_us(drain_us)
    finally:
        try:
            session.close()
        except Exception:  # the check's own result or error matters more
            pass
    silent = [c for c in wanted if expected[c] and not responded.get(c)]
    return EchoResult(len(wanted), {c: expected[c] for c in wanted}, responded, silent,
                      unexpected, time.perf_counter() - started)
