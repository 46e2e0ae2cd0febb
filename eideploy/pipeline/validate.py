"""Validation of an export against its float model: the numbers behind ``eideploy validate``.

Validation is a list of variants (:mod:`.variants`) with one interface, ``run(x) -> VariantRun``
(predictions and per-population states of one batch); one pass over the data runs them batch by
batch, side by side:

* ``float (torch)``: the trained model itself (``model.pt``), as ``eideploy evaluate`` runs it;
* ``float graph``: the export's unquantized E-I graph in the float executor;
* ``quantized graph``: the export's quantized graph (what the chip holds) in the float executor;
* ``integer <mode>``: the bit-accurate integer simulator, one variant per division mode;
* ``analog``: optionally, the analog simulator of ``dynapse2.json`` without mismatch, and one
  variant per mismatch draw (scored together, as mean +- std, in ``analog.mismatch``).

A board, or a virtual board, is one more variant of the same interface.

Per variant: accuracy, prediction agreement with the float model and with the quantized graph,
per-population firing rates (spikes per time step per neuron; interneuron spike counts per step),
their Pearson correlation with the quantized graph's, saturation counts (integer); between the
quantized graph and ``integer exact``: the fraction of spike-exact time steps (every neuron of a
population equal at that step of that sample) and of equal spikes. The report is plain JSON
(``REPORT_SCHEMA``, ``REPORT_SCHEMA_VERSION``) with a Markdown rendering that opens with the
:func:`headline` (float, integer and analog accuracy side by side) and three plots.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import sha256_file, staged_directory
from ..data import eval_transform, load_model_data, to_float
from ..graph import EIGraph
from ..graph.host import class_totals
from ..sim.division import parse_division
from ..sim.integer import IntegerSimulator
from ..targets.dynapse2.config import read_config
from ..train import load_model
from ..train.checkpoint import check_model_file
from .cost import cost_markdown, cost_report, variant_costs
from .export import export_model, read_export
from .neurobench_metrics import neurobench_entry
from .notes import note
from .plots import pearson, plot_cost, plot_divisors, plot_raster, plot_rates
from .simulate import calibration_inputs
from .variants import (
    SPIKING_ROLES,
    AnalogVariant,
    Calibration,
    GraphVariant,
    IntegerVariant,
    TorchVariant,
    Variant,
    VariantRun,
)

__all__ = ["REPORT_SCHEMA", "REPORT_SCHEMA_VERSION", "ValidationError", "ValidationData",
           "Variant", "VariantRun", "TorchVariant", "GraphVariant", "IntegerVariant",
           "AnalogVariant", "build_variants", "validate_export", "report_markdown",
           "write_report", "accuracy_gate", "analog_gate", "headline"]

REPORT_SCHEMA = "eideploy-validation-report"
REPORT_SCHEMA_VERSION = 1
FLOAT_TORCH, FLOAT_GRAPH, QUANTIZED = "float (torch)", "float graph", "quantized graph"
INTEGER_EXACT, ANALOG = "integer exact", "analog"


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
class _Loaded:
    """The torch model, the export's graphs and configuration, and the data (checked)."""

    model: torch.nn.Module
    graph: EIGraph
    quantized: EIGraph
    config: dict[str, Any]
    dataset: Any
    name: str
    root: str | None
    model_path: Path
    export_dir: Path
    split: str


