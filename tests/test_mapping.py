"""Mapping E-I graphs onto DYNAP-SE2: placement, quantization, routing, configuration, compile.

Graphs are built by hand: spike input (encoding "if"), a spiking readout, interneurons with the
"floor" response, sparse random connectivity whose fan-in fits the CAM budget. Tests that run the
float executor use "direct" input and the "current" readout, which it executes.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eideploy.graph.execute import run
from eideploy.graph.ir import EIGraph, Population, Projection
from eideploy.quant import subset_sums
from eideploy.targets.dynapse2 import (
    CONFIG_FORMAT,
    CompiledNetwork,
    ConfigError,
    DoesNotFit,
    DRCReport,
    MappingError,
    Target,
    check,
    compile_graph,
    config_bytes,
    config_to_graph,
    fan_in,
    load_target,
    place,
    quantize_graph,
    read_config,
    to_sparse,
    write_config,
)
from eideploy.targets.dynapse2.compile import core_weight_unit, dendrite_gain_reference
from eideploy.targets.dynapse2.quantize import target_dendrites
from eideploy.targets.dynapse2.target import resolve_target


# --------------------------------------------------------------------------- graph builders
def random_sparse(name: str, source: str, target: str, kind: str, n_target: int, n_source: int,
                  k: int, rng: np.random.Generator, low: float = 0.05) -> Projection:
    """Every target neuron hears ``k`` distinct random sources (all of them if fewer)."""
    k = min(k, n_source)
    cols = rng.random((n_target, n_source)).argsort(axis=1)[:, :k]
    indices = np.stack([np.repeat(np.arange(n_target), k), cols.ravel()], axis=1)
    return Projection(name, source, target, kind, "sparse",
                      rng.uniform(low, 1.0, indices.shape[0]), indices.astype(np.int64))


def ei_network(rng: np.random.Generator, n_in: int, layers: list[tuple[int, int]], classes: int,
               *, k_in: int, k_inh: int, k_i: int, readout_inh: int | None = None,
               encoding: str = "if", readout_mode: str = "spiking", gains: bool = True,
               bias: float = 0.0) -> EIGraph:
    """input -> E-I layers (E: AMPA ``k_in`` + GABA/SHUNT from ``k_inh`` interneurons; I: AMPA
    ``k_i``) -> a readout with its own interneurons (AMPA + GABA, no division)."""
    pops = [Population("input", "input", (n_in,))]
    projs: list[Projection] = []
    source, n_source = "input", n_in
    for index, (n_e, n_i) in enumerate(layers):
        layer = f"l{index}"
        gain = rng.uniform(0.5, 2.0, n_e) if gains else np.ones(n_e)
        pops += [Population(f"{layer}.i", "inh", (n_i,), layer,
                            {"response": "floor", "theta_i": 1.0}),
                 Population(f"{layer}.e", "exc", (n_e,), layer, {"tau": 2.0, "v_threshold": 1.0},
                            {"gain_e": gain, "bias": np.full(n_e, bias)})]
        projs.append(random_sparse(f"{layer}.ee", source, f"{layer}.e", "exc", n_e, n_source,
                                   k_in, rng))
        projs.append(random_sparse(f"{layer}.ie", source, f"{layer}.i", "exc", n_i, n_source,
                                   k_i, rng))
        sub = random_sparse(f"{layer}.sub", f"{layer}.i", f"{layer}.e", "sub", n_e, n_i, k_inh,
                            rng)
        projs += [sub, Projection(f"{layer}.div", f"{layer}.i", f"{layer}.e", "div", "sparse",
                                  sub.weight * rng.uniform(0.2, 1.0, sub.weight.size),
                                  sub.indices.copy())]
        source, n_source = f"{layer}.e", n_e
    n_ri = readout_inh if readout_inh is not None else max(1, classes // 4)
    pops += [Population("fc.i", "inh", (n_ri,), "fc", {"response": "floor", "theta_i": 1.0}),
             Population("fc.out", "readout", (classes,), "fc",
                        {"mode": readout_mode, "v_threshold": 1.0})]
    projs += [random_sparse("fc.ee", source, "fc.out", "exc", classes, n_source, k_in, rng),
              random_sparse("fc.ie", source, "fc.i", "exc", n_ri, n_source, k_i, rng),
              random_sparse("fc.sub", "fc.i", "fc.out", "sub", classes, n_ri, k_inh, rng)]
    return EIGraph("ei", 4, pops, projs, {"population": "input", "encoding": encoding},
                   {"population": "fc.out", "mode": readout_mode, "classes": classes},
                   {"stabilisation": "adaptive", "eps": 1e-3})


def tiny_network(rng: np.random.Generator, n_in: int, n_i: int, classes: int, k_in: int,
                 k_inh: int, k_i: int) -> EIGraph:
    """The tiny target's two cores: one interneuron population and the readout."""
    return ei_network(rng, n_in, [], classes, k_in=k_in, k_inh=k_inh, k_i=k_i, readout_inh=n_i)


def assert_graphs_equal(a: EIGraph, b: EIGraph) -> None:
    """Same structure, same params, same arrays (values and dtypes), same sparse synapses."""
    assert (a.name, a.T, a.input, a.readout, a.division, a.meta) == \
        (b.name, b.T, b.input, b.readout, b.division, b.meta)
    assert [p.name for p in a.populations] == [p.name for p in b.populations]
    for pa, pb in zip(a.populations, b.populations, strict=True):
        assert (pa.role, tuple(pa.shape), pa.layer, pa.params) == \
            (pb.role, tuple(pb.shape), pb.layer, pb.params), pa.name
        assert sorted(pa.arrays) == sorted(pb.arrays), pa.name
        for key in pa.arrays:
            assert pa.arrays[key].dtype == pb.arrays[key].dtype
            np.testing.assert_array_equal(pa.arrays[key], pb.arrays[key])
    assert [p.name for p in a.projections] == [p.name for p in b.projections]
    for qa, qb in zip(a.projections, b.projections, strict=True):
        assert (qa.source, qa.target, qa.kind, qa.op, qa.attrs) == \
            (qb.source, qb.target, qb.kind, qb.op, qb.attrs), qa.name
        assert qa.weight.dtype == qb.weight.dtype and qa.indices.dtype == qb.indices.dtype
        np.testing.assert_array_equal(qa.indices, qb.indices)
        np.testing.assert_array_equal(qa.weight, qb.weight)


