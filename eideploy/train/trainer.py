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
``model.pt`` the best QAT one. Training stops there: the hardware fit of the result (design
rules, exported accuracy) is the pipeline's (``eideploy.pipeline.train``), since training never
runs the compiler.

``train`` is named steps: :func:`resolve_run`, :func:`setup_run` (data, model, optimizer),
:func:`init_or_resume`, :func:`choose_run_threads`, then per epoch :func:`begin_epoch`
(pruning, QAT), :func:`train_epoch`, :func:`evaluate_epoch` and :func:`save_epoch`
(the checkpoints).

Guards (issue 15): the run directory is ``runs/NAME`` (the recipe's name is one plain path
component) unless ``out_dir`` is given; a directory that already holds a run is refused unless
``overwrite`` (``resume`` continues a run in its own directory); a non-finite loss or weight stops
training with :class:`TrainingDiverged`, naming the iteration and the recipe keys to look at,
before a checkpoint of it is written.
"""

from __future__ import annotations

import csv
import json
import math
import os
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

from ..data import (
    carve_validation,
    dataset_identity,
    input_shape_of,
    iterate_batches,
    load_recipe_data,
    train_augmentation,
)
from ..data import eval_transform as data_eval_transform
from ..networks import build_network
from ..nn import EIOptions, constraint_violations, ei_init, is_initialised, project_nonnegative_
from ..nn.connectivity import pruning_budget
from ..nn.encoding import class_sums, if_readout, readout_decision
from ..nn.init import ei_layers
from .checkpoint import (
    CheckpointError,
    check_state_dict,
    load_model,
    printable,
    read_resume_state,
    save_checkpoint,
)
from .distributed import DistContext, all_reduce_sum, broadcast_module_, setup_distributed
from .recipe import Recipe, RecipeError, recipe_from_dict
from .schedule import warmup_cosine
from .threads import ThreadChoice, choose_threads, step_flops

PROGRESS_EVERY = 10  # iterations between progress-bar readings of the running loss

#: What a run directory receives; one holding any of these is a run (never overwritten silently).
RUN_FILES = ("model.pt", "latest.pt", "float.pt", "recipe.yaml", "metrics.csv", "metrics.json")
#: The recipe keys that set the step size of SGD: where to look when training diverges.
DIVERGENCE_KEYS = ("train.lr", "train.init_lr", "train.warmup_epochs", "train.momentum",
                   "train.weight_decay")

__all__ = ["TrainResult", "TrainSetup", "TrainState", "TrainingDiverged", "RUN_FILES", "train",
           "evaluate", "predict_batch",
           "build_from_recipe", "resolve_device", "resolve_run", "setup_run", "init_or_resume",
           "choose_run_threads",
           "begin_epoch", "train_epoch", "evaluate_epoch", "save_epoch"]


class TrainingDiverged(ValueError):
    """The loss or the weights became NaN or infinite: training stops (exit code 2) before the
    diverged model is saved; the message names the iteration and the recipe keys to look at."""


@dataclass
class TrainResult:
    run_dir: Path
    best_accuracy: float
    final_accuracy: float
    epochs: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    model: nn.Module | None = None  # the network after the last epoch (unwrapped from DDP)
    recipe: Recipe | None = None  # the recipe that ran (a resumed run's own, epochs applied)
    #: "validation" (data.validation_split): best_accuracy is then the test accuracy of the
    #: checkpoint chosen on the validation split, final_accuracy the last validation accuracy
    selected_on: str = "test"

    @property
    def completed(self) -> bool:
        """Whether every epoch of the schedule has run (not stopped early by ``stop_after``)."""
        return len(self.history) >= self.epochs


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
    copies = int(getattr(net, "readout_copies", 1))  # a trained population readout
    counts, membrane = if_readout(per_step, theta_out)
    return (class_sums(per_step.mean(0), copies) / copies,
            readout_decision(class_sums(counts, copies), class_sums(membrane, copies)))


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


@dataclass
class TrainSetup:
    """What a run fixes before its first epoch: device and processes, data, model, optimizer and
    schedule (built by :func:`setup_run`)."""

    recipe: Recipe
    run_dir: Path
    device: torch.device
    ctx: DistContext
    train_set: Any
    test_set: Any
    augment: Callable | None
    eval_tf: Callable | None
    model: nn.Module
    optimizer: torch.optim.Optimizer
    rank_batch: int  # data.batch_size is the global batch (the paper's 128); a rank's share
    iters_per_epoch: int
    hw_target: Any  # the recipe's target board, or None
    qat_epochs: int
    qat_lr: float
    data_identity: dict[str, Any] | None = None  # name, location, per split sha256 and size
    val_set: Any = None  # held out of train_set to choose the best checkpoint (or None)

    @property
    def total_iters(self) -> int:
        return self.recipe.train.epochs * self.iters_per_epoch

    @property
    def all_epochs(self) -> int:
        return self.recipe.train.epochs + self.qat_epochs

    def lr_at(self, it: int) -> float:
        """Warm-up + cosine per iteration over train.epochs (spec §7), then for the QAT epochs
        a fresh cosine from qat_lr down to 0."""
        tcfg = self.recipe.train
        if it < self.total_iters:
            return warmup_cosine(it, peak=tcfg.lr, init=tcfg.init_lr,
                                 warmup_iters=int(round(tcfg.warmup_epochs * self.iters_per_epoch)),
                                 total_iters=self.total_iters)
        done = (it - self.total_iters) / max(1, self.qat_epochs * self.iters_per_epoch)
        return 0.5 * self.qat_lr * (1.0 + math.cos(math.pi * min(done, 1.0)))


@dataclass
class TrainState:
    """What changes from epoch to epoch; ``latest.pt`` keeps it (with the optimizer and the RNG
    states) for ``--resume``."""

    next_epoch: int = 0
    iteration: int = 0
    best: float = -1.0
    history: list[dict[str, float]] = field(default_factory=list)
    selected_on: str = "test"  # the split that chooses model.pt: test, or validation

    @property
    def final_accuracy(self) -> float:
        return self.history[-1][f"{self.selected_on}_accuracy"] if self.history else float("nan")

    def summary(self) -> dict[str, float]:
        return {f"best_{self.selected_on}_accuracy": self.best,
                f"final_{self.selected_on}_accuracy": self.final_accuracy,
                "epochs": self.next_epoch}


@dataclass
class EpochTotals:
    """One epoch's training pass, summed over ranks."""

    loss_sum: float
    correct: float
    seen: float
    seconds: float