def _load(model_path: Path, export_dir: Path, data: str | None, data_dir: str | None,
          split: str, limit: int | None) -> _Loaded:
    """The torch model, the export's graphs and config, and the data set (checked to match)."""
    manifest, _, state = read_export(export_dir)
    bad = {k: v for k, v in state.items() if v != "ok"}
    if bad:
        raise ValidationError(f"{export_dir}: files {bad} differ from the manifest; export the "
                              "model again ('eideploy export ... --overwrite')")
    source = (manifest.get("source") or {}).get("sha256")
    check_model_file(model_path)  # a FIFO or /dev/zero is refused before it is hashed
    if source and source != sha256_file(model_path):
        raise ValidationError(f"{export_dir} was exported from another model than {model_path} "
                              f"(sha256 {source[:12]}... in manifest.json); export {model_path} "
                              "again or give the model it came from")
    model, checkpoint = load_model(model_path)
    graph = EIGraph.load(export_dir)
    quantized = EIGraph.load(export_dir / "quantized")
    config = read_config(export_dir / "dynapse2.json")
    recipe = checkpoint.get("recipe") or {}
    recipe_data = {"dataset": graph.meta.get("dataset"), **(recipe.get("data") or {})}
    dataset = load_model_data(checkpoint.get("data"), recipe_data, split, data=data,
                              data_dir=data_dir, T=graph.T, source=str(model_path),
                              log=note)
    name = dataset.name
    root = data_dir or recipe_data.get("data_dir") or recipe_data.get("path")
    if limit is not None:
        dataset = dataclasses.replace(dataset, inputs=dataset.inputs[:limit],
                                      labels=dataset.labels[:limit])
    return _Loaded(model, graph, quantized, config, dataset, name, root, model_path,
                   export_dir, split)


def build_variants(loaded: _Loaded, modes: Sequence[str], *, analog_mismatch: float | None,
                   analog_trials: int, analog_seed: int, analog_calibration: int,
                   batch_size: int, analog_options: Mapping[str, Any] | None = None
                   ) -> list[Variant]:
    """The float model, the float and the quantized graph, the integer simulator per division
    mode, and (``analog_mismatch`` not None) the nominal analog chip and its mismatch draws
    (``analog_options``: more ``AnalogSimulator`` arguments, e.g. its integrator)."""
    options = dict(analog_options or {})
    variants: list[Variant] = [
        TorchVariant(FLOAT_TORCH, loaded.model, eval_transform(loaded.name)),
        GraphVariant(FLOAT_GRAPH, loaded.graph), GraphVariant(QUANTIZED, loaded.quantized),
        *[IntegerVariant(f"integer {m}", loaded.quantized, m) for m in modes]]
    if analog_mismatch is None:
        return variants
    variants.append(AnalogVariant(ANALOG, loaded.config, 0.0, analog_seed, batch_size,
                                  options=options))
    if analog_trials > 0 and analog_mismatch > 0:
        calibration = None
        if analog_calibration:
            x_cal = calibration_inputs(loaded.name, loaded.root, loaded.graph.T,
                                       analog_calibration, loaded.graph.meta.get("data"))
            # the model's own class totals on the unlabelled inputs: the decoder's teacher
            integer = IntegerSimulator(loaded.quantized, "exact").run(x_cal)
            teacher = class_totals(integer.counts, loaded.quantized.readout_settings.classes)
            calibration = Calibration(x_cal, loaded.config, batch_size, teacher, options)
        variants += [AnalogVariant(f"analog draw {i}", loaded.config, analog_mismatch,
                                   analog_seed + i, batch_size, calibration, draw=True,
                                   options=options)
                     for i in range(analog_trials)]
    return variants


# --------------------------------------------------------------------------- one pass
@dataclass
class _Tally:
    """Running sums of one variant over the batches."""

    predictions: list[np.ndarray] = field(default_factory=list)
    calibrated: list[np.ndarray] = field(default_factory=list)
    decoded: list[np.ndarray] = field(default_factory=list)
    rate_sums: dict[str, np.ndarray] = field(default_factory=dict)
    samples: int = 0
    saturations: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, run: VariantRun, batch: int, seconds: float) -> None:
        self.predictions.append(np.asarray(run.predictions))
        if run.calibrated is not None:
            self.calibrated.append(np.asarray(run.calibrated))
        if run.decoded is not None:
            self.decoded.append(np.asarray(run.decoded))
        for name, value in run.rate_sums.items():
            self.rate_sums[name] = self.rate_sums.get(name, 0.0) + value
        for key, value in run.saturations.items():
            self.saturations[key] = self.saturations.get(key, 0) + value
        self.samples += batch
        self.seconds += seconds

    def rates(self) -> dict[str, np.ndarray]:
        return {k: v / max(self.samples, 1) for k, v in self.rate_sums.items()}