@pytest.fixture(scope="module")
def two_layer(dynapse2: Target) -> CompiledNetwork:
    graph = ei_network(np.random.default_rng(0), 64, [(300, 60), (200, 60)], 10, k_in=40,
                       k_inh=8, k_i=48)
    return compile_graph(graph, dynapse2, seed=0)


# --------------------------------------------------------------------------- placement
def test_e_and_i_populations_never_share_a_core(two_layer: CompiledNetwork, tiny: Target) -> None:
    tiny_net = compile_graph(tiny_network(np.random.default_rng(1), 12, 6, 10, 5, 1, 6), tiny)
    for compiled in (two_layer, tiny_net):
        roles = {p.name: p.role for p in compiled.qgraph.graph.populations}
        for core in compiled.placement.cores:
            assert {roles[name] for name, _, _ in core.slices} == {core.role}
        for chip in compiled.config["chips"]:
            for core in chip["cores"]:
                assert {roles[n["population"]] for n in core["neurons"]} == {core["role"]}


def test_placement_uses_the_fewest_cores_then_chips(two_layer: CompiledNetwork) -> None:
    placement = two_layer.placement
    # E: 300 + 200 (same params) -> 2 cores; I: 60 + 60 + 2 -> 1 core; readout -> 1 core.
    assert len(placement.cores) == 4 and placement.chips_used == [0]
    by_pop = {name: {tuple(r) for r in loc[:, :2].tolist()}
              for name, loc in placement.location.items()}
    assert by_pop["l0.i"] == by_pop["l1.i"] == by_pop["fc.i"]  # one interneuron core
    assert len(by_pop["l0.e"] | by_pop["l1.e"]) == 2
    # every slot is used once
    slots = np.concatenate(list(placement.location.values()))
    assert np.unique(slots, axis=0).shape[0] == slots.shape[0] == 632
    assert max(c.used for c in placement.cores) <= 256
    doc = json.loads(json.dumps(placement.to_dict()))
    assert doc["cores_used"] == 4 and [g["populations"] for g in doc["groups"]] == [
        ["l0.i", "l1.i", "fc.i"], ["l0.e", "l1.e"], ["fc.out"]]


def test_different_parameters_take_separate_cores_and_chips_fill_in_order(
        dynapse2: Target) -> None:
    rng = np.random.default_rng(2)
    graph = ei_network(rng, 32, [(600, 100), (500, 100)], 10, k_in=20, k_inh=4, k_i=20)
    graph.population("l1.e").params["tau"] = 4.0  # another parameter group
    placement = place(graph, dynapse2)
    cores = {name: sorted({tuple(r) for r in loc[:, :2].tolist()})
             for name, loc in placement.location.items()}
    # I: 100+100+2 -> 1 core; l0.e 600 -> 3; l1.e 500 -> 2; readout 1: 7 cores, 2 chips
    assert len(placement.cores) == 7 and placement.chips_used == [0, 1]
    assert not set(cores["l0.e"]) & set(cores["l1.e"])
    # l1.e's two new cores would straddle chips 0/1; the one spare core lets them start on chip 1
    assert {chip for chip, _ in cores["l1.e"]} == {1}


def test_placement_that_does_not_fit_names_needed_and_available(tiny: Target) -> None:
    graph = tiny_network(np.random.default_rng(3), 8, 20, 10, 4, 1, 4)  # 20 I -> 2 cores + 1
    with pytest.raises(MappingError, match=r"needs 3 cores \(30 neurons.*board has 2 cores "
                                           r"\(32 neurons\)"):
        place(graph, tiny)


# --------------------------------------------------------------------------- CAM, tags, SRAM
def test_cam_entries_equal_the_nonzero_fan_in_within_the_limit(
        two_layer: CompiledNetwork, dynapse2: Target) -> None:
    q = two_layer.qgraph.graph
    limit = dynapse2.cam_entries_per_neuron
    for pop in q.populations:
        if pop.role == "input":
            continue
        expected = fan_in(q, pop.name)  # non-zero synapses of the quantized graph, per kind
        table = two_layer.routing.cam[pop.name]
        counts = table.count
        np.testing.assert_array_equal(counts, sum(expected.values()))
        assert counts.max() <= limit
        for kind, dendrite in (("exc", "ampa"), ("sub", "gaba"), ("div", "shunt")):
            per = np.bincount(table.neuron[table.dendrite == dendrite], minlength=pop.size)
            np.testing.assert_array_equal(per, expected[kind])
    total_cam = sum(len(n["cam"]) for c in two_layer.config["chips"] for k in c["cores"]
                    for n in k["neurons"])
    assert total_cam == sum(p.weight.size for p in q.projections)
    # an E neuron that listens to one interneuron both ways spends two entries on it
    sub = q.projections[[p.name for p in q.projections].index("l0.sub")]
    div = q.projections[[p.name for p in q.projections].index("l0.div")]
    both = {tuple(r) for r in sub.indices.tolist()} & {tuple(r) for r in div.indices.tolist()}
    assert both


