"""The DYNAP-SE2 target description and the design-rule check (DRC) on hand-built E-I graphs."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest

from eideploy.graph.ir import EIGraph, Population, Projection
from eideploy.targets.dynapse2 import (
    HARDWARE_DIR,
    Target,
    TargetError,
    check,
    fan_in,
    known_targets,
    load_target,
)


# --------------------------------------------------------------------------- graph builders
def dense_ei_graph(w_ee: np.ndarray, w_ie: np.ndarray, w_ei: np.ndarray, *,
                   gain_i: np.ndarray | None = None, role: str = "exc", divisive: bool = True,
                   encoding: str = "spikes", readout_mode: str = "spiking",
                   response: str = "floor", bias: np.ndarray | None = None) -> EIGraph:
    """input -> one dense E-I layer (E population ``l1.e`` of ``role``, I population ``l1.i``).

    The E population is also the graph's readout, so the smallest graph takes two cores.
    """
    n_e, n_in = w_ee.shape
    n_i = w_ie.shape[0]
    gain_i = np.ones(n_i) if gain_i is None else gain_i
    arrays = {} if bias is None else {"bias": np.asarray(bias, float),
                                      "gain_e": np.ones(n_e)}
    pops = [Population("input", "input", (n_in,)),
            Population("l1.i", "inh", (n_i,), "l1", {"response": response, "theta_i": 1.0}),
            Population("l1.e", role, (n_e,), "l1", {"tau": 2.0, "v_threshold": 1.0}, arrays)]
    projs = [Projection("l1.ee", "input", "l1.e", "exc", "dense", w_ee),
             Projection("l1.ie", "input", "l1.i", "exc", "dense", w_ie),
             Projection("l1.sub", "l1.i", "l1.e", "sub", "pointwise", w_ei)]
    if divisive:
        projs.append(Projection("l1.div", "l1.i", "l1.e", "div", "pointwise",
                                w_ei * gain_i[None, :]))
    return EIGraph("dense", 4, pops, projs, {"population": "input", "encoding": encoding},
                   {"population": "l1.e", "mode": readout_mode, "classes": n_e},
                   {"stabilisation": "adaptive", "eps": 1e-3})


def rows_with_nnz(counts: list[int], width: int, rng: np.random.Generator) -> np.ndarray:
    """A non-negative matrix whose row r has exactly counts[r] non-zero entries."""
    w = np.zeros((len(counts), width))
    for r, k in enumerate(counts):
        w[r, rng.choice(width, size=k, replace=False)] = rng.uniform(0.1, 1.0, size=k)
    return w


def vgg_graph(plan: tuple[int | str, ...], in_shape: tuple[int, int, int], classes: int,
              rng: np.random.Generator, density: float = 1.0, ei_ratio: int = 4,
              stride: int = 1, padding: int = 1) -> EIGraph:
    """A VGG-style E-I graph as lowering makes it: conv W_EE/W_IE, point-wise W_EI, pools as
    ``attrs["pool"]`` of the next projections, then a dense readout layer."""
    def weights(*shape: int) -> np.ndarray:
        w = rng.random(shape, dtype=np.float32)
        if density < 1.0:
            w *= rng.random(shape, dtype=np.float32) < density
        return w

    pops = [Population("input", "input", in_shape)]
    projs: list[Projection] = []
    source, (c, h, wd), pool = "input", in_shape, 1
    for index, entry in enumerate(plan):
        if entry == "P":
            pool *= 2
            continue
        n_e, n_i, layer = int(entry), int(entry) // ei_ratio, f"features.{index}"
        hp, wp = h // pool, wd // pool
        h_out, w_out = (hp + 2 * padding - 3) // stride + 1, (wp + 2 * padding - 3) // stride + 1
        attrs = {"stride": stride, "padding": padding, **({"pool": pool} if pool > 1 else {})}
        w_ei = weights(n_e, n_i)
        pops += [Population(f"{layer}.inh", "inh", (n_i, h_out, w_out), layer,
                            {"response": "floor"}),
                 Population(f"{layer}.exc", "exc", (n_e, h_out, w_out), layer,
                            {"tau": 2.0, "v_threshold": 1.0},
                            {"gain_e": np.ones(n_e), "bias": np.zeros(n_e)})]
        projs += [Projection(f"{layer}.ee", source, f"{layer}.exc", "exc", "conv",
                             weights(n_e, c, 3, 3), attrs=dict(attrs)),
                  Projection(f"{layer}.ie", source, f"{layer}.inh", "exc", "conv",
                             weights(n_i, c, 3, 3), attrs=dict(attrs)),
                  Projection(f"{layer}.sub", f"{layer}.inh", f"{layer}.exc", "sub", "pointwise",
                             w_ei),
                  Projection(f"{layer}.div", f"{layer}.inh", f"{layer}.exc", "div", "pointwise",
                             w_ei * 0.5)]
        source, (c, h, wd), pool = f"{layer}.exc", (n_e, h_out, w_out), 1
    flat = c * (h // pool) * (wd // pool)
    n_i = max(1, classes // ei_ratio)
    attrs = {"pool": pool} if pool > 1 else {}
    pops += [Population("fc.inh", "inh", (n_i,), "fc", {"response": "floor"}),
             Population("fc.readout", "readout", (classes,), "fc", {"mode": "spiking"})]
    projs += [Projection("fc.ee", source, "fc.readout", "exc", "dense", weights(classes, flat),
                         attrs=dict(attrs)),
              Projection("fc.ie", source, "fc.inh", "exc", "dense", weights(n_i, flat),
                         attrs=dict(attrs)),
              Projection("fc.sub", "fc.inh", "fc.readout", "sub", "pointwise",
                         weights(classes, n_i))]
    return EIGraph("vgg", 4, pops, projs, {"population": "input", "encoding": "if"},
                   {"population": "fc.readout", "mode": "spiking", "classes": classes},
                   {"stabilisation": "adaptive", "eps": 1e-3})


# --------------------------------------------------------------------------- the target
def test_dynapse2_target_describes_the_stack_board(dynapse2: Target) -> None:
    t = dynapse2
    assert (t.chips_per_board, t.cores_per_chip, t.neurons_per_core) == (4, 4, 256)
    assert t.core_grid == (2, 2)
    assert (t.neurons_per_chip, t.cores_per_board, t.neurons_per_board) == (1024, 16, 4096)
    assert t.cam_entries_per_neuron == 64
    assert (t.sram_entries_per_neuron, t.sram_reserved, t.usable_sram) == (4, 1, 3)
    assert (t.tags, t.tag_bits, t.hop_range) == (2048, 11, (-7, 7))
    assert (t.base_weights_per_core, t.weight_mask_bits, t.weight_levels) == (4, 4, 15)
    assert t.dendrites == {"none": 0, "ampa": 1024, "gaba": 512, "nmda": 256, "shunt": 128}
    assert [t.dendrite_code(k) for k in ("exc", "sub", "div")] == [1024, 512, 128]
    for name in ("SOIF_LEAK_N", "SOIF_SPKTHR_P", "SOIF_REFR_N", "SOIF_GAIN_N", "SOIF_DC_P",
                 "DEAM_ETAU_P", "DEGA_ITAU_P", "DESC_ITAU_P", "DENM_ETAU_P", "SYPD_EXT_N"):
        assert name in t.bias_names
    assert t.weight_biases == ("SYAM_W0_P", "SYAM_W1_P", "SYAM_W2_P", "SYAM_W3_P")
    assert t.delay_classes == 4 and len(t.delay_biases) == 3
    # rockpool's tables spell the delay biases SYPD_DYL*; samna SYPD_DLY*.
    assert t.rockpool_bias_name("SYPD_DLY0_P") == "SYPD_DYL0_P"
    assert t.rockpool_bias_name("SOIF_LEAK_N") == "SOIF_LEAK_N"
    assert len(t.bias_names) + len(t.chip_bias_names) == 56  # rockpool's scale table
    assert t.with_chips(1).neurons_per_board == 1024
    json.dumps(t.to_dict())


def test_bias_names_match_rockpool_tables(dynapse2: Target) -> None:
    scaling = pytest.importorskip("rockpool.devices.dynapse.lookup.scaling")
    table = scaling.scale_factor_se2
    names = {dynapse2.rockpool_bias_name(n) for n in dynapse2.bias_names + dynapse2.chip_bias_names}
    assert names == set(table)


def test_tiny_target_and_known_names(tiny: Target) -> None:
    assert {"dynapse2", "tiny"} <= set(known_targets())
    assert (tiny.chips_per_board, tiny.cores_per_chip, tiny.neurons_per_core) == (1, 2, 16)
    assert (tiny.cam_entries_per_neuron, tiny.usable_sram, tiny.tags) == (8, 3, 64)
    assert tiny.weight_levels == 15
    assert load_target(HARDWARE_DIR / "tiny.toml") == tiny
    assert load_target(str(HARDWARE_DIR / "tiny.toml")) == tiny


def test_unknown_target_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown target 'loihi'.*dynapse2, tiny"):
        load_target("loihi")


@pytest.mark.parametrize("old, new, field", [
    ("neurons = 16", 'neurons = "many"', "core.neurons"),
    ("cam_entries = 8", "cam_entries = 0", "neuron.cam_entries"),
    ("sram_reserved = 1", "sram_reserved = 4", "neuron.sram_reserved"),
    ("core_grid = [1, 2]", "core_grid = [2, 2]", "chip.core_grid"),
    ("tags = 64", "tags = 65", "routing.tags"),
    ('sub = "gaba"', 'sub = "glycine"', "kinds.sub"),
    ("mask_bits = 4", "mask_bits = 4\nlevels = 15", "weights.levels"),
    ("[board]\n", "[board]\nchip = 2\n", "board.chip"),
    ("chips = 1\n", "", "board.chips"),
])
def test_malformed_target_file_names_the_file_and_field(tmp_path: Path, old: str, new: str,
                                                        field: str) -> None:
    text = (HARDWARE_DIR / "tiny.toml").read_text()
    assert old in text
    path = tmp_path / "broken.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(TargetError) as err:
        load_target(str(path))
    assert str(path) in str(err.value) and f"'{field}'" in str(err.value)


def test_target_file_that_is_not_toml_or_missing_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("name = [unclosed\n")
    with pytest.raises(TargetError, match=f"{path}: not valid TOML"):
        load_target(str(path))
    with pytest.raises(TargetError, match="no such target file"):
        load_target(str(tmp_path / "absent.toml"))


# --------------------------------------------------------------------------- the rules
def test_graph_that_fits_the_tiny_target_passes(tiny: Target) -> None:
    rng = np.random.default_rng(0)
    graph = dense_ei_graph(rows_with_nnz([3, 4, 2, 4], 6, rng), rows_with_nnz([6], 6, rng),
                           rows_with_nnz([1, 1, 1, 1], 1, rng), role="readout", divisive=False)
    report = check(graph, tiny)
    assert report.ok and report.violations == []
    s = report.summary
    assert (s["neurons"], s["cores"], s["chips"], s["input_channels"]) == (5, 2, 1, 6)
    assert s["populations"]["l1.e"]["fan_in"]["max"] == 5
    assert s["populations"]["l1.e"]["fan_in"]["worst_neuron"] == 1
    assert s["populations"]["l1.e"]["fan_in"]["histogram"] == {"values": [3, 4, 5],
                                                                "counts": [1, 1, 2]}
    w_ee = graph.projections[0].weight
    assert s["populations"]["l1.e"]["sources"] == np.count_nonzero(w_ee.any(axis=0)) + 1
    assert "OK: no violations" in report.format()


def test_fan_in_over_cam_names_each_neuron_and_counts_inhibition_twice(tiny: Target) -> None:
    rng = np.random.default_rng(1)
    w_ee = rows_with_nnz([6, 5, 6, 2], 6, rng)
    w_ei = rows_with_nnz([2, 2, 1, 2], 2, rng)
    graph = dense_ei_graph(w_ee, rows_with_nnz([6, 6], 6, rng), w_ei)
    kinds = fan_in(graph, "l1.e")
    assert kinds["exc"].tolist() == [6, 5, 6, 2]
    assert kinds["sub"].tolist() == kinds["div"].tolist() == [2, 2, 1, 2]

    report = check(graph, tiny)
    [v] = [v for v in report.violations if v.rule == "fan-in"]
    assert (v.population, v.layer, v.neuron, v.needed, v.limit) == ("l1.e", "l1", 0, 10, 8)
    assert v.neurons.tolist() == [0, 1] and v.needs.tolist() == [10, 9] and v.count == 2
    assert "6 AMPA + 2 GABA + 2 SHUNT" in v.message
    assert "target.fan_in" in v.hint and "<= 8" in v.hint
    worst = report.summary["populations"]["l1.e"]["fan_in"]
    assert worst["worst_by_dendrite"] == {"ampa": 6, "gaba": 2, "shunt": 2}
    # A zero weight is no synapse: it costs no CAM entry.
    w_ee[0, np.flatnonzero(w_ee[0])[:2]] = 0.0
    rows = check(dense_ei_graph(w_ee, rows_with_nnz([6, 6], 6, rng), w_ei), tiny)
    [v] = [v for v in rows.violations if v.rule == "fan-in"]
    assert v.neurons.tolist() == [1] and v.needs.tolist() == [9]


def test_too_large_network_reports_every_violation_at_once(tiny: Target) -> None:
    rng = np.random.default_rng(2)
    graph = dense_ei_graph(rng.random((40, 20)), rng.random((10, 20)), rng.random((40, 10)))
    report = check(graph, tiny)
    rules = {v.rule: v for v in report.violations}
    assert {"neurons", "cores", "chips", "fan-in"} <= set(rules)
    assert (rules["neurons"].needed, rules["neurons"].limit) == (50, 32)
    assert (rules["cores"].needed, rules["cores"].limit) == (3 + 1, 2)  # E 3 cores, I 1 core
    assert (rules["chips"].needed, rules["chips"].limit) == (2, 1)
    assert "--chips N" in rules["cores"].hint
    fan = [v for v in report.violations if v.rule == "fan-in"]
    assert {v.population: (v.needed, v.count) for v in fan} == {"l1.e": (40, 40),
                                                               "l1.i": (20, 10)}
    text = report.format()
    for rule in ("fan-in", "neurons", "cores", "chips"):
        assert f"{rule}: " in text
    assert "40 neuron(s) of layer l1 E exceed 8 CAM entries (worst neuron 0 needs 40" in text
    # A bigger board removes the size violations but not the fan-in.
    bigger = {v.rule for v in check(graph, tiny.with_chips(2)).violations}
    assert "chips" not in bigger and "cores" not in bigger and "fan-in" in bigger


def test_analog_input_current_readout_and_analog_interneurons_are_reported(
        tiny: Target) -> None:
    rng = np.random.default_rng(3)
    graph = dense_ei_graph(rows_with_nnz([2, 2], 4, rng), rows_with_nnz([2], 4, rng),
                           np.ones((2, 1)), role="readout", divisive=False, encoding="direct",
                           readout_mode="current", response="identity")
    report = check(graph, tiny)
    rules = {v.rule: v for v in report.violations}
    assert set(rules) == {"spike-input", "spiking-readout", "spiking-inhibition"}
    assert rules["spike-input"].hint == "recipe target.input_encoding: if"
    assert "'direct'" in rules["spike-input"].message
    assert rules["spiking-readout"].hint == "recipe target.spiking_readout: true"
    assert rules["spiking-readout"].population == "l1.e"
    assert rules["spiking-inhibition"].population == "l1.i"
    assert "inhibitory: floor" in rules["spiking-inhibition"].hint
    for encoding in ("spikes", "rate", "if"):
        graph.input["encoding"] = encoding
        assert "spike-input" not in {v.rule for v in check(graph, tiny).violations}


def test_bias_that_varies_inside_a_core_is_reported(tiny: Target) -> None:
    rng = np.random.default_rng(4)
    w_ee, w_ie = rows_with_nnz([2] * 16, 4, rng), rows_with_nnz([2], 4, rng)
    w_ei = np.ones((16, 1))
    varying = check(dense_ei_graph(w_ee, w_ie, w_ei, bias=np.arange(16) * 0.1), tiny)
    [v] = [v for v in varying.violations if v.rule == "per-neuron-bias"]
    assert (v.population, v.neuron, v.needed, v.limit, v.count) == ("l1.e", 0, 16, 1, 16)
    assert "target.bias" in v.hint
    constant = check(dense_ei_graph(w_ee, w_ie, w_ei, bias=np.full(16, 0.3)), tiny)
    assert constant.ok


def test_per_channel_bias_is_fine_when_each_channel_fills_whole_cores(tiny: Target) -> None:
    # Two channels of 4x4 = 16 neurons: one tiny core per channel, so a per-channel bias holds.
    rng = np.random.default_rng(5)
    graph = vgg_graph((2,), (1, 4, 4), 4, rng, ei_ratio=2)
    graph.population("features.0.exc").arrays["bias"] = np.array([0.1, 0.2])
    assert "per-neuron-bias" not in {v.rule for v in check(graph, tiny).violations}
    # With 8 neurons per core the two channels would still each fill whole cores...
    small_cores = dataclasses.replace(tiny, neurons_per_core=8)
    assert "per-neuron-bias" not in {v.rule for v in check(graph, small_cores).violations}
    # ... but with 32 a core holds both channels and two bias values.
    big_cores = dataclasses.replace(tiny, neurons_per_core=32)
    [v] = [v for v in check(graph, big_cores).violations if v.rule == "per-neuron-bias"]
    assert (v.needed, v.count) == (2, 32)


def test_sparse_fan_in_counts_each_non_zero_synapse() -> None:
    graph = dense_ei_graph(np.ones((3, 5)), np.ones((1, 5)), np.ones((3, 1)))
    graph.projections[0] = Projection(
        "l1.ee", "input", "l1.e", "exc", "sparse", np.array([1.0, 2.0, 0.0, 1.0, 1.0]),
        np.array([[0, 0], [0, 1], [1, 2], [2, 3], [2, 4]]))
    assert fan_in(graph, "l1.e")["exc"].tolist() == [2, 0, 2]


def _brute_force_conv(w: np.ndarray, pooled_hw: tuple[int, int], out_hw: tuple[int, int],
                      stride: int, padding: int) -> np.ndarray:
    """Non-zero synapses of each output neuron by walking every tap of every neuron."""
    c_out, c_in, k, _ = w.shape
    counts = np.zeros((c_out, *out_hw), np.int64)
    for c in range(c_out):
        for y in range(out_hw[0]):
            for x in range(out_hw[1]):
                for ky in range(k):
                    for kx in range(k):
                        iy, ix = y * stride - padding + ky, x * stride - padding + kx
                        if 0 <= iy < pooled_hw[0] and 0 <= ix < pooled_hw[1]:
                            counts[c, y, x] += np.count_nonzero(w[c, :, ky, kx])
    return counts


@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 1), (1, 0)])
def test_conv_fan_in_is_exact_per_neuron_including_borders_and_pools(stride: int,
                                                                     padding: int) -> None:
    rng = np.random.default_rng(6)
    # 13 x 13 maps: the 2-pool drops the last row and column (floor), as AvgPool2d does.
    graph = vgg_graph((4, "P", 6), (2, 13, 13), 3, rng, density=0.4, ei_ratio=2,
                      stride=stride, padding=padding)
    e1 = graph.population("features.2.exc")
    ee = next(p for p in graph.projections if p.name == "features.2.ee")
    assert ee.attrs["pool"] == 2
    src = graph.population("features.0.exc")
    pooled_hw = (src.shape[1] // 2, src.shape[2] // 2)
    expected = _brute_force_conv(ee.weight, pooled_hw, e1.shape[1:], stride, padding) * 4
    kinds = fan_in(graph, "features.2.exc")
    assert np.array_equal(kinds["exc"], expected.reshape(-1))
    w_ei = next(p for p in graph.projections if p.name == "features.2.sub").weight
    assert np.array_equal(kinds["sub"].reshape(e1.shape),
                          np.broadcast_to(np.count_nonzero(w_ei, axis=1)[:, None, None],
                                          e1.shape))
    # Distinct sources: pooled pixels that some non-zero tap of some output reads, x 4 neurons.
    tap_any = np.any(ee.weight != 0, axis=0)
    heard = set()
    for ci in range(tap_any.shape[0]):
        for y in range(e1.shape[1]):
            for x in range(e1.shape[2]):
                for ky, kx in np.argwhere(tap_any[ci]):
                    iy, ix = y * stride - padding + ky, x * stride - padding + kx
                    if 0 <= iy < pooled_hw[0] and 0 <= ix < pooled_hw[1]:
                        heard.add((ci, iy, ix))
    div = next(p for p in graph.projections if p.name == "features.2.div").weight
    inh_heard = np.count_nonzero(np.any(w_ei != 0, axis=0) | np.any(div != 0, axis=0))
    summary = check(graph, load_target("dynapse2")).summary["populations"]["features.2.exc"]
    assert summary["sources"] == 4 * len(heard) + inh_heard * e1.shape[1] * e1.shape[2]


def test_counting_conv_without_unrolling_agrees_with_unrolled_synapses(dynapse2: Target) -> None:
    """Cross-check with lowering's ``unroll_conv`` (explicit sparse synapses, pools expanded)."""
    unroll_conv = getattr(pytest.importorskip("eideploy.graph.unroll"), "unroll_conv", None)
    if unroll_conv is None:
        pytest.skip("eideploy.graph.unroll has no unroll_conv yet")
    graph = vgg_graph((4, "P", 6, "P"), (2, 13, 13), 4, np.random.default_rng(8), density=0.5,
                      ei_ratio=2)
    unrolled = unroll_conv(graph)
    assert {p.op for p in unrolled.projections} <= {"sparse", "dense"}
    conv_summary = check(graph, dynapse2).summary["populations"]
    sparse_summary = check(unrolled, dynapse2).summary["populations"]
    for pop in graph.populations[1:]:
        ours, theirs = fan_in(graph, pop.name), fan_in(unrolled, pop.name)
        for kind in ("exc", "sub", "div"):
            assert np.array_equal(ours[kind], theirs[kind]), (pop.name, kind)
        assert conv_summary[pop.name]["sources"] == sparse_summary[pop.name]["sources"]