@dataclass
class _SpikeExact:
    """The quantized graph against ``integer exact``: equal time steps and spikes per E
    population, the divisors ``D`` the integer simulator divided by, and sample 0's raster."""

    populations: list[str]
    exact_sim: IntegerSimulator  # its fixed-point formats turn divisors into float units
    steps: dict[str, list[int]] = field(default_factory=dict)  # (equal, total)
    spikes: dict[str, list[int]] = field(default_factory=dict)
    divisors: dict[str, list[np.ndarray]] = field(default_factory=dict)
    raster: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def add(self, quantized: VariantRun, exact: VariantRun, roles: Mapping[str, str],
            T: int) -> None:
        batch = len(exact.predictions)
        for pop in self.populations:
            a = np.asarray(quantized.states[pop]["output"]).reshape(T, batch, -1) > 0
            b = np.asarray(exact.states[pop]["output"]).reshape(T, batch, -1) > 0
            equal = a == b
            steps, spikes = self.steps.setdefault(pop, [0, 0]), self.spikes.setdefault(pop, [0, 0])
            steps[0] += int(equal.all(axis=2).sum())
            steps[1] += equal.shape[0] * equal.shape[1]
            spikes[0] += int(equal.sum())
            spikes[1] += equal.size
            if "divisor" in exact.states[pop]:
                self.divisors.setdefault(pop, []).append(
                    np.asarray(exact.states[pop]["divisor"], dtype=np.float64).ravel()
                    * 2.0 ** -self.exact_sim.frac[(pop, "div")])
        if not self.raster:
            for variant, run in ((QUANTIZED, quantized), (INTEGER_EXACT, exact)):
                self.raster[variant] = {p: np.asarray(s["output"])[:, 0].reshape(T, -1)
                                        for p, s in run.states.items()
                                        if roles.get(p) in SPIKING_ROLES}

    def report(self) -> dict[str, dict[str, float]]:
        return {p: {"steps": round(s[0] / max(s[1], 1), 6),
                    "spikes": round(self.spikes[p][0] / max(self.spikes[p][1], 1), 6)}
                for p, s in self.steps.items()}


def _run_all(variants: Sequence[Variant], x_all: np.ndarray, batch_size: int,
             exact: _SpikeExact, roles: Mapping[str, str], T: int,
             say: Callable[[str], None]) -> dict[str, _Tally]:
    """Every variant on every batch, side by side; the quantized graph and ``integer exact``
    compared spike for spike as they go."""
    tallies = {v.name: _Tally() for v in variants}
    for start in range(0, len(x_all), batch_size):
        x = x_all[start:start + batch_size]
        runs = {}
        for variant in variants:
            clock = time.perf_counter()
            runs[variant.name] = variant.run(x)
            tallies[variant.name].add(runs[variant.name], len(x), time.perf_counter() - clock)
        exact.add(runs[QUANTIZED], runs[INTEGER_EXACT], roles, T)
        say(f"  {min(start + len(x), len(x_all))}/{len(x_all)} samples")
    return tallies


# --------------------------------------------------------------------------- the report
def _percent(hits: np.ndarray) -> float:
    return round(100.0 * float(np.mean(hits)), 4)


def _variant_entry(variant: Variant, tally: _Tally, labels: np.ndarray,
                   predictions: Mapping[str, np.ndarray],
                   rates: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, Any]:
    pred = predictions[variant.name]
    entry: dict[str, Any] = {
        "accuracy": _percent(pred == labels),
        "agreement_with_float": _percent(pred == predictions[FLOAT_TORCH]),
        "agreement_with_quantized": _percent(pred == predictions[QUANTIZED])}
    if variant.name in rates:
        reference = rates[QUANTIZED]
        entry["rates"] = {p: round(float(r.mean()), 6) for p, r in rates[variant.name].items()}
        entry["rate_correlation_with_quantized"] = {
            p: (None if (c := pearson(r, reference[p])) is None else round(c, 6))
            for p, r in rates[variant.name].items() if p in reference}
    entry["seconds"] = round(tally.seconds, 4)
    if isinstance(variant, IntegerVariant):
        entry["saturations"] = dict(sorted(tally.saturations.items()))
        entry["saturation_events"] = int(sum(tally.saturations.values()))
    return entry