def _senders_per_core(config: dict) -> dict[tuple[int, int], list[int]]:
    """Tags arriving at each core: from every SRAM entry and every input channel."""
    cpc = config["target"]["cores_per_chip"]
    arriving: dict[tuple[int, int], list[int]] = {}
    entries = [s for c in config["chips"] for k in c["cores"] for n in k["neurons"]
               for s in n["sram"]]
    entries += [{"chip": d["chip"], "core_mask": d["core_mask"], "tag": ch["tag"]}
                for ch in config["input_channels"] for d in ch["destinations"]]
    for entry in entries:
        for bit in range(cpc):
            if entry["core_mask"] >> bit & 1:
                arriving.setdefault((entry["chip"], bit), []).append(entry["tag"])
    return arriving


def test_tags_are_distinct_per_destination_core_and_reused_when_scarce(tiny: Target) -> None:
    rng = np.random.default_rng(4)
    # 80 input channels, the I core hears channels 40..79, the readout core 0..39 and the I cells
    n_in = 80
    graph = tiny_network(rng, n_in, 16, 16, 6, 2, 6)
    for proj in graph.projections:
        if proj.name in ("fc.ee", "fc.ie"):
            lo = 0 if proj.name == "fc.ee" else 40
            n_t = graph.population(proj.target).size
            cols = lo + np.stack([rng.permutation(40)[:3] for _ in range(n_t)])
            proj.indices = np.stack([np.repeat(np.arange(n_t), 3), cols.ravel()], axis=1)
            proj.weight = rng.uniform(0.1, 1.0, proj.indices.shape[0])
    compiled = compile_graph(graph, tiny)
    assert compiled.routing.tag_mode == "coloured"  # 80 + 16 + 16 sources > 64 tags
    assert compiled.routing.stats["sources"] > tiny.tags
    for core, tags in _senders_per_core(compiled.config).items():
        assert len(tags) == len(set(tags)), core
        assert max(tags) < tiny.tags
    readout_tags = [c["tag"] for c in compiled.config["readout_channels"]]
    assert len(set(readout_tags)) == len(readout_tags) == 16
    assert_graphs_equal(config_to_graph(compiled.config), compiled.qgraph.graph)


def test_sram_entries_stay_within_the_three_usable(two_layer: CompiledNetwork,
                                                   dynapse2: Target) -> None:
    for core in (k for c in two_layer.config["chips"] for k in c["cores"]):
        for neuron in core["neurons"]:
            assert len(neuron["sram"]) <= dynapse2.usable_sram == 3
            assert len({s["chip"] for s in neuron["sram"]}) == len(neuron["sram"])
    for tags in _senders_per_core(two_layer.config).values():
        assert len(tags) == len(set(tags))


def test_fan_out_to_four_chips_is_refused_with_the_population(dynapse2: Target) -> None:
    rng = np.random.default_rng(5)
    # the DRC passes (14 cores: one shared interneuron core, 12 E cores, the readout's); the
    # placer deals l1.e's cores over all 4 chips: l0.e would need 4 SRAM entries
    graph = ei_network(rng, 16, [(256, 16), (2816, 16)], 10, k_in=16, k_inh=2, k_i=8)
    with pytest.raises(MappingError, match=r"sram: .* of population l0\.e send to more than 3 "
                                           r"chips"):
        compile_graph(graph, dynapse2)


def test_input_and_readout_channel_maps(two_layer: CompiledNetwork) -> None:
    config = two_layer.config
    channels = config["input_channels"]
    assert [c["channel"] for c in channels] == list(range(64))
    placed = {(c["id"], k["id"]): k for c in config["chips"] for k in c["cores"]}
    for channel in channels:
        assert channel["tag"] is not None and channel["destinations"]
    readout = config["readout_channels"]
    assert [r["class"] for r in readout] == list(range(10))
    for r in readout:
        neuron = next(n for n in placed[(r["chip"], r["core"])]["neurons"]
                      if n["id"] == r["neuron"])
        assert neuron["population"] == "fc.out" and neuron["index"] == r["class"]


# --------------------------------------------------------------------------- quantization
def representable_network(rng: np.random.Generator, bases: np.ndarray) -> EIGraph:
    """A graph the float executor runs whose folded weights are levels of ``bases``: E weights
    are ``level / g_E`` for the AMPA and GABA synapses, levels for SHUNT and the rest."""
    graph = ei_network(rng, 20, [(30, 8)], 5, k_in=10, k_inh=3, k_i=10, encoding="direct",
                       readout_mode="current")
    levels = subset_sums(bases)[1:]
    gain = graph.population("l0.e").arrays["gain_e"]
    for proj in graph.projections:
        proj.weight = levels[rng.integers(0, levels.size, proj.weight.size)]
        if proj.target == "l0.e" and proj.kind in ("exc", "sub"):
            proj.weight = proj.weight / gain[proj.indices[:, 0]]
    return graph


def test_g_e_folding_is_exact_when_weights_are_representable(dynapse2: Target) -> None:
    rng = np.random.default_rng(6)
    bases = np.array([0.05, 0.11, 0.23, 0.41])
    graph = representable_network(rng, bases)
    qg = quantize_graph(graph, place(graph, dynapse2), dynapse2, seed=0)
    q = qg.graph
    assert qg.stats["total"]["dropped"] == 0
    assert qg.stats["total"]["max_error"] < 1e-12
    np.testing.assert_array_equal(q.population("l0.e").arrays["gain_e"], np.ones(30))
    gain = graph.population("l0.e").arrays["gain_e"]
    for name in ("l0.ee", "l0.sub", "l0.div"):
        before = to_sparse(graph).projections[[p.name for p in graph.projections].index(name)]
        after = q.projections[[p.name for p in q.projections].index(name)]
        np.testing.assert_array_equal(after.indices, before.indices)
        folded = before.weight * (gain[before.indices[:, 0]] if name != "l0.div" else 1.0)
        np.testing.assert_allclose(after.weight, folded, rtol=1e-12, atol=0)
    x = rng.uniform(0.0, 1.5, (16, 20))
    expected = run(graph, x, dtype=np.float64)
    got = run(q, x, dtype=np.float64)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    assert np.abs(expected).max() > 0.1  # the readout is driven


