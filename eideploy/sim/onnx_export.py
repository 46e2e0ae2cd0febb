"""The integer simulator's network as an ONNX graph of integer operators, run by onnxruntime.

An independent, executable check of docs/integer-semantics.md: :func:`integer_to_onnx` writes
the network of an :class:`~eideploy.sim.integer.IntegerSimulator` (its weight levels, grids and
constants) as an ONNX model whose every tensor is an integer or a boolean, and
:func:`check_against_simulator` runs it through onnxruntime and counts the elements that differ
from the simulator's. The arithmetic is re-expressed, not reused: numpy's floor division and
arithmetic shifts become truncating ``Div`` on non-negative operands and logical ``BitShift`` on
magnitudes, so a slip in either implementation shows up as a mismatch.

Mapping of each integer step (spec section in brackets) to ONNX operators, all on int64 unless
said otherwise (onnxruntime's CPU kernels take int64 for every one of them):

* input spikes: the graph input ``spikes_in`` ``(T, batch, n_in)`` int64, encoded on the host
  (§3.1); the batch dimension is dynamic, the T steps are unrolled where a state carries over;
* dendrite currents (§3.2-3.3): one ``MatMul`` per projection with the weight levels as a dense
  int64 ``(n_source, n_target)`` initializer (parallel synapses summed), ``Clip`` to 32 bits per
  projection, ``Add`` / ``Sub`` (GABA), ``Clip`` of ``I_num``;
* saturation to a width: ``Clip`` with int64 bounds; ``max(., 1)`` / ``relu``: ``Max``;
* ``floor(x / c)`` for ``x >= 0`` (``r_I``, the readout's spike count, ``exact`` division):
  ``Div``, which truncates toward zero and so floors on non-negative operands;
* ``x >> s`` and ``x << s`` of a non-negative ``x``: ``Cast`` to uint64, ``BitShift`` (``RIGHT``
  / ``LEFT``; ONNX defines it on unsigned types only), ``Cast`` back. Signed operands go through
  their magnitude: ``rshift_rnd(x, s) = where(x < 0, -r, r)`` with ``r = (|x| + 2**(s-1)) >> s``
  (``Abs``, ``Less``, ``Neg``, ``Where``), and the arithmetic (floor) shift of the LIF decay as
  ``where(v < 0, -((|v| + 2**j - 1) >> j), |v| >> j)``;
* a left shift followed by its clamp (``sat(rshift_rnd(x, s))`` with ``s <= 0``: the dividend
  alignment, ``o`` and ``q`` without SHUNT) is computed as the spec states it, on the exact
  value: ``Clip`` of ``x`` to the range whose multiples fit, ``Mul`` by ``2**-s``, and ``Where``
  (``Greater`` / ``Less``) puts the width's bound where ``x`` lay outside; it never wraps in
  int64, even for shifts past 32 bits;
* divisor (§3.3): ``Add`` of ``eps_q``, ``Clip`` to 31 bits, ``Max`` with 1; the dividend
  aligned and clamped to 46 bits as above;
* division (§5), on ``|N|`` with the sign restored by ``Where(N < 0, Neg(q), q)``:
  ``exact`` ``Div(2|N| + D, 2D)``; the leading-one position ``k = floor(log2 D)`` as the sum of
  30 comparisons ``Cast(GreaterOrEqual(D, 2**i))``, ``i = 1..30`` (no float, no loop);
  ``lut:n``: the index ``where(k >= n, D >> (k - n), D << (n - k)) - 2**n`` by ``BitShift``
  with per-element shift amounts, the reciprocal table as an int64 initializer read by
  ``Gather``, then ``(|N| R + 2**(P+k-1)) >> (P + k)``; ``:newton`` adds the Newton step
  with ``Mul``, ``Sub`` and arithmetic shifts; ``shift``:
  ``k += GreaterOrEqual(D*D, 1 << (2k+1))`` and ``rshift_rnd(|N|, k)`` with a per-element ``k``;
* gain and bias: ``Mul`` by ``to_fixed(g_E, 12)`` then ``rshift_rnd`` (only when some
  ``g_E != 1``), ``Add`` of the ``Q.16`` bias vector, ``Clip``;
* LIF (§3.3), unrolled over T: ``Gather`` of step t, ``decay(u) = u + ((-u) >> j)`` as above,
  ``Add``, ``Clip``, ``GreaterOrEqual`` + ``Cast`` to int64 for the spike, ``Mul`` + ``Sub`` for
  the soft reset; the steps' spikes ``Unsqueeze`` + ``Concat``;
* readout (§3.4): ``rshift_rnd`` + ``Clip`` of ``o``; ``spiking``: the IF neuron unrolled
  (``Add``, ``Clip``, ``Max``, ``Div``, ``Mul``, ``Sub``); ``current``: ``ReduceSum`` over T
  and ``Clip`` to 40 bits.

Outputs are named ``"{population}/{key}"`` after the simulator's ``states`` (``current``,
``output``, ``divisor``) plus ``counts`` and ``membrane``, all int64. Saturation *counts* are not
computed; the clamps are, so results stay bit-identical when a quantity saturates.

onnx and onnxruntime are the optional extra ``eideploy[onnx]``, imported only when used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_bytes
from ..graph.ir import EIGraph, Population
from .division import DIVISOR_BITS, RECIPROCAL_BITS, parse_division, reciprocal_lut
from .integer import (
    ACCUMULATOR_BITS,
    COUNT_BITS,
    DIVIDEND_BITS,
    GAIN_FRAC,
    MEMBRANE_BITS,
    MEMBRANE_FRAC,
    Constants,
    IntegerSimulator,
)

__all__ = ["integer_to_onnx", "division_to_onnx", "run_onnx", "check_against_simulator",
           "save_onnx", "INPUT_NAME", "OPSET"]

#: The graph input: host-encoded spikes ``(T, batch, n_in)`` int64.
INPUT_NAME = "spikes_in"
#: ONNX opset of the exported model (IR version 8: onnxruntime >= 1.17 loads it).
OPSET = 17
_IR_VERSION = 8


def _onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("the ONNX export needs onnx: pip install 'eideploy[onnx]'") from exc
    return onnx


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError("the ONNX cross-check needs onnxruntime: "
                          "pip install 'eideploy[onnx]'") from exc
    return onnxruntime


class _IntegerGraphBuilder:
    """Nodes and int64 initializers of one ONNX graph, with the integer idioms of the module
    doc as methods; every method returns the name of its output tensor."""

    def __init__(self, onnx: Any) -> None:
        self.onnx = onnx
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._constants: dict[tuple[str, bytes, tuple[int, ...]], str] = {}
        self._named: set[str] = set()
        self._count = 0
        self.scope = "net"

    def _name(self, what: str) -> str:
        self._count += 1
        return f"{self.scope}/{what}_{self._count}"

    def const(self, value: Any, dtype: Any = np.int64, name: str | None = None) -> str:
        if name is not None and name in self._named:  # e.g. one reciprocal table for all
            return name
        arr = np.array(value, dtype=dtype, order="C")  # (ascontiguousarray makes 0-d 1-d)
        key = (arr.dtype.str, arr.tobytes(), arr.shape)
        if name is None and key in self._constants:
            return self._constants[key]
        tensor_name = name or self._name("const")
        self.initializers.append(self.onnx.numpy_helper.from_array(arr, tensor_name))
        if name is None:
            self._constants[key] = tensor_name
        else:
            self._named.add(name)
        return tensor_name

    def op(self, op_type: str, *inputs: str, name: str | None = None, **attrs: Any) -> str:
        out = name or self._name(op_type)
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [out],
                                                     name=f"{out}:{op_type}", **attrs))
        return out

    # ---- idioms
    def saturate(self, x: str, bits: int, signed: bool) -> str:
        high = (1 << (bits - 1 if signed else bits)) - 1
        low = -high - 1 if signed else 0
        return self.op("Clip", x, self.const(low), self.const(high))

    def where_negative(self, x: str, if_negative: str, otherwise: str) -> str:
        return self.op("Where", self.op("Less", x, self.const(0)), if_negative, otherwise)

    def _bitshift(self, x: str, amount: str | int, direction: str) -> str:
        """``x >> amount`` or ``x << amount`` for ``x >= 0`` and ``0 <= amount < 64``."""
        to_uint = self.onnx.TensorProto.UINT64
        amount_u = (self.const(amount, np.uint64) if isinstance(amount, int)
                    else self.op("Cast", amount, to=to_uint))
        shifted = self.op("BitShift", self.op("Cast", x, to=to_uint), amount_u,
                          direction=direction)
        return self.op("Cast", shifted, to=self.onnx.TensorProto.INT64)

    def shr(self, x: str, amount: str | int) -> str:
        return self._bitshift(x, amount, "RIGHT")

    def shl(self, x: str, amount: str | int) -> str:
        return self._bitshift(x, amount, "LEFT")

    def round_shift(self, x: str, shift: int) -> str:
        """``rshift_rnd(x, shift)`` of a signed ``x``, ``1 <= shift < 63``: half away from zero
        (left shifts go through :meth:`aligned`, which saturates)."""
        if not 1 <= shift < 63:
            raise ValueError(f"round_shift by {shift} bits: use aligned() for left shifts")
        magnitude = self.op("Abs", x)
        rounded = self.shr(self.op("Add", magnitude, self.const(1 << (shift - 1))), shift)
        return self.where_negative(x, self.op("Neg", rounded), rounded)

    def aligned(self, x: str, shift: int, bits: int) -> str:
        """``sat_bits(rshift_rnd(x, shift))`` of the exact value: a left shift (``shift < 0``)
        saturates where ``x * 2**-shift`` leaves the width instead of wrapping in int64."""
        if shift > 0:
            return self.saturate(self.round_shift(x, shift), bits, True)
        up = -shift
        high, low = (1 << (bits - 1)) - 1, -(1 << (bits - 1))
        x_high, x_low = high >> up, -((-low + (1 << up) - 1) >> up)  # floor, ceil of bound/2**up
        inside = self.op("Clip", x, self.const(x_low), self.const(x_high))
        scaled = self.op("Mul", inside, self.const(1 << up if up < 63 else 0))
        return self.op("Where", self.op("Greater", x, self.const(x_high)), self.const(high),
                       self.op("Where", self.op("Less", x, self.const(x_low)), self.const(low),
                               scaled))

    def round_shift_by(self, x: str, shift: str) -> str:
        """``round(x / 2**shift)`` half away from zero, ``x >= 0``, per-element ``shift >= 0``
        (``division._round_shift``)."""
        half = self.op("Where", self.op("Greater", shift, self.const(0)),
                       self.shl(self.const(1), self.op("Max", self.op("Sub", shift,
                                                                      self.const(1)),
                                                       self.const(0))),
                       self.const(0))
        return self.shr(self.op("Add", x, half), shift)

    def floor_shift(self, v: str, shift: int) -> str:
        """``v >> shift`` as numpy's arithmetic shift of a signed ``v``: floor(v / 2**shift)."""
        if shift == 0:
            return v
        magnitude = self.op("Abs", v)
        negative = self.op("Neg", self.shr(self.op("Add", magnitude,
                                                   self.const((1 << shift) - 1)), shift))
        return self.where_negative(v, negative, self.shr(magnitude, shift))

    def step(self, x: str, t: int) -> str:
        """Step ``t`` of a ``(T, batch, n)`` tensor: ``(batch, n)``."""
        return self.op("Gather", x, self.const(t), axis=0)

    def stack(self, steps: list[str]) -> str:
        axis0 = self.const([0])
        return self.op("Concat", *[self.op("Unsqueeze", s, axis0) for s in steps], axis=0)


