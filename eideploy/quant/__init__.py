"""Quantization for targets: per-core weight codebooks (numpy and scipy only, no rockpool/jax)."""

from .codebook import (
    Codebook,
    CoreQuantization,
    QuantStats,
    fit_codebook,
    fixed_ladder_codebook,
    kind_scales,
    quantization_stats,
    quantize,
    quantize_per_core,
    subset_sums,
)

__all__ = ["Codebook", "CoreQuantization", "QuantStats", "fit_codebook", "fixed_ladder_codebook",
           "kind_scales", "quantization_stats", "quantize", "quantize_per_core", "subset_sums"]