def test_quantized_graph_runs_close_to_the_original(dynapse2: Target) -> None:
    rng = np.random.default_rng(7)
    graph = ei_network(rng, 20, [(30, 8)], 5, k_in=10, k_inh=3, k_i=10, encoding="direct",
                       readout_mode="current")
    qg = quantize_graph(graph, place(graph, dynapse2), dynapse2, seed=0)
    assert 0 < qg.stats["total"]["relative_rmse"] < 0.1
    assert set(qg.stats["layers"]) == {"l0", "fc"}
    assert {(c["chip"], c["core"]) for c in qg.stats["cores"]} == set(qg.codebooks)
    for proj in qg.graph.projections:
        assert proj.op == "sparse" and qg.masks[proj.name].dtype == np.uint8
        assert qg.masks[proj.name].shape == proj.weight.shape and qg.masks[proj.name].min() > 0
        order = np.lexsort((proj.indices[:, 1], proj.indices[:, 0]))
        np.testing.assert_array_equal(order, np.arange(order.size))


def test_dense_and_pointwise_projections_become_sparse_synapses(dynapse2: Target) -> None:
    rng = np.random.default_rng(8)
    w_ee = rng.uniform(0.1, 1.0, (6, 10)) * (rng.random((6, 10)) < 0.5)
    pops = [Population("input", "input", (10,)),
            Population("l1.i", "inh", (3,), "l1", {"response": "floor", "theta_i": 0.5}),
            Population("l1.e", "exc", (6,), "l1", {"tau": 2.0, "v_threshold": 0.5},
                       {"gain_e": np.full(6, 1.5), "bias": np.full(6, 0.25)}),
            Population("out", "readout", (2,), "fc", {"mode": "current"})]
    projs = [Projection("ee", "input", "l1.e", "exc", "dense", w_ee),
             Projection("ie", "input", "l1.i", "exc", "dense", rng.uniform(0.1, 1, (3, 10))),
             Projection("sub", "l1.i", "l1.e", "sub", "pointwise", rng.uniform(0.1, 1, (6, 3))),
             Projection("div", "l1.i", "l1.e", "div", "pointwise", rng.uniform(0.1, 1, (6, 3))),
             Projection("ro", "l1.e", "out", "exc", "dense", rng.uniform(0.1, 1, (2, 6)))]
    graph = EIGraph("dense", 3, pops, projs, {"population": "input", "encoding": "direct"},
                    {"population": "out", "mode": "current", "classes": 2},
                    {"stabilisation": "adaptive", "eps": 1e-3})
    sparse = to_sparse(graph)
    assert all(p.op == "sparse" for p in sparse.projections)
    assert sparse.projections[0].weight.size == np.count_nonzero(w_ee)
    x = rng.uniform(0, 1, (8, 10))
    np.testing.assert_allclose(run(sparse, x, dtype=np.float64), run(graph, x, dtype=np.float64),
                               rtol=1e-12)
    qg = quantize_graph(graph, place(graph, dynapse2), dynapse2)
    np.testing.assert_array_equal(qg.graph.population("l1.e").arrays["bias"], np.full(6, 0.25))
    assert {qg.dc[k] for k in qg.dc} == {0.0, 0.25}


def test_a_conv_network_with_pooling_compiles_and_round_trips(dynapse2: Target) -> None:
    rng = np.random.default_rng(15)
    pops = [Population("input", "input", (2, 8, 8)),
            Population("c1.inh", "inh", (2, 8, 8), "c1", {"response": "floor", "theta_i": 1.0}),
            Population("c1.exc", "exc", (4, 8, 8), "c1", {"tau": 2.0, "v_threshold": 1.0},
                       {"gain_e": rng.uniform(0.5, 2, 4), "bias": np.zeros(4)}),
            Population("fc.inh", "inh", (2,), "fc", {"response": "floor", "theta_i": 1.0}),
            Population("fc.out", "readout", (3,), "fc", {"mode": "spiking"})]
    conv = {"stride": 1, "padding": 1}
    w_ei = rng.uniform(0.1, 1, (4, 2))
    projs = [Projection("c1.ee", "input", "c1.exc", "exc", "conv",
                        rng.uniform(0.1, 1, (4, 2, 3, 3)), attrs=dict(conv)),
             Projection("c1.ie", "input", "c1.inh", "exc", "conv",
                        rng.uniform(0.1, 1, (2, 2, 3, 3)), attrs=dict(conv)),
             Projection("c1.sub", "c1.inh", "c1.exc", "sub", "pointwise", w_ei),
             Projection("c1.div", "c1.inh", "c1.exc", "div", "pointwise", w_ei * 0.5),
             # a pooled value costs 2x2 CAM entries: 12 of 64 pooled inputs -> 48 entries
             Projection("fc.ee", "c1.exc", "fc.out", "exc", "dense",
                        rng.uniform(0.1, 1, (3, 64)) * (rng.random((3, 64)).argsort(1) < 12),
                        attrs={"pool": 2}),
             Projection("fc.ie", "c1.exc", "fc.inh", "exc", "dense",
                        rng.uniform(0.1, 1, (2, 64)) * (rng.random((2, 64)).argsort(1) < 12),
                        attrs={"pool": 2}),
             Projection("fc.sub", "fc.inh", "fc.out", "sub", "dense",
                        rng.uniform(0.1, 1, (3, 2)))]
    graph = EIGraph("conv", 4, pops, projs, {"population": "input", "encoding": "if"},
                    {"population": "fc.out", "mode": "spiking", "classes": 3},
                    {"stabilisation": "adaptive", "eps": 1e-3})
    compiled = compile_graph(graph, dynapse2)
    q = compiled.qgraph.graph
    assert all(p.op == "sparse" for p in q.projections)
    counts = compiled.routing.cam["c1.exc"].count
    # AMPA: 3x3 taps over 2 channels inside the map (corners 2x2), GABA + SHUNT: 2 each
    assert counts.max() <= 18 + 4 and counts.min() >= 8  # less what quantization dropped
    assert compiled.routing.cam["fc.out"].count.max() <= 48 + 2
    for name in ("c1.exc", "fc.out"):
        np.testing.assert_array_equal(compiled.routing.cam[name].count,
                                      sum(fan_in(q, name).values()))
    assert_graphs_equal(config_to_graph(compiled.config), q)


