"""Validation of an export against its float model: the numbers behind ``eideploy validate``.

One pass over the data runs, batch by batch and side by side, every stage of the pipeline:

* ``float (torch)``: the trained model itself (``model.pt``), as ``eideploy evaluate`` runs it;
* ``float graph``: the export's unquantized E-I graph in the float executor;
* ``quantized graph``: the export's quantized graph (what the chip holds) in the float executor;
* ``integer <mode>``: the bit-accurate integer simulator, one variant per division mode;
* ``analog``: optionally, the analog simulator of ``dynapse2.json`` without mismatch, and its
  accuracy over mismatch draws.

Per variant: accuracy, prediction agreement with the float model and with the quantized graph,
per-population firing rates (spikes per time step per neuron; interneuron spike counts per step),
their Pearson correlation with the quantized graph's, saturation counts (integer); between the
quantized graph and ``integer exact``: the fraction of spike-exact time steps (every neuron of a
population equal at that step of that sample) and of equal spikes. The report is plain JSON
(``REPORT_SCHEMA``, ``REPORT_SCHEMA_VERSION``) with a Markdown rendering and three plots.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import sha256_file
from .plots import pearson

__all__ = ["REPORT_SCHEMA", "REPORT_SCHEMA_VERSION", "ValidationError", "ValidationData",
           "validate_export", "report_markdown", "write_report", "accuracy_gate"]

REPORT_SCHEMA = "eideploy-validation-report"
REPORT_SCHEMA_VERSION = 1
FLOAT_TORCH, FLOAT_GRAPH, QUANTIZED = "float (torch)", "float graph", "quantized graph"


class ValidationError(ValueError):
    """Model, export and data that cannot be compared; the message names the file and the fix."""


@dataclass
class ValidationData:
    """Everything the plots need beyond the report: one sample's spikes per variant and
    population, the divisors ``D`` (float units) per population of ``integer exact``, and the
    per-neuron rates per variant."""

    raster: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    divisors: dict[str, np.ndarray] = field(default_factory=dict)
    rates: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


@dataclass
class _Tally:
    """Running sums of one variant over the batches."""

    predictions: list[np.ndarray] = field(default_factory=list)
    rate_sums: dict[str, np.ndarray] = field(default_factory=dict)
    samples: int = 0
    saturations: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def add_states(self, states: dict[str, dict[str, np.ndarray]], roles: dict[str, str]) -> None:
        for name, state in states.items():
            if roles.get(name) not in ("exc", "inh"):
                continue
            out = np.asarray(state["output"], dtype=np.float64)  # (T, B, *shape)
            per_neuron = out.reshape(out.shape[0], out.shape[1], -1).mean(axis=0).sum(axis=0)
            self.rate_sums[name] = self.rate_sums.get(name, 0.0) + per_neuron

    def rates(self) -> dict[str, np.ndarray]:
        return {k: v / max(self.samples, 1) for k, v in self.rate_sums.items()}


def _percent(hits: np.ndarray) -> float:
    return round(100.0 * float(np.mean(hits)), 4)


def _graph_predictions(logits: np.ndarray, states: dict, readout: str, mode: str) -> np.ndarray:
    from ..graph.execute import readout_decision

    if mode == "spiking":
        return readout_decision(states[readout]["counts"], states[readout]["membrane"])
    return logits.argmax(axis=1)


def _load(model_path: Path, export_dir: Path, data: str | None, data_dir: str | None,
          split: str, limit: int | None):
    """The torch model, the export's graphs and config, and the data set (checked to match)."""
    from ..data import load_dataset
    from ..graph import EIGraph
    from ..targets.dynapse2.config import read_config
    from ..train import load_model
    from .export import read_export

    manifest, _, state = read_export(export_dir)
    bad = {k: v for k, v in state.items() if v != "ok"}
    if bad:
        raise ValidationError(f"{export_dir}: files {bad} differ from the manifest; export the "
                              "model again ('eideploy export ... --overwrite')")
    source = (manifest.get("source") or {}).get("sha256")
    if source and source != sha256_file(model_path):
        raise ValidationError(f"{export_dir} was exported from another model than {model_path} "
                              f"(sha256 {source[:12]}... in manifest.json); export {model_path} "
                              "again or give the model it came from")
    model, checkpoint = load_model(model_path)
    graph = EIGraph.load(export_dir)
    quantized = EIGraph.load(export_dir / "quantized")
    config = read_config(export_dir / "dynapse2.json")
    recipe = checkpoint.get("recipe") or {}
    name = data or graph.meta.get("dataset") or (recipe.get("data") or {}).get("dataset")
    if not name:
        raise ValidationError(f"{model_path}: the model names no data set; pass --data NAME")
    root = data_dir or (recipe.get("data") or {}).get("data_dir")
    dataset = load_dataset(name, split, root, T=graph.T)
    if limit is not None:
        dataset = dataclasses.replace(dataset, inputs=dataset.inputs[:limit],
                                      labels=dataset.labels[:limit])
    return model, graph, quantized, config, dataset, name, root


