"""The training loop of spec §7: projected SGD, warm-up + cosine per iteration, best-on-validation.

One function, ``train``, runs a recipe on one process or, under torchrun, on many with
DistributedDataParallel. It writes into the run directory:

* ``model.pt``: the best validation checkpoint (what ``eideploy export`` takes);
* ``latest.pt``: the last epoch with optimizer, schedule and RNG states, for ``--resume``;
* ``recipe.yaml``, ``metrics.csv`` (one row per epoch) and ``metrics.json`` (summary + history).

A recipe with a ``target`` section trains for the chip (docs/hardware-aware.md): the hardware
architecture takes its budgets, encoding and readout from it (:func:`build_from_recipe`),
``pruned`` layers are magnitude-pruned to their budget on the schedule
``target.prune_start``/``prune_epochs``, and ``target.qat_epochs`` quantization-aware epochs
(``qat.py``) follow ``train.epochs``: then ``float.pt`` keeps the best float model and
``model.pt`` the best QAT one. At the end, ``metrics.json`` gets a ``hardware`` block: for each
of them the torch accuracy, the design-rule check of its lowered graph and the accuracy of the
exported (quantized) graph on the test split.
"""

from __future__ import annotations

import csv
import json
import math
import random
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from ..data import DATASET_INFO, iterate_batches, load_dataset, train_augmentation
from ..data import eval_transform as data_eval_transform
from ..networks import build_network
from ..nn import EIOptions, constraint_violations, ei_init, is_initialised, project_nonnegative_
from ..nn.connectivity import pruning_budget
from ..nn.encoding import if_readout, readout_decision
from ..nn.init import ei_layers
from .checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from .distributed import DistContext, all_reduce_sum, broadcast_module_, setup_distributed
from .recipe import Recipe, RecipeError, recipe_from_dict
from .schedule import warmup_cosine

PROGRESS_EVERY = 10  # iterations between progress-bar readings of the running loss

__all__ = ["TrainResult", "train", "evaluate", "predict_batch", "build_from_recipe",
           "resolve_device"]


@dataclass
class TrainResult:
    run_dir: Path
    best_accuracy: float
    final_accuracy: float
    epochs: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    model: nn.Module | None = None  # the network after the last epoch (unwrapped from DDP)


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device is available here; use --device cpu")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise ValueError(f"--device {device!r}: use cpu, cuda or cuda:N")
    return torch.device(device)


