"""The command line's habits: --version, -h, completion, --debug anywhere, --json (one document on
stdout, the rest on stderr) and --quiet on evaluate, simulate, validate, run, inspect and export,
install hints that keep their brackets, re-exports that keep what is not the export's own, and
files written 0644 whatever the umask."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eideploy import __version__
from eideploy.cli import app

MODEL = Path(__file__).resolve().parents[1] / "models" / "digits-dynapse2.pt"
runner = CliRunner()
COMMANDS = ("train", "evaluate", "simulate", "validate", "run", "export", "inspect", "models")


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def document(res) -> dict:
    """The one JSON document on stdout (json.loads refuses anything around it)."""
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """The shipped digits model exported through the command line with --json."""
    out = tmp_path_factory.mktemp("habits") / "export"
    doc = document(invoke("export", MODEL, "-o", out, "--json"))
    assert doc["command"] == "export" and doc["summary"]["neurons"] > 0
    assert sorted(doc["files"]) == sorted(
        str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    return out


# --------------------------------------------------------------------------- basics
def test_version_prints_the_package_version():
    res = invoke("--version")
    assert res.exit_code == 0
    assert res.stdout == f"eideploy {__version__}\n"


@pytest.mark.parametrize("command", COMMANDS)
def test_dash_h_is_help_on_every_command(command):
    res = invoke(command, "-h")
    assert res.exit_code == 0, res.output
    assert f"{command} [OPTIONS]" in res.stdout and "-h" in res.stdout


def test_help_offers_shell_completion_and_the_global_options():
    res = invoke("-h")
    assert res.exit_code == 0
    for option in ("--install-completion", "--show-completion", "--version", "--debug"):
        assert option in res.stdout


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_is_accepted_before_and_after_the_command(where, tmp_path):
    missing = tmp_path / "no-model.pt"
    args = ["--debug", "evaluate", missing] if where == "before" else ["evaluate", missing,
                                                                        "--debug"]
    res = invoke(*args)
    assert res.exit_code == 2
    assert "Traceback" in res.stderr and "no such file" in res.stderr
    plain = invoke("evaluate", missing)
    assert plain.exit_code == 2 and "Traceback" not in plain.stderr


def test_a_bad_choice_is_a_usage_error_naming_the_choices(exported):
    res = invoke("run", exported, "--board", "spinnaker")
    assert res.exit_code == 2 and "'dynapse2' or 'virtual'" in res.stderr
    res = invoke("evaluate", exported, "--split", "validation")
    assert res.exit_code == 2 and "train" in res.output and "test" in res.output


# --------------------------------------------------------------------------- --json, --quiet
def test_evaluate_json_is_the_accuracy_of_both_graphs(exported):
    res = invoke("evaluate", exported, "--json")
    doc = document(res)
    assert doc["dataset"] == "digits" and doc["split"] == "test" and doc["kind"] == "export"
    assert doc["accuracy"]["float"] >= 95.0 and doc["accuracy"]["quantized"] >= 95.0
    assert f"quantized graph {doc['accuracy']['quantized']:.2f}%" in res.stderr


def test_simulate_json_lists_each_division_mode_and_the_rasters(exported, tmp_path):
    res = invoke("simulate", exported, "--division", "exact", "--division", "shift",
                 "-o", tmp_path, "--json")
    doc = document(res)
    assert doc["backend"] == "integer"
    assert [m["division"] for m in doc["modes"]] == ["exact", "shift"]
    assert all(m["accuracy"] >= 90.0 and m["saturation_events"] >= 0 for m in doc["modes"])
    assert sorted(Path(p).name for p in doc["rasters"]) == ["raster.png", "spikes.npz"]
    assert (tmp_path / "spikes.npz").is_file()
    assert "integer simulator, division exact: 360 samples" in res.stderr  # stage lines


def test_validate_json_is_the_report_with_its_directory(exported, tmp_path):
    res = invoke("validate", MODEL, exported, "--no-analog", "--limit", "16",
                 "-o", tmp_path / "report", "--json")
    doc = document(res)
    assert doc["report"]["data"]["samples"] == 16 and doc["gates_failed"] == []
    assert Path(doc["report_dir"]) == tmp_path / "report"
    written = json.loads((tmp_path / "report" / "report.json").read_text())
    assert written["variants"].keys() == doc["report"]["variants"].keys()
    assert "every variant" in res.stderr  # the tables went to stderr


def test_old_output_directory_spellings_still_work(exported, tmp_path):
    res = invoke("simulate", exported, "--division", "exact", "--rasters", tmp_path / "r", "-q")
    assert res.exit_code == 0, res.output and (tmp_path / "r" / "spikes.npz").is_file()
    res = invoke("validate", MODEL, exported, "--no-analog", "--limit", "8",
                 "--report-dir", tmp_path / "v", "-q")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "v" / "report.json").is_file()


def test_run_json_on_the_virtual_board_routes_every_event(exported):
    doc = document(invoke("run", exported, "--board", "virtual", "--limit", "2", "--json"))
    assert doc["board"] == "virtual" and doc["samples"] == len(doc["predictions"]) == 2
    assert doc["routing"]["unrouted"] == 0 and doc["events_sent"] > 0
    old = document(invoke("run", exported, "--device", "virtual", "--limit", "1", "--json"))
    assert old["board"] == "virtual" and old["samples"] == 1


@pytest.mark.parametrize("kind", ["model", "export"])
def test_inspect_json_describes_a_model_and_an_export(kind, exported):
    doc = document(invoke("inspect", MODEL if kind == "model" else exported, "--json"))
    assert doc["kind"] == kind
    if kind == "model":
        assert doc["architecture"] == "ei-hw-mlp" and doc["drc"]["ok"] is True
    else:
        assert set(doc["files"].values()) == {"ok"}
        assert doc["manifest"]["source"]["file"] == MODEL.name


@pytest.mark.parametrize("args", [
    ("evaluate", "{export}"),
    ("simulate", "{export}", "--division", "exact", "-o", "{tmp}"),
    ("inspect", "{export}"),
    ("export", str(MODEL), "-o", "{tmp}/again"),
])
def test_quiet_prints_nothing_on_success(args, exported, tmp_path):
    res = invoke(*(a.format(export=exported, tmp=tmp_path) for a in args), "--quiet")
    assert res.exit_code == 0, res.output
    assert res.stdout == "" and res.stderr == ""


def test_quiet_json_prints_the_document_only(exported):
    res = invoke("evaluate", exported, "--json", "-q")
    assert json.loads(res.stdout)["accuracy"]["quantized"] >= 95.0 and res.stderr == ""


# --------------------------------------------------------------------------- messages
def test_an_install_hint_keeps_its_brackets(exported, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if the onnx extra were not installed
    res = invoke("simulate", exported, "--division", "exact", "--onnx", "-o", tmp_path)
    assert res.exit_code == 3
    assert "pip install 'eideploy[onnx]'" in " ".join(res.stderr.split())


# --------------------------------------------------------------------------- outputs
def test_reexport_keeps_validation_and_simulation_and_replaces_its_own_files(tmp_path):
    out = tmp_path / "out"
    assert invoke("export", MODEL, "-o", out, "-q").exit_code == 0
    (out / "validation").mkdir()
    (out / "validation" / "report.md").write_text("my notes")
    (out / "simulation").mkdir()
    (out / "simulation" / "spikes.npz").write_bytes(b"kept")
    (out / "report.md").write_text("tampered")
    res = invoke("export", MODEL, "-o", out, "--seed", "1", "-q")
    assert res.exit_code == 0, res.output
    assert (out / "validation" / "report.md").read_text() == "my notes"
    assert (out / "simulation" / "spikes.npz").read_bytes() == b"kept"
    assert (out / "report.md").read_text() != "tampered"
    assert json.loads((out / "manifest.json").read_text())["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no stage left behind


def test_carried_entries_go_back_when_the_swap_fails(tmp_path, monkeypatch):
    import eideploy.atomic as atomic

    out = tmp_path / "out"
    (out / "validation").mkdir(parents=True)
    (out / "own.txt").write_text("old")
    real = os.replace

    def replace(src, dst):
        if Path(dst) == out and ".partial-" in Path(src).name:
            raise OSError("disk gone")
        real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    with pytest.raises(OSError, match="disk gone"):
        with atomic.staged_directory(out, lambda: ("validation",)) as stage:
            (stage / "own.txt").write_text("new")
    assert (out / "validation").is_dir() and (out / "own.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_files_are_written_0644_whatever_the_umask(exported, tmp_path):
    pytest.importorskip("onnxruntime")
    previous = os.umask(0o077)
    try:
        res = invoke("simulate", exported, "--division", "exact", "--onnx", "-o", tmp_path,
                     "-q")
        export = invoke("export", MODEL, "-o", tmp_path / "export", "-q")
    finally:
        os.umask(previous)
    assert res.exit_code == 0 and export.exit_code == 0, res.output + export.output
    written = [tmp_path / "spikes.npz", tmp_path / "raster.png",
               tmp_path / "integer-exact.onnx",
               *(p for p in (tmp_path / "export").rglob("*") if p.is_file())]
    modes = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in written}
    assert set(modes.values()) == {"0o644"}, modes


def test_training_without_a_terminal_logs_one_line_per_epoch(tmp_path):
    res = invoke("train", "digits-mlp", "--epochs", "2", "-o", tmp_path / "run", "--device",
                 "cpu", "--threads", "1")
    assert res.exit_code == 0, res.output
    epochs = [line for line in res.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert res.stdout.startswith("test accuracy: ")