def train(recipe: Recipe, *, out_dir: str | Path | None = None, device: str | None = None,
          data_dir: str | None = None, epochs: int | None = None, resume: str | Path | None = None,
          progress: bool = True, log: Callable[[str], None] = print,
          stop_after: int | None = None, threads: int | None = None,
          overwrite: bool = False) -> TrainResult:
    """Train ``recipe``; see the module docstring for what the run directory receives.

    ``epochs`` overrides the recipe's length (and so its schedule); ``stop_after`` ends this
    process after that epoch with the schedule unchanged, for jobs in time-limited slots that
    continue with ``resume``. ``threads`` sets torch's intra-op threads for the run (default: by
    the work per step, see ``threads.py``); the caller's setting is restored at the end.
    ``overwrite`` lets a new run replace the run already in its directory.
    """
    recipe, resume_state, run_dir = resolve_run(recipe, out_dir=out_dir, epochs=epochs,
                                                resume=resume, overwrite=overwrite)
    dev, ctx = _device_and_processes(device)
    threads_before = torch.get_num_threads()
    try:
        run = setup_run(recipe, run_dir, dev, ctx, data_dir=data_dir)
        state = init_or_resume(run, resume_state, resume, log)
        state.selected_on = "validation" if run.val_set is not None else "test"
        choice = choose_run_threads(run, threads)
        torch.set_num_threads(choice.threads)
        net = _wrap_for_training(run)
        if overwrite and resume_state is None and ctx.is_main:
            for name in RUN_FILES:  # the old run's files, so none of them outlives it
                (run_dir / name).unlink(missing_ok=True)
        _start_run_directory(run, choice, log)
        t_start = time.perf_counter()
        last = run.all_epochs if stop_after is None else min(run.all_epochs, stop_after)
        bar = _progress(progress and ctx.is_main)
        with bar if bar is not None else nullcontext():
            for epoch in range(state.next_epoch, last):
                extra = begin_epoch(run, state, epoch, log)
                task = bar.add_task(f"epoch {epoch + 1}/{run.all_epochs}",
                                    total=run.iters_per_epoch, info="") if bar else None
                totals = train_epoch(run, state, net, epoch, bar, task)
                improved = evaluate_epoch(run, state, epoch, totals, extra)
                if bar is not None:
                    bar.update(task, info=f"{state.selected_on} acc {state.final_accuracy:.2f}% "
                                          f"(best {state.best:.2f}%)")
                elif ctx.is_main:  # no bar (a log, a pipe): one line per epoch instead
                    log(f"epoch {epoch + 1}/{run.all_epochs}: {state.selected_on} accuracy "
                        f"{state.final_accuracy:.2f}% (best {state.best:.2f}%), "
                        f"{state.history[-1]['epoch_seconds']:.1f} s")
                if ctx.is_main:
                    save_epoch(run, state, improved)
        seconds = time.perf_counter() - t_start
        if run.qat_epochs:
            from .qat import detach_quantizers

            detach_quantizers(run.model)
        if recipe.train.chip_faithful is not None and ctx.is_main and last == run.all_epochs:
            from .chip_faithful import run_after_qat

            run_after_qat(run.model, recipe, run.hw_target, run.train_set, run.test_set,
                          run_dir, qat_epochs=run.qat_epochs, log=log)
    finally:
        torch.set_num_threads(threads_before)
    if ctx.is_main and state.selected_on == "validation":
        return _test_once(run, state, seconds, log)
    if ctx.is_main:
        log(f"{recipe.name}: best test accuracy {state.best:.2f}%, final "
            f"{state.final_accuracy:.2f}% after {run.all_epochs} epochs ({seconds:.1f} s); "
            f"model written to {run_dir / 'model.pt'}")
    return TrainResult(run_dir, state.best, state.final_accuracy, run.all_epochs, seconds,
                       state.history, run.model, recipe)


