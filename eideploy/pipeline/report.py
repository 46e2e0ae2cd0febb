"""``report.json`` and ``report.md`` of an export: what the mapping uses and what quantization
and bias coding cost.

:func:`build_report` counts resources on the configuration the chips receive (``dynapse2.json``)
and gathers the quantizer's and the bias coder's errors and the design-rule check; it returns
plain JSON data. :func:`report_markdown` renders the same numbers as tables, section by section.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..graph.ir import EIGraph
from ..graph.readout import readout_copies
from ..targets.dynapse2.target import Target

if TYPE_CHECKING:  # the compiler is imported when an export runs
    from ..targets.dynapse2.compile import CompiledNetwork

__all__ = ["REPORT_SCHEMA_VERSION", "build_report", "report_markdown"]

REPORT_SCHEMA_VERSION = 1


def build_report(graph: EIGraph, compiled: CompiledNetwork, target: Target) -> dict[str, Any]:
    """``report.json``: what the mapping uses and what quantization and bias coding cost.

    Resources are counted on the configuration (``compiled.config``), the document the chips
    receive: per core and per chip the neurons used, CAM entries (fan-in) and SRAM entries
    (fan-out, the reserved monitoring entry not counted), tags heard; per population the fan-in
    histogram after quantization (dropped synapses free their entries).
    """
    config = compiled.config
    cores, fan_in, fan_out = _core_records(config, target)
    quant_cores = {(c["chip"], c["core"]): c for c in compiled.qgraph.stats["cores"]}
    for record in cores:
        stats = quant_cores.get((record["chip"], record["core"]), {})
        record["quantization"] = {k: stats.get(k) for k in ("n_synapses", "dropped",
                                                             "relative_rmse", "max_error")}
    populations = _population_records(graph, cores, fan_in, fan_out, target)
    all_fan_in = [count for pop in graph.populations for count in fan_in.get(pop.name, [])]
    stats = compiled.qgraph.stats
    layer_of = {p.name: p.layer for p in graph.populations}
    drc = compiled.drc.to_dict(max_neurons=20)
    return {
        "schema": "eideploy-export-report", "schema_version": REPORT_SCHEMA_VERSION,
        "graph": graph.name,
        "target": {"name": target.name, "board": target.board,
                   "chips": target.chips_per_board, "cores_per_chip": target.cores_per_chip,
                   "neurons_per_core": target.neurons_per_core,
                   "cam_entries_per_neuron": target.cam_entries_per_neuron,
                   "usable_sram_per_neuron": target.usable_sram, "tags": target.tags},
        "summary": {**compiled.summary(), "readout_copies": readout_copies(graph)},
        "chips": _chip_records(cores, target),
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


def _core_records(config: dict[str, Any], target: Target
                  ) -> tuple[list[dict[str, Any]], dict[str, list[int]], dict[str, list[int]]]:
    """One record per used core (neurons, CAM and SRAM entries, tags heard, biases), and each
    population's CAM (fan-in) and SRAM (fan-out) entry counts per neuron."""
    npc = target.neurons_per_core
    cam_limit, sram_limit = target.cam_entries_per_neuron, target.usable_sram
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
    return cores, fan_in, fan_out


def _chip_records(cores: list[dict[str, Any]], target: Target) -> list[dict[str, Any]]:
    """Per chip of the board: cores and neurons used, CAM and SRAM entries."""
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
    return chips


def _population_records(graph: EIGraph, cores: list[dict[str, Any]],
                        fan_in: dict[str, list[int]], fan_out: dict[str, list[int]],
                        target: Target) -> list[dict[str, Any]]:
    """Per population on chip, in graph order: cores, fan-in histogram and fan-out."""
    populations = []
    for pop in graph.populations:
        if pop.name not in fan_in:
            continue
        counts = np.asarray(fan_in[pop.name])
        populations.append({
            "population": pop.name, "layer": pop.layer, "role": pop.role, "neurons": pop.size,
            "cores": sum(1 for c in cores if any(s.startswith(f"{pop.name}[")
                                                 for s in c["populations"])),
            "fan_in": {"max": int(counts.max()), "mean": float(counts.mean()),
                       "limit": target.cam_entries_per_neuron, "histogram": _histogram(counts)},
            "fan_out": {"max": int(max(fan_out[pop.name])), "limit": target.usable_sram}})
    return populations


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
    t = report["target"]
    out = [f"# Export of `{report['graph']}` to {t['name']} ({t['board']}, {t['chips']} chip(s))",
           ""]
    for section in (_summary_section, _resources_section, _quantization_section,
                    _bias_section, _drc_section):
        out += section(report)
    return "\n".join(out).rstrip() + "\n"