def _floor_log2(b: _IntegerGraphBuilder, d: str) -> str:
    """``k = bitlength(D) - 1`` for ``1 <= D < 2**DIVISOR_BITS``: the number of powers of two
    ``2**i`` (``i >= 1``) that ``D`` reaches, one comparison each."""
    total = None
    for i in range(1, DIVISOR_BITS):
        reached = b.op("Cast", b.op("GreaterOrEqual", d, b.const(1 << i)),
                       to=b.onnx.TensorProto.INT64)
        total = reached if total is None else b.op("Add", total, reached)
    return total


def _normalised(b: _IntegerGraphBuilder, d: str, k: str, bits: int) -> str:
    """``D >> (k - bits)`` when ``k >= bits``, else ``D << (bits - k)``: the leading one at
    bit ``bits``."""
    above = b.op("GreaterOrEqual", k, b.const(bits))
    right = b.shr(d, b.op("Max", b.op("Sub", k, b.const(bits)), b.const(0)))
    left = b.shl(d, b.op("Max", b.op("Sub", b.const(bits), k), b.const(0)))
    return b.op("Where", above, right, left)


def _divide(b: _IntegerGraphBuilder, n: str, d: str, division: str) -> str:
    """``N / D`` rounded half away from zero by ``division`` (docs §5): on ``|N|``, sign
    restored."""
    method, bits, newton = parse_division(division)
    magnitude = b.op("Abs", n)
    if method == "exact":
        two = b.const(2)
        q = b.op("Div", b.op("Add", b.op("Mul", magnitude, two), d), b.op("Mul", d, two))
    elif method == "shift":
        k = _floor_log2(b, d)
        # nearest power of two in log2: one more when D >= sqrt2 * 2**k, i.e. D*D >= 2**(2k+1)
        bound = b.shl(b.const(1), b.op("Add", b.op("Mul", k, b.const(2)), b.const(1)))
        up = b.op("Cast", b.op("GreaterOrEqual", b.op("Mul", d, d), bound),
                  to=b.onnx.TensorProto.INT64)
        q = b.round_shift_by(magnitude, b.op("Add", k, up))
    else:
        k = _floor_log2(b, d)
        index = b.op("Sub", _normalised(b, d, k, bits), b.const(1 << bits))
        table = b.const(reciprocal_lut(bits, RECIPROCAL_BITS), name=f"reciprocal_lut_{bits}")
        recip = b.op("Gather", table, index, axis=0)
        if newton:
            p = RECIPROCAL_BITS
            m = _normalised(b, d, k, p)  # m in Q.P, truncated
            mx = b.floor_shift(b.op("Mul", m, recip), p)
            correction = b.op("Sub", b.const(2 << p), mx)
            recip = b.floor_shift(b.op("Mul", recip, correction), p)
        q = b.round_shift_by(b.op("Mul", magnitude, recip),
                             b.op("Add", k, b.const(RECIPROCAL_BITS)))
    return b.where_negative(n, b.op("Neg", q), q)