def test_parallel_synapses_and_projections_of_one_kind_are_merged(dynapse2: Target) -> None:
    rng = np.random.default_rng(14)
    graph = ei_network(rng, 16, [(20, 4)], 3, k_in=4, k_inh=1, k_i=4)
    extra = random_sparse("l0.ee2", "input", "l0.e", "exc", 20, 16, 4, rng)
    extra.indices = np.concatenate([extra.indices, extra.indices[:3]])  # duplicated pairs
    extra.weight = np.concatenate([extra.weight, extra.weight[:3]])
    graph.projections.insert(1, extra)
    sparse = to_sparse(graph)
    assert "l0.ee2" not in [p.name for p in sparse.projections]
    assert sparse.meta["merged_projections"] == {"l0.ee": ["l0.ee2"]}
    merged = sparse.projections[0]
    dense = np.zeros((20, 16))
    for proj in (graph.projections[0], extra):
        np.add.at(dense, (proj.indices[:, 0], proj.indices[:, 1]), proj.weight)
    t, s_ = np.nonzero(dense)
    np.testing.assert_array_equal(merged.indices, np.stack([t, s_], axis=1))
    np.testing.assert_allclose(merged.weight, dense[t, s_], rtol=1e-15)
    compiled = compile_graph(graph, dynapse2)
    assert_graphs_equal(config_to_graph(compiled.config), compiled.qgraph.graph)


def test_a_bias_that_varies_inside_a_core_is_refused(dynapse2: Target) -> None:
    rng = np.random.default_rng(9)
    graph = ei_network(rng, 16, [(40, 8)], 4, k_in=8, k_inh=2, k_i=8)
    graph.population("l0.e").arrays["bias"] = rng.uniform(0, 0.1, 40)
    with pytest.raises(MappingError, match=r"per-neuron bias cannot be held by a core; train "
                                           r"with a per-core bias.*l0\.e"):
        quantize_graph(graph, place(graph, dynapse2), dynapse2)
    with pytest.raises(DoesNotFit, match="per-neuron-bias"):
        compile_graph(graph, dynapse2)


def test_a_bias_tied_per_core_becomes_each_cores_dc(dynapse2: Target) -> None:
    rng = np.random.default_rng(10)
    graph = ei_network(rng, 16, [(300, 8)], 4, k_in=8, k_inh=2, k_i=8)
    graph.population("l0.e").arrays["bias"] = np.r_[np.full(256, 0.2), np.full(44, -0.1)]
    compiled = compile_graph(graph, dynapse2)
    loc = compiled.placement.location["l0.e"]
    assert loc[0, 2] == 0 and len({tuple(r) for r in loc[:, :2].tolist()}) == 2  # aligned
    np.testing.assert_array_equal(compiled.qgraph.graph.population("l0.e").arrays["bias"],
                                  graph.population("l0.e").arrays["bias"])
    dcs = sorted(k["dc"] for c in compiled.config["chips"] for k in c["cores"]
                 if k["role"] == "exc")
    assert dcs == [-0.1, 0.2]
    negative = [r for r in compiled.bias_report if r["name"] == "SOIF_DC_P"
                and r["requested"] < 0]
    assert len(negative) == 1 and negative[0]["clipped"]


def test_bias_codes_are_recorded_per_core(two_layer: CompiledNetwork) -> None:
    names = {r["name"] for r in two_layer.bias_report}
    assert {"SOIF_LEAK_N", "SOIF_SPKTHR_P", "SOIF_DC_P", "SYAM_W0_P", "SYAM_W3_P"} <= names
    for chip in two_layer.config["chips"]:
        for core in chip["cores"]:
            codes = core["bias_codes"]
            assert set(codes["SYAM_W0_P"]) == {"coarse", "fine", "requested", "realised",
                                               "error"}
            # one model unit of base weight is the export's weight unit (1 uA; 10 nA before the
            # full DPI synapse was modelled: docs/analog-model.md §2)
            unit = core_weight_unit(core["base_weights"], resolve_target("dynapse2"))
            for k, name in enumerate(("SYAM_W0_P", "SYAM_W1_P", "SYAM_W2_P", "SYAM_W3_P")):
                assert codes[name]["requested"] == pytest.approx(core["base_weights"][k] * unit)
                assert codes[name]["error"] < 0.05
            if core["role"] == "exc":
                assert codes["SOIF_LEAK_N"]["error"] < 0.05


def trained_mix_network(rng: np.random.Generator, shunt_ratio: float = 35.0) -> EIGraph:
    """One full E core with the weight mix of a trained E-I layer: per E neuron 48 AMPA and
    8 GABA synapses, exponential with the same scale, and 8 SHUNT synapses on the same pairs as
    the GABA ones, ``W_EI * g_I`` with ``g_I`` about ``1 / shunt_ratio``: ~35x smaller RMS."""
    graph = ei_network(rng, 256, [(256, 64)], 4, k_in=48, k_inh=8, k_i=48, gains=False)
    g_i = rng.uniform(0.5, 1.5, 64) / shunt_ratio
    for proj in graph.projections:
        proj.weight = rng.exponential(0.1, proj.weight.size)
    sub = next(p for p in graph.projections if p.name == "l0.sub")
    div = next(p for p in graph.projections if p.name == "l0.div")
    div.weight = sub.weight * g_i[sub.indices[:, 1]]
    return graph