def validate_export(model_path: str | Path, export_dir: str | Path, *, data: str | None = None,
                    data_dir: str | None = None, split: str = "test",
                    divisions: Sequence[str] = ("exact", "lut:8", "shift"),
                    analog_mismatch: float | None = None, analog_trials: int = 0,
                    analog_seed: int = 0, analog_calibration: int = 0, batch_size: int = 128,
                    limit: int | None = None,
                    log: Callable[[str], None] | None = None
                    ) -> tuple[dict[str, Any], ValidationData]:
    """Compare every stage of ``export_dir`` with the float model ``model_path`` (module doc).

    ``analog_mismatch`` None skips the analog simulator; else it runs without mismatch once and
    ``analog_trials`` times with ``analog_mismatch`` (relative std), each draw also scored after
    a readout calibration on ``analog_calibration`` unlabelled training samples (0: not).
    Returns the report (plain JSON data) and the arrays for the plots.
    """
    import torch

    from ..data import eval_transform, load_dataset, to_float
    from ..graph.execute import FloatExecutor
    from ..sim.division import parse_division
    from ..sim.integer import IntegerSimulator
    from ..train.trainer import predict_batch

    say = log or (lambda message: None)
    model_path, export_dir = Path(model_path), Path(export_dir)
    modes = list(dict.fromkeys(divisions))
    for mode in modes:
        parse_division(mode)
    if "exact" not in modes:
        modes.insert(0, "exact")  # the reference of the spike-exact comparison
    model, graph, quantized, config, dataset, name, root = _load(
        model_path, export_dir, data, data_dir, split, limit)
    x_all = to_float(dataset.inputs).numpy()
    labels = dataset.labels.numpy().reshape(-1)
    roles = {p.name: p.role for p in quantized.populations}
    variants = [FLOAT_TORCH, FLOAT_GRAPH, QUANTIZED, *[f"integer {m}" for m in modes]]
    tallies = {v: _Tally() for v in variants}
    float_exec, quant_exec = FloatExecutor(graph), FloatExecutor(quantized)
    sims = {m: IntegerSimulator(quantized, m) for m in modes}
    exact_steps = {p: [0, 0] for p, r in roles.items() if r == "exc"}  # (equal, total) steps
    exact_spikes = {p: [0, 0] for p in exact_steps}
    divisors: dict[str, list[np.ndarray]] = {}
    raster: dict[str, dict[str, np.ndarray]] = {}
    transform = eval_transform(name)
    say(f"validating {export_dir} against {model_path} on {name} {split} "
        f"({len(labels)} samples; integer modes {', '.join(modes)})")
    for start in range(0, len(labels), batch_size):
        x = x_all[start:start + batch_size]
        batch = len(x)
        clock = time.perf_counter()
        with torch.no_grad():
            xt = torch.from_numpy(x)
            _, predicted = predict_batch(model, transform(xt) if transform else xt)
        tallies[FLOAT_TORCH].predictions.append(predicted.numpy())
        tallies[FLOAT_TORCH].seconds += time.perf_counter() - clock
        per_variant_states = {}
        for variant, executor in ((FLOAT_GRAPH, float_exec), (QUANTIZED, quant_exec)):
            clock = time.perf_counter()
            logits, states = executor.run(x, return_states=True)
            tallies[variant].predictions.append(
                _graph_predictions(logits, states, executor.readout, executor.readout_mode))
            tallies[variant].seconds += time.perf_counter() - clock
            tallies[variant].add_states(states, roles)
            per_variant_states[variant] = states
        for mode, sim in sims.items():
            variant = f"integer {mode}"
            clock = time.perf_counter()
            result = sim.run(x, return_states=True)
            tallies[variant].seconds += time.perf_counter() - clock
            tallies[variant].predictions.append(result.predictions())
            tallies[variant].add_states(result.states, roles)
            for key, value in result.saturations.items():
                saturations = tallies[variant].saturations
                saturations[key] = saturations.get(key, 0) + value
            per_variant_states[variant] = result.states
        quant_states = per_variant_states[QUANTIZED]
        int_states = per_variant_states["integer exact"]
        for pop in exact_steps:
            a = np.asarray(quant_states[pop]["output"]).reshape(graph.T, batch, -1) > 0
            b = np.asarray(int_states[pop]["output"]).reshape(graph.T, batch, -1) > 0
            equal = a == b
            exact_steps[pop][0] += int(equal.all(axis=2).sum())
            exact_steps[pop][1] += equal.shape[0] * equal.shape[1]
            exact_spikes[pop][0] += int(equal.sum())
            exact_spikes[pop][1] += equal.size
            if "divisor" in int_states[pop]:
                frac = sims["exact"].frac[(pop, "div")]
                divisors.setdefault(pop, []).append(
                    np.asarray(int_states[pop]["divisor"], dtype=np.float64).ravel() * 2.0 ** -frac)
        if start == 0:
            for variant in (QUANTIZED, "integer exact"):
                raster[variant] = {p: np.asarray(s["output"])[:, 0].reshape(graph.T, -1)
                                   for p, s in per_variant_states[variant].items()
                                   if roles.get(p) in ("exc", "inh")}
        for tally in tallies.values():
            tally.samples += batch
        say(f"  {min(start + batch, len(labels))}/{len(labels)} samples")

    predictions = {v: np.concatenate(t.predictions) for v, t in tallies.items()}
    rates = {v: t.rates() for v, t in tallies.items() if t.rate_sums}
    analog = None
    if analog_mismatch is not None:
        x_cal = None
        if analog_calibration and analog_trials:  # the training split, labels unused
            train = load_dataset(name, "train", root, T=graph.T)
            x_cal = to_float(train.inputs[:analog_calibration]).numpy()
        analog = _analog(config, x_all, labels, analog_mismatch, analog_trials, analog_seed,
                         batch_size, say, x_cal)
        analog_seconds = analog.pop("seconds_no_mismatch")
        predictions["analog"] = analog.pop("_predictions")
        rates["analog"] = analog.pop("_rates")
    reference = rates[QUANTIZED]
    report_variants = {}
    for variant, pred in predictions.items():
        entry: dict[str, Any] = {
            "accuracy": _percent(pred == labels),
            "agreement_with_float": _percent(pred == predictions[FLOAT_TORCH]),
            "agreement_with_quantized": _percent(pred == predictions[QUANTIZED])}
        if variant in rates:
            entry["rates"] = {p: round(float(r.mean()), 6) for p, r in rates[variant].items()}
            entry["rate_correlation_with_quantized"] = {
                p: (None if (c := pearson(r, reference[p])) is None else round(c, 6))
                for p, r in rates[variant].items() if p in reference}
        if variant in tallies:
            entry["seconds"] = round(tallies[variant].seconds, 4)
        if variant.startswith("integer "):
            entry["saturations"] = dict(sorted(tallies[variant].saturations.items()))
            entry["saturation_events"] = int(sum(tallies[variant].saturations.values()))
        if variant == "analog" and analog is not None:
            entry["seconds"] = analog_seconds
        report_variants[variant] = entry
    divisor_values = {p: np.concatenate(v) for p, v in divisors.items()}
    report = {
        "schema": REPORT_SCHEMA, "schema_version": REPORT_SCHEMA_VERSION,
        "model": {"path": str(model_path), "sha256": sha256_file(model_path)},
        "export": str(export_dir), "data": {"dataset": name, "split": split,
                                            "samples": int(len(labels))},
        "T": graph.T, "divisions": modes, "variants": report_variants,
        "spike_exact": {p: {"steps": round(s[0] / max(s[1], 1), 6),
                            "spikes": round(exact_spikes[p][0] / max(exact_spikes[p][1], 1), 6)}
                        for p, s in exact_steps.items()},
        "divisors": {p: {"min": float(v.min()), "median": float(np.median(v)),
                         "max": float(v.max()),
                         "eps": float(quantized.division.get("eps", 0.0))}
                     for p, v in divisor_values.items() if v.size},
    }
    if analog is not None:
        report["analog"] = analog
    return report, ValidationData(raster, divisor_values, rates)