def division_to_onnx(division: str) -> Any:
    """The division step alone (docs §5) as an ONNX model: int64 inputs ``dividend`` and
    ``divisor`` (same shape, ``|N| < 2**45``, ``1 <= D < 2**31``), output ``quotient``, the
    integer operators of :func:`integer_to_onnx`; to check ``division.divide`` over any
    operands."""
    onnx = _onnx()
    b = _IntegerGraphBuilder(onnx)
    b.scope = "divide"
    b.nodes.append(onnx.helper.make_node("Identity", [_divide(b, "dividend", "divisor",
                                                               division)], ["quotient"]))
    int64 = onnx.TensorProto.INT64
    graph = onnx.helper.make_graph(
        b.nodes, f"divide-{division}",
        [onnx.helper.make_tensor_value_info(n, int64, ["n"]) for n in ("dividend", "divisor")],
        [onnx.helper.make_tensor_value_info("quotient", int64, ["n"])], b.initializers)
    return _model(onnx, graph, f"N / D by division {division!r} (docs/integer-semantics.md §5)",
                  {"eideploy.division": division})


def _model(onnx: Any, graph: Any, doc: str, props: dict[str, str]) -> Any:
    model = onnx.helper.make_model(graph, producer_name="eideploy",
                                   opset_imports=[onnx.helper.make_opsetid("", OPSET)])
    model.ir_version = _IR_VERSION
    model.doc_string = doc
    onnx.helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    return model