def test_a_scale_per_dendrite_keeps_small_shunt_weights(dynapse2: Target) -> None:
    graph = trained_mix_network(np.random.default_rng(0))
    placement = place(graph, dynapse2)
    e_core = tuple(int(v) for v in placement.location["l0.e"][0, :2])
    shared = quantize_graph(graph, placement, dynapse2, scaling="shared")
    core = next(c for c in shared.stats["cores"] if (c["chip"], c["core"]) == e_core)
    # one codebook for all kinds: measured 2039 of 2048 SHUNT synapses dropped (96.5% error)
    assert core["dendrites"]["shunt"]["dropped"] > 0.99 * 2048
    assert core["dendrite_scales"] == {"ampa": 1.0, "gaba": 1.0, "shunt": 1.0}

    compiled = compile_graph(graph, dynapse2)
    qg = compiled.qgraph
    core = next(c for c in qg.stats["cores"] if (c["chip"], c["core"]) == e_core)
    before = next(c for c in shared.stats["cores"] if (c["chip"], c["core"]) == e_core)
    kinds = core["dendrites"]
    assert core["scaling"] == "per_dendrite"
    # measured: SHUNT 10.3% relative RMSE, 458 of 2048 dropped (the smallest of exponential
    # weights, as for AMPA: 2154 of 12288); AMPA and GABA as good as with the shared codebook
    assert kinds["shunt"]["relative_rmse"] < 0.15
    assert kinds["shunt"]["dropped"] < 0.3 * kinds["shunt"]["n_synapses"]
    for d in ("ampa", "gaba"):
        assert kinds[d]["relative_rmse"] < 1.01 * before["dendrites"][d]["relative_rmse"]
    scales = qg.dendrite_scales[e_core]
    assert max(scales.values()) == 1.0  # the bases carry the units
    assert 0.8 < scales["ampa"] <= 1.0 and 0.8 < scales["gaba"] <= 1.0
    assert 1 / 50 < scales["shunt"] < 1 / 25
    # each synapse weighs s_d * level(mask): the quantized graph, the configuration and the
    # gain biases say the same
    levels = subset_sums(qg.codebooks[e_core].bases)
    for name, dendrite in (("l0.ee", "ampa"), ("l0.sub", "gaba"), ("l0.div", "shunt")):
        proj = next(p for p in qg.graph.projections if p.name == name)
        np.testing.assert_array_equal(proj.weight, scales[dendrite] * levels[qg.masks[name]])
    doc = next(k for c in compiled.config["chips"] for k in c["cores"]
               if (c["id"], k["id"]) == e_core)
    assert doc["dendrite_scales"] == scales
    for dendrite, bias in (("ampa", "DEAM_EGAIN_P"), ("gaba", "DEGA_IGAIN_P"),
                           ("shunt", "DESC_IGAIN_P")):
        code = doc["bias_codes"][bias]
        assert code["requested"] == pytest.approx(scales[dendrite]
                                                  * dendrite_gain_reference(dendrite))
        assert code["error"] < 0.02
    report = {(r["chip"], r["core"], r["name"]) for r in compiled.bias_report}
    assert (*e_core, "DESC_IGAIN_P") in report
    assert_graphs_equal(config_to_graph(compiled.config), qg.graph)
    summary = compiled.summary()["quantization"]["dendrites"]
    assert summary["shunt"]["dropped"] == qg.stats["dendrites"]["shunt"]["dropped"]


def test_a_core_hearing_one_dendrite_keeps_every_scale_at_1(dynapse2: Target) -> None:
    graph = trained_mix_network(np.random.default_rng(1))
    placement = place(graph, dynapse2)
    qg = quantize_graph(graph, placement, dynapse2)
    shared = quantize_graph(graph, placement, dynapse2, scaling="shared")
    one_kind = [c for c in qg.stats["cores"] if len(c["dendrites"]) == 1]
    assert len(one_kind) == 1  # the interneurons' core hears AMPA only
    for core, before in zip(qg.stats["cores"], shared.stats["cores"], strict=True):
        if core in one_kind:  # the shared codebook, bit for bit
            assert core["scaling"] == "shared" and core["bases"] == before["bases"]
            assert set(core["dendrite_scales"].values()) == {1.0}
    with pytest.raises(ValueError, match="scaling must be one of"):
        quantize_graph(graph, placement, dynapse2, scaling="per_kind")


# --------------------------------------------------------------------------- configuration
def test_config_round_trips_to_the_quantized_graph(two_layer: CompiledNetwork,
                                                   tmp_path: Path) -> None:
    config = two_layer.config
    assert config["format"] == CONFIG_FORMAT and config["format_version"] == 1
    assert_graphs_equal(config_to_graph(config), two_layer.qgraph.graph)
    write_config(config, tmp_path / "a" / "dynapse2.json")
    read = read_config(tmp_path / "a" / "dynapse2.json")
    assert read == json.loads(config_bytes(config))
    assert_graphs_equal(config_to_graph(read), two_layer.qgraph.graph)
    assert str(two_layer.config["target"]).find("hardware/") < 0  # no file path in the bytes


