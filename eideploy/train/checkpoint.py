"""``model.pt``: a self-describing checkpoint made of plain data only (DESIGN §3).

The file is a dict of strings, numbers, lists, dicts and tensors, written with ``torch.save`` and
read with ``torch.load(weights_only=True)``, so loading a user's file never runs code from it. It
names the architecture and its arguments, so a model is rebuilt from the file alone; the E-I
``initialised`` buffers are inside the state_dict, so loading never re-initialises.
"""

from __future__ import annotations

import math
import pickle
import pickletools
import stat
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..atomic import atomic_write, json_plain
from ..nn import EIOptions, constraint_violations

__all__ = ["CheckpointError", "FORMAT", "FORMAT_VERSION", "model_record", "save_checkpoint",
           "read_checkpoint", "read_resume_state", "check_model_file", "check_arch_kwargs",
           "check_state_dict", "load_model", "atomic_torch_save", "printable"]

FORMAT = "eideploy-model"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


# Limits checked before anything is allocated (issue 15 items 2, 3, 9): a user's file is sized
# by its bytes, never by what it declares.
MAX_PICKLE_BYTES = 16 << 20  # data.pkl holds the structure only; tensors are separate members
MAX_CHECKPOINT_BYTES = 1 << 30  # 1 GiB: the largest recipe's latest.pt (VGG-19 + momentum) is ~0.3
MAX_TENSORS = 20_000  # storages in one file; a ResNet-18 latest.pt holds a few hundred
MAX_TENSOR_ELEMENTS = 1 << 28  # per tensor, checked on the view before anything is computed
MAX_NESTING = 64  # depth of the plain-data tree (recipe, metrics, history)
MAX_ARCH_SIZE = 1 << 16  # widths, channels, classes, input sides, fan-in budgets
#: Architecture arguments that size tensors: each int in them is bounded by MAX_ARCH_SIZE.
SIZE_ARGS = frozenset({"widths", "layers", "in_shape", "num_classes", "fan_in", "fan_in_inh",
                       "window", "T", "channels"})
_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def printable(text: object, limit: int = 200) -> str:
    """``text`` with control characters escaped and cut to ``limit`` characters: strings taken
    from a user's file never reach the terminal as escape sequences (issue 15 item 7)."""
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
    return out if len(out) <= limit else out[:limit] + "..."