def _test_once(run: TrainSetup, state: TrainState, seconds: float,
               log: Callable[[str], None]) -> TrainResult:
    """The test split's one look: the accuracy of model.pt, the checkpoint the validation split
    chose, logged and added to metrics.json as ``test_accuracy``."""
    chosen, _ = load_model(run.run_dir / "model.pt", run.device)
    test = evaluate(chosen, run.test_set, batch_size=run.recipe.data.eval_batch_size,
                    device=run.device, transform=run.eval_tf)["accuracy"]
    _write_metrics(run.run_dir, state.history, {**state.summary(), "test_accuracy": test})
    log(f"{run.recipe.name}: test accuracy {test:.2f}% of the checkpoint chosen on the "
        f"validation split (best validation {state.best:.2f}%, final "
        f"{state.final_accuracy:.2f}%) after {run.all_epochs} epochs ({seconds:.1f} s); model "
        f"written to {run.run_dir / 'model.pt'}")
    return TrainResult(run.run_dir, test, state.final_accuracy, run.all_epochs, seconds,
                       state.history, run.model, run.recipe, selected_on="validation")


def _device_and_processes(device: str | None) -> tuple[torch.device, DistContext]:
    """The torch device and, under torchrun, this process's place in the group (each rank
    takes its own GPU)."""
    dev = resolve_device(device)
    ctx = setup_distributed(str(dev))
    if ctx.enabled and dev.type == "cuda":
        dev = torch.device("cuda", ctx.local_rank)
    return dev, ctx