def build_from_recipe(recipe: Recipe, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The recipe's network; a ``target`` section supplies the hardware architecture's budgets,
    connectivity, encoding and readout, and the options ``bias`` and divisor."""
    options = recipe.model.options.model_dump()
    args = dict(recipe.model.args)
    target = recipe.target
    if target is not None:
        options["bias"] = target.bias
        if target.divisor == "chip":  # the leak current is the divisor's floor (dynapse2.md §2)
            options.update(stabilisation="fixed-eps", eps=target.leak)
        else:
            options["stabilisation"] = "adaptive"
        try:
            budgets = target.budgets(len(args.get("widths") or []) + 1)
        except ValueError as exc:
            raise RecipeError(f"recipe {recipe.name}: {exc}") from None
        args.update(fan_in=budgets, fan_in_inh=target.fan_in_inh,
                    connectivity=target.connectivity, encoding=target.input_encoding,
                    theta_out=target.theta_out if target.spiking_readout else None,
                    window=target.window)
        args.setdefault("seed", target.seed if target.seed is not None else recipe.seed)
    return build_network(recipe.model.arch, in_shape=tuple(in_shape), num_classes=num_classes,
                         T=recipe.model.T, options=EIOptions.from_dict(options), **args)


def hardware_target(recipe: Recipe):
    """The recipe's target board (``target.name`` limited to ``target.chips``), or None."""
    if recipe.target is None:
        return None
    from ..targets.dynapse2.target import resolve_target

    return resolve_target(recipe.target.name, recipe.target.chips)


def prune_for_epoch(model: nn.Module, recipe: Recipe, epoch: int) -> list[int] | None:
    """Shrink the ``pruned`` layers' budgets for ``epoch`` (linear from dense, see
    ``nn.connectivity.pruning_budget``); returns K_in per layer, or None when nothing prunes."""
    net = getattr(model, "module", model)
    target = recipe.target
    if target is None or "pruned" not in getattr(net, "connectivity", ()):
        return None
    budgets = []
    for layer, kind, (k_in, k_inh) in zip(net.ei_layers(), net.connectivity, net.budgets,
                                          strict=True):
        if kind != "pruned":  # fixed connectivity: already at its budget
            budgets.append((k_in, k_inh))
            continue
        budgets.append((pruning_budget(layer.in_features, k_in, epoch, target.prune_start,
                                       target.prune_epochs),
                        pruning_budget(layer.n_i, k_inh, epoch, target.prune_start,
                                       target.prune_epochs)))
    net.prune_(budgets)
    return [k for k, _ in budgets]


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def predict_batch(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float logits ``(B, classes)`` and predicted classes of one batch: the largest logit, or for
    a spiking readout the most spikes with ties broken by the membrane (as on the chip)."""
    net = getattr(model, "module", model)
    theta_out = getattr(net, "theta_out", None)
    if theta_out is None:
        logits = model(x).float()
        return logits, logits.argmax(1)
    per_step = net.forward_sequence(x).float()
    return per_step.mean(0), readout_decision(*if_readout(per_step, theta_out))


def evaluate(model: nn.Module, dataset, *, batch_size: int, device: torch.device,
             transform: Callable | None = None, amp: bool = False,
             ctx: DistContext | None = None) -> dict[str, float]:
    """Top-1 accuracy (%) and mean cross-entropy; sharded over ranks and summed when distributed."""
    ctx = ctx or DistContext()
    model.eval()
    correct = loss_sum = count = 0.0
    with torch.no_grad(), _autocast(device, amp):
        for x, y in iterate_batches(dataset, batch_size, shuffle=False, device=device,
                                    augment=transform, rank=ctx.rank, world_size=ctx.world_size):
            logits, predicted = predict_batch(model, x)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += float((predicted == y).sum())
            count += y.numel()
    correct, loss_sum, count = all_reduce_sum([correct, loss_sum, count], device)
    return {"accuracy": 100.0 * correct / max(count, 1), "loss": loss_sum / max(count, 1)}


def _rng_state() -> dict[str, Any]:
    # Batches and augmentations draw from a generator seeded per epoch; these are the rest.
    state = {"torch": torch.get_rng_state(),
             "python": list(random.getstate()[1]), "python_version": random.getstate()[0],
             "python_gauss": random.getstate()[2]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _progress(enabled: bool):
    if not enabled:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"))


def _batches(dataset, batch_size: int, gen: torch.Generator, device: torch.device,
             augment: Callable | None, ctx: DistContext) -> Iterator:
    return iterate_batches(dataset, batch_size, shuffle=True, generator=gen, device=device,
                           augment=augment, rank=ctx.rank, world_size=ctx.world_size,
                           drop_last=False)


def train(recipe: Recipe, *, out_dir: str | Path | None = None, device: str | None = None,
          data_dir: str | None = None, epochs: int | None = None, resume: str | Path | None = None,
          progress: bool = True, log: Callable[[str], None] = print,
          stop_after: int | None = None) -> TrainResult:
    """Train ``recipe``; see the module docstring for what the run directory receives.

    ``epochs`` overrides the recipe's length (and so its schedule); ``stop_after`` ends this
    process after that epoch with the schedule unchanged, for jobs in time-limited slots that
    continue with ``resume``.
    """
    dev = resolve_device(device)
    ctx = setup_distributed(str(dev))
    if ctx.enabled and dev.type == "cuda":
        dev = torch.device("cuda", ctx.local_rank)
    resume_state = None
    if resume is not None:
        resume_state = read_checkpoint(resume)
        if "trainer" not in resume_state:
            raise CheckpointError(f"{resume}: has no trainer state; resume from the latest.pt of "
                                  "a run directory, not from model.pt")
        recipe = recipe_from_dict(resume_state["recipe"], f"{resume} (recipe)")
    if epochs is not None:
        recipe = recipe.model_copy(update={"train": recipe.train.model_copy(
            update={"epochs": epochs})})
    run_dir = Path(out_dir) if out_dir else Path("runs") / recipe.name
    if resume is not None and out_dir is None:
        run_dir = Path(resume).parent
    cfg, tcfg = recipe.data, recipe.train

    torch.manual_seed(recipe.seed)
    random.seed(recipe.seed)
    data_root = data_dir or cfg.data_dir
    T = recipe.model.T
    train_set = load_dataset(cfg.dataset, "train", data_root, T=T)
    test_set = load_dataset(cfg.dataset, "test", data_root, T=T)
    augment = train_augmentation(cfg.dataset) if cfg.augment else None
    eval_tf = data_eval_transform(cfg.dataset)
    in_shape = DATASET_INFO[cfg.dataset].input_shape  # one time step, after the eval transform
    model = build_from_recipe(recipe, in_shape, train_set.num_classes).to(dev)

    # data.batch_size is the global batch (the paper's 128); each process takes its share.
    if cfg.batch_size % ctx.world_size:
        raise ValueError(f"data.batch_size {cfg.batch_size} is not divisible by the "
                         f"{ctx.world_size} processes; choose a multiple of {ctx.world_size}")
    rank_batch = cfg.batch_size // ctx.world_size
    iters_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    total_iters = tcfg.epochs * iters_per_epoch
    warmup_iters = int(round(tcfg.warmup_epochs * iters_per_epoch))
    target = recipe.target
    hw_target = hardware_target(recipe)
    qat_epochs = target.qat_epochs if target is not None else 0
    qat_lr = (target.qat_lr or tcfg.lr / 10) if target is not None else 0.0
    all_epochs = tcfg.epochs + qat_epochs
    # Coupled L2 on every parameter that receives a gradient, gains and b_E included (spec §7).
    # One optimizer stands for the reference's two identical ones (clamped and free).
    opt = torch.optim.SGD(model.parameters(), lr=tcfg.init_lr, momentum=tcfg.momentum,
                          weight_decay=tcfg.weight_decay)

    def lr_at(it: int) -> float:
        if it < total_iters:
            return warmup_cosine(it, peak=tcfg.lr, init=tcfg.init_lr, warmup_iters=warmup_iters,
                                 total_iters=total_iters)
        # the QAT epochs: a fresh cosine from qat_lr down to 0
        done = (it - total_iters) / max(1, qat_epochs * iters_per_epoch)
        return 0.5 * qat_lr * (1.0 + math.cos(math.pi * min(done, 1.0)))

    history: list[dict[str, float]] = []
    start_epoch, iteration, best = 0, 0, -1.0
    is_ei = bool(ei_layers(model))

    if resume_state is not None:
        model.load_state_dict(resume_state["state_dict"])
        bad = constraint_violations(model)
        if bad:
            raise CheckpointError(f"{resume}: constrained parameter(s) {', '.join(bad[:5])} "
                                  "hold negative values; this is not a run eideploy wrote")
        st = resume_state["trainer"]
        opt.load_state_dict(st["optimizer"])
        start_epoch, iteration, best = st["next_epoch"], st["iteration"], st["best_accuracy"]
        history = list(st["history"])
        _set_rng_state(st["rng"])
        log(f"resuming {recipe.name} at epoch {start_epoch + 1}/{all_epochs} from {resume}")
    elif is_ei:
        # E-I Init on one augmented training batch, as the reference does; rank 0 then broadcasts.
        init_bs = tcfg.init_batch_size or cfg.batch_size
        x0, _ = next(iter(_batches(train_set, init_bs, torch.Generator().manual_seed(recipe.seed),
                                   dev, augment, DistContext())))
        if ctx.is_main:
            ei_init(model, x0, seed=recipe.seed)
        if ctx.enabled:
            broadcast_module_(model)
        if not is_initialised(model):
            raise RuntimeError("E-I Init did not reach every layer")

    net = model
    if ctx.enabled:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.local_rank] if dev.type == "cuda" else None)
    if tcfg.compile:
        net = torch.compile(net)

    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
        n_params = sum(p.numel() for p in model.parameters())
        log(f"{recipe.name}: {recipe.model.arch} ({n_params / 1e6:.3f}M parameters), "
            f"{len(train_set)} train / {len(test_set)} test samples, T={T}, device {dev}"
            + (f", {ctx.world_size} processes" if ctx.enabled else ""))

    t_start = time.perf_counter()
    bar = _progress(progress and ctx.is_main)
    final_acc = history[-1]["test_accuracy"] if history else float("nan")
    with bar if bar is not None else nullcontext():
        last = all_epochs if stop_after is None else min(all_epochs, stop_after)
        for epoch in range(start_epoch, last):
            net.train()
            extra: dict[str, float] = {}
            budgets = prune_for_epoch(model, recipe, epoch)
            if budgets is not None and ctx.is_main and target is not None \
                    and epoch < target.prune_start + target.prune_epochs:
                log(f"epoch {epoch + 1}: pruned layers keep at most {budgets} inputs per neuron")
            if epoch >= tcfg.epochs:
                from .qat import attach_quantizers

                if epoch == tcfg.epochs:
                    # the float phase's best is kept as float.pt; model.pt becomes the best
                    # QAT epoch (the model to export)
                    if ctx.is_main and (run_dir / "model.pt").is_file():
                        shutil.copyfile(run_dir / "model.pt", run_dir / "float.pt")
                    best = -1.0
                extra = {f"qat_{k}": v for k, v in
                         attach_quantizers(model, hw_target, seed=0).items()}
            epoch_gen = torch.Generator().manual_seed(recipe.seed * 100003 + epoch)
            task = bar.add_task(f"epoch {epoch + 1}/{all_epochs}", total=iters_per_epoch,
                                info="") if bar else None
            t0 = time.perf_counter()
            running = torch.zeros(2, dtype=torch.float64, device=dev)  # loss sum, correct
            seen = 0.0
            for x, y in _batches(train_set, rank_batch, epoch_gen, dev, augment, ctx):
                lr = lr_at(iteration)
                for group in opt.param_groups:
                    group["lr"] = lr
                with _autocast(dev, tcfg.amp):
                    logits = net(x).float()
                loss = F.cross_entropy(logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                project_nonnegative_(model)
                iteration += 1
                # Running sums stay on the device: reading them every step would stall a GPU.
                running += torch.stack([loss.detach().double() * y.numel(),
                                        (logits.detach().argmax(1) == y).sum().double()])
                seen += y.numel()
                if bar is not None:
                    info = None
                    if iteration % PROGRESS_EVERY == 0:
                        loss_sum, correct = running.tolist()
                        rate = seen * ctx.world_size / max(time.perf_counter() - t0, 1e-9)
                        info = (f"loss {loss_sum / seen:.3f} acc {100 * correct / seen:.1f}% "
                                f"lr {lr:.2e} {rate:.0f} samples/s")
                    bar.update(task, advance=1, **({"info": info} if info else {}))
            loss_sum, correct = running.tolist()
            train_time = time.perf_counter() - t0
            loss_sum, correct, seen = all_reduce_sum([loss_sum, correct, seen], dev)
            metrics = evaluate(model, test_set, batch_size=cfg.eval_batch_size, device=dev,
                               transform=eval_tf, amp=tcfg.amp, ctx=ctx)
            final_acc = metrics["accuracy"]
            row = {"epoch": epoch + 1, "train_loss": loss_sum / seen,
                   "train_accuracy": 100.0 * correct / seen, "test_loss": metrics["loss"],
                   "test_accuracy": metrics["accuracy"], "lr": lr_at(iteration - 1),
                   "epoch_seconds": train_time, "samples_per_second": seen / train_time,
                   **({"qat": float(epoch >= tcfg.epochs), **extra} if target is not None
                      else {})}
            history.append(row)
            improved = metrics["accuracy"] > best
            best = max(best, metrics["accuracy"])
            if bar is not None:
                bar.update(task, info=f"test acc {metrics['accuracy']:.2f}% (best {best:.2f}%)")
            if ctx.is_main:
                summary = {"best_test_accuracy": best, "final_test_accuracy": final_acc,
                           "epochs": epoch + 1}
                if improved:
                    save_checkpoint(run_dir / "model.pt", model, recipe=recipe.to_dict(),
                                    metrics={**summary, "epoch": epoch + 1})
                save_checkpoint(run_dir / "latest.pt", model, recipe=recipe.to_dict(),
                                metrics=summary, extra={
                                    "next_epoch": epoch + 1, "iteration": iteration,
                                    "best_accuracy": best, "history": history,
                                    "optimizer": opt.state_dict(), "rng": _rng_state()})
                _write_metrics(run_dir, history, summary)
    seconds = time.perf_counter() - t_start
    if qat_epochs:
        from .qat import detach_quantizers

        detach_quantizers(model)
    if ctx.is_main:
        log(f"{recipe.name}: best test accuracy {best:.2f}%, final {final_acc:.2f}% after "
            f"{all_epochs} epochs ({seconds:.1f} s); model written to {run_dir / 'model.pt'}")
        if hw_target is not None and last == all_epochs and (run_dir / "model.pt").is_file():
            hardware = hardware_summary(run_dir, test_set, hw_target,
                                        batch_size=cfg.eval_batch_size, transform=eval_tf)
            summary = json.loads((run_dir / "metrics.json").read_text())
            summary["hardware"] = hardware
            (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
            for name, rec in hardware.items():
                exported = rec["exported_accuracy"]
                log(f"{name}.pt: torch {rec['torch_accuracy']:.2f}%, exported (quantized) graph "
                    + (f"{exported:.2f}%" if exported is not None else "n/a")
                    + f", {rec['drc_violations']} design-rule violation(s)")
    return TrainResult(run_dir, best, final_acc, all_epochs, seconds, history, model)


def hardware_summary(run_dir: Path, test_set, target, *, batch_size: int = 256,
                     transform: Callable | None = None) -> dict[str, dict[str, Any]]:
    """For ``model.pt`` (and ``float.pt`` when QAT ran): the torch test accuracy, the design-rule
    check of its lowered graph on ``target``, and the test accuracy of the float graph and of the
    exported (quantized) graph, both run by the float executor."""
    from ..graph.execute import FloatExecutor
    from ..graph.lowering import lower
    from ..targets.dynapse2.compile import compile_graph
    from ..targets.dynapse2.drc import check
    from .checkpoint import load_model

    cpu = torch.device("cpu")
    out: dict[str, dict[str, Any]] = {}
    for name in ("float.pt", "model.pt"):
        path = run_dir / name
        if not path.is_file():
            continue
        model, _ = load_model(path)
        torch_acc = evaluate(model, test_set, batch_size=batch_size, device=cpu,
                             transform=transform)["accuracy"]
        graph = lower(model)
        report = check(graph, target)
        record: dict[str, Any] = {"torch_accuracy": torch_acc,
                                  "drc_violations": len(report.violations),
                                  "exported_accuracy": None}
        if report.ok:
            compiled = compile_graph(graph, target)
            executors = (FloatExecutor(graph), FloatExecutor(compiled.qgraph.graph))
            hits = [0, 0]
            count = 0
            for x, y in iterate_batches(test_set, batch_size, shuffle=False, device=cpu,
                                        augment=transform):
                for i, executor in enumerate(executors):
                    hits[i] += int((executor.predict(x.numpy()) == y.numpy()).sum())
                count += y.numel()
            summary = compiled.summary()
            record.update(graph_accuracy=100.0 * hits[0] / count,
                          exported_accuracy=100.0 * hits[1] / count,
                          quantization_relative_rmse=summary["quantization"]["relative_rmse"],
                          neurons=summary["neurons"], cores=summary["cores"],
                          chips=summary["chips"], max_fan_in=summary["cam"]["max_per_neuron"],
                          dropped_synapses=summary["dropped_synapses"])
        out[name.removesuffix(".pt")] = record
    return out


def _write_metrics(run_dir: Path, history: list[dict[str, float]], summary: dict) -> None:
    with open(run_dir / "metrics.csv", "w", newline="") as fh:
        # QAT epochs add columns: the header is every key, in order of first appearance
        writer = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for r in history for k in r)))
        writer.writeheader()
        writer.writerows(history)
    (run_dir / "metrics.json").write_text(json.dumps({**summary, "history": history}, indent=2))