def _mismatch_summary(draws: Sequence[AnalogVariant], tallies: Mapping[str, _Tally],
                      labels: np.ndarray) -> dict[str, Any]:
    """``analog.mismatch``: accuracy over the draws (sample std), and after the calibration."""
    def spread(values: list[float]) -> tuple[float, float]:
        return (float(np.mean(values)),
                float(np.std(values, ddof=1)) if len(values) > 1 else 0.0)

    first = draws[0]
    per_trial = [100.0 * float(np.mean(np.concatenate(tallies[d.name].predictions) == labels))
                 for d in draws]
    mean, std = spread(per_trial)
    out: dict[str, Any] = {"relative_std": first.mismatch, "trials": len(draws),
                           "seed": first.seed, "accuracy_mean": round(mean, 4),
                           "accuracy_std": round(std, 4),
                           "per_trial": [round(a, 4) for a in per_trial]}
    if first.calibration is not None:
        calibrated = [100.0 * float(np.mean(np.concatenate(tallies[d.name].calibrated) == labels))
                      for d in draws]
        mean, std = spread(calibrated)
        out.update(calibration_samples=int(len(first.calibration.x)),
                   calibrated_accuracy_mean=round(mean, 4),
                   calibrated_accuracy_std=round(std, 4),
                   calibrated_per_trial=[round(a, 4) for a in calibrated])
        if tallies[first.name].decoded:
            decoded = [100.0 * float(np.mean(np.concatenate(tallies[d.name].decoded) == labels))
                       for d in draws]
            mean, std = spread(decoded)
            out.update(decoded_accuracy_mean=round(mean, 4), decoded_accuracy_std=round(std, 4),
                       decoded_per_trial=[round(a, 4) for a in decoded])
    return out


def validate_export(model_path: str | Path, export_dir: str | Path, *, data: str | None = None,
                    data_dir: str | None = None, split: str = "test",
                    divisions: Sequence[str] = ("exact", "lut:8", "shift"),
                    analog_mismatch: float | None = None, analog_trials: int = 0,
                    analog_seed: int = 0, analog_calibration: int = 0, batch_size: int = 128,
                    limit: int | None = None, export_if_missing: bool = False,
                    log: Callable[[str], None] | None = None,
                    analog_options: Mapping[str, Any] | None = None
                    ) -> tuple[dict[str, Any], ValidationData]:
    """Compare every stage of ``export_dir`` with the float model ``model_path`` (module doc);
    with ``export_if_missing``, a missing ``export_dir`` is first exported to DYNAP-SE2.

    ``analog_mismatch`` None skips the analog simulator; else it runs without mismatch once and
    ``analog_trials`` times with ``analog_mismatch`` (relative std), each draw also scored after
    a readout calibration on ``analog_calibration`` unlabelled training samples (0: not);
    ``analog_options``: more ``AnalogSimulator`` arguments (``integrator``, ``device``).
    Returns the report (plain JSON data) and the arrays for the plots.
    """
    say = log or (lambda message: None)
    model_path, export_dir = Path(model_path), Path(export_dir)
    modes = list(dict.fromkeys(divisions))
    for mode in modes:
        parse_division(mode)
    if "exact" not in modes:
        modes.insert(0, "exact")  # the reference of the spike-exact comparison
    if export_if_missing and not export_dir.exists():
        say(f"{export_dir} does not exist: exporting {model_path} to DYNAP-SE2 first")
        export_model(model_path, export_dir, target="dynapse2")
    loaded = _load(model_path, export_dir, data, data_dir, split, limit)
    x_all = to_float(loaded.dataset.inputs).numpy()
    labels = loaded.dataset.labels.numpy().reshape(-1)
    quantized = loaded.quantized
    roles = {p.name: p.role for p in quantized.populations}
    variants = build_variants(loaded, modes, analog_mismatch=analog_mismatch,
                              analog_trials=analog_trials, analog_seed=analog_seed,
                              analog_calibration=analog_calibration, batch_size=batch_size,
                              analog_options=analog_options)
    integer_exact = next(v for v in variants
                         if isinstance(v, IntegerVariant) and v.name == INTEGER_EXACT)
    exact = _SpikeExact([p for p, r in roles.items() if r == "exc"], integer_exact.sim)
    say(f"validating {export_dir} against {model_path} on {loaded.name} {split} "
        f"({len(labels)} samples; integer modes {', '.join(modes)}"
        + (f"; analog simulator, {sum(v.draw for v in variants)} mismatch draw(s)"
           if analog_mismatch is not None else "") + ")")
    tallies = _run_all(variants, x_all, batch_size, exact, roles, loaded.graph.T, say)

    report, data = _report(variants, tallies, exact, labels, loaded, modes)
    say("counting spikes, synaptic events and energy per inference")
    report["cost"] = cost_report(quantized, x_all, float_graph=loaded.graph,
                                 export_dir=export_dir)
    report["cost"]["neurobench"] = neurobench_entry(model_path, x_all, labels)
    measured = [v for v in variants if isinstance(v, (IntegerVariant, AnalogVariant))]
    report["cost"]["variants"] = variant_costs(
        quantized, {v.name: tallies[v.name].rates() for v in measured},
        {v.name: _percent(np.concatenate(tallies[v.name].predictions) == labels)
         for v in measured}, report["cost"]["integer"], export_dir=export_dir)
    if analog_mismatch is not None:
        draws = [v for v in variants if v.draw and isinstance(v, AnalogVariant)]
        report["analog"] = {"mismatch": _mismatch_summary(draws, tallies, labels)} if draws \
            else {}
    return report, data


