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
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..atomic import json_plain, sha256_file, staged_directory
from ..graph.ir import EIGraph
from ..graph.readout import readout_copies, replicate_readout
from ..targets.dynapse2.compile import CompiledNetwork, DoesNotFit, compile_graph
from ..targets.dynapse2.config import write_config
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
           "read_export", "build_report", "report_markdown", "model_overview", "dumps_json",
           "sha256_file"]

EXPORT_FORMAT = "eideploy-export"
EXPORT_FORMAT_VERSION = 1
#: Every file of an export directory, in the order the manifest lists them.
EXPORT_FILES = ("graph.json", "weights.npz", "quantized/graph.json", "quantized/weights.npz",
                "dynapse2.json", "samna.json", "report.json", "report.md", "mapping.png")
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
    try:
        doc = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
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
    """``path`` made absolute without resolving links (``-o .`` then has a name and a parent)."""
    return Path(os.path.abspath(path))


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
    # torch loads here, not at import: exporting, reading or validating a graph never needs it
    from ..graph.lowering import lower
    from ..train.checkpoint import load_model

    model_path, out_dir = Path(model_path), Path(out_dir)
    resolved = resolve_target(target, chips)
    _check_destination(_absolute(out_dir), overwrite, (model_path.resolve(),))
    timings: dict[str, float] = {}
    start = time.perf_counter()
    model, checkpoint = load_model(model_path)
    digest = sha256_file(model_path)
    try:
        dataset = ((checkpoint.get("recipe") or {}).get("data") or {}).get("dataset")
        meta = {"source_model_sha256": digest, **({"dataset": dataset} if dataset else {})}
        graph = lower(model, meta=meta)
    except ValueError as exc:
        raise ValueError(f"{model_path}: the model cannot be exported: {exc}") from None
    timings["load+lower"] = time.perf_counter() - start
    source = {"kind": "model", "file": model_path.name, "sha256": digest,
              "architecture": checkpoint["architecture"]["name"],
              "recipe": (checkpoint.get("recipe") or {}).get("name")}
    return export_graph(graph, out_dir, target=resolved, seed=seed, overwrite=overwrite,
                        source=source, readout_copies=readout_copies, log=log,
                        timings=timings)


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
    graph.validate()
    copies = (default_readout_copies(graph, resolved) if readout_copies is None
              else readout_copies)
    graph = replicate_readout(graph, copies)
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
def read_export(out_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any] | None,
                                                dict[str, str]]:
    """The manifest, the report (``None`` if absent) and each listed file's state (``ok``,
    ``modified`` or ``missing``) of an export directory."""
    out_dir = Path(out_dir)
    path = out_dir / "manifest.json"
    if not path.is_file():
        raise ExportError(f"{out_dir}: not an export directory (no manifest.json); give a "
                          "model.pt or a directory written by 'eideploy export'")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise ExportError(f"{path}: cannot be read as JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{path}: not an eideploy export manifest (format "
                          f"{manifest.get('format') if isinstance(manifest, dict) else None!r})")
    state: dict[str, str] = {}
    for entry in manifest.get("files", []):
        file = out_dir / entry["path"]
        if not file.is_file():
            state[entry["path"]] = "missing"
        else:
            state[entry["path"]] = "ok" if sha256_file(file) == entry["sha256"] else "modified"
    report = None
    if (out_dir / "report.json").is_file():
        try:
            report = json.loads((out_dir / "report.json").read_text(encoding="utf-8"))
        except ValueError:
            report = None
    return manifest, report, state
