"""Chip-faithful, mismatch-robust fine-tuning: train through what the analog chip computes.

After QAT the model computes the quantized graph exactly; the analog chip does not
(docs/analog-model.md, issue 12): inhibition lags, E neurons reset hard and stay refractory,
currents are mismatched per core and per device, and the ten readout neurons' mismatch alone
reorders classes whose counts differ by less than ~1.5 times. This stage fine-tunes the model
through ``eideploy.nn.chip`` (the analog model's equations in model units, differentiable) on
the chip the exporter will configure:

1. each epoch the model is compiled as the exporter compiles it (``compile_graph``): the per-core
   codebooks are installed as in QAT (``attach_quantizers``; the weights stay on the exporter's
   levels, straight-through), and the circuit constants are read from the configuration's bias
   codes (``analog.core_biases``: the same currents the analog simulator uses);
2. every batch draws one chip's mismatch (log-normal, per core and per device,
   ``nn.chip.draw_mismatch``) and runs the batch through it; the loss is the cross-entropy of
   ``beta * log(1 + readout score)`` (the host decides by count, so the margin that survives a
   per-class gain factor is a ratio of counts: a log), plus ``model_weight`` times the discrete
   (QAT) model's cross-entropy, so the digital chain keeps its accuracy;
3. the epoch kept is the one with the best mean accuracy of the chip model over fixed mismatch
   draws on the test split, among the epochs whose discrete accuracy stays within
   ``max_model_drop`` points of the QAT model's.

Nothing in the E-I graph changes: the result exports, quantizes and simulates (integer, ONNX)
exactly as before.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..nn import EILinear, project_nonnegative_
from ..nn import functional as EF
from ..nn.chip import (
    ChipConstants,
    ChipLayer,
    NeuronConstants,
    draw_mismatch,
    readout_scores,
    run_chip,
)

__all__ = ["ChipFaithfulSettings", "chip_constants", "chip_layers", "chip_logits",
           "chip_accuracy", "compile_for_chip", "fine_tune"]


@dataclass(frozen=True)
class ChipFaithfulSettings:
    """The ``train.chip_faithful`` recipe section (docs/hardware-aware.md)."""

    epochs: int = 6
    lr: float = 0.005
    batch_size: int = 128
    mismatch: float = 0.15          # per-device log-normal sigma of every training draw
    core_mismatch: float = 0.05     # per-core sigma, shared by a core's devices
    substeps: int = 10
    beta: float = 3.0               # logits = beta * log(1 + score)
    model_weight: float = 0.5       # weight of the discrete (QAT) model's cross-entropy
    eval_draws: int = 3             # mismatch draws scored per epoch (fixed seeds)
    robust_epochs: int = 0          # discrete epochs with mismatch noise before the chip epochs
    robust_lr: float = 0.01
    robust_sigma: float = 0.25      # log-normal sigma of the noise on E and readout currents
    max_model_drop: float = 1.0     # points of discrete accuracy an epoch may lose
    seed: int = 0
    readout_only: bool = False      # train the readout layer's parameters only


# --------------------------------------------------------------------------- the chip's numbers
def compile_for_chip(model: nn.Module, target: Any) -> dict[str, Any]:
    """The configuration the exporter would write for ``model`` (``compile_graph`` on the
    lowered graph), as a ``dynapse2.json`` document."""
    from ..graph.lowering import lower
    from ..targets.dynapse2.compile import compile_graph

    return compile_graph(lower(getattr(model, "module", model)), target).config


def chip_constants(config: Mapping[str, Any], *, substeps: int = 10
                   ) -> tuple[ChipConstants, dict[str, NeuronConstants]]:
    """Model-unit constants of every non-input population of ``config`` (module doc of
    ``nn.chip``), from the currents the analog simulator uses (``analog.core_biases``)."""
    from ..targets.dynapse2 import biases
    from ..targets.dynapse2.analog import I_0, core_biases
    from ..targets.dynapse2.compile import (
        DC_BIAS,
        GAIN_BIAS,
        LEAK_BIAS,
        PULSE_BIAS,
        REFRACTORY_BIAS,
        SYNAPSE_TAU_BIAS,
        THRESHOLD_BIAS,
    )

    unit, step = biases.WEIGHT_UNIT_CURRENT, biases.DT_SECONDS
    cores = core_biases(config)
    keys = sorted(cores)
    graph = config["graph"]
    sizes = {p["name"]: int(np.prod(p["shape"])) for p in graph["populations"]}
    roles = {p["name"]: p["role"] for p in graph["populations"]}
    values: dict[str, dict[str, np.ndarray]] = {}
    for chip in config["chips"]:
        for core in chip["cores"]:
            key = (int(chip["id"]), int(core["id"]))
            cur = cores[key].currents
            for s in core["populations"]:
                name = s["population"]
                n = sizes[name]
                rec = values.setdefault(name, {f: np.zeros(n) for f in (
                    "leak", "gain", "threshold", "dc", "refractory", "core")})
                part = slice(int(s["start"]), int(s["stop"]))
                rec["leak"][part] = cur.get(LEAK_BIAS, 0.0) / unit
                rec["gain"][part] = cur[GAIN_BIAS] / unit
                rec["threshold"][part] = cur[THRESHOLD_BIAS] / unit
                rec["dc"][part] = cur[DC_BIAS] / unit
                rec["refractory"][part] = biases.V_TH * biases.C_REF / cur[REFRACTORY_BIAS] / step
                rec["core"][part] = keys.index(key)
    populations = {}
    for name, rec in values.items():
        reset = "hard" if roles[name] == "exc" else "count"
        # the DPI's leak is never 0: its smallest code (~0.3 pA) stands for "no leak"
        rec["leak"] = np.maximum(rec["leak"], 1e-6)
        populations[name] = NeuronConstants(
            *(torch.tensor(rec[f], dtype=torch.float32) for f in (
                "leak", "gain", "threshold", "dc", "refractory")),
            core=torch.tensor(rec["core"], dtype=torch.long), reset=reset)
    # synapse time constants and pulse width: the E (or readout) cores' (the chip model has one
    # per dendrite)
    exc_cores = [k for k in keys if cores[k].role != "inh"] or keys
    cur = cores[exc_cores[0]].currents
    tau_syn = {d: biases.U_T * biases.C_DENDRITE[d] / (biases.KAPPA * cur[SYNAPSE_TAU_BIAS[d]])
               / step for d in ("ampa", "gaba", "shunt")}
    t_pulse = biases.V_TH * biases.C_PULSE / cur[PULSE_BIAS] / step
    h = 1.0 / substeps
    half_pulse = int(round(0.5 * t_pulse / h))  # a pulse's charge arrives around its middle
    delay = {"exc": half_pulse + _excitation_delay(config, cores) // h,
             "inh_in": half_pulse, "sub": half_pulse}
    division = graph.get("division", {})
    eps = float(division.get("eps") or 1.0)
    k0 = biases.C_MEM * biases.U_T / (biases.KAPPA * unit * step)
    return ChipConstants(k0=k0, i0=I_0 / unit, eps=eps, tau_syn=tau_syn,
                         substeps=int(substeps),
                         delay={k: int(v) for k, v in delay.items()}), populations


def _excitation_delay(config: Mapping[str, Any], cores: Mapping[Any, Any]) -> float:
    """The delay (steps) of the AMPA entries onto E and readout neurons: their CAM entries'
    most common delay class and its core-shared delay current (analog.cam_delay_classes;
    0 for a configuration, or a simulator, without delay classes)."""
    from ..targets.dynapse2 import analog, biases
    from ..targets.dynapse2.config import config_to_graph

    if not hasattr(analog, "cam_delay_classes"):
        return 0.0
    graph = config_to_graph(config)
    classes = analog.cam_delay_classes(config, graph)
    roles = {p.name: p.role for p in graph.populations}
    found = [c for p in graph.projections if p.kind == "exc" and roles[p.target] != "inh"
             and p.name in classes for c in np.asarray(classes[p.name]).ravel()]
    if not found or np.bincount(found).argmax() == 0:
        return 0.0
    cls = int(np.bincount(found).argmax())
    name = list(config["target"].get("delay_biases", analog.DELAY_BIASES))[cls - 1]
    currents = [c.currents[name] for c in cores.values() if c.role != "inh" and name in
                c.currents]
    if not currents:
        return 0.0
    return float(np.mean(analog.delay_seconds(np.array(currents)))) / biases.DT_SECONDS


def chip_layers(model: nn.Module, populations: Mapping[str, NeuronConstants]
                ) -> list[ChipLayer]:
    """The model's E-I layers as the chip holds them: quantized through each layer's installed
    QAT quantizer (straight-through), g_E folded into AMPA and GABA, g_I into SHUNT (as
    ``qat.LayerQuantizer`` computes them; float weights where no quantizer is installed)."""
    net = getattr(model, "module", model)
    out = []
    for name, layer in net.named_modules():
        if not isinstance(layer, EILinear):
            continue
        w_ee, w_ie, w_ei = layer.effective_weights()
        w_ei = EF.scale_grad(w_ei, layer.options.grad_scale(layer.fan_in))
        q = layer.quantizer
        if layer.readout:
            exc_w, sub_w, div_w = w_ee, w_ei, None
        else:
            g_e = layer.gain_e[:, None]
            exc_w, sub_w, div_w = g_e * w_ee, g_e * w_ei, w_ei * layer.gain_i[None, :]
        inh_w = w_ie
        if q is not None:
            ampa, gaba, shunt = (q.dendrite[k] for k in ("exc", "sub", "div"))
            exc_w, sub_w, inh_w = q.exc(exc_w, ampa), q.exc(sub_w, gaba), q.inh(w_ie, ampa)
            div_w = None if div_w is None else q.exc(div_w, shunt)
        exc_name = f"{name}.{'readout' if layer.readout else 'exc'}"
        out.append(ChipLayer(exc_w, inh_w, sub_w, div_w, populations[exc_name],
                             populations[f"{name}.inh"]))
    return out


def _input_spikes(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    net = getattr(model, "module", model)
    spikes = net.encode_input(x)
    return spikes.reshape(net.T, -1, int(np.prod(net.in_shape)))


def chip_logits(model: nn.Module, x: torch.Tensor, chip: ChipConstants,
                populations: Mapping[str, NeuronConstants], *, beta: float,
                mismatch: float = 0.0, core_mismatch: float = 0.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """``beta * log(1 + score)`` of the readout of one chip (one mismatch draw) on batch ``x``."""
    layers = chip_layers(model, populations)
    mm = (draw_mismatch(layers, mismatch, core_mismatch, generator)
          if mismatch > 0 or core_mismatch > 0 else None)
    run = run_chip(_input_spikes(model, x), layers, chip, mm)
    return beta * torch.log1p(readout_scores(run))


@torch.no_grad()
def chip_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chip: ChipConstants,
                  populations: Mapping[str, NeuronConstants], *, mismatch: float,
                  core_mismatch: float = 0.0, draws: int = 1, seed: int = 0,
                  batch_size: int = 512) -> list[float]:
    """Accuracy (percent) of the chip model per mismatch draw (draw ``i``: seed ``seed + i``)."""
    out = []
    for i in range(draws):
        gen = torch.Generator().manual_seed(seed + i)
        layers = chip_layers(model, populations)
        mm = (draw_mismatch(layers, mismatch, core_mismatch, gen)
              if mismatch > 0 or core_mismatch > 0 else None)
        hits = 0
        for start in range(0, len(y), batch_size):
            xb = x[start:start + batch_size]
            run = run_chip(_input_spikes(model, xb), layers, chip, mm)
            hits += int((readout_scores(run).argmax(1) == y[start:start + batch_size]).sum())
        out.append(100.0 * hits / len(y))
    return out


# --------------------------------------------------------------------------- discrete phase
def noisy_discrete_logits(model: nn.Module, x: torch.Tensor, *, sigma: float, beta: float,
                          generator: torch.Generator | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """The discrete (QAT) model with one draw of per-neuron log-normal factors on every E-I
    layer's output current (hidden ``I_int``, readout ``o[t]``): the part of the chip's mismatch
    that scales a neuron's rate. Returns ``(robust logits, plain logits)``: ``beta * log(1 +
    count)`` of a readout whose membrane is floored at 0 as the DPI's is (no reset: the count
    is the charge over ``theta_out``), and the model's own ``mean_t o[t]`` (no noise)."""
    net = getattr(model, "module", model)
    handles = []

    def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        f = torch.exp(sigma * torch.randn(output.shape[-1], generator=generator))
        return output * f.to(output.dtype)

    try:
        handles = [m.register_forward_hook(hook) for m in net.modules()
                   if isinstance(m, EILinear)]
        seq = net.forward_sequence(x)
    finally:
        for h in handles:
            h.remove()
    v = torch.zeros_like(seq[0])
    for o in seq:
        v = torch.relu(v + o)
    theta = net.theta_out or 1.0
    robust = beta * torch.log1p(v / theta)
    return robust, net.forward_sequence(x).mean(0)