# ---- the circuit: one builder per function of ``eideploy.sim.integer``, same names, same order
def _currents(b: _IntegerGraphBuilder, sim: IntegerSimulator, pop: Population,
              out: dict[str, str]) -> tuple[str, str | None, str | None]:
    """``(I_EE, I_sub, I_div)`` into ``pop``, each projection clamped to 32 bits
    (``IntegerSimulator._currents``); I_sub and I_div None where no projection of that kind."""
    totals: dict[str, str] = {}
    for syn in sim.synapses[pop.name]:
        levels = syn.matrix.toarray().T.astype(np.int64)  # (n_source, n_target), sums parallels
        weights = b.const(levels, name=f"{syn.projection}/levels")
        part = b.saturate(b.op("MatMul", out[syn.source], weights), ACCUMULATOR_BITS, True)
        totals[syn.kind] = (b.op("Add", totals[syn.kind], part) if syn.kind in totals
                            else part)
    i_ee = totals.get("exc")
    if i_ee is None:  # no excitatory input: zeros (T, batch, n) from the input's shape
        n_in = sim.host.input.size
        i_ee = b.op("MatMul", out[sim.host.input.name], b.const(np.zeros((n_in, pop.size))))
    return i_ee, totals.get("sub"), totals.get("div")


def _lif_multistep(b: _IntegerGraphBuilder, current: str, log2_tau: int, theta: int,
                   steps: int) -> str:
    """``integer.lif_multistep`` unrolled over T: the steps' spikes stacked ``(T, batch, n)``."""
    threshold = b.const(theta)
    spikes, u = [], None
    for t in range(steps):
        drive = b.step(current, t)
        # u = 0 before the first step, and decay(0) = 0: the first h is the drive alone
        h = drive if u is None else b.op(
            "Add", b.op("Add", u, b.floor_shift(b.op("Neg", u), log2_tau)), drive)
        h = b.saturate(h, MEMBRANE_BITS, True)
        s = b.op("Cast", b.op("GreaterOrEqual", h, threshold), to=b.onnx.TensorProto.INT64)
        u = b.op("Sub", h, b.op("Mul", s, threshold))
        spikes.append(s)
    return b.stack(spikes)


