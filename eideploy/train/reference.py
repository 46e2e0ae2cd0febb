"""Checkpoints of the reference DeepEISNN implementation loaded into eideploy's networks.

The reference splits each E-I layer in two modules (spec §3, §8): the projection
(``SpikingEiConv2d``: ``conv_ee.weight``, ``conv_ie.weight``; ``SpikingEiLinear``:
``weight_ee``, ``weight_ie``) and the integration after it (``SpikingEiNorm2d/1d``:
``weight_ei``, ``gain_i``, ``gain_e``, ``bias``; older code: ``alpha`` for g_I and ``gain`` for
g_E). eideploy keeps all six in one :class:`~eideploy.nn.layers.EILayer`. The reference's module
indices differ by input (``layers.2.conv_ee`` on static images, ``layers.1`` on DVS) and by
architecture (``conv1``/``norm1``/``fc``/``final_ei_norm`` in the ResNet), so the mapping is by
order, not by name: the k-th projection and the k-th integration module of the file (its
registration order, which ``torch.save`` keeps) form the k-th E-I layer of the network
``build_network(arch)`` builds, and every tensor's shape is checked against the parameter it
becomes. Per-channel vectors stored as ``(1, n)`` or ``(n, 1, 1)`` become eideploy's ``(n,)``.

The reference does not save its ``_inited`` flag (spec §4.2); a trained checkpoint has been
initialised, so every layer's ``initialised`` buffer is set and E-I Init never overwrites the
loaded weights. The result is an ordinary ``model.pt`` (:func:`.checkpoint.save_checkpoint`).
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.catalog import DATASET_INFO
from ..networks import build_network
from ..nn import EIOptions
from ..nn.constraints import constraint_violations
from ..nn.layers import EILayer
from .checkpoint import CheckpointError, check_model_file, printable, save_checkpoint

__all__ = ["REFERENCE_FORMATS", "ReferenceImport", "read_reference", "reference_state_to_model",
           "import_reference"]

#: The implementations whose checkpoints ``eideploy import --from`` reads.
REFERENCE_FORMATS = ("deepeisnn",)
#: Reference parameter names -> eideploy's, for the projection and the integration module.
PROJECTION_FIELDS = {"conv_ee.weight": "weight_ee", "conv_ie.weight": "weight_ie",
                     "weight_ee": "weight_ee", "weight_ie": "weight_ie"}
INTEGRATION_FIELDS = {"weight_ei": "weight_ei", "gain_i": "gain_i", "alpha": "gain_i",
                      "gain_e": "gain_e", "gain": "gain_e", "bias": "bias"}
_HINT = ("give a checkpoint of the reference DeepEISNN implementation (ckpt-*.pth with "
         "'model_state_dict', or its state_dict) and the matching --arch")


@dataclass
class ReferenceImport:
    """An imported reference checkpoint: the eideploy ``model``, what it was built as, and the
    reference layer each E-I layer came from (``layers``: ours -> (projection, integration))."""

    model: torch.nn.Module
    arch: str
    in_shape: tuple[int, ...]
    num_classes: int
    T: int
    dataset: str | None = None
    layers: dict[str, tuple[str, str]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


def _numpy_globals() -> list[Any]:
    """The numpy classes a checkpoint's ``np_rng_state`` (``np.random.get_state()``) pickles:
    array reconstruction only, allowed under ``weights_only=True``."""
    core = getattr(np, "_core", None) or np.core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype,
            type(np.dtype(np.uint32)), type(np.dtype(np.float64))]


def read_reference(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, checkpoint)`` of a reference checkpoint: a training checkpoint (a dict
    with ``model_state_dict``, spec §8) or a bare state dict. Loaded with ``weights_only=True``
    only (tensors, plain containers and numpy's random state): nothing in the file runs."""
    path = check_model_file(path, "DeepEISNN checkpoint (.pth)")
    try:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            with torch.serialization.safe_globals(_numpy_globals()):
                data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = printable(str(exc).splitlines()[0] if str(exc) else "")
        raise CheckpointError(f"{printable(path)}: refused to load: the file holds Python "
                              f"objects other than tensors and plain data ({detail}); "
                              f"{_HINT}") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError,
            AttributeError, MemoryError, RecursionError) as exc:
        raise CheckpointError(f"{printable(path)}: cannot be read as a torch checkpoint "
                              f"({type(exc).__name__}); {_HINT}") from None
    if isinstance(data, Mapping) and isinstance(data.get("model_state_dict"), Mapping):
        checkpoint, state = dict(data), data["model_state_dict"]
    elif isinstance(data, Mapping):
        checkpoint, state = {}, data
    else:
        raise CheckpointError(f"{printable(path)}: holds a {type(data).__name__}, not a "
                              f"checkpoint dict; {_HINT}")
    bad = [printable(k) for k, v in state.items()
           if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{printable(path)}: field 'model_state_dict' holds entries that "
                              f"are not named tensors ({', '.join(bad[:5])}); {_HINT}")
    return dict(state), checkpoint