def test_compilation_is_deterministic_for_a_seed(dynapse2: Target, tmp_path: Path) -> None:
    graph = ei_network(np.random.default_rng(11), 32, [(100, 20)], 10, k_in=20, k_inh=4,
                       k_i=20)
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"{i}.json")
        write_config(compile_graph(graph, dynapse2, seed=3).config, paths[-1])
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_read_config_names_the_file_and_field(tmp_path: Path,
                                              two_layer: CompiledNetwork) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        read_config(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=f"{bad}: not valid JSON"):
        read_config(bad)
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ConfigError, match="field 'format' must be 'eideploy-dynapse2-config'"):
        read_config(bad)
    doc = json.loads(config_bytes(two_layer.config))
    doc["format_version"] = 99
    bad.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="newer than this eideploy reads"):
        read_config(bad)
    doc = json.loads(config_bytes(two_layer.config))
    neuron = next(n for n in doc["chips"][0]["cores"][0]["neurons"] if n["cam"])
    neuron["cam"][0]["tag"] = 2047
    with pytest.raises(ConfigError, match=r"listens to tag 2047 on core \(0, 0\), which no SRAM "
                                          r"entry or input channel sends there"):
        config_to_graph(doc)
    doc = json.loads(config_bytes(two_layer.config))
    del doc["chips"][0]["cores"][1]["base_weights"]
    with pytest.raises(ConfigError, match=r"field 'chips\[0\]\.cores\[1\]\.base_weights' is "
                                          "missing"):
        config_to_graph(doc)
    doc = json.loads(config_bytes(two_layer.config))
    doc["chips"][0]["cores"][0]["dendrite_scales"]["shunt"] = 0.0
    with pytest.raises(ConfigError, match=r"field 'chips\[0\]\.cores\[0\]\.dendrite_scales\."
                                          r"shunt' must be a finite number > 0"):
        config_to_graph(doc)
    doc["chips"][0]["cores"][0]["dendrite_scales"] = {"nmda": 0.5}
    with pytest.raises(ConfigError, match="names a dendrite that carries no projection kind"):
        config_to_graph(doc)


def test_a_config_without_dendrite_scales_reads_as_scale_1(two_layer: CompiledNetwork) -> None:
    doc = json.loads(config_bytes(two_layer.config))
    for chip in doc["chips"]:
        for core in chip["cores"]:
            del core["dendrite_scales"]  # a file written before the field existed
    q = two_layer.qgraph
    for proj, read in zip(q.graph.projections, config_to_graph(doc).projections, strict=True):
        np.testing.assert_array_equal(read.indices, proj.indices)
        cores = two_layer.placement.location[proj.target][proj.indices[:, 0], :2]
        levels = np.stack([subset_sums(q.codebooks[(a, b)].bases) for a, b in cores.tolist()])
        np.testing.assert_array_equal(read.weight,
                                      levels[np.arange(len(levels)), q.masks[proj.name]])


@st.composite
def small_networks(draw: st.DrawFn) -> tuple[str, EIGraph, int]:
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if draw(st.booleans()):
        n_i, classes = draw(st.integers(1, 16)), draw(st.integers(1, 16))
        k_inh = draw(st.integers(1, min(3, n_i)))
        k_in = draw(st.integers(1, 8 - k_inh))
        graph = tiny_network(rng, draw(st.integers(1, 40)), n_i, classes, k_in, k_inh,
                             draw(st.integers(1, 8)))
        return "tiny", graph, seed
    layers = [(draw(st.integers(1, 400)), draw(st.integers(1, 64)))
              for _ in range(draw(st.integers(1, 2)))]
    k_inh = draw(st.integers(1, 12))
    graph = ei_network(rng, draw(st.integers(1, 100)), layers, draw(st.integers(1, 20)),
                       k_in=draw(st.integers(1, 64 - 2 * k_inh)), k_inh=k_inh,
                       k_i=draw(st.integers(1, 64)), bias=draw(st.sampled_from([0.0, 0.3])))
    return "dynapse2", graph, seed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_networks())
def test_any_small_network_round_trips_through_its_configuration(
        case: tuple[str, EIGraph, int]) -> None:
    name, graph, seed = case
    target = load_target(name)
    compiled = compile_graph(graph, target, seed=seed)
    assert_graphs_equal(config_to_graph(compiled.config), compiled.qgraph.graph)
    with tempfile.TemporaryDirectory() as tmp:
        first, second = Path(tmp) / "1.json", Path(tmp) / "2.json"
        write_config(compiled.config, first)
        write_config(compiled.config, second)
        assert first.read_bytes() == second.read_bytes()
        assert_graphs_equal(config_to_graph(read_config(first)), compiled.qgraph.graph)
    for table in compiled.routing.cam.values():
        assert table.count.max(initial=0) <= target.cam_entries_per_neuron
    for masks in compiled.routing.sram.values():
        assert np.count_nonzero(masks, axis=1).max(initial=0) <= target.usable_sram
    for tags in _senders_per_core(compiled.config).values():
        assert len(tags) == len(set(tags))


# --------------------------------------------------------------------------- refusals, scale
def test_a_network_too_large_raises_does_not_fit_with_every_violation(tiny: Target) -> None:
    rng = np.random.default_rng(12)
    graph = ei_network(rng, 30, [(40, 10)], 10, k_in=12, k_inh=2, k_i=10,
                       readout_mode="current", encoding="direct")
    with pytest.raises(DoesNotFit) as err:
        compile_graph(graph, tiny)
    report = err.value.report
    assert isinstance(report, DRCReport) and isinstance(err.value, ValueError)
    assert str(err.value) == report.format()
    assert {"fan-in", "neurons", "cores", "spiking-readout", "spike-input"} <= \
        set(report.by_rule())
    fan = [v for v in report.violations if v.rule == "fan-in"]
    assert {v.population for v in fan} == {"l0.e", "l0.i", "fc.out", "fc.i"}


def board_network(rng: np.random.Generator) -> EIGraph:
    """4096 neurons (the whole Stack board: 16 cores) with every neuron at fan-in 64."""
    return ei_network(rng, 256, [(1280, 256), (1792, 256)], 256, k_in=48, k_inh=8, k_i=64,
                      readout_inh=256)


