"""Per-core DYNAP-SE2 weight codebooks: 4 base weights, 4-bit masks, 16 levels."""

from __future__ import annotations

import time

import numpy as np
import pytest

from eideploy.quant import (
    Codebook,
    fit_codebook,
    fixed_ladder_codebook,
    kind_scales,
    quantization_stats,
    quantize,
    quantize_per_core,
    subset_sums,
)

CORE = (256, 64)  # neurons x CAM entries of one core


def relative_rmse(w: np.ndarray, codebook: Codebook) -> float:
    return quantization_stats(w, quantize(w, codebook)[1]).relative_rmse


def test_levels_are_the_16_subset_sums_in_mask_order():
    codebook = Codebook(np.array([1.0, 10.0, 100.0, 1000.0]))
    expected = [sum(b for k, b in enumerate((1, 10, 100, 1000)) if m >> k & 1) for m in range(16)]
    assert codebook.levels.tolist() == expected
    assert codebook.levels[0] == 0 and codebook.levels[15] == 1111


@pytest.mark.parametrize("distribution, margin", [
    # measured (seed 0): exponential 9.19% vs 9.37%, lognormal 18.39% vs 20.52%
    ("exponential", 0.985),
    ("lognormal", 0.92),
])
def test_fitted_codebook_beats_the_best_scaled_ladder(distribution, margin):
    rng = np.random.default_rng(0)
    w = (rng.exponential(0.1, CORE) if distribution == "exponential"
         else rng.lognormal(0.0, 1.0, CORE))
    fitted, ladder = relative_rmse(w, fit_codebook(w)), relative_rmse(w, fixed_ladder_codebook(w))
    assert fitted < margin * ladder
    # and both are far better than the ladder scaled to the largest weight
    naive = Codebook(w.max() / 15 * np.array([1.0, 2.0, 4.0, 8.0]))
    assert ladder < 0.8 * relative_rmse(w, naive)


def test_fit_is_never_worse_than_the_ladder_it_starts_from():
    rng = np.random.default_rng(3)
    for w in (rng.exponential(1.0, 4000), np.abs(rng.normal(size=4000)), rng.uniform(size=4000),
              rng.gamma(0.5, 1.0, 4000)):
        assert fit_codebook(w).sse <= fixed_ladder_codebook(w).sse * (1 + 1e-12)


def test_fixed_ladder_has_bases_in_ratio_1_2_4_8():
    w = np.random.default_rng(1).exponential(0.1, CORE)
    bases = fixed_ladder_codebook(w).bases
    np.testing.assert_allclose(bases / bases[0], [1, 2, 4, 8])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exactly_representable_weights_are_reconstructed_exactly(seed):
    rng = np.random.default_rng(seed)
    bases = rng.uniform(0.05, 1.0, 4)  # not a ladder: levels interleave out of mask order
    masks = rng.integers(0, 16, CORE)
    w = subset_sums(bases)[masks]
    codebook = fit_codebook(w, seed=seed)
    got_masks, recon = quantize(w, codebook)
    assert np.max(np.abs(recon - w)) < 1e-9
    np.testing.assert_allclose(np.sort(codebook.bases), np.sort(bases), rtol=1e-9)
    assert np.array_equal(got_masks == 0, masks == 0)


def test_fit_is_deterministic_for_a_seed():
    w = np.random.default_rng(5).lognormal(0.0, 1.0, CORE)
    a, b = fit_codebook(w, seed=7), fit_codebook(w, seed=7)
    assert a.bases.tobytes() == b.bases.tobytes() and a.start == b.start


def test_zeros_stay_zero_and_do_not_pull_the_bases():
    rng = np.random.default_rng(2)
    w = rng.exponential(0.1, CORE)
    w_sparse = np.where(rng.random(CORE) < 0.7, 0.0, w)
    padded = np.concatenate([w_sparse.ravel(), np.zeros(50_000)])
    np.testing.assert_array_equal(fit_codebook(w_sparse).bases, fit_codebook(padded).bases)
    masks, recon = quantize(w_sparse, fit_codebook(w_sparse))
    assert np.all(masks[w_sparse == 0] == 0) and np.all(recon[w_sparse == 0] == 0)
    assert masks.dtype == np.uint8 and masks.shape == CORE