def test_vgg8_is_checked_in_under_a_second_with_the_right_worst_fan_in(
        dynapse2: Target) -> None:
    rng = np.random.default_rng(7)
    plan = (64, "P", 128, "P", 256, "P", 512, "P", 512, "P")
    graph = vgg_graph(plan, (3, 32, 32), 10, rng, density=0.9)
    assert graph.population("features.0.exc").size == 64 * 32 * 32

    start = time.perf_counter()
    report = check(graph, dynapse2)
    elapsed = time.perf_counter() - start  # printed below; speed is benchmarks/' business

    # Expected worst fan-in, from the weights alone: an interior neuron of channel c hears every
    # non-zero tap of its kernel (x k*k for a k-pooled source) plus its non-zero W_EI entries
    # once as GABA and once as SHUNT; border neurons hear fewer. The last conv's 2 x 2 map has
    # no interior neuron: every neuron there reads only 4 of the 9 taps (walked by hand).
    pops = report.summary["populations"]
    for pop in graph.populations:
        if pop.role == "input":
            continue
        into = [p for p in graph.projections if p.target == pop.name]
        worst = pops[pop.name]["fan_in"]
        assert sum(worst["worst_by_dendrite"].values()) == worst["max"]
        if len(pop.shape) == 3 and min(pop.shape[1:]) < 3:
            ee = next(p for p in into if p.op == "conv")
            src = graph.population(ee.source)
            hw = (src.shape[1] // ee.attrs["pool"], src.shape[2] // ee.attrs["pool"])
            per_neuron = _brute_force_conv(ee.weight, hw, pop.shape[1:], 1, 1) * 4
            per_neuron += sum(np.count_nonzero(p.weight, axis=1)[:, None, None]
                              for p in into if p.op == "pointwise")
            assert worst["max"] == int(per_neuron.max()) < 9 * 512 * 4, pop.name
            continue
        per_channel = sum(np.count_nonzero(p.weight.reshape(p.weight.shape[0], -1), axis=1)
                          * int(p.attrs.get("pool", 1)) ** 2 for p in into)
        assert worst["max"] == int(per_channel.max()), pop.name
        channel = worst["worst_position"][0] if len(pop.shape) == 3 else worst["worst_neuron"]
        assert per_channel[channel] == per_channel.max()
        if len(pop.shape) == 3:  # the worst neuron is a real interior neuron of that channel
            _, y, x = worst["worst_position"]
            assert 1 <= y < pop.shape[1] - 1 and 1 <= x < pop.shape[2] - 1

    # With dense weights: 3 * 9 = 27 AMPA entries per neuron of the first conv, 2 x 16 more
    # (GABA + SHUNT from 64 / 4 interneurons) per E neuron; the readout after a 2-pool of a
    # 64 x 32 x 32 map hears 4 neurons per pooled value, plus its 2 interneurons once (GABA).
    first = check(vgg_graph(plan[:2], (3, 32, 32), 10, rng), dynapse2).summary["populations"]
    assert first["features.0.inh"]["fan_in"]["max"] == 27
    assert first["features.0.exc"]["fan_in"]["max"] == 27 + 2 * 16
    assert first["fc.readout"]["fan_in"]["max"] == 64 * 16 * 16 * 4 + 2

    rules = {v.rule for v in report.violations}
    assert {"fan-in", "neurons", "cores", "chips", "tags"} <= rules
    fan = {v.population: v for v in report.violations if v.rule == "fan-in"}
    assert "features.0.exc" not in fan  # 59 <= 64 at most
    assert fan["features.2.exc"].count == 128 * 16 * 16  # even corner neurons need > 64
    # Tags: the readout hears 512 x 2 x 2 pooled neurons + 2 interneurons in its one core; the
    # last conv's 512 interneurons hear all 512 x 4 x 4 neurons of the layer before. They share
    # the interneurons' parameter group and do not start it, so they may start part-way into a
    # core and span up to 3 cores: some core hears at least ceil(8192 / 3) of those sources.
    tags = {v.population: (v.needed, v.limit) for v in report.violations if v.rule == "tags"}
    assert tags == {"fc.readout": (2050, 2048), "features.8.inh": (-(-512 * 16 // 3), 2048)}
    assert pops["features.8.inh"]["cores_spanned_max"] == 3
    assert pops["features.0.inh"]["cores_spanned_max"] == pops["features.0.inh"]["cores"]
    print(f"VGG-8 DRC: {elapsed * 1e3:.1f} ms")