def _summary_section(report: dict[str, Any]) -> list[str]:
    s, t = report["summary"], report["target"]
    worst = s["worst_fan_in"]
    return ["## Summary", ""] + _table(["quantity", "value", "limit"], [
        ["neurons", s["neurons"], t["chips"] * t["cores_per_chip"] * t["neurons_per_core"]],
        ["cores", s["cores"], t["chips"] * t["cores_per_chip"]],
        ["chips", s["chips"], t["chips"]],
        ["readout neurons per class (summed)", s.get("readout_copies", 1), None],
        ["synapses (CAM entries)", s["cam"]["entries"], s["cam"]["capacity"]],
        ["dropped synapses (quantized to 0)", s["dropped_synapses"], None],
        ["worst fan-in", f"{worst['entries']} ({worst['population']} neuron {worst['neuron']})",
         worst["limit"]],
        ["CAM utilisation (used neurons)", f"{100 * s['cam']['utilisation']:.1f}%", None],
        ["SRAM entries, max per neuron", s["sram"]["max_per_neuron"], s["sram"]["limit"]],
        ["tags used (mode)", f"{s['tags']['used']} ({s['tags']['mode']})", s["tags"]["limit"]],
        ["quantization relative RMSE", s["quantization"]["relative_rmse"], None],
        ["quantization max error", s["quantization"]["max_error"], None]])


def _resources_section(report: dict[str, Any]) -> list[str]:
    out = ["## Chips", ""]
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
    return out + [f"All neurons: {_hist_text(report['fan_in_histogram'])}", ""]


def _quantization_section(report: dict[str, Any]) -> list[str]:
    q = report["quantization"]
    out = ["## Quantization error", "",
           f"Over all {q['total']['n_synapses']} non-zero synapses: relative RMSE "
           f"{_fmt(q['total']['relative_rmse'])}, max error {_fmt(q['total']['max_error'])}, "
           f"{q['total']['dropped']} dropped.", "", "Per layer:", ""]
    out += _table(["layer", "synapses", "dropped", "RMSE", "relative RMSE", "max error"],
                  [[x["layer"], x["n_synapses"], x["dropped"], x["rmse"], x["relative_rmse"],
                    x["max_error"]] for x in q["layers"]])
    out += ["Per core:", ""]
    return out + _table(["chip", "core", "bases (W0..W3)", "synapses", "dropped",
                         "relative RMSE", "max error"],
                        [[x["chip"], x["core"], " ".join(_fmt(b, 3) for b in x["bases"]),
                          x["n_synapses"], x["dropped"], x["relative_rmse"], x["max_error"]]
                         for x in q["cores"]])


def _bias_section(report: dict[str, Any]) -> list[str]:
    return ["## Bias codes", "",
            "Requested and realised currents (A) of the parameters eideploy sets; error is "
            "|realised - requested| / requested.", ""] + _table(
        ["chip", "core", "parameter", "requested", "coarse", "fine", "realised", "error",
         "clipped"],
        [[b["chip"], b["core"], b["name"], b["requested"], b["coarse"], b["fine"],
          b["realised"], b["error"], b.get("clipped")] for b in report["biases"]])


def _drc_section(report: dict[str, Any]) -> list[str]:
    d = report["drc"]
    return ["## Design-rule check", "",
            "OK: no violations." if d["ok"] else f"{len(d['violations'])} violation(s).",
            ""] + _table(["population", "layer", "role", "neurons", "cores", "fan-in max",
                          "worst neuron", "sources", "tags/core (min)"],
                         [[name, p["layer"], p["role"], p["neurons"], p["cores"],
                           p["fan_in"]["max"], p["fan_in"]["worst_neuron"], p["sources"],
                           p["tags_per_core_min"]]
                          for name, p in d["populations"].items()])


def _hist_text(hist: dict[str, list[int]]) -> str:
    pairs = list(zip(hist["values"], hist["counts"], strict=True))
    if len(pairs) > 8:
        head = ", ".join(f"{v}: {c}" for v, c in pairs[:4])
        tail = ", ".join(f"{v}: {c}" for v, c in pairs[-3:])
        return f"{head}, ..., {tail}"
    return ", ".join(f"{v}: {c}" for v, c in pairs)


