"""A virtual DYNAP-SE2 board: samna's calls answered by the analog model of the chip.

``eideploy run OUT --device virtual`` runs the board path (``runner``) unchanged against this
board instead of a real one. It answers the calls the runner makes of samna - open the device,
configure the FPGA, ``apply_configuration``, ``grid_bus_write_events`` /
``input_interface_write_events``, ``read_events`` - and computes what the chip would do from the
**applied configuration alone**: it never reads ``graph.json``, ``dynapse2.json`` or the
compiler's objects, so a routing or encoding mistake in the compiler or the host shows up here as
it would on the chip, instead of being repeated.

From a ``Dynapse2Configuration`` (rockpool's mirrors of samna's classes):

* **routing**: a spike of a neuron leaves through each SRAM entry in use (a non-empty core
  mask); its chip is the sender's board position plus ``(x_hop, y_hop)`` (rockpool's
  ``WeightAllocator.manhattan``: destination minus source), and it is broadcast to the masked
  cores of that chip. A host event starts from chip 0's position (``events.host_hops``). A
  destination west of every chip leaves the board for the FPGA (rockpool's ``CHIP_POS`` puts the
  FPGA at (0, 0), west of chip 0; monitoring entries use hops (-7, -7)) and reaches the host;
  the FPGA bounces the host's own events that way with ``x_hop + 1`` (rockpool's
  ``__if_control_event``). Any other position without a chip is *off the board*.
* **CAM**: at each reached core, every neuron whose CAM holds the event's tag receives it, once
  per matching entry, on the entry's dendrite (AMPA / NMDA add, GABA subtracts, SHUNT adds to
  the leak); a core where no entry holds the tag counts the event as *unmatched*. Two different
  senders whose events reach one core with one tag are a *tag collision*: the chip cannot tell
  them apart.
* **weights**: an entry's weight current is the sum of the core's ``SYAM_W0..3_P`` currents its
  4-bit mask selects (bit k: ``SYAM_Wk_P``), every current read from the core's (coarse, fine)
  codes through rockpool's bias tables (``biases.bias_current``).
* **neurons**: the DPI neuron and synapse of ``analog.py`` (``analog.membrane_step``,
  ``analog.synapse_step``) with the core's biases: a delivered event opens a pulse of width
  ``V_th C_pulse / I(SYPD_EXT_N)`` driving the dendrite with ``(I_gain / I_tau) I_w``; spike at
  ``SOIF_SPKTHR_P``, reset to ``I_0``, refractory ``V_th C_ref / I(SOIF_REFR_N)``; ``SOIF_DC_P``
  where the neuron's ``latch_so_dc`` is set. No device mismatch: the nominal chip.

State (membranes, synapses, open pulses) lives on across ``apply_configuration`` calls, as the
capacitors' charge does: only a drain (the leaky configuration, kept applied for a while) or
time with a fast leak removes it. Time is the FPGA's: events are processed at their timestamps
(a ``dt`` grid, ``analog.DEFAULT_DT``), and the clock advances only through events; when no
neuron can reach threshold and no pulse is open, the board jumps ahead in one step.

Every spike and event is accounted for in :meth:`VirtualBoard.routing_report`: spikes, host
events, deliveries, events to the host, spikes of neurons without a destination, events off the
board, unmatched tags, tag collisions and late host events; ``unrouted`` = off the board +
unmatched. It also counts the synaptic events, every CAM match of a delivered event per dendrite,
and the chip crossings, every event a neuron sends to another chip than its own (the energy
estimate of ``eideploy run`` prices both: ``energy.board_energy``).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import scipy.sparse

from .. import analog, biases
from ..analog import DEFAULT_DT, I_0, membrane_step, synapse_step
from ..compile import (
    DC_BIAS,
    DENDRITE_GAIN_BIAS,
    GAIN_BIAS,
    LEAK_BIAS,
    PULSE_BIAS,
    REFRACTORY_BIAS,
    SYNAPSE_TAU_BIAS,
    THRESHOLD_BIAS,
)
from ..route import layout_positions
from ..samna import rockpool_mirrors
from .discovery import BoardError
from .events import CONTROL_HOP, CONTROL_TAG

__all__ = ["VirtualBoard", "RoutingReport", "virtual_samna", "DENDRITES", "SYNAPSE_MODELS"]

#: Dendrites in the order of the state arrays, with the sign of their current on the membrane.
DENDRITES = ("ampa", "nmda", "gaba", "shunt")
_WEIGHT_BIASES = ("SYAM_W0_P", "SYAM_W1_P", "SYAM_W2_P", "SYAM_W3_P")
#: The core-shared delay of CAM delay classes 1, 2, 3 (samna's names).
_DELAY_BIASES = ("SYPD_DLY0_P", "SYPD_DLY1_P", "SYPD_DLY2_P")
#: A synapse current below this is spent (the smallest leak the generator makes is ~0.3 pA).
_SPENT = 1e-16
#: Host input resuming after this long without any (us) starts a new sample.
_PAUSE_US = 1000
#: Longest step taken while nothing can spike but currents still decay (in ``dt``).
_COARSE = 100
#: The synapse equations the analog model offers (its default first): the full DPI
#: (``analog.dpi_synapse_step``) where the model has it, its linear approximation
#: (``analog.synapse_step``, rockpool's DynapSim).
SYNAPSE_MODELS = tuple(getattr(analog, "SYNAPSE_MODELS", ("linear",)))


@dataclass
class RoutingReport:
    """What happened to every spike and event (module doc); counts since the board opened."""

    host_events: int = 0
    late_host_events: int = 0
    spikes: int = 0
    deliveries: int = 0
    to_host: int = 0
    no_destination: int = 0
    off_board: int = 0
    unmatched: int = 0
    tag_collisions: int = 0
    #: CAM matches of the delivered events, per dendrite (``DENDRITES``): synaptic events,
    #: counted, not estimated; and the events sent from one chip to another.
    synaptic_events: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DENDRITES, 0))
    chip_crossings: int = 0
    #: The largest membrane charge left, ``(I_mem - I_0) / (I_thr - I_0)``, found when the
    #: host's input resumed after a pause (a new sample): 0 for a chip at rest, up to 1 where
    #: a sample inherits the last one's state.
    residual_state: float = 0.0

    @property
    def unrouted(self) -> int:
        return self.off_board + self.unmatched

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "unrouted": self.unrouted}


@dataclass
class _Route:
    """Where one (source position, hops, core mask, tag) leads: the drive it adds (columns
    ``d * n + neuron`` of the state, values in A) and its accounting."""

    columns: np.ndarray
    values: np.ndarray
    delays: np.ndarray  # dt steps, per column: the CAM entry's delay class
    deliveries: int
    unmatched: int
    collisions: int
    off_board: int
    to_host: bool
    synaptic: np.ndarray  # CAM matches per dendrite (DENDRITES order)
    crossing: int  # 1 where a neuron's event goes to another chip than its own


class _Network:
    """A configuration compiled for simulation over ``keys`` (the (chip, core, neuron) the
    board simulates: every neuron any applied configuration used)."""

    def __init__(self, board: VirtualBoard, configuration: Any,
                 keys: list[tuple[int, int, int]]) -> None:
        sa = board.sa
        self.keys = keys
        index = {k: i for i, k in enumerate(keys)}
        n = len(keys)
        self.n = n
        chips = configuration.chips
        # per core: currents from the applied codes
        core_currents: dict[tuple[int, int], dict[str, float]] = {}
        names = (LEAK_BIAS, GAIN_BIAS, THRESHOLD_BIAS, DC_BIAS, REFRACTORY_BIAS, PULSE_BIAS,
                 *_WEIGHT_BIASES, *_DELAY_BIASES, *(SYNAPSE_TAU_BIAS[d] for d in DENDRITES),
                 *(DENDRITE_GAIN_BIAS[d] for d in DENDRITES))
        for c, chip in enumerate(chips):
            for k, core in enumerate(chip.cores):
                params = core.parameters
                currents = {}
                for name in names:
                    try:
                        param = params[name]
                    except KeyError:
                        if name in _DELAY_BIASES:  # a delay no CAM entry may use
                            continue
                        raise BoardError(f"core ({c}, {k}) of the applied configuration has no "
                                         f"parameter {name}") from None
                    currents[name] = biases.bias_current(name, int(param.coarse_value),
                                                         int(param.fine_value))
                core_currents[(c, k)] = currents
        # the CAM of every core: tag -> (neuron, dendrite, weight current, delay in dt steps)
        self.cam: dict[tuple[int, int, int], list[tuple[int, int, float, int]]] = {}
        latch = np.zeros(n, dtype=bool)
        none = sa.Dendrite.none
        for c, chip in enumerate(chips):
            for k, core in enumerate(chip.cores):
                base = [core_currents[(c, k)][w] for w in _WEIGHT_BIASES]
                delays = [0, *(board.delay_steps(core_currents[(c, k)][b])
                               if b in core_currents[(c, k)] else None for b in _DELAY_BIASES)]
                for slot, neuron in enumerate(core.neurons):
                    j = index.get((c, k, slot))
                    if j is None:
                        continue
                    latch[j] = bool(neuron.latch_so_dc)
                    for syn in neuron.synapses:
                        if syn.dendrite == none:
                            continue
                        weight = sum(b for b, on in zip(base, syn.weight, strict=True) if on)
                        d = DENDRITES.index(sa.Dendrite(syn.dendrite).name)
                        # delay class: bit 0 precise_delay, bit 1 mismatched_delay
                        delay = delays[int(syn.precise_delay) + 2 * int(syn.mismatched_delay)]
                        if delay is None:
                            raise BoardError(f"core ({c}, {k}): a CAM entry uses a delay class "
                                             "whose SYPD_DLY parameter the configuration lacks")
                        self.cam.setdefault((c, k, int(syn.tag)), []).append((j, d, weight,
                                                                              delay))
        per = [core_currents[(c, k)] for c, k, _ in keys]

        def column(name: str) -> np.ndarray:
            return np.array([p[name] for p in per], dtype=np.float64).reshape(n)

        self.leak, self.gain = column(LEAK_BIAS), column(GAIN_BIAS)
        self.threshold = column(THRESHOLD_BIAS)
        self.dc = column(DC_BIAS) * latch
        self.t_ref = biases.V_TH * biases.C_REF / column(REFRACTORY_BIAS)
        pulse_steps = biases.V_TH * biases.C_PULSE / column(PULSE_BIAS) / board.dt
        self.pulse_whole = np.floor(pulse_steps + 1e-9).astype(np.int64)
        self.pulse_frac = np.maximum(pulse_steps - self.pulse_whole, 0.0)
        tau_current = np.stack([column(SYNAPSE_TAU_BIAS[d]) for d in DENDRITES]).reshape(4, n)
        gain_current = np.stack([column(DENDRITE_GAIN_BIAS[d]) for d in DENDRITES]
                                ).reshape(4, n)
        capacitance = np.array([biases.C_DENDRITE[d] for d in DENDRITES])[:, None]
        tau = biases.U_T * capacitance / (biases.KAPPA * tau_current)
        self.decay = np.exp(-board.dt / tau)
        self.tau = tau
        self.ratio = gain_current / tau_current  # the DPI synapse's I_gain / I_tau
        self.synapse_gain = gain_current
        # the synapses that exist: a (dendrite, neuron) some CAM entry drives (the others
        # carry no current, not even the DPI's dark current)
        self.has_synapse = np.zeros((4, n), dtype=bool)
        for listeners in self.cam.values():
            for j, d, _weight, _delay in listeners:
                self.has_synapse[d, j] = True
        self.rest = I_0 * self.has_synapse if board.synapse == "dpi" else np.zeros((4, n))
        # senders: which on-chip neuron sends which tag to which core (for collisions)
        self.senders: dict[tuple[int, int, int], set[int]] = {}
        entries: list[list[tuple[Any, int, int, int]]] = []
        for j, (c, k, slot) in enumerate(keys):
            neuron = chips[c].cores[k].neurons[slot]
            used = [(d.core, int(d.x_hop), int(d.y_hop), int(d.tag)) for d in neuron.destinations
                    if any(d.core)]
            entries.append(used)
            for core_bits, x_hop, y_hop, tag in used:
                chip = board.chip_at(c, x_hop, y_hop)
                if chip is None:
                    continue
                for core_id, on in enumerate(core_bits):
                    if on:
                        self.senders.setdefault((chip, core_id, tag), set()).add(j)
        # per sender: the drive of one spike (by delay), and its accounting
        rows: dict[int, list[np.ndarray]] = {}
        cols: dict[int, list[np.ndarray]] = {}
        vals: dict[int, list[np.ndarray]] = {}
        # deliveries, unmatched, collisions, off board, to host, synaptic events per dendrite,
        # chip crossings
        self.stats = np.zeros((6 + len(DENDRITES), n), dtype=np.int64)
        self.no_destination = np.zeros(n, dtype=bool)
        self.host_tags: dict[int, list[tuple[int, int, int]]] = {}
        for j, (c, _k, _slot) in enumerate(keys):
            if not entries[j]:
                self.no_destination[j] = True
            for core_bits, x_hop, y_hop, tag in entries[j]:
                route = self.route(board, c, x_hop, y_hop, core_bits, tag, sender=j)
                for delay in np.unique(route.delays):
                    pick = route.delays == delay
                    rows.setdefault(int(delay), []).append(np.full(int(pick.sum()), j))
                    cols.setdefault(int(delay), []).append(route.columns[pick])
                    vals.setdefault(int(delay), []).append(route.values[pick])
                self.stats[:, j] += (route.deliveries, route.unmatched, route.collisions,
                                     route.off_board, int(route.to_host), *route.synaptic,
                                     route.crossing)
                if route.to_host:
                    self.host_tags.setdefault(j, []).append((x_hop, y_hop, tag))
        # per delay, transposed: one step's spikes route as sparse matrix-vector products
        self.fanout = {delay: scipy.sparse.csr_matrix(
            (np.concatenate(vals[delay]), (np.concatenate(cols[delay]),
                                           np.concatenate(rows[delay]))), shape=(4 * n, n))
            for delay in sorted(rows)}
        self.max_delay = max([0, *rows, *(x[3] for ls in self.cam.values() for x in ls)])
        self.host_bound = np.zeros(n, dtype=bool)
        self.host_bound[list(self.host_tags)] = True
        self.fired = np.zeros(n, dtype=np.int64)  # spikes per neuron under this configuration
        # neurons sharing a pulse width (one per core at most): pulses close group by group
        widths = np.stack([self.pulse_whole, self.pulse_frac])
        self.pulse_groups = []
        for whole, frac in np.unique(widths, axis=1).T:
            members = np.flatnonzero((self.pulse_whole == whole) & (self.pulse_frac == frac))
            every = members.size == n
            self.pulse_groups.append((slice(None) if every else members, int(whole),
                                      float(frac)))
        self._input_routes: dict[tuple[int, int, tuple[bool, ...], int], _Route] = {}

    def route(self, board: VirtualBoard, chip: int, x_hop: int, y_hop: int,
              core_bits: Sequence[bool], tag: int, sender: int | None) -> _Route:
        """Follow one event from ``chip`` (-1: the host, which starts at chip 0's place)."""
        target = board.chip_at(chip, x_hop, y_hop)
        empty = np.zeros(0, dtype=np.int64)
        if target is None:
            west = board.leaves_west(chip, x_hop)
            return _Route(empty, np.zeros(0), empty, 0, 0, 0, 0 if west else 1, west,
                          np.zeros(len(DENDRITES), dtype=np.int64), 0)
        cols, vals, delays = [], [], []
        synaptic = np.zeros(len(DENDRITES), dtype=np.int64)
        deliveries = unmatched = collisions = 0
        for core_id, on in enumerate(core_bits):
            if not on:
                continue
            listeners = self.cam.get((target, core_id, tag))
            if not listeners:
                unmatched += 1
                continue
            deliveries += 1
            others = self.senders.get((target, core_id, tag), set()) - {sender}
            collisions += bool(others)
            for j, d, weight, delay in listeners:
                synaptic[d] += 1
                cols.append(d * self.n + j)
                vals.append(self.ratio[d, j] * weight)
                delays.append(delay)
        return _Route(np.asarray(cols, dtype=np.int64), np.asarray(vals, dtype=np.float64),
                      np.asarray(delays, dtype=np.int64), deliveries, unmatched, collisions, 0,
                      False, synaptic, int(chip >= 0 and target != chip))

    def input_route(self, board: VirtualBoard, event: Any) -> _Route:
        key = (int(event.x_hop), int(event.y_hop), tuple(bool(b) for b in event.core),
               int(event.tag))
        route = self._input_routes.get(key)
        if route is None:
            route = self.route(board, -1, key[0], key[1], key[2], key[3], sender=None)
            self._input_routes[key] = route
        return route


class VirtualBoard:
    """An opened virtual DYNAP-SE2 Stack board (``Dynapse2Interface`` and its ``Dynapse2Model``
    in one object; module doc). ``chips`` and ``layout`` are the board's physical ones
    (default: rockpool's row); ``events_per_read`` limits what one ``read_events`` hands out
    (a real board's buffer does), ``None`` for everything ready."""

    device_type_name = "DYNAP-SE2 virtual board"

    def __init__(self, chips: int = 4, *, layout: str = "row", dt: float = DEFAULT_DT,
                 events_per_read: int | None = None, synapse: str = SYNAPSE_MODELS[0]) -> None:
        if synapse not in SYNAPSE_MODELS:
            raise ValueError(f"synapse must be one of {SYNAPSE_MODELS}, got {synapse!r}")
        self.synapse = synapse
        self.sa = rockpool_mirrors()
        self.positions = layout_positions(layout, chips)
        self.chip_of_position = {p: c for c, p in enumerate(self.positions)}
        self.dt = float(dt)
        self.dt_us = int(round(self.dt * 1e6))
        if self.dt_us < 1 or abs(self.dt_us * 1e-6 - self.dt) > 1e-12:
            raise ValueError(f"dt must be a whole number of microseconds, got {dt}")
        self.events_per_read = events_per_read
        self.report = RoutingReport()  # the host's events; spikes are counted per network
        self._networks: dict[int, _Network] = {}
        self.keys: list[tuple[int, int, int]] = []
        self.network: _Network | None = None
        self.configuration: Any = None
        self._compiled: dict[int, tuple[Any, _Network]] = {}
        self.step = 0  # the next dt step to simulate; step k covers [k dt, (k + 1) dt)
        self.open_until = -1  # the last step at which a pulse still closes
        self.arriving_until = -1  # the last step at which delayed drive arrives
        self.last_input_us = -(1 << 62)  # the host's last event
        self.incoming = np.zeros((0, 0))
        self.pending: list[tuple[int, int, Any]] = []  # (timestamp, order, event), sorted
        self._order = 0
        self.output: list[Any] = []
        self._state(0)
        self.spiked = np.zeros(0, dtype=bool)

    def delay_steps(self, current: float) -> int:
        """A delay class's delay in whole ``dt`` steps, from its bias current: the analog
        model's ``delay_seconds`` (a pulse generator, ``V_th C_delay / I``); none where the
        model has no delay element."""
        seconds = getattr(analog, "delay_seconds", None)
        if seconds is None:
            return 0
        return int(np.rint(float(seconds(current)) / self.dt))

    # ---------------------------------------------------------------- geometry
    def chip_at(self, chip: int, x_hop: int, y_hop: int) -> int | None:
        """The chip ``(x_hop, y_hop)`` away from ``chip`` (-1: the host, placed at chip 0)."""
        x, y = self.positions[max(chip, 0)]
        return self.chip_of_position.get((x + x_hop, y + y_hop))

    def leaves_west(self, chip: int, x_hop: int) -> bool:
        """Does a destination with no chip leave the board west, towards the FPGA?"""
        x = self.positions[max(chip, 0)][0]
        return x + x_hop < min(p[0] for p in self.positions)

    # ---------------------------------------------------------------- Dynapse2Interface
    def configure_opal_kelly(self, bitfile: str) -> bool:
        return True

    def get_model(self) -> VirtualBoard:
        return self

    def input_interface_write_events(self, stream: int, events: Iterable[Any]) -> None:
        """Events for the FPGA itself, handled at once (control events come back stamped with
        the current time, as rockpool's ``current_timestamp`` reads it)."""
        now = self.step * self.dt_us
        for event in events:
            self._push(now, event)

    def grid_bus_write_events(self, events: Iterable[Any]) -> None:
        """Timed events: each handled when the clock reaches its timestamp."""
        now = self.step * self.dt_us
        for event in events:
            stamp = int(event.timestamp)
            inner = event.event
            if stamp < now and not self._is_control(inner):
                self.report.late_host_events += 1
            self._push(max(stamp, now), event)

    def read_events(self) -> list[Any]:
        """Run until every written event is handled, then hand out the output."""
        if self.pending:
            stamp, _, last = self.pending[-1]
            self._run_until(stamp if self._is_control(last.event) else stamp + 1)
        if self.events_per_read is None:
            out, self.output = self.output, []
        else:
            out, self.output = (self.output[:self.events_per_read],
                                self.output[self.events_per_read:])
        return out

    # ---------------------------------------------------------------- Dynapse2Model
    def apply_configuration(self, configuration: Any) -> bool:
        """Compile the configuration (a configuration object applied again unchanged is
        recognised by identity); the state stays (module doc)."""
        cached = self._compiled.get(id(configuration))
        if cached is None or cached[0] is not configuration:
            if len(configuration.chips) > len(self.positions):
                raise BoardError(f"the configuration holds {len(configuration.chips)} chips, "
                                 f"the virtual board has {len(self.positions)}")
            known = set(self.keys)
            for c, chip in enumerate(configuration.chips):
                for k, core in enumerate(chip.cores):
                    for slot, neuron in enumerate(core.neurons):
                        if (c, k, slot) not in known and (
                                any(d.core for d in neuron.destinations) or neuron.latch_so_dc
                                or any(s.dendrite != self.sa.Dendrite.none
                                       for s in neuron.synapses)):
                            self.keys.append((c, k, slot))
                            known.add((c, k, slot))
            if len(self.keys) != self.i_mem.size:
                self._state(len(self.keys))
                self._compiled.clear()
            cached = (configuration, _Network(self, configuration, list(self.keys)))
            self._compiled[id(configuration)] = cached
        self.configuration, self.network = cached
        return True

    def get_configuration(self) -> Any:
        return self.configuration

    def clear_error_queue(self) -> None:
        pass

    def routing_report(self) -> dict[str, Any]:
        """The :class:`RoutingReport` as a dict: the host's events as they were handled, the
        spikes through the routes of the configuration under which each was fired."""
        report = RoutingReport(**{f: getattr(self.report, f) for f in
                                  ("host_events", "late_host_events", "deliveries",
                                   "unmatched", "tag_collisions", "off_board",
                                   "residual_state", "chip_crossings")})
        report.synaptic_events = dict(self.report.synaptic_events)
        for net in self._networks.values():
            totals = net.stats @ net.fired
            deliveries, unmatched, collisions, off_board, to_host = totals[:5]
            for d, name in enumerate(DENDRITES):
                report.synaptic_events[name] += int(totals[5 + d])
            report.chip_crossings += int(totals[-1])
            report.spikes += int(net.fired.sum())
            report.deliveries += int(deliveries)
            report.unmatched += int(unmatched)
            report.tag_collisions += int(collisions)
            report.off_board += int(off_board)
            report.to_host += int(to_host)
            report.no_destination += int(net.fired[net.no_destination].sum())
        return report.as_dict()

    # ---------------------------------------------------------------- simulation
    def _state(self, n: int) -> None:
        """State arrays for ``n`` neurons, the old ones' values kept."""
        old = getattr(self, "i_mem", np.zeros(0))
        m = old.size
        i_mem = np.full(n, I_0)
        timer = np.zeros(n)
        i_syn, drive = np.zeros((4, n)), np.zeros((4, n))
        horizon = getattr(self, "ends", np.zeros((2, 4, 0))).shape[0]
        ends = np.zeros((horizon, 4, n))
        if m:
            i_mem[:m], timer[:m] = self.i_mem, self.timer
            i_syn[:, :m], drive[:, :m] = self.i_syn, self.drive
            ends[:, :, :m] = self.ends
        self.i_mem, self.timer, self.i_syn, self.drive, self.ends = (i_mem, timer, i_syn, drive,
                                                                     ends)
        spiked = np.zeros(n, dtype=bool)
        spiked[:m] = getattr(self, "spiked", np.zeros(0, dtype=bool))[:m]
        self.spiked = spiked

    @staticmethod
    def _is_control(inner: Any) -> bool:
        return int(inner.tag) == CONTROL_TAG and int(inner.x_hop) == CONTROL_HOP \
            and int(inner.y_hop) == CONTROL_HOP

    def _push(self, stamp: int, event: Any) -> None:
        self._order += 1
        bisect.insort(self.pending, (int(stamp), self._order, event))

    def _emit(self, x_hop: int, y_hop: int, tag: int, stamp: int) -> None:
        """An event arriving at the host: hops as the FPGA hands them over (``x_hop + 1``)."""
        sa = self.sa
        dest = sa.Dynapse2Destination([True] * 4, min(x_hop + 1, 7), y_hop, tag)
        self.output.append(sa.NormalGridEvent(dest, int(stamp)))

    def _run_until(self, end_us: int) -> None:
        """Simulate every step that starts before ``end_us``, then hand over the control events
        due by then (an end marker comes back after everything before it)."""
        while self.step * self.dt_us < end_us:
            net = self.network
            if net is None or net.n == 0:
                self._arrivals(net, (self.step + 1) * self.dt_us)
                following = self.pending[0][0] if self.pending else end_us
                self.step = max(self.step + 1, min(following, end_us) // self.dt_us)
                continue
            self._arrivals(net, (self.step + 1) * self.dt_us)
            if self.spiked.any():
                fired = self.spiked.astype(np.float64)
                for delay, matrix in net.fanout.items():
                    self._later(delay, matrix @ fired)
            arrived = self._due()
            if arrived is None and self._quiet(net):
                self._coast(net, end_us)
                continue
            self._advance(net, arrived)
        now = self.step * self.dt_us
        while self.pending and self.pending[0][0] <= now and self._is_control(
                self.pending[0][2].event):
            stamp, _, event = self.pending.pop(0)
            self._emit(int(event.event.x_hop), int(event.event.y_hop), int(event.event.tag),
                       stamp)

    def _later(self, delay: int, drive: np.ndarray) -> None:
        """Drive that reaches its synapses ``delay`` steps after this one (0: this step)."""
        if self.incoming.shape[0] <= delay or self.incoming.shape[1] != drive.size:
            grown = np.zeros((delay + 2, drive.size))
            old = self.incoming
            if old.shape[1] == drive.size:
                for ahead in range(old.shape[0]):  # each arrival stays at its step
                    grown[(self.step + ahead) % grown.shape[0]] = old[
                        (self.step + ahead) % old.shape[0]]
            self.incoming = grown
        self.incoming[(self.step + delay) % self.incoming.shape[0]] += drive
        self.arriving_until = max(self.arriving_until, self.step + delay)

    def _due(self) -> np.ndarray | None:
        """The drive arriving at this step, if any."""
        if self.step > self.arriving_until or not self.incoming.size:
            return None
        slot = self.step % self.incoming.shape[0]
        arrived = self.incoming[slot].copy()
        self.incoming[slot] = 0.0
        return arrived if arrived.any() else None

    def _arrivals(self, net: _Network | None, before_us: int) -> None:
        """The host's events stamped before ``before_us``: control events back to the host,
        the others routed from chip 0's place (their drive, by delay; accounting)."""
        while self.pending and self.pending[0][0] < before_us:
            stamp, _, event = self.pending.pop(0)
            inner = event.event
            if self._is_control(inner):
                self._emit(int(inner.x_hop), int(inner.y_hop), int(inner.tag), stamp)
                continue
            self.report.host_events += 1
            if net is not None and net.n and stamp - self.last_input_us > _PAUSE_US:
                above_rest = (self.i_mem - I_0) / np.maximum(net.threshold - I_0, I_0)
                self.report.residual_state = max(self.report.residual_state,
                                                 float(np.max(above_rest)))
            self.last_input_us = stamp
            if net is None:
                self.report.unmatched += 1  # no configuration applied: no CAM holds anything
                continue
            route = net.input_route(self, inner)
            self.report.deliveries += route.deliveries
            self.report.unmatched += route.unmatched
            self.report.tag_collisions += route.collisions
            self.report.off_board += route.off_board
            for d, name in enumerate(DENDRITES):
                self.report.synaptic_events[name] += int(route.synaptic[d])
            if route.to_host:  # the FPGA bounces what it is sent
                self._emit(int(inner.x_hop), int(inner.y_hop), int(inner.tag), stamp)
            for delay in np.unique(route.delays):
                drive = np.zeros(4 * net.n)
                pick = route.delays == delay
                np.add.at(drive, route.columns[pick], route.values[pick])
                self._later(int(delay), drive)

    def _quiet(self, net: _Network) -> bool:
        """No pulse open and no neuron able to reach threshold on what its synapses hold."""
        if self.spiked.any() or self.step <= max(self.open_until, self.arriving_until):
            return False
        i_in = net.dc + self.i_syn[0] + self.i_syn[1]
        reach = net.gain / net.leak * (i_in - net.leak)
        return bool(np.all(reach < net.threshold))

    def _coast(self, net: _Network, end_us: int) -> None:
        """Jump ahead while :meth:`_quiet`: to the next event in one step once the synapses are
        spent, else ``_COARSE`` steps at a time (the membrane and synapse steps are exact or
        stable for any step length when nothing is driven)."""
        next_us = self.pending[0][0] if self.pending else end_us
        steps = max(1, (min(next_us, end_us) - self.step * self.dt_us) // self.dt_us)
        if np.max(self.i_syn - net.rest, initial=0.0) > _SPENT:
            steps = min(steps, _COARSE)
        h = steps * self.dt
        self.i_syn = np.maximum(self.i_syn * np.exp(-h / net.tau), net.rest)
        i_in, i_leak = self._currents(net)
        free = np.clip(h - self.timer, 0.0, h)
        self.i_mem = np.where(free > 0, membrane_step(self.i_mem, i_in, i_leak, net.gain,
                                                      np.maximum(free, 1e-30)), self.i_mem)
        self.timer = np.maximum(self.timer - h, 0.0)
        self.step += int(steps)

    def _advance(self, net: _Network, arrived: np.ndarray | None) -> None:
        """One ``dt`` step: open the pulses that arrived, close those that end, the synapses,
        the neurons, and route the spikes (they arrive one step later)."""
        horizon = int(net.pulse_whole.max(initial=0)) + 2
        k = self.step
        if self.ends.shape[0] < horizon:
            old = self.ends.shape[0]
            grown = np.zeros((horizon, 4, net.n))
            for ahead in range(old):  # each pending close stays at its step
                grown[(k + ahead) % horizon] = self.ends[(k + ahead) % old]
            self.ends = grown
        horizon = self.ends.shape[0]
        if arrived is not None:
            self.open_until = max(self.open_until, k + int(net.pulse_whole.max()) + 1)
            add = arrived.reshape(4, net.n)
            self.drive += add
            for members, whole, frac in net.pulse_groups:  # a pulse of whole + frac steps
                self.ends[(k + whole) % horizon][:, members] += (1.0 - frac) * add[:, members]
                if frac:
                    self.ends[(k + whole + 1) % horizon][:, members] += frac * add[:, members]
        self.drive -= self.ends[k % horizon]
        self.ends[k % horizon] = 0.0
        if k >= self.open_until:
            self.drive[...] = 0.0  # every pulse closed: no rounding dust left behind
        if self.synapse == "dpi":
            self.i_syn = np.where(net.has_synapse, analog.dpi_synapse_step(
                np.maximum(self.i_syn, I_0), self.drive, net.synapse_gain, net.decay), 0.0)
        else:
            self.i_syn = synapse_step(self.i_syn, self.drive, net.decay)
        i_in, i_leak = self._currents(net)
        fired, t_cross = self._neurons(net, i_in, i_leak)
        self.spiked = fired
        if fired.any():
            self._account(net, fired, t_cross)
        self.step += 1

    def _currents(self, net: _Network) -> tuple[np.ndarray, np.ndarray]:
        """The membrane's input and leak: AMPA and NMDA add, GABA subtracts, SHUNT adds to the
        leak (spec/dynapse2.md §2)."""
        i_in = net.dc + self.i_syn[0] + self.i_syn[1] - self.i_syn[2]
        return i_in, net.leak + self.i_syn[3]

    def _neurons(self, net: _Network, i_in: np.ndarray, i_leak: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Refractory hold, membrane, threshold and reset over one ``dt``. A neuron refractory
        for part of the step integrates the rest; its crossing time is interpolated in
        ``u = I/I_g + ln(I/I_g)``, the variable in which ``analog.membrane_step`` relaxes
        linearly, and its refractory period runs from that instant."""
        dt = self.dt
        free = np.clip(dt - self.timer, 0.0, dt)
        self.timer = np.maximum(self.timer - dt, 0.0)
        before = self.i_mem
        after = np.where(free > 0, membrane_step(before, i_in, i_leak, net.gain,
                                                 np.maximum(free, 1e-30)), before)
        fired = after >= net.threshold
        t_cross = np.zeros(net.n)
        if fired.any():
            g = net.gain[fired]
            u_before = before[fired] / g + np.log(before[fired] / g)
            u_after = after[fired] / g + np.log(after[fired] / g)
            u_threshold = net.threshold[fired] / g + np.log(net.threshold[fired] / g)
            rise = u_after - u_before
            share = np.where(rise > 0, (u_threshold - u_before) / np.where(rise > 0, rise, 1.0),
                             1.0)
            t_cross[fired] = (dt - free[fired]) + np.clip(share, 0.0, 1.0) * free[fired]
            self.timer[fired] = np.maximum(net.t_ref[fired] - (dt - t_cross[fired]), 0.0)
            after = np.where(fired, I_0, after)
        self.i_mem = after
        return fired, t_cross

    def _account(self, net: _Network, fired: np.ndarray, t_cross: np.ndarray) -> None:
        """Count the spikes (the report sums them with each network's routes) and send the
        host-bound ones to the host."""
        net.fired += fired
        self._networks[id(net)] = net
        to_host = fired & net.host_bound
        if to_host.any():
            start_us = self.step * self.dt_us
            for j in np.flatnonzero(to_host):
                for x_hop, y_hop, tag in net.host_tags[int(j)]:
                    self._emit(x_hop, y_hop, tag, start_us + int(t_cross[j] * 1e6))


def virtual_samna(board: VirtualBoard) -> SimpleNamespace:
    """A samna-like namespace whose one device is ``board``: ``dynapse2`` holds rockpool's
    mirrors of samna's classes, ``device`` lists, opens and closes the board."""
    info = SimpleNamespace(device_type_name=board.device_type_name, serial_number="virtual")
    return SimpleNamespace(
        dynapse2=board.sa,
        device=SimpleNamespace(get_all_devices=lambda: [info],
                               open_device=lambda device: board if device is info else None,
                               close_device=lambda opened: None))
