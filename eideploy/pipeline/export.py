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
``report.md``              the same as readable tables
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
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from ..atomic import json_plain, sha256_file, staged_directory
from ..graph.ir import EIGraph
from ..targets.dynapse2.target import Target, resolve_target

if TYPE_CHECKING:  # the compiler is imported when an export runs
    from ..targets.dynapse2.compile import CompiledNetwork

__all__ = ["EXPORT_FORMAT", "EXPORT_FORMAT_VERSION", "REPORT_SCHEMA_VERSION", "EXPORT_FILES",
           "ExportError", "ExportResult", "export_model", "export_graph", "resolve_target",
           "read_export", "build_report", "report_markdown", "dumps_json", "sha256_file"]

EXPORT_FORMAT = "eideploy-export"
EXPORT_FORMAT_VERSION = 1
REPORT_SCHEMA_VERSION = 1
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


def _check_destination(out_dir: Path, overwrite: bool, protect: tuple[Path, ...] = ()) -> None:
    """Refuse, before any work, a destination an export must not replace: a file, a directory
    holding the working directory, the home directory or ``protect`` (the source model), and a
    non-empty directory that is not an earlier export (unless ``overwrite``)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir}: exists and is not a directory; give -o a directory path")
    if not out_dir.is_dir():
        return
    resolved = out_dir.resolve()
    for keep in (Path.cwd().resolve(), Path.home().resolve(), *protect):
        if keep == resolved or resolved in keep.parents:
            raise ExportError(f"{out_dir}: refusing to replace a directory that holds {keep}; "
                              "choose another -o directory")
    if not any(out_dir.iterdir()) or _is_export(out_dir) or overwrite:
        return
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
                 log: Callable[[str], None] | None = None) -> ExportResult:
    """Compile the model in ``model_path`` (a ``model.pt`` of ``eideploy train``) for ``target``
    and write the export directory ``out_dir``.

    Raises ``CheckpointError`` (bad, foreign, truncated or unsafe file; NaN or negative
    constrained weights), ``TargetError`` (unknown target), ``ExportError`` (destination),
    ``ValueError`` (a model that has no E-I graph form), ``DoesNotFit`` (design rules, with the
    full report) or ``MappingError`` (placement or routing). Nothing is written on any error.
    """
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
                        source=source, log=log, timings=timings)


def export_graph(graph: EIGraph, out_dir: str | Path, *,
                 target: str | Path | Target = "dynapse2", seed: int = 0,
                 chips: int | None = None, overwrite: bool = False,
                 source: dict[str, Any] | None = None,
                 log: Callable[[str], None] | None = None,
                 timings: dict[str, float] | None = None) -> ExportResult:
    """Compile an E-I graph for ``target`` and write the export directory ``out_dir``.

    ``source`` describes where the graph came from (the manifest's ``source``; by default the
    graph's own sha256). Raises as :func:`export_model` does, from ``TargetError`` on.
    """
    from ..targets.dynapse2.compile import compile_graph

    out_dir = Path(out_dir)
    resolved = resolve_target(target, chips)
    _check_destination(_absolute(out_dir), overwrite)
    graph.validate()
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
    from ..targets.dynapse2.config import write_config
    from ..targets.dynapse2.plot import plot_mapping
    from ..targets.dynapse2.samna import samna_json

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


# --------------------------------------------------------------------------- the report
def build_report(graph: EIGraph, compiled: CompiledNetwork, target: Target) -> dict[str, Any]:
    """``report.json``: what the mapping uses and what quantization and bias coding cost.

    Resources are counted on the configuration (``compiled.config``), the document the chips
    receive: per core and per chip the neurons used, CAM entries (fan-in) and SRAM entries
    (fan-out, the reserved monitoring entry not counted), tags heard; per population the fan-in
    histogram after quantization (dropped synapses free their entries).
    """
    config = compiled.config
    npc = target.neurons_per_core
    cam_limit, sram_limit = target.cam_entries_per_neuron, target.usable_sram
    layer_of = {p.name: p.layer for p in graph.populations}
    cores: list[dict[str, Any]] = []
    fan_in: dict[str, list[int]] = {}
    fan_out: dict[str, list[int]] = {}
    for chip in config["chips"]:
        for core in chip["cores"]:
            cam = np.array([len(n["cam"]) for n in core["neurons"]], dtype=np.int64)
            sram = np.array([len(n["sram"]) for n in core["neurons"]], dtype=np.int64)
            for neuron, c, s in zip(core["neurons"], cam.tolist(), sram.tolist(), strict=True):
                fan_in.setdefault(neuron["population"], []).append(c)
                fan_out.setdefault(neuron["population"], []).append(s)
            tags = {e["tag"] for n in core["neurons"] for e in n["cam"]}
            used = int(cam.size)
            cores.append({
                "chip": chip["id"], "core": core["id"], "role": core["role"],
                "parameter_group": core["parameter_group"],
                "populations": [f"{p['population']}[{p['start']}:{p['stop']}]"
                                for p in core["populations"]],
                "neurons": used, "neurons_capacity": npc, "utilisation": used / npc,
                "cam": {"entries": int(cam.sum()), "mean": float(cam.mean()) if used else 0.0,
                        "max": int(cam.max(initial=0)),
                        "utilisation": float(cam.sum()) / max(1, used * cam_limit)},
                "sram": {"entries": int(sram.sum()), "max": int(sram.max(initial=0)),
                         "utilisation": float(sram.sum()) / max(1, used * sram_limit)},
                "tags_heard": len(tags), "dc": core["dc"], "base_weights": core["base_weights"],
                # a CAM entry of dendrite d weighs dendrite_scales[d] * level(mask)
                "dendrite_scales": dict(core.get("dendrite_scales") or {}),
            })
    quant_cores = {(c["chip"], c["core"]): c for c in compiled.qgraph.stats["cores"]}
    for record in cores:
        stats = quant_cores.get((record["chip"], record["core"]), {})
        record["quantization"] = {k: stats.get(k) for k in ("n_synapses", "dropped",
                                                             "relative_rmse", "max_error")}
    chips = []
    for chip_id in range(target.chips_per_board):
        own = [c for c in cores if c["chip"] == chip_id]
        neurons = sum(c["neurons"] for c in own)
        chips.append({
            "chip": chip_id, "cores_used": len(own), "cores": target.cores_per_chip,
            "neurons": neurons, "neurons_capacity": target.neurons_per_chip,
            "utilisation": neurons / target.neurons_per_chip,
            "cam_entries": sum(c["cam"]["entries"] for c in own),
            "sram_entries": sum(c["sram"]["entries"] for c in own)})
    populations = []
    all_fan_in: list[int] = []
    for pop in graph.populations:
        if pop.name not in fan_in:
            continue
        counts = np.asarray(fan_in[pop.name])
        all_fan_in += fan_in[pop.name]
        populations.append({
            "population": pop.name, "layer": pop.layer, "role": pop.role, "neurons": pop.size,
            "cores": sum(1 for c in cores if any(s.startswith(f"{pop.name}[")
                                                 for s in c["populations"])),
            "fan_in": {"max": int(counts.max()), "mean": float(counts.mean()),
                       "limit": cam_limit, "histogram": _histogram(counts)},
            "fan_out": {"max": int(max(fan_out[pop.name])), "limit": sram_limit}})
    stats = compiled.qgraph.stats
    drc = compiled.drc.to_dict(max_neurons=20)
    return {
        "schema": "eideploy-export-report", "schema_version": REPORT_SCHEMA_VERSION,
        "graph": graph.name,
        "target": {"name": target.name, "board": target.board,
                   "chips": target.chips_per_board, "cores_per_chip": target.cores_per_chip,
                   "neurons_per_core": npc, "cam_entries_per_neuron": cam_limit,
                   "usable_sram_per_neuron": sram_limit, "tags": target.tags},
        "summary": compiled.summary(),
        "chips": chips,
        "cores": cores,
        "populations": populations,
        "fan_in_histogram": _histogram(np.asarray(all_fan_in, dtype=np.int64)),
        "quantization": {
            "total": stats["total"],
            "layers": [{"layer": name, "populations": sorted(
                p for p, layer in layer_of.items() if (layer or p) == name), **value}
                for name, value in stats["layers"].items()],
            "projections": [{"projection": name, **value}
                            for name, value in stats["projections"].items()],
            "cores": stats["cores"]},
        "biases": list(compiled.bias_report),
        "drc": {"ok": drc["ok"], "violations": drc["violations"],
                "summary": {k: v for k, v in drc["summary"].items() if k != "populations"},
                "populations": drc["summary"].get("populations", {})},
        "readout_channels": config["readout_channels"],
        "input_channels": len(config["input_channels"]),
    }


def _histogram(counts: np.ndarray) -> dict[str, list[int]]:
    values, freq = np.unique(np.asarray(counts, dtype=np.int64), return_counts=True)
    return {"values": values.tolist(), "counts": freq.tolist()}


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1e4 or abs(value) < 1e-3:
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(v).replace("|", "\\|") for v in row) + " |"
              for row in rows]
    return lines + [""]


def report_markdown(report: dict[str, Any]) -> str:
    """``report.md``: the report's numbers as readable tables (same content as report.json)."""
    s, t = report["summary"], report["target"]
    out = [f"# Export of `{report['graph']}` to {t['name']} ({t['board']}, {t['chips']} chip(s))",
           ""]
    out += ["## Summary", ""]
    worst = s["worst_fan_in"]
    out += _table(["quantity", "value", "limit"], [
        ["neurons", s["neurons"], t["chips"] * t["cores_per_chip"] * t["neurons_per_core"]],
        ["cores", s["cores"], t["chips"] * t["cores_per_chip"]],
        ["chips", s["chips"], t["chips"]],
        ["synapses (CAM entries)", s["cam"]["entries"], s["cam"]["capacity"]],
        ["dropped synapses (quantized to 0)", s["dropped_synapses"], None],
        ["worst fan-in", f"{worst['entries']} ({worst['population']} neuron {worst['neuron']})",
         worst["limit"]],
        ["CAM utilisation (used neurons)", f"{100 * s['cam']['utilisation']:.1f}%", None],
        ["SRAM entries, max per neuron", s["sram"]["max_per_neuron"], s["sram"]["limit"]],
        ["tags used (mode)", f"{s['tags']['used']} ({s['tags']['mode']})", s["tags"]["limit"]],
        ["quantization relative RMSE", s["quantization"]["relative_rmse"], None],
        ["quantization max error", s["quantization"]["max_error"], None]])
    out += ["## Chips", ""]
    out += _table(["chip", "cores used", "neurons", "utilisation", "CAM entries", "SRAM entries"],
                  [[c["chip"], f"{c['cores_used']}/{c['cores']}",
                    f"{c['neurons']}/{c['neurons_capacity']}",
                    f"{100 * c['utilisation']:.1f}%", c["cam_entries"], c["sram_entries"]]
                   for c in report["chips"]])
    out += ["## Cores", ""]
    out += _table(["chip", "core", "role", "group", "populations", "neurons", "CAM mean/max",
                   "SRAM max", "tags heard", "DC", "base weights", "dendrite scales",
                   "rel. RMSE", "dropped"],
                  [[c["chip"], c["core"], c["role"], c["parameter_group"],
                    ", ".join(c["populations"]), f"{c['neurons']}/{c['neurons_capacity']}",
                    f"{c['cam']['mean']:.1f}/{c['cam']['max']}", c["sram"]["max"],
                    c["tags_heard"], c["dc"],
                    " ".join(_fmt(b, 3) for b in c["base_weights"]),
                    " ".join(f"{d} {_fmt(v, 3)}" for d, v in
                             sorted(c.get("dendrite_scales", {}).items())) or "-",
                    c["quantization"]["relative_rmse"], c["quantization"]["dropped"]]
                   for c in report["cores"]])
    out += ["## Populations: fan-in (CAM entries per neuron) and fan-out", ""]
    out += _table(["population", "layer", "role", "neurons", "cores", "fan-in max", "mean",
                   "limit", "histogram (entries: neurons)", "fan-out max"],
                  [[p["population"], p["layer"], p["role"], p["neurons"], p["cores"],
                    p["fan_in"]["max"], round(p["fan_in"]["mean"], 2), p["fan_in"]["limit"],
                    _hist_text(p["fan_in"]["histogram"]),
                    f"{p['fan_out']['max']}/{p['fan_out']['limit']}"]
                   for p in report["populations"]])
    out += [f"All neurons: {_hist_text(report['fan_in_histogram'])}", ""]
    q = report["quantization"]
    out += ["## Quantization error", "",
            f"Over all {q['total']['n_synapses']} non-zero synapses: relative RMSE "
            f"{_fmt(q['total']['relative_rmse'])}, max error {_fmt(q['total']['max_error'])}, "
            f"{q['total']['dropped']} dropped.", "", "Per layer:", ""]
    out += _table(["layer", "synapses", "dropped", "RMSE", "relative RMSE", "max error"],
                  [[x["layer"], x["n_synapses"], x["dropped"], x["rmse"], x["relative_rmse"],
                    x["max_error"]] for x in q["layers"]])
    out += ["Per core:", ""]
    out += _table(["chip", "core", "bases (W0..W3)", "synapses", "dropped", "relative RMSE",
                   "max error"],
                  [[x["chip"], x["core"], " ".join(_fmt(b, 3) for b in x["bases"]),
                    x["n_synapses"], x["dropped"], x["relative_rmse"], x["max_error"]]
                   for x in q["cores"]])
    out += ["## Bias codes", "",
            "Requested and realised currents (A) of the parameters eideploy sets; error is "
            "|realised - requested| / requested.", ""]
    out += _table(["chip", "core", "parameter", "requested", "coarse", "fine", "realised",
                   "error", "clipped"],
                  [[b["chip"], b["core"], b["name"], b["requested"], b["coarse"], b["fine"],
                    b["realised"], b["error"], b.get("clipped")] for b in report["biases"]])
    d = report["drc"]
    out += ["## Design-rule check", "",
            "OK: no violations." if d["ok"] else f"{len(d['violations'])} violation(s).", ""]
    out += _table(["population", "layer", "role", "neurons", "cores", "fan-in max",
                   "worst neuron", "sources", "tags/core (min)"],
                  [[name, p["layer"], p["role"], p["neurons"], p["cores"], p["fan_in"]["max"],
                    p["fan_in"]["worst_neuron"], p["sources"], p["tags_per_core_min"]]
                   for name, p in d["populations"].items()])
    return "\n".join(out).rstrip() + "\n"


def _hist_text(hist: dict[str, list[int]]) -> str:
    pairs = list(zip(hist["values"], hist["counts"], strict=True))
    if len(pairs) > 8:
        head = ", ".join(f"{v}: {c}" for v, c in pairs[:4])
        tail = ", ".join(f"{v}: {c}" for v, c in pairs[-3:])
        return f"{head}, ..., {tail}"
    return ", ".join(f"{v}: {c}" for v, c in pairs)


# --------------------------------------------------------------------------- inspecting a model
def model_overview(model_path: str | Path, *, target: str | Path | Target = "dynapse2",
                   chips: int | None = None) -> dict[str, Any]:
    """What ``eideploy inspect MODEL.pt`` shows: architecture, parameters, layers, training
    metrics and the design-rule check of the lowered graph against ``target``.

    Fast on paper-sized models: the check counts fan-in on the graph as lowered (conv layers
    stay convolutions, nothing is unrolled). A model that has no E-I graph form (a ResNet, a
    BN baseline) is still described; its ``drc`` is ``None`` and ``drc_error`` says why.
    """
    from ..graph.lowering import lower
    from ..nn import EIConv2d, EILayer
    from ..targets.dynapse2.drc import check
    from ..train.checkpoint import load_model

    model_path = Path(model_path)
    resolved = resolve_target(target, chips)
    model, checkpoint = load_model(model_path)
    arch = checkpoint["architecture"]
    layers = []
    for name, module in model.named_modules():
        if not isinstance(module, EILayer):
            continue
        if isinstance(module, EIConv2d):
            kind = (f"conv {module.kernel_size}x{module.kernel_size} s{module.stride} "
                    f"p{module.padding}")
            inputs = module.in_channels
        else:
            kind = "linear"
            inputs = getattr(module, "in_features", module.fan_in)
        layers.append({"layer": name, "type": kind + (" (readout)" if module.readout else ""),
                       "inputs": int(inputs), "n_e": module.n_e, "n_i": module.n_i,
                       "fan_in": module.fan_in,
                       "parameters": sum(p.numel() for p in module.parameters())})
    overview: dict[str, Any] = {
        "file": str(model_path), "sha256": sha256_file(model_path),
        "architecture": arch["name"], "arguments": arch["kwargs"],
        "options": checkpoint.get("options"),
        "recipe": (checkpoint.get("recipe") or {}).get("name"),
        "T": int(getattr(model, "T", 0)), "in_shape": list(getattr(model, "in_shape", [])),
        "classes": int(getattr(model, "num_classes", 0)),
        "parameters": sum(p.numel() for p in model.parameters()),
        "layers": layers, "metrics": checkpoint.get("metrics") or {},
        "target": resolved.name, "drc": None, "drc_error": None,
    }
    try:
        graph = lower(model)
    except ValueError as exc:
        overview["drc_error"] = str(exc)
        return overview
    report = check(graph, resolved)
    per_layer: dict[str, dict[str, Any]] = {}
    for name, pop in report.summary["populations"].items():
        entry = per_layer.setdefault(pop["layer"] or name, {
            "neurons": 0, "cores": 0, "fan_in_max": -1, "worst_population": ""})
        entry["neurons"] += pop["neurons"]
        entry["cores"] += pop["cores"]
        if pop["fan_in"]["max"] > entry["fan_in_max"]:
            entry["fan_in_max"] = pop["fan_in"]["max"]
            entry["worst_population"] = name
    for layer in layers:
        layer.update(per_layer.get(layer["layer"], {}))
    overview["drc"] = {"ok": report.ok, "summary": report.summary,
                       "violations": report.summary["violations"],
                       "report": report.format()}
    return overview
