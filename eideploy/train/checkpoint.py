"""``model.pt``: a self-describing checkpoint made of plain data only (DESIGN §3).

The file is a dict of strings, numbers, lists, dicts and tensors, written with ``torch.save`` and
read with ``torch.load(weights_only=True)``, so loading a user's file never runs code from it. It
names the architecture and its arguments, so a model is rebuilt from the file alone; the E-I
``initialised`` buffers are inside the state_dict, so loading never re-initialises.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..atomic import atomic_write, json_plain
from ..nn import EIOptions, constraint_violations

__all__ = ["CheckpointError", "FORMAT", "FORMAT_VERSION", "model_record", "save_checkpoint",
           "read_checkpoint", "load_model", "atomic_torch_save"]

FORMAT = "eideploy-model"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


def model_record(model: nn.Module) -> dict[str, Any]:
    """The plain-data description of a network: architecture name, arguments, options, weights."""
    net = getattr(model, "module", model)  # unwrap DistributedDataParallel
    for attr in ("arch_name", "arch_kwargs"):
        if not hasattr(net, attr):
            raise TypeError(f"{type(net).__name__} is not an eideploy network (no {attr}); build "
                            "it with eideploy.networks.build_network")
    options = getattr(net, "options", None)
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "eideploy_version": __version__,
        "architecture": {"name": net.arch_name, "kwargs": json_plain(net.arch_kwargs)},
        "options": options.to_dict() if isinstance(options, EIOptions) else None,
        "state_dict": state,
    }


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """Write to a temporary file in the same directory, then rename: never a half-written file."""
    atomic_write(path, lambda fh: torch.save(obj, fh))


def save_checkpoint(path: str | Path, model: nn.Module, *, recipe: dict | None = None,
                    metrics: dict | None = None, extra: dict | None = None) -> None:
    """Save ``model`` with its recipe and metrics (and, for resuming, ``extra`` trainer state)."""
    record = model_record(model)
    record["recipe"] = json_plain(recipe) if recipe is not None else None
    record["metrics"] = json_plain(metrics or {})
    if extra:
        record["trainer"] = extra
    atomic_torch_save(record, path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and check the checkpoint dict without building the model."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file; give the path of a model.pt written by "
                              "'eideploy train'")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            raise CheckpointError(f"{path}: not a torch checkpoint ({str(exc).splitlines()[0]}); "
                                  "give a model.pt written by 'eideploy train'") from None
        raise CheckpointError(
            f"{path}: refused to load: the file contains Python objects other than plain data "
            f"(tensors, numbers, strings, lists, dicts), so it is not an eideploy checkpoint and "
            f"was not executed. Detail: {str(exc).splitlines()[0]}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError,
            IndexError, TypeError, AttributeError) as exc:
        raise CheckpointError(
            f"{path}: cannot be read as a torch checkpoint (truncated or not a model.pt file: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "re-create it with 'eideploy train'") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an eideploy model (missing 'format': '{FORMAT}'); "
                              "eideploy reads the model.pt files its trainer writes")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {version!r} is newer than this eideploy "
                              f"understands ({FORMAT_VERSION}); upgrade eideploy")
    for key, kind in (("architecture", dict), ("state_dict", dict)):
        if not isinstance(data.get(key), kind):
            raise CheckpointError(f"{path}: field '{key}' is missing or not a {kind.__name__}")
    arch = data["architecture"]
    if not isinstance(arch.get("name"), str) or not isinstance(arch.get("kwargs"), dict):
        raise CheckpointError(f"{path}: field 'architecture' needs 'name' (str) and 'kwargs' "
                              "(dict)")
    return data


def load_model(path: str | Path, device: str | torch.device = "cpu"
               ) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network from ``path`` alone and load its weights; returns (model, checkpoint)."""
    from ..networks import build_network

    path = Path(path)
    data = read_checkpoint(path)
    arch = data["architecture"]
    try:
        model = build_network(arch["name"], options=data.get("options"), **arch["kwargs"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: field 'architecture' does not describe a network this "
                              f"eideploy can build: {exc}") from None
    state = data["state_dict"]
    for key, value in state.items():
        if not torch.is_tensor(value):
            raise CheckpointError(f"{path}: state_dict entry '{key}' is not a tensor")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{path}: weight '{key}' contains NaN or infinite values; the "
                                  "training run diverged: use an earlier checkpoint")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()
        raise CheckpointError(f"{path}: weights do not match architecture '{arch['name']}': "
                              f"{' '.join(s.strip() for s in first[:3])}") from None
    bad = constraint_violations(model)
    if bad:
        raise CheckpointError(f"{path}: constrained parameter(s) {', '.join(bad[:5])} hold "
                              "negative values, which Dale's law forbids (W_EE, W_IE, W_EI, g_I, "
                              "g_E must be >= 0)")
    model.eval()
    return model.to(device), data