def _split(key: str) -> tuple[str, str, str] | None:
    """``(module, 'projection' | 'integration', eideploy field)`` of a reference key."""
    for suffix, name in PROJECTION_FIELDS.items():
        if key.endswith("." + suffix):
            return key[:-len(suffix) - 1], "projection", name
    module, _, name = key.rpartition(".")
    if name in INTEGRATION_FIELDS and not module.endswith(("conv_ee", "conv_ie")):
        return module, "integration", INTEGRATION_FIELDS[name]
    return None


def _modules(state: Mapping[str, torch.Tensor], source: str
             ) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, dict[str, torch.Tensor]]]:
    projections: dict[str, dict[str, torch.Tensor]] = {}
    integrations: dict[str, dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in state.items():
        split = _split(key)
        if split is None:
            unknown.append(key)
            continue
        module, kind, name = split
        group = projections if kind == "projection" else integrations
        if name in group.setdefault(module, {}):
            raise CheckpointError(f"{source}: module '{printable(module)}' holds "
                                  f"{name} twice (old and new names); {_HINT}")
        group[module][name] = value
    if unknown:
        raise CheckpointError(
            f"{source}: {len(unknown)} parameter(s) are not those of a DeepEISNN E-I network "
            f"({', '.join(printable(k) for k in unknown[:5])}); the BN-SNN baseline and "
            f"other networks cannot be imported; {_HINT}")
    return projections, integrations


def _dataset(name: Any) -> str | None:
    """eideploy's name of the reference's ``dataset`` (``CIFAR10DVS`` -> ``cifar10-dvs``)."""
    def norm(text: str) -> str:
        return re.sub(r"[^a-z0-9]", "", text.lower()).replace("dvs128", "dvs")

    if not isinstance(name, str):
        return None
    return next((ours for ours in DATASET_INFO if norm(ours) == norm(name)), None)


def reference_state_to_model(state: Mapping[str, torch.Tensor], arch: str, *,
                             in_shape: Sequence[int], T: int,
                             options: EIOptions | None = None,
                             source: str = "<state_dict>") -> ReferenceImport:
    """Build ``arch`` and load the reference ``state`` into it (module doc). ``in_shape`` is
    (C, H, W) of the input; the number of classes is read from the last layer. Raises
    :class:`~eideploy.train.checkpoint.CheckpointError` naming the reference key and the
    parameter that do not match."""
    projections, integrations = _modules(state, source)
    if not projections:
        raise CheckpointError(f"{source}: no E-I layer (conv_ee/weight_ee) found; {_HINT}")
    last = next(reversed(projections.values())).get("weight_ee")
    if last is None or last.ndim != 2:
        raise CheckpointError(f"{source}: the last E-I layer has no linear weight_ee "
                              f"(classes x features); {_HINT}")
    num_classes = int(last.shape[0])
    try:
        model = build_network(arch, in_shape=tuple(in_shape), num_classes=num_classes, T=T,
                              options=options or EIOptions())
    except ValueError as exc:
        raise CheckpointError(f"{source}: {arch} on input {tuple(in_shape)}: {exc}; check "
                              "--arch and --in-shape") from None
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, EILayer)]
    if not len(layers) == len(projections) == len(integrations):
        raise CheckpointError(
            f"{source}: {len(projections)} E-I projection and {len(integrations)} integration "
            f"module(s), but {arch} has {len(layers)} E-I layers; is --arch right?")
    ours = model.state_dict()
    mapping: dict[str, tuple[str, str]] = {}
    for (name, layer), (p_mod, p), (n_mod, n) in zip(layers, projections.items(),
                                                      integrations.items(), strict=True):
        mapping[name] = (p_mod, n_mod)
        for group, module, fields in ((p, p_mod, ("weight_ee", "weight_ie")),
                                      (n, n_mod, ("weight_ei", "gain_i", "gain_e", "bias"))):
            for field_name in fields:
                target = getattr(layer, field_name)
                value = group.get(field_name)
                if value is None:
                    raise CheckpointError(f"{source}: module '{printable(module)}' has no "
                                          f"{field_name}; {_HINT}")
                # weights keep their shape; per-channel vectors may be (1, n) or (n, 1, 1)
                same = (tuple(value.shape) == tuple(target.shape)
                        or (field_name != "weight_ee" and field_name != "weight_ie"
                            and value.numel() == target.numel()
                            and max(value.shape, default=1) == max(target.shape, default=1)))
                if not same:
                    raise CheckpointError(
                        f"{source}: '{printable(module)}' {field_name} has shape "
                        f"{tuple(value.shape)}, but {arch}'s {name}.{field_name} needs "
                        f"{tuple(target.shape)}; is --arch (or --in-shape) right?")
                ours[f"{name}.{field_name}"] = value.detach().to(torch.float32).reshape(
                    target.shape).clone()
        ours[f"{name}.initialised"] = torch.tensor(True)
    model.load_state_dict(ours, strict=True)
    bad = constraint_violations(model)
    if bad:
        raise CheckpointError(f"{source}: constrained parameter(s) {', '.join(bad[:5])} hold "
                              "negative values, which Dale's law forbids; not a trained "
                              "DeepEISNN checkpoint")
    model.eval()
    return ReferenceImport(model, arch, tuple(int(s) for s in in_shape), num_classes, T,
                           layers=mapping)


