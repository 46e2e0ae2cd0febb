"""``eideploy export MODEL --target nir`` and ``eideploy import FILE.nir``: the E-I graph of a
model written as NIR, and a NIR graph turned into an E-I graph directory that ``eideploy export``
compiles for DYNAP-SE2 (docs/nir.md; the mapping is :mod:`eideploy.targets.nir`).

An imported graph is written as a *graph directory*: ``graph.json`` + ``weights.npz`` (the float
E-I graph, as in an export directory) and ``nir-import.json`` (the file it came from, the options,
and every note: roundings, and each difference in neuron semantics that ``approximate``
accepted). ``eideploy export GRAPH_DIR -o OUT`` then compiles it like a trained model.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes, sha256_file, staged_directory
from ..graph.ir import EIGraph
from ..targets.nir import DEFAULT_DT, ImportOptions, NIRImport, read_nir, write_nir
from .export import ExportError, lower_model_file, read_graph_directory

__all__ = ["export_nir", "import_nir", "load_graph_or_model", "is_graph_directory",
           "IMPORT_RECORD"]

#: The record of an import, next to the graph it wrote.
IMPORT_RECORD = "nir-import.json"


def is_graph_directory(path: Path) -> bool:
    """Whether ``path`` is a directory holding an E-I graph (``graph.json``)."""
    return path.is_dir() and (path / "graph.json").is_file()


def load_graph_or_model(path: str | Path, purpose: str = "exported"
                        ) -> tuple[EIGraph, dict[str, Any]]:
    """``(graph, source)`` of a ``model.pt`` (loaded and lowered) or of a graph directory
    (``graph.json`` + ``weights.npz``, read bounded); ``source`` names it for a manifest."""
    path = Path(path)
    if is_graph_directory(path):
        graph = read_graph_directory(path, path)
        return graph, {"kind": "graph", "file": path.name, "name": graph.name}
    if path.is_dir():
        raise ExportError(f"{path}: a directory without graph.json; give a model.pt or a graph "
                          "directory written by 'eideploy import'")
    graph, _, checkpoint, digest = lower_model_file(path, purpose)
    return graph, {"kind": "model", "file": path.name, "sha256": digest,
                   "architecture": checkpoint["architecture"]["name"]}


def _check_out_file(out: Path, overwrite: bool, suffix: str) -> None:
    if out.is_dir():
        raise ExportError(f"{out}: is a directory; --target {suffix.lstrip('.')} writes one "
                          f"file, e.g. -o model{suffix}")
    if out.exists() and not overwrite:
        raise ExportError(f"{out}: exists; pass --overwrite to replace it")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ExportError(f"{out}: the directory {parent} does not exist")


def export_nir(model: str | Path, out: str | Path, *, dt: float = DEFAULT_DT,
               overwrite: bool = False) -> tuple[Path, EIGraph]:
    """Write the E-I graph of ``model`` (a ``model.pt`` or a graph directory) as the NIR file
    ``out``; ``dt`` seconds per time step. Returns the path and the graph."""
    out = Path(out)
    _check_out_file(out, overwrite, ".nir")
    graph, _ = load_graph_or_model(model, "written as NIR")
    return write_nir(graph, out, dt), graph


def import_nir(source: str | Path, out_dir: str | Path, *, T: int | None = None,
               dt: float | None = None, reset: str | None = None,
               discretisation: str = "euler", encoding: str = "spikes",
               approximate: bool = False, overwrite: bool = False) -> NIRImport:
    """Read the NIR file ``source`` into an E-I graph and write the graph directory ``out_dir``
    (module doc). A file from another tool needs ``T`` and ``dt``; see
    :class:`eideploy.targets.nir.ImportOptions` for the others. Nothing is written on error."""
    source, out_dir = Path(source), Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir}: exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ExportError(f"{out_dir}: not empty; pass --overwrite to replace it")
    opts = None
    if T is not None or dt is not None:
        if T is None or dt is None:
            raise ValueError("a NIR graph from another tool needs both --T (time steps) and "
                             "--dt (seconds per step)")
        opts = ImportOptions(T=T, dt=dt, reset=reset, discretisation=discretisation,
                             encoding=encoding, approximate=approximate)
    result = read_nir(source, opts)
    record = {"source": source.name, "sha256": sha256_file(source), "writer": result.writer,
              "exact": result.exact, "options": asdict(opts) if opts else None,
              "notes": result.notes}
    absolute = out_dir.resolve()
    with staged_directory(absolute, lambda: None) as stage:
        result.graph.save(stage)
        atomic_write_bytes(stage / IMPORT_RECORD,
                           (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())
    return result