def resolve_run(recipe: Recipe, *, out_dir: str | Path | None, epochs: int | None,
                resume: str | Path | None, overwrite: bool = False
                ) -> tuple[Recipe, dict[str, Any] | None, Path]:
    """The recipe to run (a resumed run's own, with ``epochs`` applied), the checkpoint to
    resume from (or None) and the run directory (``out_dir``, the resumed run's, or
    ``runs/NAME``), checked before anything is read or written: ``runs/NAME`` stays inside
    ``runs/``, and a directory holding another run is refused unless ``overwrite``."""
    resume_state = None
    if resume is not None:
        resume_state = read_resume_state(resume)
        recipe = recipe_from_dict(resume_state["recipe"], f"{resume} (recipe)")
    if epochs is not None:
        recipe = recipe.model_copy(update={"train": recipe.train.model_copy(
            update={"epochs": epochs})})
    if out_dir:
        run_dir = Path(out_dir)
    elif resume is not None:
        run_dir = Path(resume).parent
    else:
        runs = Path("runs").resolve()
        run_dir = Path("runs") / recipe.name
        # the recipe validator allows one plain component; this holds even for a Recipe built
        # with model_construct, and against a runs/NAME symlink leading elsewhere
        if run_dir.resolve().parent != runs:
            raise RecipeError(f"recipe name {printable(recipe.name)!r}: the run directory "
                              f"{printable(run_dir)} would leave runs/; give --out DIR")
    _check_run_dir(run_dir, resume, overwrite)
    return recipe, resume_state, run_dir


def _check_run_dir(run_dir: Path, resume: str | Path | None, overwrite: bool) -> None:
    where = printable(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RecipeError(f"{where}: exists and is not a directory; give --out a directory")
    own = resume is not None and run_dir.resolve() == Path(resume).resolve().parent
    present = [name for name in RUN_FILES if (run_dir / name).exists()] \
        if run_dir.is_dir() else []
    if present and not overwrite and not own:
        hint = (f"continue it with --resume {where}/latest.pt, " if "latest.pt" in present
                else "")
        raise RecipeError(f"{where}: already holds a training run ({', '.join(present)}); "
                          f"{hint}pass --overwrite to replace it, or give another --out")
    parent = run_dir
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise RecipeError(f"{where}: cannot be written ({printable(parent)} is not a writable "
                          "directory); give --out a writable directory")


def setup_run(recipe: Recipe, run_dir: Path, dev: torch.device, ctx: DistContext, *,
              data_dir: str | None = None) -> TrainSetup:
    """Seed, load the data, build the model and the optimizer, in the order of random draws
    (seeds, data, model) that every checkpoint was written with."""
    cfg, tcfg = recipe.data, recipe.train
    torch.manual_seed(recipe.seed)
    random.seed(recipe.seed)
    data_cfg = cfg.model_dump()
    train_set = load_recipe_data(data_cfg, "train", data_dir, T=recipe.model.T)
    test_set = load_recipe_data(data_cfg, "test", data_dir, T=recipe.model.T)
    identity = dataset_identity(data_cfg, {"train": train_set, "test": test_set}, data_dir)
    train_set, val_set = carve_validation(train_set, cfg.validation_split, recipe.seed)
    augment = train_augmentation(cfg.dataset) if cfg.augment else None
    eval_tf = data_eval_transform(cfg.dataset)
    in_shape = input_shape_of(cfg.dataset, train_set)  # one time step, after the eval transform
    num_classes = max(train_set.num_classes, test_set.num_classes)
    model = build_from_recipe(recipe, in_shape, num_classes).to(dev)

    if cfg.batch_size % ctx.world_size:
        raise ValueError(f"data.batch_size {cfg.batch_size} is not divisible by the "
                         f"{ctx.world_size} processes; choose a multiple of {ctx.world_size}")
    target = recipe.target
    # Coupled L2 on every parameter that receives a gradient, gains and b_E included (spec §7).
    # One optimizer stands for the reference's two identical ones (clamped and free).
    opt = torch.optim.SGD(model.parameters(), lr=tcfg.init_lr, momentum=tcfg.momentum,
                          weight_decay=tcfg.weight_decay)
    return TrainSetup(
        recipe=recipe, run_dir=run_dir, device=dev, ctx=ctx, train_set=train_set,
        test_set=test_set, augment=augment, eval_tf=eval_tf, model=model, optimizer=opt,
        rank_batch=cfg.batch_size // ctx.world_size,
        iters_per_epoch=math.ceil(len(train_set) / cfg.batch_size),
        hw_target=hardware_target(recipe),
        qat_epochs=target.qat_epochs if target is not None else 0,
        qat_lr=(target.qat_lr or tcfg.lr / 10) if target is not None else 0.0,
        data_identity=identity, val_set=val_set)


def init_or_resume(run: TrainSetup, resume_state: dict[str, Any] | None,
                   resume: str | Path | None, log: Callable[[str], None]) -> TrainState:
    """A resumed run's weights, optimizer, counters, history and RNG states; else E-I Init on one
    augmented training batch, as the reference does (rank 0 initialises, then broadcasts)."""
    model, ctx = run.model, run.ctx
    if resume_state is not None:
        where = printable(resume)
        check_state_dict(resume, model, resume_state["state_dict"])
        st = resume_state["trainer"]
        if st["next_epoch"] > run.all_epochs:
            raise CheckpointError(f"{where}: field 'trainer.next_epoch' is {st['next_epoch']}, "
                                  f"past the run's {run.all_epochs} epochs")
        try:
            model.load_state_dict(resume_state["state_dict"])
            run.optimizer.load_state_dict(st["optimizer"])
            _set_rng_state(st["rng"])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise CheckpointError(f"{where}: its weights, optimizer or RNG state do not fit the "
                                  f"run's recipe ({type(exc).__name__}: "
                                  f"{printable(str(exc).splitlines()[0] if str(exc) else '')})"
                                  ) from None
        bad = constraint_violations(model)
        if bad:
            raise CheckpointError(f"{where}: constrained parameter(s) {', '.join(bad[:5])} "
                                  "hold negative values; this is not a run eideploy wrote")
        state = TrainState(st["next_epoch"], st["iteration"], st["best_accuracy"],
                           list(st["history"]))
        log(f"resuming {run.recipe.name} at epoch {state.next_epoch + 1}/{run.all_epochs} "
            f"from {resume}")
        return state
    if ei_layers(model):
        recipe = run.recipe
        init_bs = recipe.train.init_batch_size or recipe.data.batch_size
        x0, _ = next(iter(_batches(run.train_set, init_bs,
                                   torch.Generator().manual_seed(recipe.seed), run.device,
                                   run.augment, DistContext())))
        if ctx.is_main:
            ei_init(model, x0, seed=recipe.seed)
        if ctx.enabled:
            broadcast_module_(model)
        if not is_initialised(model):
            raise RuntimeError("E-I Init did not reach every layer")
    return TrainState()


def choose_run_threads(run: TrainSetup, requested: int | None = None) -> ThreadChoice:
    """The run's intra-op threads by the rule of ``threads.py``, from the forward FLOPs of one
    training sample (the model must be initialised or resumed: it runs once, drawing nothing)."""
    flops = None
    if requested is None and run.device.type == "cpu":
        sample, _ = next(iterate_batches(run.train_set, 1, shuffle=False, device=run.device,
                                         augment=run.eval_tf))
        flops = step_flops(run.model, sample, run.rank_batch)
    return choose_threads(flops, available=torch.get_num_threads(), requested=requested,
                          device=run.device.type)


def _wrap_for_training(run: TrainSetup) -> nn.Module:
    """The module the steps call: DDP across processes, torch.compile when the recipe asks."""
    net = run.model
    if run.ctx.enabled:
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[run.ctx.local_rank] if run.device.type == "cuda" else None)
    if run.recipe.train.compile:
        net = torch.compile(net)
    return net