def test_weights_nearer_zero_than_the_smallest_level_are_dropped_and_counted():
    codebook = Codebook(np.array([1.0, 2.0, 4.0, 8.0]))
    w = np.array([0.0, 0.4, 0.5, 0.6, 1.4, 15.0, 40.0])
    masks, recon = quantize(w, codebook)
    # 0.5 is halfway between 0 and 1: ties go to the smaller level
    assert masks.tolist() == [0, 0, 0, 1, 1, 15, 15]
    assert recon.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 15.0, 15.0]
    stats = quantization_stats(w, recon)
    assert stats.dropped == 2 and stats.n_synapses == 6
    assert stats.max_error == pytest.approx(25.0)


def test_equal_levels_take_the_lowest_mask():
    masks, _ = quantize(np.array([3.0]), Codebook(np.array([1.0, 2.0, 3.0, 8.0])))
    assert masks.tolist() == [3]  # 1 + 2 (mask 3) before 3 alone (mask 4)


def test_quantize_per_core_reports_error_and_drops_per_core():
    rng = np.random.default_rng(4)
    groups = {(0, c): rng.exponential(0.1, CORE) for c in range(3)}
    out = quantize_per_core(groups, seed=0)
    assert list(out) == list(groups)
    for core, (codebook, masks, recon, stats) in out.items():
        w = groups[core]
        assert masks.shape == w.shape and recon.shape == w.shape
        np.testing.assert_array_equal(recon, codebook.levels[masks])
        err = recon - w
        assert stats.rmse == pytest.approx(np.sqrt(np.mean(err ** 2)))
        assert stats.relative_rmse == pytest.approx(np.linalg.norm(err) / np.linalg.norm(w))
        assert stats.dropped == int(np.sum((masks == 0) & (w > 0))) > 0
        assert stats.relative_rmse < 0.11
    # a core's result does not depend on the other cores
    alone = quantize_per_core({(0, 2): groups[(0, 2)]}, seed=0)[(0, 2)]
    np.testing.assert_array_equal(alone.codebook.bases, out[(0, 2)].codebook.bases)


def test_sixteen_full_cores_quantize_in_a_few_seconds():
    rng = np.random.default_rng(0)
    groups = {c: rng.exponential(0.1, CORE) for c in range(16)}
    t0 = time.perf_counter()
    quantize_per_core(groups, seed=0)
    assert time.perf_counter() - t0 < 5.0  # about 0.6 s on one CPU core


def test_kind_scales_keep_small_shunt_weights_from_being_dropped():
    rng = np.random.default_rng(6)
    kinds = {"exc": rng.exponential(0.1, (256, 48)), "div": rng.exponential(0.003, (256, 16))}
    joint = fit_codebook(np.concatenate([k.ravel() for k in kinds.values()]))
    dropped = quantization_stats(kinds["div"], quantize(kinds["div"], joint)[1]).dropped
    assert dropped > 0.99 * kinds["div"].size  # measured: 4092 of 4096 SHUNT synapses dropped
    scales = kind_scales(kinds)
    shared = fit_codebook(np.concatenate([(k / scales[n]).ravel() for n, k in kinds.items()]))
    div = kinds["div"] / scales["div"]
    assert quantization_stats(div, quantize(div, shared)[1]).relative_rmse < 0.15


def test_bad_weights_are_refused():
    with pytest.raises(ValueError, match="non-negative"):
        fit_codebook(np.array([0.1, -0.2]))
    with pytest.raises(ValueError, match="NaN"):
        quantize(np.array([np.nan]), Codebook(np.ones(4)))
    empty = fit_codebook(np.zeros(10))
    assert np.all(empty.levels == 0) and quantize(np.zeros(3), empty)[0].tolist() == [0, 0, 0]