def _inhibitory_response(b: _IntegerGraphBuilder, i_ie: str, theta_i: int) -> str:
    """``integer.inhibitory_response``: ``sat16(floor(relu(I_IE) / theta_I))``."""
    count = b.op("Div", b.op("Max", i_ie, b.const(0)), b.const(theta_i))  # floor: operand >= 0
    return b.saturate(count, COUNT_BITS, False)


def _stabilise(b: _IntegerGraphBuilder, i_div: str, eps: int) -> str:
    """``integer.stabilise``: ``D = sat31(I_div + eps)``, and ``max(D, 1)`` (a no-op for
    ``I_div >= 0``, kept so the graph states the divisor's range)."""
    d = b.saturate(b.op("Add", i_div, b.const(eps)), DIVISOR_BITS, False)
    return b.op("Max", d, b.const(1))


def _ei_integrate(b: _IntegerGraphBuilder, i_ee: str, i_sub: str | None, i_div: str | None,
                  c: Constants, division: str) -> tuple[str, str | None]:
    """``integer.ei_integrate``: ``I_int`` in Q.16 and the divisor ``D`` (None without
    SHUNT)."""
    i_num = b.saturate(i_ee if i_sub is None else b.op("Sub", i_ee, i_sub), ACCUMULATOR_BITS,
                       True)
    d = None
    if i_div is not None and c.frac_div is not None:
        d = _stabilise(b, i_div, c.eps)
        dividend = b.aligned(i_num, c.frac_num - MEMBRANE_FRAC - c.frac_div, DIVIDEND_BITS)
        q = _divide(b, dividend, d, division)
    else:
        q = b.aligned(i_num, c.frac_num - MEMBRANE_FRAC, ACCUMULATOR_BITS)
    q = b.saturate(q, ACCUMULATOR_BITS, True)
    if c.gain is not None:
        q = b.round_shift(b.op("Mul", q, b.const(c.gain)), GAIN_FRAC)
    if c.bias is not None:
        q = b.op("Add", q, b.const(c.bias))
    return b.saturate(q, ACCUMULATOR_BITS, True), d