def check_model_file(path: str | Path, what: str = "model.pt written by 'eideploy train'"
                     ) -> Path:
    """A regular file no larger than :data:`MAX_CHECKPOINT_BYTES`, checked with ``stat`` before
    it is opened: a FIFO, a device such as ``/dev/zero`` or a directory is refused, never read
    (a FIFO would block ``open`` and a device would be read without end)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CheckpointError(f"{printable(path)}: no such file; give the path of a {what}"
                              ) from None
    except OSError as exc:
        raise CheckpointError(f"{printable(path)}: cannot be read ({exc.strerror}); give the "
                              f"path of a {what}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{printable(path)}: not a regular file (a directory, FIFO or "
                              f"device); give the path of a {what}")
    if st.st_size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{printable(path)}: {st.st_size} bytes, over the "
                              f"{MAX_CHECKPOINT_BYTES >> 20} MiB limit of an eideploy checkpoint")
    return path


def _check_archive(path: Path) -> None:
    """The zip container torch writes: every member's CRC (a flipped bit is refused, torch does
    not check it), the total uncompressed size and the number of tensor storages bounded."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            storages = sum(1 for m in members if "/data/" in m.filename)
            if storages > MAX_TENSORS:
                raise CheckpointError(f"{printable(path)}: {storages} tensors, over the limit of "
                                      f"{MAX_TENSORS}")
            total = sum(m.file_size for m in members)
            if total > MAX_CHECKPOINT_BYTES:
                raise CheckpointError(f"{printable(path)}: declares {total} bytes of content, over "
                                      f"the {MAX_CHECKPOINT_BYTES >> 20} MiB limit")
            bad = archive.testzip()
    except zipfile.BadZipFile:
        if _pickles_code(path):
            raise CheckpointError(
                f"{printable(path)}: refused to load: the file is a pickle that names Python "
                "callables (it would run code), not plain data, so it is not an eideploy "
                "checkpoint and was not executed") from None
        raise CheckpointError(f"{printable(path)}: cannot be read as a torch checkpoint "
                              "(truncated or not a model.pt file: not a zip archive); re-create "
                              "it with 'eideploy train'") from None
    except (OSError, EOFError, RuntimeError, ValueError, NotImplementedError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{printable(path)}: damaged archive ({type(exc).__name__}: "
                              f"{printable(exc)}); re-create it with 'eideploy train'") from None
    if bad is not None:
        raise CheckpointError(f"{printable(path)}: member {printable(bad)!r} fails its CRC check: "
                              "the file was modified or damaged after it was written")


def _pickles_code(path: Path) -> bool:
    """Whether a file that is not a zip archive is a pickle naming Python callables: read by
    ``pickletools`` (which only decodes opcodes, never runs them), so the message can say that
    code was refused. Such a file is never handed to ``torch.load``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(MAX_PICKLE_BYTES)
        for opcode, _, _ in pickletools.genops(head):
            if opcode.name in ("GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ",
                               "NEWOBJ_EX"):
                return True
    except (ValueError, EOFError, OSError, UnicodeDecodeError, KeyError):
        return False
    return False


def _check_tensor(path: Path, key: str, value: torch.Tensor) -> None:
    """A tensor view as torch rebuilt it, before any computation reads it: an element count within
    the limit, and laid out densely over its own storage (no zero stride, no overlap), so its
    memory is what the file holds and one element never stands for many."""
    name = printable(key)
    if value.layout != torch.strided or value.is_quantized:
        raise CheckpointError(f"{printable(path)}: tensor '{name}' is not a plain dense tensor")
    if value.numel() > MAX_TENSOR_ELEMENTS:
        raise CheckpointError(f"{printable(path)}: tensor '{name}' declares {value.numel()} "
                              f"elements, over the limit of {MAX_TENSOR_ELEMENTS}")
    if value.numel() == 0:
        return
    dims = sorted((s, n) for s, n in zip(value.stride(), value.shape, strict=True) if n > 1)
    expected = 1
    for stride, size in dims:  # dense and non-overlapping in some dimension order
        if stride != expected:
            raise CheckpointError(f"{printable(path)}: tensor '{name}' has strides "
                                  f"{tuple(value.stride())} for shape {tuple(value.shape)} (zero "
                                  "or overlapping strides); eideploy writes dense tensors only")
        expected *= size
    if value.storage_offset() + value.numel() > value.untyped_storage().nbytes() // max(
            value.element_size(), 1):
        raise CheckpointError(f"{printable(path)}: tensor '{name}' reaches past its storage")


def _walk(path: Path, value: Any, where: str, depth: int = 0) -> None:
    """Every tensor in the loaded tree is checked; nesting is bounded (a deep tree would exhaust
    the recursion of every later reader)."""
    if depth > MAX_NESTING:
        raise CheckpointError(f"{printable(path)}: '{printable(where)}' is nested more than "
                              f"{MAX_NESTING} levels deep")
    if torch.is_tensor(value):
        _check_tensor(path, where, value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk(path, item, f"{where}.{key}" if where else str(key), depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _walk(path, item, f"{where}[{i}]", depth + 1)


def check_arch_kwargs(kwargs: dict[str, Any], where: str) -> None:
    """Architecture arguments that size tensors hold ints in [0, MAX_ARCH_SIZE]: a width of 1e9
    would allocate without bound when the network is built. Raises ValueError naming the key."""
    for key in SIZE_ARGS & set(kwargs):
        stack = [kwargs[key]]
        while stack:
            item = stack.pop()
            if isinstance(item, (list, tuple)):
                if len(item) > 1024:
                    raise ValueError(f"{where}.{key} has {len(item)} entries (at most 1024)")
                stack.extend(item)
            elif isinstance(item, float) or (isinstance(item, int) and not isinstance(item, bool)
                                             and not 0 <= item <= MAX_ARCH_SIZE):
                raise ValueError(f"{where}.{key} holds {printable(item)}, outside "
                                 f"[0, {MAX_ARCH_SIZE}]: a size must be a whole number of "
                                 "neurons, channels or steps")


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
                    metrics: dict | None = None, extra: dict | None = None,
                    data: dict | None = None) -> None:
    """Save ``model`` with its recipe and metrics (and, for resuming, ``extra`` trainer state);
    ``data`` is the identity of the data it was trained on (``eideploy.data.dataset_identity``)."""
    record = model_record(model)
    record["recipe"] = json_plain(recipe) if recipe is not None else None
    record["metrics"] = json_plain(metrics or {})
    if data is not None:
        record["data"] = json_plain(data)
    if extra:
        record["trainer"] = extra
    atomic_torch_save(record, path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and check the checkpoint dict without building the model: a regular file within the
    size limit, an intact zip (CRC), plain data only (``weights_only=True``), every tensor dense
    and within the element limit."""
    path = check_model_file(path)
    _check_archive(path)
    with zipfile.ZipFile(path) as archive:
        pickles = [m for m in archive.infolist() if m.filename.endswith("data.pkl")]
    if len(pickles) != 1 or pickles[0].file_size > MAX_PICKLE_BYTES:
        raise CheckpointError(f"{printable(path)}: not an eideploy checkpoint (one data.pkl of at "
                              f"most {MAX_PICKLE_BYTES >> 20} MiB expected)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = printable(str(exc).splitlines()[0] if str(exc) else "")
        if "weights only" not in str(exc).lower():
            raise CheckpointError(f"{printable(path)}: not a torch checkpoint ({detail}); give a "
                                  "model.pt written by 'eideploy train'") from None
        raise CheckpointError(
            f"{printable(path)}: refused to load: the file contains Python objects other than "
            "plain data (tensors, numbers, strings, lists, dicts), so it is not an eideploy "
            f"checkpoint and was not executed. Detail: {detail}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError,
            IndexError, TypeError, AttributeError, MemoryError, RecursionError) as exc:
        raise CheckpointError(
            f"{printable(path)}: cannot be read as a torch checkpoint (truncated or not a "
            f"model.pt file: {type(exc).__name__}: "
            f"{printable(str(exc).splitlines()[0]) if str(exc) else ''}); "
            "re-create it with 'eideploy train'") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{printable(path)}: not an eideploy model (missing 'format': "
                              f"'{FORMAT}'); eideploy reads the model.pt files its trainer writes")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{printable(path)}: format_version {printable(repr(version))} is "
                              f"newer than this eideploy understands ({FORMAT_VERSION}); upgrade "
                              "eideploy")
    _walk(path, data, "")
    for key, kind in (("architecture", dict), ("state_dict", dict)):
        if not isinstance(data.get(key), kind):
            raise CheckpointError(f"{printable(path)}: field '{key}' is missing or not a "
                                  f"{kind.__name__}")
    arch = data["architecture"]
    if not isinstance(arch.get("name"), str) or not isinstance(arch.get("kwargs"), dict):
        raise CheckpointError(f"{printable(path)}: field 'architecture' needs 'name' (str) and "
                              "'kwargs' (dict)")
    if not isinstance(data.get("options"), (dict, type(None))):
        raise CheckpointError(f"{printable(path)}: field 'options' is not a dict")
    try:
        check_arch_kwargs(arch["kwargs"], "architecture.kwargs")
    except ValueError as exc:
        raise CheckpointError(f"{printable(path)}: field {exc}") from None
    return data


def read_resume_state(path: str | Path) -> dict[str, Any]:
    """A ``latest.pt`` to continue from: :func:`read_checkpoint`, then its ``trainer`` block
    (counters, history, optimizer and RNG states) checked field by field, so that a tampered file
    is refused with its field named before any state is applied."""
    data = read_checkpoint(path)
    where = printable(path)
    st = data.get("trainer")
    if not isinstance(st, dict):
        raise CheckpointError(f"{where}: has no trainer state; resume from the latest.pt of a run "
                              "directory, not from model.pt")
    if not isinstance(data.get("recipe"), dict):
        raise CheckpointError(f"{where}: field 'recipe' is missing; it is not a latest.pt of "
                              "'eideploy train'")

    def bad(field: str, what: str) -> CheckpointError:
        return CheckpointError(f"{where}: field 'trainer.{field}' {what}; this is not a latest.pt "
                               "eideploy wrote: resume from an untouched one or train anew")

    for name in ("next_epoch", "iteration"):
        value = st.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 40:
            raise bad(name, f"must be a non-negative integer, got {printable(repr(value))}")
    best = st.get("best_accuracy")
    if not isinstance(best, (int, float)) or not math.isfinite(best) or not -1 <= best <= 100:
        raise bad("best_accuracy", f"must be a percentage, got {printable(repr(best))}")
    history = st.get("history")
    if not isinstance(history, list) or len(history) != st["next_epoch"] or not all(
            isinstance(row, dict) and all(isinstance(v, (int, float)) for v in row.values())
            for row in history):
        raise bad("history", "must hold one row of numbers per epoch run")
    optimizer = st.get("optimizer")
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("state"), dict) \
            or not isinstance(optimizer.get("param_groups"), list):
        raise bad("optimizer", "must be an optimizer state (state, param_groups)")
    for key, value in optimizer["state"].items():
        for name, tensor in (value.items() if isinstance(value, dict) else [("", None)]):
            if tensor is None and name:  # SGD without momentum keeps None
                continue
            if not torch.is_tensor(tensor) or not tensor.is_floating_point() \
                    or not bool(torch.isfinite(tensor).all()):
                raise bad(f"optimizer.state.{key}.{printable(name)}",
                          "must be a finite floating-point tensor")
    rng = st.get("rng")
    if not isinstance(rng, dict) or not torch.is_tensor(rng.get("torch")) \
            or rng["torch"].dtype != torch.uint8 \
            or rng["torch"].shape != torch.get_rng_state().shape:
        raise bad("rng.torch", "must be torch's generator state (a uint8 tensor)")
    python = rng.get("python")
    if not isinstance(python, list) or len(python) != 625 or not all(
            isinstance(v, int) and 0 <= v < 1 << 32 for v in python) \
            or not isinstance(rng.get("python_version"), int) \
            or not isinstance(rng.get("python_gauss"), (float, type(None))):
        raise bad("rng.python", "must be Python's generator state (625 words)")
    return data