def _report(variants: Sequence[Variant], tallies: Mapping[str, _Tally], exact: _SpikeExact,
            labels: np.ndarray, loaded: _Loaded, modes: list[str]
            ) -> tuple[dict[str, Any], ValidationData]:
    """The report (all but the mismatch summary) and the arrays for the plots."""
    scored = [v for v in variants if not v.draw]
    predictions = {v.name: np.concatenate(tallies[v.name].predictions) for v in scored}
    rates = {v.name: tallies[v.name].rates() for v in scored if tallies[v.name].rate_sums}
    divisor_values = {p: np.concatenate(v) for p, v in exact.divisors.items()}
    eps = loaded.quantized.division_settings.eps
    report = {
        "schema": REPORT_SCHEMA, "schema_version": REPORT_SCHEMA_VERSION,
        "model": {"path": str(loaded.model_path), "sha256": sha256_file(loaded.model_path)},
        "export": str(loaded.export_dir), "data": {"dataset": loaded.name, "split": loaded.split,
                                                   "samples": int(len(labels))},
        "T": loaded.graph.T, "divisions": modes,
        "variants": {v.name: _variant_entry(v, tallies[v.name], labels, predictions, rates)
                     for v in scored},
        "spike_exact": exact.report(),
        "divisors": {p: {"min": float(v.min()), "median": float(np.median(v)),
                         "max": float(v.max()), "eps": eps}
                     for p, v in divisor_values.items() if v.size},
    }
    return report, ValidationData(exact.raster, divisor_values, rates)


def accuracy_gate(report: dict[str, Any], max_drop: float) -> list[str]:
    """Integer variants that lose more than ``max_drop`` points against the float model."""
    reference = report["variants"][FLOAT_TORCH]["accuracy"]
    return [f"{v}: {reference - e['accuracy']:.2f} points below the float model "
            f"({e['accuracy']:.2f}% vs {reference:.2f}%)"
            for v, e in report["variants"].items()
            if v.startswith("integer ") and reference - e["accuracy"] > max_drop + 1e-9]


def analog_gate(report: dict[str, Any], max_drop: float) -> list[str]:
    """The analog simulator without mismatch, if it loses more than ``max_drop`` points against
    ``integer exact`` (what the chip would compute if it were digital). Raises
    :class:`ValidationError` when the report has no analog variant."""
    variants = report["variants"]
    if ANALOG not in variants:
        raise ValidationError("--max-analog-drop needs the analog simulator: drop --no-analog")
    reference, analog = variants[INTEGER_EXACT]["accuracy"], variants[ANALOG]["accuracy"]
    if reference - analog <= max_drop + 1e-9:
        return []
    return [f"analog (no mismatch): {reference - analog:.2f} points below integer exact "
            f"({analog:.2f}% vs {reference:.2f}%)"]