def _analog(config: dict, x: np.ndarray, y: np.ndarray, mismatch: float, trials: int,
            seed: int, batch_size: int, say: Callable[[str], None],
            calibration: np.ndarray | None = None) -> dict[str, Any]:
    """The analog simulator without mismatch (predictions, rates) and over mismatch draws."""
    from ..targets.dynapse2.analog import AnalogSimulator, accuracy_trials

    say("analog simulator, no mismatch")
    clock = time.perf_counter()
    sim = AnalogSimulator(config, mismatch=0.0, seed=seed)
    predictions, rate_sums, samples = [], {}, 0
    for start in range(0, len(y), batch_size):
        result = sim.run(x[start:start + batch_size])
        predictions.append(np.asarray(result.predictions()))
        n = len(x[start:start + batch_size])
        for pop, hz in result.rates.items():
            rate_sums[pop] = rate_sums.get(pop, 0.0) + np.asarray(hz, dtype=np.float64) * n
        samples += n
    seconds = time.perf_counter() - clock
    # Hz over the window (T model steps plus the analog chain's tail) -> spikes per sample
    # divided by T: spikes per model time step, the unit of the other variants' rates
    steps = int(config["graph"]["T"])
    rates = {p: v / samples * result.window / steps for p, v in rate_sums.items()}
    out: dict[str, Any] = {"seconds_no_mismatch": round(seconds, 3), "_predictions":
                           np.concatenate(predictions), "_rates": rates}
    if trials > 0 and mismatch > 0:
        say(f"analog simulator, mismatch {100 * mismatch:g}%, {trials} trials")
        result = accuracy_trials(config, x, y, mismatch=mismatch, trials=trials, seed=seed,
                                 batch_size=batch_size, calibration=calibration)
        out["mismatch"] = {"relative_std": mismatch, "trials": trials, "seed": seed,
                           "accuracy_mean": round(float(result.mean), 4),
                           "accuracy_std": round(float(result.std), 4),
                           "per_trial": [round(float(a), 4) for a in result.per_trial]}
        if result.calibrated_per_trial is not None:
            out["mismatch"].update(
                calibration_samples=int(len(calibration)),
                calibrated_accuracy_mean=round(float(result.calibrated_mean), 4),
                calibrated_accuracy_std=round(float(result.calibrated_std), 4),
                calibrated_per_trial=[round(float(a), 4) for a in result.calibrated_per_trial])
    return out