def _config_options(config: Mapping[str, Any]) -> EIOptions:
    neuron = config.get("neuron") if isinstance(config.get("neuron"), Mapping) else {}
    tau = config.get("neuron.tau", neuron.get("tau", 2.0))
    ratio = config.get("ei_ratio", 4)
    try:
        return EIOptions(tau=float(tau), ei_ratio=int(ratio))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"the checkpoint's config (neuron.tau {tau!r}, ei_ratio "
                              f"{ratio!r}) is not usable: {exc}") from None


def import_reference(path: str | Path, out: str | Path, *, arch: str,
                     fmt: str = "deepeisnn", in_shape: Sequence[int] | None = None,
                     T: int | None = None, dataset: str | None = None,
                     overwrite: bool = False) -> ReferenceImport:
    """Read the reference checkpoint ``path``, load it into ``arch`` and write the eideploy
    ``model.pt`` ``out`` (an existing file only with ``overwrite``). ``in_shape``, ``T`` and
    ``dataset`` default to the checkpoint's ``config`` (its data set's input shape; T 4
    without one)."""
    if Path(out).exists() and not overwrite:
        raise ValueError(f"{printable(out)}: exists; pass --overwrite to replace it")
    if fmt not in REFERENCE_FORMATS:
        raise ValueError(f"--from {fmt!r}: checkpoints of {', '.join(REFERENCE_FORMATS)} can "
                         "be imported")
    state, checkpoint = read_reference(path)
    source = printable(path)
    config = checkpoint.get("config") if isinstance(checkpoint.get("config"), Mapping) else {}
    name = dataset or _dataset(config.get("dataset"))
    if dataset is not None and dataset not in DATASET_INFO:
        raise ValueError(f"--dataset {dataset!r}: known: {', '.join(DATASET_INFO)}")
    if in_shape is None:
        if name is None:
            first = next(iter(_modules(state, source)[0].values()), {}).get("weight_ee")
            channels = int(first.shape[1]) if first is not None and first.ndim == 4 else 3
            in_shape = (channels, 32, 32)
        else:
            in_shape = DATASET_INFO[name].input_shape
    steps = int(T if T is not None else config.get("T", 4))
    imported = reference_state_to_model(state, arch, in_shape=in_shape, T=steps,
                                        options=_config_options(config), source=source)
    imported.dataset = name
    best = checkpoint.get("best_val_acc")
    if isinstance(best, (int, float)):
        imported.metrics["reference_best_val_acc"] = float(best)
    recipe = {"name": f"deepeisnn import of {Path(path).name}",
              "data": {"dataset": name} if name else {}}
    save_checkpoint(out, imported.model, recipe=recipe, metrics=imported.metrics)
    return imported