def check_state_dict(path: str | Path, model: nn.Module, state: dict[str, Any]) -> None:
    """The weights in a file against the network they are for, before they are loaded: the same
    dtype kind as the network's tensor (int64, bool or complex weights are refused, never cast),
    finite values, connectivity masks of 0 and 1 only. Names the tensor."""
    where = printable(path)
    expected = model.state_dict()
    for key, value in state.items():
        name = printable(key)
        if not torch.is_tensor(value):
            raise CheckpointError(f"{where}: state_dict entry '{name}' is not a tensor")
        want = expected.get(key)
        if want is None:
            continue  # load_state_dict(strict=True) names unexpected keys
        if value.dtype != want.dtype and not (want.dtype in _FLOAT_DTYPES
                                              and value.dtype in _FLOAT_DTYPES):
            raise CheckpointError(f"{where}: tensor '{name}' is {value.dtype}, the network holds "
                                  f"{want.dtype} there; weights are never cast")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{where}: tensor '{name}' contains NaN or infinite values; "
                                  "the training run diverged: use an earlier checkpoint")
        if key.rsplit(".", 1)[-1].startswith("mask") and not bool(
                ((value == 0) | (value == 1)).all()):
            raise CheckpointError(f"{where}: connectivity mask '{name}' holds values other than "
                                  "0 and 1")


def load_model(path: str | Path, device: str | torch.device = "cpu"
               ) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network from ``path`` alone and load its weights; returns (model, checkpoint)."""
    from ..networks import build_network

    data = read_checkpoint(path)
    path = Path(path)
    arch = data["architecture"]
    try:
        model = build_network(arch["name"], options=data.get("options"), **arch["kwargs"])
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{printable(path)}: fields 'architecture'/'options' do not describe "
                              f"a network this eideploy can build: {printable(exc)}") from None
    state = data["state_dict"]
    check_state_dict(path, model, state)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()
        raise CheckpointError(f"{printable(path)}: weights do not match architecture "
                              f"'{printable(arch['name'])}': "
                              f"{printable(' '.join(s.strip() for s in first[:3]), 400)}"
                              ) from None
    bad = constraint_violations(model)
    if bad:
        raise CheckpointError(f"{printable(path)}: constrained parameter(s) {', '.join(bad[:5])} "
                              "hold negative values, which Dale's law forbids (W_EE, W_IE, W_EI, "
                              "g_I, g_E must be >= 0)")
    model.eval()
    return model.to(device), data