def test_drc_counts_cores_and_chips_exactly_as_the_placer_groups_them(
        dynapse2: Target, tiny: Target) -> None:
    rng = np.random.default_rng(17)
    for trial in range(40):
        target = tiny if trial % 2 else dynapse2
        npc = target.neurons_per_core
        layers = [(int(rng.integers(1, 3 * npc)), int(rng.integers(1, 2 * npc)))
                  for _ in range(int(rng.integers(1, 4)))]
        graph = ei_network(rng, 8, layers, int(rng.integers(1, npc)), k_in=2, k_inh=1, k_i=2,
                           readout_inh=int(rng.integers(1, npc)))
        if trial % 3 == 0:  # another parameter group for the last E layer
            graph.population(f"l{len(layers) - 1}.e").params["tau"] = 3.0
        summary = check(graph, target).summary
        groups = [(g["populations"], g["cores"]) for g in summary["groups"]]
        try:
            placement = place(graph, target)
        except MappingError:
            assert summary["cores"] > target.cores_per_board, (trial, layers)
            continue
        assert summary["cores"] == len(placement.cores) <= target.cores_per_board
        assert summary["chips"] == len(placement.chips_used)
        assert groups == [(g.populations, g.cores) for g in placement.groups]
        for name, pop in summary["populations"].items():  # the tags bound's core spans
            cores = {tuple(r) for r in placement.location[name][:, :2].tolist()}
            assert len(cores) <= pop["cores_spanned_max"], (trial, name)


def test_a_4096_neuron_network_whose_interneurons_share_cores_fits_16_cores(
        dynapse2: Target) -> None:
    # I populations of 300, 200 and 268 neurons: 2 + 1 + 2 = 5 cores each on its own, but one
    # parameter group of 768 neurons = 3 cores; E: 1536 + 1536 = 12 cores; readout: 1 core.
    graph = ei_network(np.random.default_rng(16), 256, [(1536, 300), (1536, 200)], 256, k_in=16,
                       k_inh=4, k_i=8, readout_inh=268)
    report = check(graph, dynapse2)
    assert report.ok, report.format()
    s = report.summary
    assert (s["neurons"], s["cores"], s["chips"], s["cores_unshared"]) == (4096, 16, 4, 18)
    assert [(g["populations"], g["neurons"], g["cores"]) for g in s["groups"]] == [
        (["l0.i", "l1.i", "fc.i"], 768, 3), (["l0.e", "l1.e"], 3072, 12), (["fc.out"], 256, 1)]
    assert [s["populations"][n]["cores"] for n in ("l0.i", "l1.i", "fc.i")] == [2, 1, 2]
    assert {s["populations"][n]["group"] for n in ("l0.i", "l1.i", "fc.i")} == {0}
    compiled = compile_graph(graph, dynapse2, seed=0)
    assert len(compiled.placement.cores) == 16 and compiled.placement.chips_used == [0, 1, 2, 3]
    inh_cores = {tuple(r) for n in ("l0.i", "l1.i", "fc.i")
                 for r in compiled.placement.location[n][:, :2].tolist()}
    assert len(inh_cores) == 3

    # 128 more E neurons: 13 E cores, 17 in all, 5 chips; the DRC and the placer both refuse
    too_large = ei_network(np.random.default_rng(16), 256, [(1536, 300), (1664, 200)], 256,
                           k_in=16, k_inh=4, k_i=8, readout_inh=268)
    with pytest.raises(DoesNotFit) as err:
        compile_graph(too_large, dynapse2)
    rules = {v.rule: v for v in err.value.report.violations}
    assert {"neurons", "cores", "chips"} <= set(rules)
    assert (rules["neurons"].needed, rules["neurons"].limit) == (4224, 4096)
    assert (rules["cores"].needed, rules["cores"].limit) == (17, 16)
    assert (rules["chips"].needed, rules["chips"].limit) == (5, 4)
    assert "group 1 (exc: l0.e, l1.e) 3200 neurons -> 13 core(s)" in rules["cores"].message
    with pytest.raises(MappingError, match=r"needs 17 cores"):
        place(too_large, dynapse2)


def test_a_4096_neuron_network_with_fan_in_64_compiles(dynapse2: Target) -> None:
    graph = board_network(np.random.default_rng(13))
    start = time.perf_counter()
    compiled = compile_graph(graph, dynapse2, seed=0)
    elapsed = time.perf_counter() - start
    summary = compiled.summary()
    print(f"\n4096 neurons, fan-in 64 on dynapse2: compiled in {elapsed:.2f} s; {summary}")
    assert summary["neurons"] == 4096 and summary["cores"] == 16 and summary["chips"] == 4
    assert summary["worst_fan_in"]["entries"] <= 64
    assert summary["sram"]["max_per_neuron"] <= 3
    assert compiled.routing.tag_mode == "coloured"
    start = time.perf_counter()
    assert_graphs_equal(config_to_graph(compiled.config), compiled.qgraph.graph)
    print(f"config -> graph in {time.perf_counter() - start:.2f} s; "
          f"{len(config_bytes(compiled.config)) / 1e6:.1f} MB of JSON")


def test_every_core_records_a_scale_for_every_dendrite_so_no_population_loses_its_shunt_scale(
        ) -> None:
    """A core's ``dendrite_scales`` once listed only the dendrites of its last population's CAM
    entries, so an E population sharing a core with one that receives no SHUNT read its SHUNT
    weights back at scale 1 (found by the round-trip property above: 16 of 515 weights 1.47x)."""
    target = load_target("dynapse2")
    graph = ei_network(np.random.default_rng(3), 100, [(265, 62), (1, 1)], 1, k_in=12, k_inh=4,
                       k_i=12)
    compiled = compile_graph(graph, target, seed=149)
    dendrites = set(target_dendrites(target))
    for chip in compiled.config["chips"]:
        for core in chip["cores"]:
            assert set(core["dendrite_scales"]) == dendrites, (core["id"], core["role"])
            key = (chip["id"], core["id"])
            for d, scale in compiled.qgraph.dendrite_scales.get(key, {}).items():
                assert core["dendrite_scales"][d] == pytest.approx(scale, rel=1e-12)
    assert_graphs_equal(config_to_graph(compiled.config), compiled.qgraph.graph)
