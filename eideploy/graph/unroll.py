"""Convolutions as explicit synapses (``unroll_conv``): numpy only, so the compiler and the
simulators read and unroll graphs without loading torch."""

from __future__ import annotations

import copy

import numpy as np

from .ir import EIGraph, Projection

__all__ = ["unroll_conv"]


def unroll_conv(graph: EIGraph) -> EIGraph:
    """A copy of ``graph`` whose conv, point-wise and pooled projections are explicit synapses.

    For targets that store every synapse (CAM entries on DYNAP-SE2): each becomes ``sparse`` with
    ``indices`` (nnz, 2) of (target, source) neuron numbers (C-major), zero weights dropped,
    entries sorted by target then source. A pool is folded in exactly as the average it is:
    ``weight / k^2`` on each of the k x k source neurons of a pooled pixel. Dense projections
    without a pool stay dense. The input graph is not modified.
    """
    out = copy.deepcopy(graph)
    shapes = {p.name: tuple(p.shape) for p in out.populations}
    for index, proj in enumerate(out.projections):
        pool = int(proj.attrs.get("pool", 1))
        if proj.op in ("dense", "sparse") and pool == 1:
            continue
        target, source, weight = _synapses(proj, shapes[proj.source], shapes[proj.target])
        out.projections[index] = Projection(
            proj.name, proj.source, proj.target, proj.kind, "sparse", weight,
            np.stack([target, source], axis=1).astype(np.int64),
            {"unrolled_from": proj.op})
    out.meta = {**out.meta, "unrolled": True}
    out.validate()
    return out


def _synapses(proj: Projection, source_shape: tuple[int, ...], target_shape: tuple[int, ...]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(target, source, weight) of every non-zero synapse of ``proj``, pool expanded, sorted."""
    pool = int(proj.attrs.get("pool", 1))
    src3 = _as_map(source_shape)
    c_s, h_s, w_s = src3
    pooled = (c_s, h_s // pool, w_s // pool)
    weight = np.asarray(proj.weight, dtype=np.float32)
    if proj.op in ("conv", "pointwise"):
        if proj.op == "pointwise":
            kernel = weight[:, :, None, None]
            stride, padding = 1, 0
        else:
            kernel = weight
            stride, padding = int(proj.attrs.get("stride", 1)), int(proj.attrs.get("padding", 0))
        target, (c, h, w), value = _conv_synapses(kernel, stride, padding, pooled,
                                                  _as_map(target_shape)[1:])
    elif proj.op == "dense":
        target, flat_source = np.nonzero(weight)
        value = weight[target, flat_source]
        c, h, w = np.unravel_index(flat_source, pooled)
    else:  # sparse over the pooled map
        target, flat_source = proj.indices[:, 0], proj.indices[:, 1]
        keep = weight != 0
        target, flat_source, value = target[keep], flat_source[keep], weight[keep]
        c, h, w = np.unravel_index(flat_source, pooled)
    # Expand each pooled pixel into its k x k source neurons (broadcast over a trailing axis).
    dy, dx = np.divmod(np.arange(pool * pool), pool)
    rows = h[:, None] * pool + dy[None, :]
    cols = w[:, None] * pool + dx[None, :]
    source = (c[:, None] * h_s + rows) * w_s + cols
    target = np.broadcast_to(target[:, None], source.shape).ravel()
    source = source.ravel()
    value = np.repeat(value / np.float32(pool * pool), pool * pool).astype(np.float32)
    order = np.lexsort((source, target))
    return (target[order].astype(np.int64), source[order].astype(np.int64),
            np.ascontiguousarray(value[order]))


def _as_map(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """A dense population ``(n,)`` is a 1x1 map with n channels (how W_EI acts on it)."""
    if len(shape) == 1:
        return (int(shape[0]), 1, 1)
    c, h, w = shape
    return (int(c), int(h), int(w))


def _conv_synapses(kernel: np.ndarray, stride: int, padding: int, source: tuple[int, int, int],
                   out_hw: tuple[int, int]
                   ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """Every in-bounds, non-zero (output neuron, input pixel) pair of a convolution.

    Built on the broadcast grid (C_out, H_out, W_out, C_in, k, k): one candidate per kernel tap
    per output pixel, so the work is the synapse count itself, with no loop over neurons.
    """
    c_out, c_in, kh, kw = kernel.shape
    _, h_in, w_in = source
    h_out, w_out = out_hw
    ho = np.arange(h_out)[None, :, None, None, None, None]
    wo = np.arange(w_out)[None, None, :, None, None, None]
    ki = np.arange(kh)[None, None, None, None, :, None]
    kj = np.arange(kw)[None, None, None, None, None, :]
    hi = ho * stride - padding + ki
    wi = wo * stride - padding + kj
    grid = (c_out, h_out, w_out, c_in, kh, kw)
    value_grid = np.broadcast_to(kernel[:, None, None, :, :, :], grid)
    keep = ((hi >= 0) & (hi < h_in) & (wi >= 0) & (wi < w_in)) & (value_grid != 0)
    sel = np.nonzero(keep)
    o_s, ho_s, wo_s, ci_s, ki_s, kj_s = sel
    target = (o_s * h_out + ho_s) * w_out + wo_s
    h_src = ho_s * stride - padding + ki_s
    w_src = wo_s * stride - padding + kj_s
    value = kernel[o_s, ci_s, ki_s, kj_s]
    return target, (ci_s, h_src, w_src), value
