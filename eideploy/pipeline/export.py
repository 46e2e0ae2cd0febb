"""``eideploy export``: a trained model compiled for DYNAP-SE2 and written as one directory.

The pipeline (DESIGN §1): ``model.pt`` --load--> torch model --lower--> float E-I graph
--compile (DRC, unroll, place, quantize, route, biases)--> :class:`CompiledNetwork` --write-->
the export directory of DESIGN §3:

=========================  ===================================================================
``manifest.json``          format version, tool versions, source sha256, seed, target, the
                           other files with their sha256 (no timestamps)
``graph.json``             the float E-I graph (structure and scalars) ...
``weights.npz``            ... and its arrays
``quantized/graph.json``   the quantized, all-sparse graph the chip computes ...
``quantized/weights.npz``  ... and its arrays
``dynapse2.json``          chips -> cores -> neurons: CAM and SRAM entries, base weights, bias
                           codes, input and readout channel maps (eideploy's own config form)
``samna.json``             the same configuration in samna's JSON form (rockpool's mirrors)
``report.json``            resources, utilisation, fan-in, quantization error, bias codes, DRC
``report.md``              the same as readable tables (both :mod:`.report`)
``mapping.png``            chips as 2x2 grids of cores coloured by role
=========================  ===================================================================

Written atomically: everything is built in a hidden temporary directory next to ``out_dir`` and
renamed into place at the end, so a failed or interrupted export leaves nothing behind (an old
export it was replacing stays as it was). The same input and seed give byte-identical files:
JSON with sorted keys and rounded floats, npz archives with fixed timestamps, PNGs without
metadata, and no clock or path anywhere.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..atomic import json_plain, sha256_file, staged_directory
from ..exportdir import (
    EXPORT_FILES,
    EXPORT_FORMAT,
    EXPORT_FORMAT_VERSION,
    MAX_EXPORT_FILE_BYTES,
    ExportDirError,
    read_manifest,
    verify_export,
)
from ..graph.ir import EIGraph
from ..graph.readout import readout_copies, replicate_readout
from ..safefile import MAX_JSON_BYTES, UnsafeFileError, check_regular, load_json, printable
from ..targets.dynapse2.compile import CompiledNetwork, DoesNotFit, compile_graph
from ..targets.dynapse2.config import config_to_graph, read_config, write_config
from ..targets.dynapse2.place import MappingError
from ..targets.dynapse2.plot import plot_mapping
from ..targets.dynapse2.samna import samna_json
from ..targets.dynapse2.target import Target, resolve_target
from .inspect import model_overview
from .report import REPORT_SCHEMA_VERSION, build_report, report_markdown

# build_report, report_markdown (pipeline.report) and model_overview (pipeline.inspect) are
# re-exported: scripts written against eideploy.export import them from here
__all__ = ["EXPORT_FORMAT", "EXPORT_FORMAT_VERSION", "REPORT_SCHEMA_VERSION", "EXPORT_FILES",
           "ExportError", "ExportResult", "DoesNotFit", "MappingError", "export_model",
           "export_graph", "resolve_target", "DEFAULT_READOUT_COPIES", "default_readout_copies",
           "lower_model_file", "chip_graph", "read_graph_directory",
           "read_export", "load_export", "ExportDirectory", "export_graph_of", "build_report",
           "report_markdown", "model_overview", "dumps_json",
           "sha256_file"]

#: Significant digits of the floats in report.json: readable, and blind to last-bit noise.
FLOAT_DIGITS = 6


class ExportError(ValueError):
    """An export that cannot be written where it was asked to (exit code 2)."""


@dataclass
class ExportResult:
    """What :func:`export_model` / :func:`export_graph` wrote and the objects behind it."""

    out_dir: Path
    graph: EIGraph
    compiled: CompiledNetwork
    manifest: dict[str, Any]
    report: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def files(self) -> list[str]:
        return [f["path"] for f in self.manifest["files"]]

    def summary(self) -> dict[str, Any]:
        """The headline numbers: neurons, cores, chips, worst fan-in, quantization error."""
        return dict(self.report["summary"])


# --------------------------------------------------------------------------- JSON and hashes
def dumps_json(doc: Any) -> str:
    """The one JSON form of every export file: sorted keys, indent 1, rounded floats, ``\\n``."""
    plain = json_plain(doc, FLOAT_DIGITS)
    return json.dumps(plain, indent=1, sort_keys=True, allow_nan=False) + "\n"


def _versions() -> dict[str, str | None]:
    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {"eideploy": __version__, "python": ".".join(map(str, sys.version_info[:3])),
            **{name: version(name) for name in ("numpy", "scipy", "torch", "rockpool",
                                               "matplotlib")}}


def _target_record(target: Target) -> dict[str, Any]:
    """The target as data, without the machine-specific path it was read from, and its hash."""
    doc = {k: v for k, v in target.to_dict().items() if k != "source"}
    text = json.dumps(doc, sort_keys=True)
    return {"name": target.name, "board": target.board, "chips": target.chips_per_board,
            "sha256": hashlib.sha256(text.encode()).hexdigest()}


# --------------------------------------------------------------------------- the output dir
def _is_export(path: Path) -> bool:
    """Whether ``path`` holds an export's manifest (a FIFO, a device or a link out of the
    directory named manifest.json is not one, and is never opened)."""
    try:
        doc = load_json(path / "manifest.json", MAX_JSON_BYTES, within=path)
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("format") == EXPORT_FORMAT


def _check_destination(out_dir: Path, overwrite: bool, protect: tuple[Path, ...] = ()
                       ) -> tuple[str, ...]:
    """Refuse, before any work, a destination an export must not replace: a file, a directory
    holding the working directory, the home directory or ``protect`` (the source model), and a
    non-empty directory that is not an earlier export (unless ``overwrite``).

    Returns the folders of an earlier export that the new one carries over (``validation/``,
    ``simulation/`` or a user's own: the export writes files and ``quantized/`` only)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir}: exists and is not a directory; give -o a directory path")
    blocking = next((p for p in out_dir.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ExportError(f"{out_dir}: {blocking} is a file, not a directory; give -o a path "
                          "whose parents are directories")
    if not out_dir.is_dir():
        return ()
    resolved = out_dir.resolve()
    for keep in (Path.cwd().resolve(), Path.home().resolve(), *protect):
        if keep == resolved or resolved in keep.parents:
            raise ExportError(f"{out_dir}: refusing to replace a directory that holds {keep}; "
                              "choose another -o directory")
    if _is_export(out_dir):
        return tuple(p.name for p in out_dir.iterdir() if p.is_dir() and not p.is_symlink())
    if not any(out_dir.iterdir()) or overwrite:
        return ()
    raise ExportError(f"{out_dir}: exists, is not empty and is not an eideploy export (no "
                      "manifest.json of one); choose another -o directory or pass --overwrite "
                      "to replace it")


def _absolute(path: Path) -> Path:
    """``path`` made absolute without resolving links (``-o .`` then has a name and a parent),
    except a link that names the output directory itself: the export goes where it points (the
    link stays a link, and no ``.NAME.old-*`` of it is left behind)."""
    absolute = Path(os.path.abspath(path))
    return absolute.resolve() if absolute.is_symlink() else absolute


# --------------------------------------------------------------------------- export
def export_model(model_path: str | Path, out_dir: str | Path, *,
                 target: str | Path | Target = "dynapse2", seed: int = 0,
                 chips: int | None = None, overwrite: bool = False,
                 readout_copies: int | None = None,
                 log: Callable[[str], None] | None = None) -> ExportResult:
    """Compile the model in ``model_path`` (a ``model.pt`` of ``eideploy train``) for ``target``
    and write the export directory ``out_dir``.

    Raises ``CheckpointError`` (bad, foreign, truncated or unsafe file; NaN or negative
    constrained weights), ``TargetError`` (unknown target), ``ExportError`` (destination),
    ``ValueError`` (a model that has no E-I graph form), ``DoesNotFit`` (design rules, with the
    full report) or ``MappingError`` (placement or routing). Nothing is written on any error.
    """
    model_path, out_dir = Path(model_path), Path(out_dir)
    resolved = resolve_target(target, chips)
    _check_destination(_absolute(out_dir), overwrite, (model_path.resolve(),))
    if (model_path / "graph.json").is_file():  # a graph directory ('eideploy import FILE.nir')
        graph = read_graph_directory(model_path, model_path)
        return export_graph(graph, out_dir, target=resolved, seed=seed, overwrite=overwrite,
                            source={"kind": "graph", "file": model_path.name,
                                    "sha256": graph_sha256(graph)},
                            readout_copies=readout_copies, log=log)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    graph, _, checkpoint, digest = lower_model_file(model_path, "exported")
    timings["load+lower"] = time.perf_counter() - start
    source = {"kind": "model", "file": model_path.name, "sha256": digest,
              "architecture": checkpoint["architecture"]["name"],
              "recipe": (checkpoint.get("recipe") or {}).get("name")}
    return export_graph(graph, out_dir, target=resolved, seed=seed, overwrite=overwrite,
                        source=source, readout_copies=readout_copies, log=log,
                        timings=timings)


def lower_model_file(model_path: Path, purpose: str = "exported"
                     ) -> tuple[EIGraph, Any, dict[str, Any], str]:
    """``(graph, model, checkpoint, sha256)`` of a ``model.pt``: loaded by the checkpoint
    loader and lowered, the graph's meta naming its source (the file's hash, the data set and
    the data's identity). A model with no E-I graph form raises ``ValueError`` saying it cannot
    be ``purpose``."""
    # torch loads here, not at import: exporting, reading or validating a graph never needs it
    from ..graph.lowering import lower
    from ..train.checkpoint import load_model

    model, checkpoint = load_model(model_path)
    digest = sha256_file(model_path)
    try:
        dataset = ((checkpoint.get("recipe") or {}).get("data") or {}).get("dataset")
        meta = {"source_model_sha256": digest, **({"dataset": dataset} if dataset else {}),
                **({"data": checkpoint["data"]} if checkpoint.get("data") else {})}
        graph = lower(model, meta=meta)
    except ValueError as exc:
        raise ValueError(f"{model_path}: the model cannot be {purpose}: {exc}") from None
    return graph, model, checkpoint, digest


def chip_graph(graph: EIGraph, target: Target, readout_copies: int | None = None
               ) -> tuple[EIGraph, int]:
    """The graph the chip runs, and its readout neurons per class: ``graph`` checked, with
    ``readout_copies`` readout neurons per class (None: :func:`default_readout_copies`)."""
    graph.validate()
    copies = default_readout_copies(graph, target) if readout_copies is None else readout_copies
    return replicate_readout(graph, copies), copies


def export_graph(graph: EIGraph, out_dir: str | Path, *,
                 target: str | Path | Target = "dynapse2", seed: int = 0,
                 chips: int | None = None, overwrite: bool = False,
                 source: dict[str, Any] | None = None,
                 readout_copies: int | None = None,
                 log: Callable[[str], None] | None = None,
                 timings: dict[str, float] | None = None) -> ExportResult:
    """Compile an E-I graph for ``target`` and write the export directory ``out_dir``.

    ``source`` describes where the graph came from (the manifest's ``source``; by default the
    graph's own sha256). ``readout_copies``: readout neurons per class on the chip
    (``eideploy.graph.readout``; None: :func:`default_readout_copies`); the exported
    ``graph.json`` is the graph with its copies. Raises as :func:`export_model` does, from
    ``TargetError`` on.
    """
    out_dir = Path(out_dir)
    resolved = resolve_target(target, chips)
    _check_destination(_absolute(out_dir), overwrite)
    graph, copies = chip_graph(graph, resolved, readout_copies)
    if log is not None and copies > 1:
        log(f"readout: {copies} neurons per class (decided by their summed spikes)")
    timings = dict(timings or {})
    start = time.perf_counter()
    compiled = compile_graph(graph, resolved, seed=seed)
    timings["compile"] = time.perf_counter() - start
    if source is None:
        source = {"kind": "graph", "name": graph.name, "sha256": graph_sha256(graph)}

    start = time.perf_counter()
    report = build_report(graph, compiled, resolved)
    absolute = _absolute(out_dir)
    with staged_directory(absolute, lambda: _check_destination(absolute, overwrite)) as stage:
        manifest = write_export(stage, graph, compiled, resolved, report, source=source,
                                seed=seed, log=log)
    timings["write"] = time.perf_counter() - start
    return ExportResult(out_dir, graph, compiled, manifest, report, timings)


#: Readout neurons per class on the chip unless told otherwise: on the shipped digits model,
#: 10% log-normal mismatch, 5 draws, 1 -> 80.22 +- 3.78%, 8 -> 94.39 +- 0.93%
#: (docs/hardware-aware.md §5); the integer chain decides as with one.
DEFAULT_READOUT_COPIES = 8


def default_readout_copies(graph: EIGraph, target: Target) -> int:
    """:data:`DEFAULT_READOUT_COPIES` where the readout layer (its readout and interneurons)
    still fits one core with them, else 1; 1 for a graph that has its copies already."""
    if readout_copies(graph) > 1:
        return 1
    readout = graph.population(graph.readout_settings.population)
    interneurons = sum(p.size for p in graph.populations
                       if p.role == "inh" and readout.layer and p.layer == readout.layer)
    fits = readout.size * DEFAULT_READOUT_COPIES + interneurons <= target.neurons_per_core
    return DEFAULT_READOUT_COPIES if fits and len(readout.shape) == 1 else 1


def graph_sha256(graph: EIGraph) -> str:
    """A content hash of a graph: its JSON structure and every array's dtype, shape and bytes."""
    doc, arrays = graph.to_dict()
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode())
    for key in sorted(arrays):
        value = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}:{value.dtype.str}:{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def write_export(directory: Path, graph: EIGraph, compiled: CompiledNetwork, target: Target,
                 report: dict[str, Any], *, source: dict[str, Any], seed: int,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write every export file into the (empty) ``directory``; returns the manifest."""
    say = log or (lambda message: None)
    directory.mkdir(parents=True, exist_ok=True)
    say("writing the float and the quantized graph")
    graph.save(directory)
    compiled.qgraph.graph.save(directory / "quantized")
    say("writing dynapse2.json and samna.json")
    write_config(compiled.config, directory / "dynapse2.json")
    (directory / "samna.json").write_text(samna_json(compiled.config), encoding="utf-8")
    say("writing the report and mapping.png")
    (directory / "report.json").write_text(dumps_json(report), encoding="utf-8")
    (directory / "report.md").write_text(report_markdown(report), encoding="utf-8")
    plot_mapping(compiled, directory / "mapping.png")
    for path in directory.rglob("*"):  # atomic writers create 0600 files: make them ordinary
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    files = [{"path": name, "bytes": (directory / name).stat().st_size,
              "sha256": sha256_file(directory / name)} for name in EXPORT_FILES]
    manifest = {
        "format": EXPORT_FORMAT, "format_version": EXPORT_FORMAT_VERSION,
        "versions": _versions(), "source": source, "seed": int(seed),
        "target": _target_record(target), "graph": graph.name,
        "summary": report["summary"], "files": files,
    }
    (directory / "manifest.json").write_text(dumps_json(manifest), encoding="utf-8")
    return manifest


# --------------------------------------------------------------------------- reading back
#: The largest array an export's npz may hold, in elements (a full board's weights are ~10^6).
MAX_ARRAY_ELEMENTS = 1 << 26
_NPZ_FIX = "export the model again ('eideploy export MODEL -o DIR --overwrite')"


def _npz_arrays(path: Path, out_dir: Path) -> dict[str, np.ndarray]:
    """The arrays of an export's ``weights.npz``: a zip of ``.npy`` members (CRC checked), each
    a numeric array (bool, integer or real; never objects) of at most
    :data:`MAX_ARRAY_ELEMENTS` elements, its header read before its data is allocated."""
    where = printable(path)
    check_regular(path, MAX_EXPORT_FILE_BYTES, within=out_dir)
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > 4096:
                raise ExportError(f"{where}: {len(members)} arrays; {_NPZ_FIX}")
            for member in members:
                name = member.filename
                if not name.endswith(".npy") or member.file_size > 8 * MAX_ARRAY_ELEMENTS + 4096:
                    raise ExportError(f"{where}: member {printable(name, 80)} is not a bounded "
                                      f".npy array; {_NPZ_FIX}")
                data = archive.read(member)  # checks the member's CRC
                buffer = io.BytesIO(data)
                version = np.lib.format.read_magic(buffer)
                header = {(1, 0): np.lib.format.read_array_header_1_0,
                          (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if header is None:
                    raise ValueError(f"npy format version {version}")
                shape, _, dtype = header(buffer)
                key = printable(name[:-4], 80)
                if dtype.hasobject or dtype.kind not in "biuf":
                    raise ExportError(f"{where}: array {key} has dtype {dtype}; an export holds "
                                      f"only numeric arrays; {_NPZ_FIX}")
                if math.prod(shape) > MAX_ARRAY_ELEMENTS:
                    raise ExportError(f"{where}: array {key} declares {math.prod(shape)} "
                                      f"elements, over {MAX_ARRAY_ELEMENTS}; {_NPZ_FIX}")
                buffer.seek(0)
                arrays[name[:-4]] = np.lib.format.read_array(buffer, allow_pickle=False)
    except ExportError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError,
            NotImplementedError, RuntimeError) as exc:
        raise ExportError(f"{where}: cannot be read as an npz archive of arrays "
                          f"({printable(exc, 120)}); {_NPZ_FIX}") from None
    return arrays


def _check_arrays(graph: EIGraph, source: str) -> None:
    """What ``EIGraph.validate`` leaves to the executors: every population array finite with
    one value per neuron (or one in all), every dense weight matrix (target, source), every
    sparse index inside its populations."""
    sizes = {p.name: p.size for p in graph.populations}
    shapes = {p.name: tuple(p.shape) for p in graph.populations}
    for pop in graph.populations:
        for key, value in pop.arrays.items():
            value = np.asarray(value)
            if value.dtype.kind not in "biuf" or not np.all(np.isfinite(value)):
                raise ExportError(f"{source}: array {pop.name}/{key} holds NaN, infinite or "
                                  f"non-numeric values; {_NPZ_FIX}")
            if value.size not in (1, pop.size) and pop.size % max(value.size, 1):
                raise ExportError(f"{source}: array {pop.name}/{key} has {value.size} values "
                                  f"for {pop.size} neurons; {_NPZ_FIX}")
    for proj in graph.projections:
        weight = np.asarray(proj.weight)
        if weight.dtype.kind != "f":
            raise ExportError(f"{source}: projection {proj.name}: weights of dtype "
                              f"{weight.dtype}, not real numbers; {_NPZ_FIX}")
        n_target, n_source = sizes[proj.target], sizes[proj.source]
        shape = shapes[proj.source]
        pool = proj.attrs.get("pool", 1)
        if isinstance(pool, int) and pool > 1 and len(shape) == 3:  # pooled before the op
            n_source = shape[0] * (shape[1] // pool) * (shape[2] // pool)
        if proj.op == "pointwise":  # channel mixing: (C_target, C_source) at every pixel
            n_target, n_source = shapes[proj.target][0], shape[0]
        if proj.op == "sparse":
            indices = np.asarray(proj.indices)
            if weight.ndim != 1 or indices.dtype.kind not in "iu" or (indices.size and (
                    indices.min() < 0 or indices[:, 0].max() >= n_target
                    or indices[:, 1].max() >= n_source)):
                raise ExportError(f"{source}: projection {proj.name}: sparse indices outside "
                                  f"its populations ({n_target} x {n_source}); {_NPZ_FIX}")
        elif proj.op in ("dense", "pointwise") and weight.shape != (n_target, n_source):
            raise ExportError(f"{source}: projection {proj.name}: weights of shape "
                              f"{weight.shape}, not ({n_target}, {n_source}); {_NPZ_FIX}")


#: graph.json's fields and their types (``EIGraph.from_dict`` converts where it should refuse).
_GRAPH_FIELDS = {"name": str, "T": int, "input": dict, "readout": dict, "division": dict,
                 "populations": list, "projections": list}
_POPULATION_FIELDS = {"name": str, "role": str, "shape": list, "params": dict, "arrays": list}
_PROJECTION_FIELDS = {"name": str, "source": str, "target": str, "kind": str, "op": str}
_MAX_NEURONS = 1 << 22


def _check_graph_doc(doc: Any, source: str) -> None:
    """The types and bounds of graph.json's fields, before anything is built from them."""
    def fail(where: str, message: str) -> ExportError:
        return ExportError(f"{source}: field '{where}' {message}; {_NPZ_FIX}")

    def typed(node: Any, fields: dict[str, type], where: str) -> None:
        if not isinstance(node, dict):
            raise fail(where or "graph", "must be an object")
        for key, kind in fields.items():
            value = node.get(key)
            if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
                raise fail(f"{where}.{key}" if where else key,
                           f"must be {kind.__name__}, got {printable(repr(value), 60)}")

    typed(doc, _GRAPH_FIELDS, "")
    if not 1 <= doc["T"] <= 1 << 16:
        raise fail("T", f"is {doc['T']}, outside 1..65536")
    for i, pop in enumerate(doc["populations"]):
        where = f"populations[{i}]"
        typed(pop, _POPULATION_FIELDS, where)
        shape = pop["shape"]
        if (not 1 <= len(shape) <= 8 or any(type(s) is not int or s < 1 for s in shape)
                or math.prod(shape) > _MAX_NEURONS):
            raise fail(f"{where}.shape", f"must list positive integers of at most "
                                         f"{_MAX_NEURONS} neurons, got "
                                         f"{printable(repr(shape), 60)}")
        if not all(isinstance(a, str) for a in pop["arrays"]):
            raise fail(f"{where}.arrays", "must list array names")
    for i, proj in enumerate(doc["projections"]):
        typed(proj, _PROJECTION_FIELDS, f"projections[{i}]")
    if not isinstance(doc.get("meta", {}), dict):
        raise fail("meta", "must be an object")


def read_graph_directory(directory: Path, out_dir: Path) -> EIGraph:
    """An export's ``graph.json`` + ``weights.npz`` in ``directory``, read as untrusted files
    (bounded, no NaN, bounded nesting, numeric arrays) and checked (:func:`_check_arrays`)."""
    gpath = directory / "graph.json"
    source = printable(gpath)
    try:
        doc = load_json(gpath, MAX_JSON_BYTES, within=out_dir)
    except UnsafeFileError as exc:
        raise ExportError(f"{exc}; {_NPZ_FIX}") from None
    arrays = _npz_arrays(directory / "weights.npz", out_dir)
    _check_graph_doc(doc, source)
    try:
        graph = EIGraph.from_dict(doc, arrays, source)
        _check_arrays(graph, printable(directory / "weights.npz"))
    except ExportError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError,
            OverflowError) as exc:
        raise ExportError(f"{source} with weights.npz: not a valid E-I graph "
                          f"({printable(exc, 200)}); {_NPZ_FIX}") from None
    return graph


def _same_graph(a: EIGraph, b: EIGraph) -> str | None:
    """The first difference between two graphs' structure, params and arrays, or None."""
    if (a.name, a.T, a.input, a.readout, a.division) != (b.name, b.T, b.input, b.readout,
                                                          b.division):
        return "name, T, input, readout or division"
    if [p.name for p in a.populations] != [p.name for p in b.populations]:
        return "population names"
    for pa, pb in zip(a.populations, b.populations, strict=True):
        if (pa.role, tuple(pa.shape), pa.layer, pa.params) != (pb.role, tuple(pb.shape),
                                                                pb.layer, pb.params):
            return f"population {pa.name}"
        if sorted(pa.arrays) != sorted(pb.arrays) or not all(
                np.asarray(pa.arrays[k]).dtype == np.asarray(pb.arrays[k]).dtype
                and np.array_equal(pa.arrays[k], pb.arrays[k]) for k in pa.arrays):
            return f"arrays of population {pa.name}"
    if [p.name for p in a.projections] != [p.name for p in b.projections]:
        return "projection names"
    for qa, qb in zip(a.projections, b.projections, strict=True):
        if (qa.source, qa.target, qa.kind, qa.op) != (qb.source, qb.target, qb.kind, qb.op):
            return f"projection {qa.name}"
        if not (qa.weight.dtype == qb.weight.dtype and np.array_equal(qa.weight, qb.weight)
                and np.array_equal(np.asarray(qa.indices), np.asarray(qb.indices))):
            return f"weights of projection {qa.name}"
    return None


@dataclass
class ExportDirectory:
    """An export directory read and checked: the manifest, each listed file's state (``ok`` or
    ``missing``), the report, the configuration and the graphs (each ``None`` when its files
    are missing)."""

    path: Path
    manifest: dict[str, Any]
    state: dict[str, str]
    report: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    graph: EIGraph | None = None
    quantized: EIGraph | None = None


def load_export(out_dir: str | Path, *, complete: bool = True) -> ExportDirectory:
    """The one loader of an export directory (``inspect``, ``simulate``, ``validate``, ``run``):
    the manifest and every file it lists (``eideploy.exportdir``: regular files inside the
    directory, sizes and sha256 as listed; a staging directory refused); ``dynapse2.json``
    checked value by value against the shipped target it names
    (``targets.dynapse2.config.read_config``); both graphs read as untrusted files, the
    quantized one equal to what ``dynapse2.json`` holds (``config_to_graph``) and the float one
    of the same populations; ``report.json`` of the fields ``inspect`` prints. ``complete``:
    refuse a missing file too (every command but ``inspect``). Raises :class:`ExportError` or
    ``ConfigError`` (both ``ValueError``) naming the file and the field."""
    out_dir = Path(out_dir)
    try:
        manifest = verify_export(out_dir) if complete else None
        manifest, state = read_manifest(out_dir) if manifest is None else (
            manifest, dict.fromkeys((f["path"] for f in manifest["files"]), "ok"))
    except ExportDirError as exc:
        raise ExportError(str(exc)) from None
    loaded = ExportDirectory(out_dir, manifest, state)
    present = {name for name, st in state.items() if st == "ok"}
    if "dynapse2.json" in present:
        loaded.config = read_config(out_dir / "dynapse2.json")
        block = loaded.config["target"]
        record = manifest["target"]
        if (record["name"], record["chips"]) != (block["name"], block["chips_per_board"]):
            raise ExportError(f"{printable(out_dir / 'manifest.json')}: field 'target' names "
                              f"{printable(record['name'], 40)} with {record['chips']} chip(s), "
                              f"dynapse2.json {printable(block['name'], 40)} with "
                              f"{block['chips_per_board']}; {_NPZ_FIX}")
    if {"quantized/graph.json", "quantized/weights.npz"} <= present:
        loaded.quantized = read_graph_directory(out_dir / "quantized", out_dir)
        if loaded.config is not None:
            chips = config_to_graph(loaded.config, source=printable(out_dir / "dynapse2.json"))
            differs = _same_graph(loaded.quantized, chips)
            if differs is not None:
                raise ExportError(f"{printable(out_dir / 'quantized')}: the quantized graph "
                                  f"(graph.json, weights.npz) differs from what dynapse2.json "
                                  f"holds ({differs}); {_NPZ_FIX}")
    if {"graph.json", "weights.npz"} <= present:
        loaded.graph = read_graph_directory(out_dir, out_dir)
        reference = loaded.quantized
        if reference is not None and [(p.name, p.role, tuple(p.shape))
                                      for p in loaded.graph.populations] != [
                (p.name, p.role, tuple(p.shape)) for p in reference.populations]:
            raise ExportError(f"{printable(out_dir / 'graph.json')}: its populations differ "
                              f"from the quantized graph's; {_NPZ_FIX}")
    if "report.json" in present:
        loaded.report = _read_report(out_dir / "report.json", out_dir)
    return loaded


#: The fields of report.json that ``inspect`` prints, with their types.
_REPORT_FIELDS: dict[str, Any] = {
    "summary": {"neurons": int, "cores": int, "chips": int, "dropped_synapses": int,
                "worst_fan_in": {"entries": int, "population": str, "neuron": int,
                                 "limit": int},
                "cam": {"entries": int, "capacity": int, "utilisation": (int, float)},
                "sram": {"max_per_neuron": int, "limit": int},
                "tags": {"used": int, "mode": str, "limit": int},
                "quantization": dict},
    "target": {"name": str, "chips": int, "cores_per_chip": int, "neurons_per_core": int},
    "chips": [{"chip": int, "cores_used": int, "cores": int, "neurons": int,
               "neurons_capacity": int, "cam_entries": int, "sram_entries": int}],
}


def _check_fields(doc: Any, spec: Any, where: str, source: str) -> None:
    if isinstance(spec, dict):
        if not isinstance(doc, dict):
            raise ExportError(f"{source}: field '{where}' must be an object; {_NPZ_FIX}")
        for key, sub in spec.items():
            if key not in doc:
                raise ExportError(f"{source}: field '{where}.{key}' is missing; {_NPZ_FIX}")
            _check_fields(doc[key], sub, f"{where}.{key}", source)
    elif isinstance(spec, list):
        if not isinstance(doc, list):
            raise ExportError(f"{source}: field '{where}' must be a list; {_NPZ_FIX}")
        for i, item in enumerate(doc):
            _check_fields(item, spec[0], f"{where}[{i}]", source)
    elif isinstance(doc, bool) or not isinstance(doc, spec):
        raise ExportError(f"{source}: field '{where}' has the wrong type "
                          f"({printable(repr(doc), 60)}); {_NPZ_FIX}")


def _read_report(path: Path, out_dir: Path) -> dict[str, Any]:
    source = printable(path)
    try:
        report = load_json(path, MAX_JSON_BYTES, within=out_dir)
    except UnsafeFileError as exc:
        raise ExportError(f"{exc}; {_NPZ_FIX}") from None
    if not isinstance(report, dict):
        raise ExportError(f"{source}: not an export report (a JSON object); {_NPZ_FIX}")
    for key, spec in _REPORT_FIELDS.items():
        if key not in report:
            raise ExportError(f"{source}: field '{key}' is missing; {_NPZ_FIX}")
        _check_fields(report[key], spec, key, source)
    quant = report["summary"]["quantization"]
    for key in ("relative_rmse", "max_error"):
        value = quant.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ExportError(f"{source}: field 'summary.quantization.{key}' must be a number "
                              f"or null; {_NPZ_FIX}")
    copies = report["summary"].get("readout_copies", 1)
    if isinstance(copies, bool) or not isinstance(copies, int):
        raise ExportError(f"{source}: field 'summary.readout_copies' must be an integer; "
                          f"{_NPZ_FIX}")
    return report


def read_export(out_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any] | None,
                                                dict[str, str]]:
    """The manifest, the report (``None`` if absent) and each listed file's state (``ok`` or
    ``missing``) of an export directory, every present file checked (:func:`load_export`
    with ``complete=False``: a partial copy is described, a changed file refused)."""
    loaded = load_export(out_dir, complete=False)
    return loaded.manifest, loaded.report, loaded.state


def export_graph_of(out_dir: str | Path, quantized: bool = True) -> EIGraph:
    """The (quantized) graph of a complete, unchanged export directory (:func:`load_export`):
    what ``simulate`` and ``run`` feed their simulators and the board's host."""
    loaded = load_export(out_dir)
    graph = loaded.quantized if quantized else loaded.graph
    assert graph is not None  # a complete export has both
    return graph