def accuracy_gate(report: dict[str, Any], max_drop: float) -> list[str]:
    """Integer variants that lose more than ``max_drop`` points against the float model."""
    reference = report["variants"][FLOAT_TORCH]["accuracy"]
    return [f"{v}: {reference - e['accuracy']:.2f} points below the float model "
            f"({e['accuracy']:.2f}% vs {reference:.2f}%)"
            for v, e in report["variants"].items()
            if v.startswith("integer ") and reference - e["accuracy"] > max_drop + 1e-9]


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)


def report_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown page (tables; the plots next to it)."""
    data = report["data"]
    lines = [f"# Validation of `{report['export']}`", "",
             f"Model `{report['model']['path']}` (sha256 `{report['model']['sha256'][:16]}`), "
             f"{data['dataset']} {data['split']} split, {data['samples']} samples, "
             f"T = {report['T']}. Schema {report['schema']} v{report['schema_version']}.", "",
             "## Accuracy and agreement", "",
             "| variant | accuracy % | agrees with float % | agrees with quantized % | "
             "saturation events | seconds |", "|---|---:|---:|---:|---:|---:|"]
    for variant, e in report["variants"].items():
        lines.append(f"| {variant} | {e['accuracy']:.2f} | {e['agreement_with_float']:.2f} | "
                     f"{e['agreement_with_quantized']:.2f} | {e.get('saturation_events', '')} | "
                     f"{_fmt(e.get('seconds'))} |")
    pops = sorted({p for e in report["variants"].values() for p in e.get("rates", {})})
    if pops:
        lines += ["", "## Firing rates (spikes per time step per neuron; interneurons: spike "
                  "counts per step) and their correlation with the quantized graph", "",
                  "| variant | " + " | ".join(pops) + " |", "|---|" + "---:|" * len(pops)]
        for variant, e in report["variants"].items():
            if "rates" not in e:
                continue
            cells = []
            for p in pops:
                r, c = e["rates"].get(p), e["rate_correlation_with_quantized"].get(p)
                cells.append("" if r is None else f"{r:.4f} (r = {_fmt(c)})")
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    if report["spike_exact"]:
        lines += ["", "## Spike-exact: quantized graph vs integer exact", "",
                  "| population | spike-exact time steps | equal spikes |", "|---|---:|---:|"]
        for p, s in report["spike_exact"].items():
            lines.append(f"| {p} | {100 * s['steps']:.2f}% | {100 * s['spikes']:.3f}% |")
    if report["divisors"]:
        lines += ["", "## Divisors D = I_div + eps (integer exact, model units)", "",
                  "| population | min | median | max | eps (floor) |", "|---|---:|---:|---:|---:|"]
        for p, d in report["divisors"].items():
            lines.append(f"| {p} | {d['min']:.4g} | {d['median']:.4g} | {d['max']:.4g} | "
                         f"{d['eps']:.4g} |")
    analog = report.get("analog")
    if analog and "mismatch" in analog:
        m = analog["mismatch"]
        lines += ["", "## Analog simulator with device mismatch", "",
                  f"{100 * m['relative_std']:g}% mismatch, {m['trials']} draws (seed "
                  f"{m['seed']}): accuracy {m['accuracy_mean']:.2f} +- {m['accuracy_std']:.2f}%."]
        if "calibrated_accuracy_mean" in m:
            lines += ["", f"The same draws after a host-side readout calibration (each class's "
                      f"spike count scaled by the nominal chip's mean count over this chip's, on "
                      f"{m['calibration_samples']} unlabelled training samples): "
                      f"{m['calibrated_accuracy_mean']:.2f} +- "
                      f"{m['calibrated_accuracy_std']:.2f}%."]
    saturated = {v: e["saturations"] for v, e in report["variants"].items()
                 if e.get("saturation_events")}
    lines += ["", "## Saturation", ""]
    if saturated:
        for variant, counts in saturated.items():
            lines.append(f"* {variant}: " + ", ".join(f"{k} {n}" for k, n in counts.items() if n))
    else:
        lines.append("No value reached the limit of its width in any integer variant.")
    lines += ["", "![firing rates](rates.png)", "", "![raster of one sample](raster.png)", "",
              "![divisors](divisors.png)", ""]
    return "\n".join(lines)


def write_report(report: dict[str, Any], data: ValidationData, directory: str | Path) -> list[Path]:
    """``report.json``, ``report.md`` and the plots in ``directory``, written atomically (a
    staged directory renamed into place)."""
    import json

    from ..atomic import staged_directory
    from .plots import plot_divisors, plot_raster, plot_rates

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValidationError(f"{directory}: exists and is not a directory; choose another "
                              "--report-dir")
    names = ["report.json", "report.md", "rates.png", "raster.png", "divisors.png"]
    with staged_directory(directory) as stage:
        (stage / "report.json").write_text(json.dumps(report, indent=2, sort_keys=False,
                                                      allow_nan=False) + "\n", encoding="utf-8")
        (stage / "report.md").write_text(report_markdown(report), encoding="utf-8")
        plot_rates(data.rates, stage / "rates.png")
        plot_raster(data.raster, stage / "raster.png")
        plot_divisors(data.divisors, report.get("divisors", {}), stage / "divisors.png")
    return [directory / n for n in names]