def _ei_readout(b: _IntegerGraphBuilder, i_ee: str, i_sub: str | None, frac_num: int) -> str:
    """``integer.ei_readout``: ``o = sat32(I_EE - I_sub)`` moved to Q.16."""
    i_num = b.saturate(i_ee if i_sub is None else b.op("Sub", i_ee, i_sub), ACCUMULATOR_BITS,
                       True)
    return b.aligned(i_num, frac_num - MEMBRANE_FRAC, ACCUMULATOR_BITS)


def _if_readout(b: _IntegerGraphBuilder, o: str, theta: int, steps: int) -> tuple[str, str]:
    """``integer.if_readout`` unrolled over T: ``(counts, membrane)``."""
    threshold = b.const(theta)
    v = counts = None
    for t in range(steps):
        o_t = b.step(o, t)
        v = b.saturate(o_t if v is None else b.op("Add", v, o_t), MEMBRANE_BITS, True)
        n = b.op("Div", b.op("Max", v, b.const(0)), threshold)  # floor: operand >= 0
        counts = b.saturate(n if counts is None else b.op("Add", counts, n), COUNT_BITS, False)
        v = b.op("Sub", v, b.op("Mul", n, threshold))
    return counts, v


def integer_to_onnx(sim: IntegerSimulator) -> Any:
    """The integer network of ``sim`` (its division mode included) as an ``onnx.ModelProto``
    of integer operators only (module doc). Input ``spikes_in`` ``(T, batch, n_in)`` int64;
    outputs ``"{population}/{current,output,divisor}"``, ``counts`` and ``membrane``."""
    onnx = _onnx()
    b = _IntegerGraphBuilder(onnx)
    return _integer_model(b, sim, _network(b, sim))


def _network(b: _IntegerGraphBuilder, sim: IntegerSimulator) -> dict[str, str]:
    """The nodes of ``sim``'s network, population by population in the order of
    ``IntegerSimulator.run``; returns the output tensors by output name."""
    steps = sim.graph.T
    out = {sim.host.input.name: INPUT_NAME}
    outputs: dict[str, str] = {}
    for pop in sim.graph.populations:
        if pop.role == "input":
            continue
        b.scope = pop.name
        c = sim.constants[pop.name]
        i_ee, i_sub, i_div = _currents(b, sim, pop, out)
        if pop.role == "inh":
            current = i_ee
            out[pop.name] = _inhibitory_response(b, i_ee, c.theta)
        elif pop.role == "readout":
            current = _ei_readout(b, i_ee, i_sub, c.frac_num)
            if sim.host.readout_mode == "spiking":
                outputs["counts"], outputs["membrane"] = _if_readout(b, current, c.theta, steps)
            else:  # the summed current, clamped to 40 bits; membrane 0
                total = b.saturate(b.op("ReduceSum", current, b.const([0]), keepdims=0),
                                   MEMBRANE_BITS + 8, True)
                outputs["counts"], outputs["membrane"] = total, b.op("Sub", total, total)
        else:
            current, divisor = _ei_integrate(b, i_ee, i_sub, i_div, c, sim.division)
            if divisor is not None:
                outputs[f"{pop.name}/divisor"] = divisor
            out[pop.name] = _lif_multistep(b, current, c.log2_tau, c.theta, steps)
        outputs[f"{pop.name}/current"] = current
        if pop.name in out:
            outputs[f"{pop.name}/output"] = out[pop.name]
    return outputs


def _integer_model(b: _IntegerGraphBuilder, sim: IntegerSimulator, outputs: dict[str, str]
                   ) -> Any:
    """The checked model: the input, the named int64 outputs (``(T, batch, n)``; ``(batch,
    classes)`` for ``counts`` and ``membrane``), the nodes and initializers of ``b``."""
    onnx, graph, steps = b.onnx, sim.graph, sim.graph.T
    int64 = onnx.TensorProto.INT64
    sizes = {p.name: p.size for p in graph.populations}
    readout_size = sizes[sim.host.readout]
    graph_outputs = []
    for name, tensor in outputs.items():
        b.nodes.append(onnx.helper.make_node("Identity", [tensor], [name], name=f"{name}:out"))
        shape = (["batch", readout_size] if name in ("counts", "membrane")
                 else [steps, "batch", sizes[name.rsplit("/", 1)[0]]])
        graph_outputs.append(onnx.helper.make_tensor_value_info(name, int64, shape))
    inputs = [onnx.helper.make_tensor_value_info(INPUT_NAME, int64,
                                                 [steps, "batch", sim.host.input.size])]
    onnx_graph = onnx.helper.make_graph(b.nodes, f"{graph.name}-integer-{sim.division}", inputs,
                                        graph_outputs, b.initializers)
    return _model(onnx, onnx_graph,
                  f"integer network of graph {graph.name!r}, division {sim.division!r} "
                  "(docs/integer-semantics.md); input: host-encoded spikes",
                  {"eideploy.division": sim.division, "eideploy.graph": graph.name})


