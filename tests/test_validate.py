"""`eideploy validate` and `eideploy simulate` rasters on the shipped digits model: every stage
of the pipeline side by side, with a report a user can read and a gate a CI can use."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from eideploy.cli import app
from eideploy.pipeline.validate import REPORT_SCHEMA_VERSION, accuracy_gate, analog_gate

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "digits-dynapse2.pt"
PNG = b"\x89PNG\r\n\x1a\n"
runner = CliRunner()


@pytest.fixture(scope="module")
def validated(tmp_path_factory) -> tuple[Path, dict, str]:
    """``validate`` on an export directory that does not exist yet: it exports first."""
    out = tmp_path_factory.mktemp("val") / "digits-dynapse2"
    res = runner.invoke(app, ["validate", str(MODEL), str(out), "--no-analog"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "validation" / "report.json").read_text())
    return out, report, res.output


def test_validate_exports_first_and_writes_the_report_and_three_plots(validated):
    out, report, output = validated
    assert (out / "manifest.json").is_file() and (out / "dynapse2.json").is_file()
    for name in ("rates.png", "raster.png", "divisors.png"):
        assert (out / "validation" / name).read_bytes()[:8] == PNG
    markdown = (out / "validation" / "report.md").read_text()
    assert "| integer lut:8 |" in markdown and "spike-exact" in markdown
    assert report["schema_version"] == REPORT_SCHEMA_VERSION
    assert report["data"] == {"dataset": "digits", "split": "test", "samples": 360}
    assert "report.md" in output


def test_integer_lut8_is_within_one_point_of_the_quantized_graph(validated):
    variants = validated[1]["variants"]
    assert set(variants) >= {"float (torch)", "float graph", "quantized graph", "integer exact",
                             "integer lut:8", "integer shift"}
    assert abs(variants["integer lut:8"]["accuracy"] - variants["quantized graph"]["accuracy"]) \
        <= 1.0
    assert variants["float (torch)"]["accuracy"] >= 95.0
    for mode in ("exact", "lut:8", "shift"):
        entry = variants[f"integer {mode}"]
        assert entry["agreement_with_quantized"] >= 98.0
        assert entry["saturation_events"] == sum(entry["saturations"].values())


def test_integer_rates_follow_the_quantized_graph_neuron_by_neuron(validated):
    variants = validated[1]["variants"]
    for mode in ("exact", "lut:8"):
        correlations = variants[f"integer {mode}"]["rate_correlation_with_quantized"]
        assert correlations and min(correlations.values()) >= 0.99
    # the float graph is a different network (unquantized weights): correlated, not identical
    assert 0.9 <= min(variants["float graph"]["rate_correlation_with_quantized"].values()) < 1.0


def test_quantized_graph_and_integer_exact_agree_spike_for_spike_almost_everywhere(validated):
    exact = validated[1]["spike_exact"]
    assert exact, "the digits model has an excitatory population"
    for pop, fractions in exact.items():
        assert fractions["spikes"] >= 0.99, pop
        assert 0.5 <= fractions["steps"] <= fractions["spikes"], pop


def test_the_divisors_never_fall_below_the_floor(validated):
    for pop, d in validated[1]["divisors"].items():
        assert d["min"] >= d["eps"] * (1 - 1e-3), pop
        assert d["min"] <= d["median"] <= d["max"], pop


def test_max_accuracy_drop_passes_with_room_and_fails_the_gate_when_exceeded(validated,
                                                                             monkeypatch):
    out, report, _ = validated
    res = runner.invoke(app, ["validate", str(MODEL), str(out), "--no-analog", "--division",
                              "lut:8", "--max-accuracy-drop", "1.0", "--limit", "64"])
    assert res.exit_code == 0, res.output
    worse = json.loads(json.dumps(report))
    worse["variants"]["integer shift"]["accuracy"] -= 3.0
    assert len(accuracy_gate(worse, 2.0)) == 1 and accuracy_gate(worse, 5.0) == []
    import eideploy.pipeline.validate as compare

    real = compare.validate_export
    monkeypatch.setattr(compare, "validate_export",
                        lambda *a, **k: (worse, real(*a, **k)[1]))
    res = runner.invoke(app, ["validate", str(MODEL), str(out), "--no-analog", "--limit", "16",
                              "--max-accuracy-drop", "2", "--report-dir", str(out / "gate")])
    assert res.exit_code == 1, res.output
    assert "integer shift" in res.output


def test_validate_refuses_an_export_of_another_model(validated, tmp_path):
    out = validated[0]
    other = tmp_path / "other.pt"
    checkpoint = torch.load(MODEL, weights_only=True)
    key = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point())
    checkpoint["state_dict"][key] = checkpoint["state_dict"][key] * 1.01
    torch.save(checkpoint, other)
    res = runner.invoke(app, ["validate", str(other), str(out), "--no-analog",
                              "--report-dir", str(tmp_path / "report")])
    assert res.exit_code == 2, res.output
    assert "exported from another model" in res.output
    assert not (tmp_path / "report").exists()


def test_simulate_writes_rasters_of_the_first_sample_per_division_mode(validated, tmp_path):
    out = validated[0]
    res = runner.invoke(app, ["simulate", str(out), "--division", "exact", "--division", "shift",
                              "--rasters", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "raster.png").read_bytes()[:8] == PNG
    spikes = np.load(tmp_path / "r" / "spikes.npz")
    exc = [k for k in spikes.files if k.startswith("integer exact/") and "exc" in k]
    assert exc and spikes[exc[0]].shape[0] == 8  # T steps
    assert set(np.unique(spikes[exc[0]])) <= {0, 1}


@pytest.fixture(scope="module")
def analog_validation(validated, tmp_path_factory):
    """One validate run with the analog simulator, 2 mismatch draws and the readout calibrated:
    ``(CLI result, report directory)``, read by the tests below."""
    report_dir = tmp_path_factory.mktemp("analog-validation") / "v"
    res = runner.invoke(app, ["validate", str(MODEL), str(validated[0]), "--limit", "96",
                              "--trials", "2", "--mismatch", "0.1", "--calibrate", "48",
                              "--report-dir", str(report_dir)])
    return res, report_dir


def test_validate_includes_the_analog_simulator_and_its_calibrated_mismatch_draws(
        analog_validation):
    res, report_dir = analog_validation
    assert res.exit_code == 0, res.output
    report = json.loads((report_dir / "report.json").read_text())
    analog = report["variants"]["analog"]
    assert analog["accuracy"] >= 85.0 and analog["agreement_with_quantized"] >= 85.0
    assert min(analog["rate_correlation_with_quantized"][p]
               for p in ("layers.1.exc", "layers.1.inh")) >= 0.8
    drawn = report["analog"]["mismatch"]
    assert drawn["trials"] == 2 and len(drawn["calibrated_per_trial"]) == 2
    assert drawn["calibration_samples"] == 48
    assert "readout calibration" in (report_dir / "report.md").read_text()
    # the per-chip readout decoder, fitted on the same unlabelled samples, on its own line
    assert len(drawn["decoded_per_trial"]) == 2 and drawn["decoded_accuracy_mean"] >= 80.0
    assert "readout decoder" in (report_dir / "report.md").read_text()


def test_simulate_analog_reports_mean_and_spread_over_mismatch_draws(validated, tmp_path):
    out = validated[0]
    res = runner.invoke(app, ["simulate", str(out), "--backend", "analog", "--mismatch", "0.05",
                              "--trials", "2", "--seed", "3", "--rasters", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    line = next(s for s in res.output.splitlines() if "analog simulator" in s)
    mean, std = (float(v) for v in re.findall(r"accuracy ([0-9.]+)% \+- ([0-9.]+)", line)[0])
    per_draw = [float(v) for v in re.findall(r"[0-9]+\.[0-9]+", line.split("per draw:")[1])]
    assert len(per_draw) == 2 and mean == pytest.approx(sum(per_draw) / 2, abs=0.01)
    assert 0 <= std <= 50 and min(per_draw) > 10.0  # above chance with 5% mismatch
    assert (tmp_path / "r" / "raster.png").read_bytes()[:8] == PNG
    spikes = np.load(tmp_path / "r" / "spikes.npz")
    assert spikes["analog/layers.1.exc"].shape == (10, 192)  # T + 2 tail steps, neurons
    assert spikes["analog/layers.3.readout"].sum() > 0


def test_simulate_refuses_an_unknown_backend(validated):
    res = runner.invoke(app, ["simulate", str(validated[0]), "--backend", "spice"])
    assert res.exit_code == 2 and "'integer' or 'analog'" in res.output


def test_simulate_onnx_writes_the_integer_network_and_onnxruntime_agrees_bit_for_bit(
        validated, tmp_path):
    pytest.importorskip("onnxruntime")
    res = runner.invoke(app, ["simulate", str(validated[0]), "--division", "lut:8", "--onnx",
                              "--rasters", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "integer-lut-8.onnx").stat().st_size > 1000
    line = next(s for s in res.output.splitlines() if s.startswith("onnxruntime"))
    assert "bit-identical" in line and "(0 of 2234880 elements differ" in line


def test_the_headline_puts_the_analog_figures_next_to_the_integer_ones(analog_validation):
    res, report_dir = analog_validation
    assert res.exit_code == 0, res.output
    report = json.loads((report_dir / "report.json").read_text())
    integer = report["variants"]["integer exact"]["accuracy"]
    analog = report["variants"]["analog"]["accuracy"]
    drawn = report["analog"]["mismatch"]
    markdown = (report_dir / "report.md").read_text()
    # the first table of report.md, before any detail, holds all four figures
    head = markdown.split("## Accuracy and agreement")[0]
    assert "## Headline" in head
    assert f"| integer simulator (exact) | {integer:.2f} |" in head
    assert f"| analog simulator, no mismatch | {analog:.2f} | {integer - analog:+.2f} vs " \
           "integer |" in head
    assert (f"| analog simulator, 10% mismatch (2 draws) | {drawn['accuracy_mean']:.2f} +- "
            f"{drawn['accuracy_std']:.2f} |") in head
    # the printed table says the same, before the table of every variant
    printed = res.output.split("every variant")[0]
    assert "analog simulator, no mismatch" in printed and f"{analog:.2f}" in printed
    assert f"{drawn['accuracy_mean']:.2f} +- {drawn['accuracy_std']:.2f}" in printed


def test_max_analog_drop_passes_above_the_measured_drop_and_fails_below_it(validated,
                                                                           monkeypatch):
    out = validated[0]
    args = ["validate", str(MODEL), str(out), "--limit", "64", "--trials", "0",
            "--report-dir", str(out / "analog-gate")]
    res = runner.invoke(app, [*args, "--max-analog-drop", "100"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "analog-gate" / "report.json").read_text())
    drop = (report["variants"]["integer exact"]["accuracy"]
            - report["variants"]["analog"]["accuracy"])
    assert drop < 10.0  # the nominal analog chip keeps the digits accuracy (64 samples)
    assert analog_gate(report, max(drop, 0.0) + 0.5) == []
    assert len(analog_gate(report, drop - 0.5)) == 1
    # the command line: the same report, with the analog accuracy 3 points lower, fails a
    # threshold of drop + 2 and names the analog simulator
    worse = json.loads(json.dumps(report))
    worse["variants"]["analog"]["accuracy"] -= 3.0
    import eideploy.pipeline.validate as compare

    real = compare.validate_export
    monkeypatch.setattr(compare, "validate_export", lambda *a, **k: (worse, real(*a, **k)[1]))
    res = runner.invoke(app, [*args, "--max-analog-drop", f"{max(drop, 0.0) + 2.0:.4f}"])
    assert res.exit_code == 1, res.output
    assert "--max-analog-drop" in res.output and "below integer exact" in res.output


def test_max_analog_drop_without_the_analog_simulator_is_a_usage_error(validated, tmp_path):
    res = runner.invoke(app, ["validate", str(MODEL), str(validated[0]), "--no-analog",
                              "--max-analog-drop", "1", "--report-dir", str(tmp_path / "r")])
    assert res.exit_code == 2 and "--max-analog-drop needs the analog simulator" in res.output
    assert not (tmp_path / "r").exists()