@dataclass
class HeadlineRow:
    """One line of the headline: what ran, its accuracy (mean +- std over mismatch draws) and
    its drop against the stage before it."""

    label: str
    accuracy: str
    drop: str


def headline(report: dict[str, Any]) -> list[HeadlineRow]:
    """The numbers a reader looks for first, digital and analog side by side: the float model,
    the integer simulator (exact division), the analog simulator without mismatch and over the
    mismatch draws (and after the readout calibration). The Markdown page and the command line
    print the same rows."""
    variants = report["variants"]
    float_acc = variants[FLOAT_TORCH]["accuracy"]
    rows = [HeadlineRow("float model (torch)", f"{float_acc:.2f}", "")]
    integer = variants.get(INTEGER_EXACT, {}).get("accuracy")
    if integer is not None:
        rows.append(HeadlineRow("integer simulator (exact)", f"{integer:.2f}",
                                f"{float_acc - integer:+.2f} vs float"))
    if ANALOG in variants:
        analog = variants[ANALOG]["accuracy"]
        rows.append(HeadlineRow("analog simulator, no mismatch", f"{analog:.2f}",
                                f"{(integer or float_acc) - analog:+.2f} vs integer"))
    m = (report.get("analog") or {}).get("mismatch")
    if m:
        what = f"analog simulator, {100 * m['relative_std']:g}% mismatch ({m['trials']} draws)"
        rows.append(HeadlineRow(what, f"{m['accuracy_mean']:.2f} +- {m['accuracy_std']:.2f}",
                                f"{(integer or float_acc) - m['accuracy_mean']:+.2f} vs "
                                "integer"))
        if "calibrated_accuracy_mean" in m:
            rows.append(HeadlineRow(
                f"{what}, readout calibrated",
                f"{m['calibrated_accuracy_mean']:.2f} +- {m['calibrated_accuracy_std']:.2f}",
                f"{(integer or float_acc) - m['calibrated_accuracy_mean']:+.2f} vs integer"))
        if "decoded_accuracy_mean" in m:
            rows.append(HeadlineRow(
                f"{what}, readout decoder",
                f"{m['decoded_accuracy_mean']:.2f} +- {m['decoded_accuracy_std']:.2f}",
                f"{(integer or float_acc) - m['decoded_accuracy_mean']:+.2f} vs integer"))
    return rows


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
             f"T = {report['T']}. Schema {report['schema']} v{report['schema_version']}.", ""]
    for section in (_headline_section, _accuracy_section, _rates_section, _exact_section,
                    _mismatch_section, _saturation_section):
        lines += section(report)
    if "cost" in report:
        lines += cost_markdown(report["cost"])
    lines += ["", "![firing rates](rates.png)", "", "![raster of one sample](raster.png)", "",
              "![divisors](divisors.png)", ""]
    if "cost" in report:
        lines += ["![synaptic events per layer; accuracy against energy](cost.png)", "",
                  "Each variant's energy is priced from its own spikes; the host's input (and "
                  "the integer simulators' readout) from integer exact's count.", ""]
    return "\n".join(lines)


def _headline_section(report: dict[str, Any]) -> list[str]:
    """Digital and analog accuracy in one table, before any detail."""
    lines = ["## Headline: accuracy from the float model to the analog chip", "",
             "| stage | accuracy % | drop (points) |", "|---|---:|---:|"]
    lines += [f"| {r.label} | {r.accuracy} | {r.drop} |" for r in headline(report)]
    if ANALOG not in report["variants"]:
        lines += ["", "The analog simulator did not run (--no-analog)."]
    return lines