def _start_run_directory(run: TrainSetup, threads: ThreadChoice,
                         log: Callable[[str], None]) -> None:
    """Rank 0 creates the run directory, writes ``recipe.yaml`` and logs what runs where."""
    if not run.ctx.is_main:
        return
    recipe, ctx = run.recipe, run.ctx
    run.run_dir.mkdir(parents=True, exist_ok=True)
    (run.run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    n_params = sum(p.numel() for p in run.model.parameters())
    log(f"{recipe.name}: {recipe.model.arch} ({n_params / 1e6:.3f}M parameters), "
        f"{len(run.train_set)} train / {len(run.test_set)} test samples, T={recipe.model.T}, "
        f"device {run.device}" + (f", {ctx.world_size} processes" if ctx.enabled else ""))
    log(f"{threads.threads} intra-op thread(s): {threads.reason}")


def begin_epoch(run: TrainSetup, state: TrainState, epoch: int,
                log: Callable[[str], None]) -> dict[str, float]:
    """The epoch's phase: prune the ``pruned`` layers to this epoch's budget and, in the QAT
    epochs, attach the quantizers (at the first one, keep the float phase's best as
    ``float.pt``). Returns the QAT statistics for the metrics row."""
    recipe, ctx, target = run.recipe, run.ctx, run.recipe.target
    budgets = prune_for_epoch(run.model, recipe, epoch)
    if budgets is not None and ctx.is_main and target is not None \
            and epoch < target.prune_start + target.prune_epochs:
        log(f"epoch {epoch + 1}: pruned layers keep at most {budgets} inputs per neuron")
    if epoch < recipe.train.epochs:
        return {}
    from .qat import attach_quantizers

    if epoch == recipe.train.epochs:
        # the float phase's best is kept as float.pt; model.pt becomes the best QAT epoch (the
        # model to export)
        if ctx.is_main and (run.run_dir / "model.pt").is_file():
            shutil.copyfile(run.run_dir / "model.pt", run.run_dir / "float.pt")
        state.best = -1.0
    return {f"qat_{k}": v for k, v in attach_quantizers(run.model, run.hw_target, seed=0).items()}


def train_epoch(run: TrainSetup, state: TrainState, net: nn.Module, epoch: int,
                bar=None, task=None) -> EpochTotals:
    """One pass over the training split: projected SGD per batch (step, then clamp the
    constrained parameters to >= 0, spec §7), the learning rate set per iteration."""
    dev, opt, model = run.device, run.optimizer, run.model
    net.train()
    epoch_gen = torch.Generator().manual_seed(run.recipe.seed * 100003 + epoch)
    t0 = time.perf_counter()
    running = torch.zeros(2, dtype=torch.float64, device=dev)  # loss sum, correct
    # the first iteration whose loss was not finite (-1: none), kept on the device and read every
    # PROGRESS_EVERY iterations, so a GPU is not stalled by a read per step
    first_bad = torch.full((), -1, dtype=torch.int64, device=dev)
    seen = 0.0
    for x, y in _batches(run.train_set, run.rank_batch, epoch_gen, dev, run.augment, run.ctx):
        lr = run.lr_at(state.iteration)
        for group in opt.param_groups:
            group["lr"] = lr
        with _autocast(dev, run.recipe.train.amp):
            logits = net(x).float()
        loss = F.cross_entropy(logits, y)
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss.detach()),
                                state.iteration, first_bad)
        if dev.type == "cpu" or state.iteration % PROGRESS_EVERY == 0:
            _stop_if_diverged(run, int(first_bad), epoch, loss)
        if state.iteration % PROGRESS_EVERY == 0:
            _stop_if_weights_diverged(run, state, epoch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        project_nonnegative_(model)
        state.iteration += 1
        # Running sums stay on the device: reading them every step would stall a GPU.
        running += torch.stack([loss.detach().double() * y.numel(),
                                (logits.detach().argmax(1) == y).sum().double()])
        seen += y.numel()
        if bar is not None:
            info = None
            if state.iteration % PROGRESS_EVERY == 0:
                loss_sum, correct = running.tolist()
                rate = seen * run.ctx.world_size / max(time.perf_counter() - t0, 1e-9)
                info = (f"loss {loss_sum / seen:.3f} acc {100 * correct / seen:.1f}% "
                        f"lr {lr:.2e} {rate:.0f} samples/s")
            bar.update(task, advance=1, **({"info": info} if info else {}))
    _stop_if_diverged(run, int(first_bad), epoch, None)
    _stop_if_weights_diverged(run, state, epoch)
    loss_sum, correct = running.tolist()
    seconds = time.perf_counter() - t0
    loss_sum, correct, seen = all_reduce_sum([loss_sum, correct, seen], dev)
    return EpochTotals(loss_sum, correct, seen, seconds)


def _divergence_hint(run: TrainSetup, epoch: int) -> str:
    tcfg = run.recipe.train
    keys = list(DIVERGENCE_KEYS)
    if epoch >= tcfg.epochs:
        keys.insert(0, "target.qat_lr")
    values = f"train.lr = {tcfg.lr:g}, train.weight_decay = {tcfg.weight_decay:g}, " \
             f"train.momentum = {tcfg.momentum:g}"
    saved = " (the last good epoch is in latest.pt)" if epoch > 0 else ""
    return (f"look at the recipe keys {', '.join(keys)} ({values}): lower the learning rate or "
            f"the weight decay and train again; nothing of this epoch was saved{saved}")


def _stop_if_diverged(run: TrainSetup, first_bad: int, epoch: int,
                      loss: torch.Tensor | None) -> None:
    """Raise :class:`TrainingDiverged` when an iteration's loss was NaN or infinite."""
    if first_bad < 0:
        return
    value = f" ({float(loss.detach()):g})" if loss is not None and run.device.type == "cpu" else ""
    raise TrainingDiverged(
        f"recipe {run.recipe.name}: training diverged at iteration {first_bad + 1} (epoch "
        f"{epoch + 1}, learning rate {run.lr_at(first_bad):.3g}): the loss is not "
        f"finite{value}; {_divergence_hint(run, epoch)}")


def _stop_if_weights_diverged(run: TrainSetup, state: TrainState, epoch: int) -> None:
    """Raise :class:`TrainingDiverged` when a parameter holds NaN or infinite values (a spiking
    layer can turn NaN weights into no spikes, so the loss alone does not show it). One sum per
    parameter, read once: a sum is finite only if every element is."""
    params = [(name, p) for name, p in run.model.named_parameters()]
    sums = torch.stack([p.detach().float().sum() for _, p in params]) if params else None
    if sums is None or bool(torch.isfinite(sums).all()):
        return
    for name, param in params:
        if not bool(torch.isfinite(param.detach()).all()):
            raise TrainingDiverged(
                f"recipe {run.recipe.name}: training diverged by iteration {state.iteration} "
                f"(epoch {epoch + 1}): parameter '{name}' holds NaN or infinite values; "
                f"{_divergence_hint(run, epoch)}")


def evaluate_epoch(run: TrainSetup, state: TrainState, epoch: int, totals: EpochTotals,
                   extra: dict[str, float]) -> bool:
    """Test the model, append the epoch's metrics row and update the best accuracy; returns
    whether this epoch is the best so far."""
    tcfg = run.recipe.train
    held_out = run.val_set if state.selected_on == "validation" else run.test_set
    metrics = evaluate(run.model, held_out, batch_size=run.recipe.data.eval_batch_size,
                       device=run.device, transform=run.eval_tf, amp=tcfg.amp, ctx=run.ctx)
    split = state.selected_on
    state.history.append({
        "epoch": epoch + 1, "train_loss": totals.loss_sum / totals.seen,
        "train_accuracy": 100.0 * totals.correct / totals.seen, f"{split}_loss": metrics["loss"],
        f"{split}_accuracy": metrics["accuracy"], "lr": run.lr_at(state.iteration - 1),
        "epoch_seconds": totals.seconds, "samples_per_second": totals.seen / totals.seconds,
        **({"qat": float(epoch >= tcfg.epochs), **extra} if run.recipe.target is not None
           else {})})
    improved = metrics["accuracy"] > state.best
    state.best = max(state.best, metrics["accuracy"])
    state.next_epoch = epoch + 1
    return improved


def save_epoch(run: TrainSetup, state: TrainState, improved: bool) -> None:
    """Rank 0 writes ``model.pt`` when the epoch improved, ``latest.pt`` (with everything
    ``--resume`` needs) always, and the metrics files."""
    recipe, summary = run.recipe.to_dict(), state.summary()
    if improved:
        save_checkpoint(run.run_dir / "model.pt", run.model, recipe=recipe,
                        metrics={**summary, "epoch": state.next_epoch}, data=run.data_identity)
    save_checkpoint(run.run_dir / "latest.pt", run.model, recipe=recipe, metrics=summary, extra={
        "next_epoch": state.next_epoch, "iteration": state.iteration,
        "best_accuracy": state.best, "history": state.history,
        "optimizer": run.optimizer.state_dict(), "rng": _rng_state()})
    _write_metrics(run.run_dir, state.history, summary)


def _write_metrics(run_dir: Path, history: list[dict[str, float]], summary: dict) -> None:
    with open(run_dir / "metrics.csv", "w", newline="") as fh:
        # QAT epochs add columns: the header is every key, in order of first appearance
        writer = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for r in history for k in r)))
        writer.writeheader()
        writer.writerows(history)
    (run_dir / "metrics.json").write_text(json.dumps({**summary, "history": history}, indent=2))