def save_onnx(sim: IntegerSimulator, path: str | Path) -> Path:
    """Write :func:`integer_to_onnx` of ``sim`` to ``path`` atomically."""
    path = Path(path)
    atomic_write_bytes(path, integer_to_onnx(sim).SerializeToString())
    return path


def _session(model: Any, threads: int) -> Any:
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    data = model if isinstance(model, bytes) else (
        Path(model).read_bytes() if isinstance(model, (str, Path)) else model.SerializeToString())
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _run_session(session: Any, spikes_in: np.ndarray) -> dict[str, np.ndarray]:
    shape = session.get_inputs()[0].shape
    steps = int(shape[0])
    spikes = np.asarray(spikes_in).astype(np.int64)  # as the simulator takes them
    spikes = np.broadcast_to(spikes, (steps, *spikes.shape[1:]))
    spikes = np.ascontiguousarray(spikes.reshape(steps, spikes.shape[1], -1))
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {INPUT_NAME: spikes}), strict=True))


def run_onnx(model: Any, spikes_in: np.ndarray, threads: int = 1) -> dict[str, np.ndarray]:
    """Run ``model`` (a ModelProto, its bytes or a path) on host-encoded spikes ``(T or 1,
    batch, *in_shape)`` with onnxruntime's CPU provider: every output by name."""
    return _run_session(_session(model, threads), spikes_in)


def check_against_simulator(graph: EIGraph, x: Any, division: str = "exact",
                            batch_size: int = 256, threads: int = 1) -> dict[str, Any]:
    """Run ``x`` through :class:`IntegerSimulator` and through its ONNX export with
    onnxruntime, and compare every output element.

    Returns ``{"division", "samples", "outputs": {name: {"mismatches", "elements"}},
    "mismatches", "elements", "uncompared", "bit_identical"}``; ``uncompared`` lists the
    simulator's states (``"{population}/{key}"``) the ONNX model has no output for, and
    ``bit_identical`` is true when no element differs and nothing is left uncompared.
    """
    sim = IntegerSimulator(graph, division)
    session = _session(integer_to_onnx(sim), threads)
    readout = sim.host.readout
    outputs: dict[str, dict[str, int]] = {}
    uncompared: set[str] = set()
    samples = len(x)
    for start in range(0, samples, batch_size):
        batch = x[start:start + batch_size]
        expected = sim.run(batch, return_states=True)
        got = _run_session(session, sim.host.spikes(batch))
        reference = {"counts": expected.counts, "membrane": expected.membrane}
        for pop, states in expected.states.items():
            for key, value in states.items():
                if not (pop == readout and key in ("counts", "membrane")):
                    reference[f"{pop}/{key}"] = value
        uncompared |= set(reference) - set(got)
        for name, value in got.items():
            want = np.asarray(reference.get(name, np.zeros(0)))
            same = want.shape == value.shape
            tally = outputs.setdefault(name, {"mismatches": 0, "elements": 0})
            tally["elements"] += int(want.size)
            tally["mismatches"] += int(np.count_nonzero(value != want)) if same else int(
                max(want.size, value.size))
    mismatches = sum(t["mismatches"] for t in outputs.values())
    return {"division": division, "samples": samples, "outputs": outputs,
            "mismatches": mismatches, "elements": sum(t["elements"] for t in outputs.values()),
            "uncompared": sorted(uncompared),
            "bit_identical": mismatches == 0 and not uncompared}