def _accuracy_section(report: dict[str, Any]) -> list[str]:
    lines = ["", "## Accuracy and agreement", "",
             "| variant | accuracy % | agrees with float % | agrees with quantized % | "
             "saturation events | seconds |", "|---|---:|---:|---:|---:|---:|"]
    for variant, e in report["variants"].items():
        lines.append(f"| {variant} | {e['accuracy']:.2f} | {e['agreement_with_float']:.2f} | "
                     f"{e['agreement_with_quantized']:.2f} | {e.get('saturation_events', '')} | "
                     f"{_fmt(e.get('seconds'))} |")
    return lines


def _rates_section(report: dict[str, Any]) -> list[str]:
    pops = sorted({p for e in report["variants"].values() for p in e.get("rates", {})})
    if not pops:
        return []
    lines = ["", "## Firing rates (spikes per time step per neuron; interneurons: spike counts "
             "per step) and their correlation with the quantized graph", "",
             "| variant | " + " | ".join(pops) + " |", "|---|" + "---:|" * len(pops)]
    for variant, e in report["variants"].items():
        if "rates" not in e:
            continue
        cells = []
        for p in pops:
            r, c = e["rates"].get(p), e["rate_correlation_with_quantized"].get(p)
            cells.append("" if r is None else f"{r:.4f} (r = {_fmt(c)})")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return lines


def _exact_section(report: dict[str, Any]) -> list[str]:
    lines = []
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
    return lines


def _mismatch_section(report: dict[str, Any]) -> list[str]:
    m = (report.get("analog") or {}).get("mismatch")
    if not m:
        return []
    lines = ["", "## Analog simulator with device mismatch", "",
             f"{100 * m['relative_std']:g}% mismatch, {m['trials']} draws (seed "
             f"{m['seed']}): accuracy {m['accuracy_mean']:.2f} +- {m['accuracy_std']:.2f}% "
             f"(per draw: {', '.join(f'{a:.2f}' for a in m['per_trial'])})."]
    if "calibrated_accuracy_mean" in m:
        lines += ["", f"The same draws after a host-side readout calibration (each class's "
                  f"spike count scaled by the nominal chip's mean count over this chip's, on "
                  f"{m['calibration_samples']} unlabelled training samples): "
                  f"{m['calibrated_accuracy_mean']:.2f} +- "
                  f"{m['calibrated_accuracy_std']:.2f}%."]
    if "decoded_accuracy_mean" in m:
        lines += ["", f"The same draws decided by a per-chip readout decoder (a linear map of the "
                  f"readout counts, ridge-fitted on the same unlabelled samples to the integer "
                  f"simulator's class totals; no labels): {m['decoded_accuracy_mean']:.2f} +- "
                  f"{m['decoded_accuracy_std']:.2f}%."]
    return lines


def _saturation_section(report: dict[str, Any]) -> list[str]:
    saturated = {v: e["saturations"] for v, e in report["variants"].items()
                 if e.get("saturation_events")}
    lines = ["", "## Saturation", ""]
    if saturated:
        for variant, counts in saturated.items():
            lines.append(f"* {variant}: " + ", ".join(f"{k} {n}" for k, n in counts.items() if n))
    else:
        lines.append("No value reached the limit of its width in any integer variant.")
    return lines


def write_report(report: dict[str, Any], data: ValidationData, directory: str | Path) -> list[Path]:
    """``report.json``, ``report.md`` and the plots in ``directory``, written atomically (a
    staged directory renamed into place)."""

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValidationError(f"{directory}: exists and is not a directory; choose another "
                              "--report-dir")
    names = ["report.json", "report.md", "rates.png", "raster.png", "divisors.png"]
    names += ["cost.png"] if "cost" in report else []
    with staged_directory(directory) as stage:
        (stage / "report.json").write_text(json.dumps(report, indent=2, sort_keys=False,
                                                      allow_nan=False) + "\n", encoding="utf-8")
        (stage / "report.md").write_text(report_markdown(report), encoding="utf-8")
        plot_rates(data.rates, stage / "rates.png")
        plot_raster(data.raster, stage / "raster.png")
        plot_divisors(data.divisors, report.get("divisors", {}), stage / "divisors.png")
        if "cost" in report:
            plot_cost(report["cost"], stage / "cost.png")
    return [directory / n for n in names]