def _discrete_phase(model: nn.Module, target: Any, s: ChipFaithfulSettings,
                    batches: Callable[[int], Any], momentum: float,
                    log: Callable[[str], None]) -> None:
    from .qat import attach_quantizers

    opt = torch.optim.SGD(model.parameters(), lr=s.robust_lr, momentum=momentum)
    gen = torch.Generator().manual_seed(s.seed + 1)
    for epoch in range(1, s.robust_epochs + 1):
        model.train()
        attach_quantizers(model, target, seed=0)
        lr = 0.5 * s.robust_lr * (1 + math.cos(math.pi * (epoch - 1) / s.robust_epochs))
        for group in opt.param_groups:
            group["lr"] = lr
        total, seen = 0.0, 0
        for x, y in batches(1000 + epoch):
            robust, plain = noisy_discrete_logits(model, x, sigma=s.robust_sigma, beta=s.beta,
                                                  generator=gen)
            loss = F.cross_entropy(robust, y) + s.model_weight * F.cross_entropy(plain, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            project_nonnegative_(model)
            total += float(loss.detach()) * len(y)
            seen += len(y)
        log(f"robust-readout epoch {epoch}/{s.robust_epochs}: loss {total / max(seen, 1):.3f}")


# --------------------------------------------------------------------------- the loop
def fine_tune(model: nn.Module, target: Any, settings: ChipFaithfulSettings,
              batches: Callable[[int], Any], x_test: torch.Tensor, y_test: torch.Tensor, *,
              momentum: float = 0.9, weight_decay: float = 0.0,
              log: Callable[[str], None] = print,
              on_best: Callable[[nn.Module, list[dict[str, float]]], None] | None = None,
              ) -> tuple[nn.Module, list[dict[str, float]]]:
    """Fine-tune ``model`` (QAT done) through the chip model; returns the kept model and one
    metrics row per epoch. ``batches(epoch)`` yields ``(x, y)`` training batches; ``on_best``
    is called with the model whenever an epoch becomes the one kept."""
    from .qat import attach_quantizers, detach_quantizers

    s = settings
    params = list(model.parameters())
    if s.readout_only:
        last = [m for m in model.modules() if isinstance(m, EILinear)][-1]
        params = list(last.parameters())
    opt = torch.optim.SGD(params, lr=s.lr, momentum=momentum, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(s.seed)
    history: list[dict[str, float]] = []

    def score(epoch: int) -> dict[str, float]:
        model.eval()
        attach_quantizers(model, target, seed=0)
        chip, pops = chip_constants(compile_for_chip(model, target), substeps=s.substeps)
        with torch.no_grad():
            acc_model = 100.0 * float((model.predict(x_test) == y_test).float().mean())
        nominal = chip_accuracy(model, x_test, y_test, chip, pops, mismatch=0.0)[0]
        draws = chip_accuracy(model, x_test, y_test, chip, pops, mismatch=s.mismatch,
                              core_mismatch=s.core_mismatch, draws=s.eval_draws,
                              seed=10_000)
        row = {"epoch": epoch, "model_accuracy": acc_model, "chip_accuracy": nominal,
               "chip_mismatch_accuracy": float(np.mean(draws))}
        log(f"chip-faithful epoch {epoch}: discrete {acc_model:.2f}%, chip model {nominal:.2f}%"
            f", with {100 * s.mismatch:g}% mismatch {row['chip_mismatch_accuracy']:.2f}%")
        return row

    first = score(0)
    history.append({**first, "phase": "qat"})
    floor = first["model_accuracy"] - s.max_model_drop
    best_state, best = copy.deepcopy(model.state_dict()), first["chip_mismatch_accuracy"]
    if s.robust_epochs:
        _discrete_phase(model, target, s, batches, momentum, log)
        row = {**score(0), "phase": "robust"}
        history.append(row)
        if row["model_accuracy"] >= floor and row["chip_mismatch_accuracy"] > best:
            best, best_state = row["chip_mismatch_accuracy"], copy.deepcopy(model.state_dict())
            if on_best is not None:
                on_best(model, history)
    iters = 0
    total = max(1, s.epochs)
    for epoch in range(1, s.epochs + 1):
        model.train()
        attach_quantizers(model, target, seed=0)
        chip, pops = chip_constants(compile_for_chip(model, target), substeps=s.substeps)
        t0 = time.perf_counter()
        loss_sum, seen = 0.0, 0
        for x, y in batches(epoch):
            lr = 0.5 * s.lr * (1 + math.cos(math.pi * (epoch - 1 + 0.0) / total))
            for group in opt.param_groups:
                group["lr"] = lr
            logits = chip_logits(model, x, chip, pops, beta=s.beta, mismatch=s.mismatch,
                                 core_mismatch=s.core_mismatch, generator=gen)
            loss = F.cross_entropy(logits, y)
            if s.model_weight > 0:
                loss = loss + s.model_weight * F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            project_nonnegative_(model)
            iters += 1
            loss_sum += float(loss.detach()) * len(y)
            seen += len(y)
        row = score(epoch)
        row.update(train_loss=loss_sum / max(seen, 1), epoch_seconds=time.perf_counter() - t0)
        history.append(row)
        if row["model_accuracy"] >= floor and row["chip_mismatch_accuracy"] > best:
            best, best_state = row["chip_mismatch_accuracy"], copy.deepcopy(model.state_dict())
            if on_best is not None:
                on_best(model, history)
    model.load_state_dict(best_state)
    detach_quantizers(model)
    return model, history


def settings_from_recipe(section: Any) -> ChipFaithfulSettings:
    """The recipe's ``train.chip_faithful`` section (a pydantic model or a mapping)."""
    data = section.model_dump() if hasattr(section, "model_dump") else dict(section)
    return ChipFaithfulSettings(**data)


def run_after_qat(model: nn.Module, recipe: Any, target: Any, train_set: Any, test_set: Any,
                  run_dir: Any, *, qat_epochs: int = 1, log: Callable[[str], None] = print
                  ) -> nn.Module:
    """The recipe stage (``train.chip_faithful``): fine-tune the best QAT model of the run
    (``run_dir/model.pt``) through the chip model, keep it as ``qat.pt`` and write the result
    to ``model.pt`` with its per-epoch figures in ``chip_faithful.json``."""
    import json
    import shutil
    from pathlib import Path

    from ..data import iterate_batches
    from .checkpoint import load_model, save_checkpoint
    from .recipe import RecipeError

    if target is None or qat_epochs < 1:
        raise RecipeError(f"recipe {recipe.name}: train.chip_faithful fine-tunes a model on the "
                          "chip's codebooks: it needs a target section with qat_epochs >= 1")
    run_dir = Path(run_dir)
    settings = settings_from_recipe(recipe.train.chip_faithful)
    best, _ = load_model(run_dir / "model.pt")
    model.load_state_dict(best.state_dict())
    model = model.cpu()
    shutil.copyfile(run_dir / "model.pt", run_dir / "qat.pt")
    x_test, y_test = (torch.cat(parts) for parts in zip(*iterate_batches(
        test_set, 4096, shuffle=False), strict=True))

    def batches(epoch: int):
        gen = torch.Generator().manual_seed(recipe.seed * 100003 + 7919 * epoch)
        return iterate_batches(train_set, settings.batch_size, shuffle=True, generator=gen)

    model, history = fine_tune(model, target, settings, batches, x_test, y_test,
                               momentum=recipe.train.momentum, log=log)
    metrics = {"chip_faithful": history,
               "best_test_accuracy": max(r["model_accuracy"] for r in history)}
    save_checkpoint(run_dir / "model.pt", model, recipe=recipe.to_dict(), metrics=metrics)
    (run_dir / "chip_faithful.json").write_text(json.dumps(history, indent=2))
    return model
