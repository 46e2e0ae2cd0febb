"""``eideploy export`` / ``inspect``: export directories, exit codes, samna JSON (issue: export)."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from eideploy.cli import app
from eideploy.graph.ir import EIGraph, Population, Projection
from eideploy.networks import build_network
from eideploy.nn import ei_init
from eideploy.pipeline.export import EXPORT_FILES, ExportError, export_graph, read_export
from eideploy.targets.dynapse2 import (
    DoesNotFit,
    config_to_graph,
    load_target,
    read_config,
)
from eideploy.targets.dynapse2 import samna as samna_module
from eideploy.targets.dynapse2.rockpool_shim import rockpool_import, samna_is_pypi_stub
from eideploy.targets.dynapse2.samna import MONITOR_SLOT, config_to_samna
from eideploy.train import save_checkpoint

runner = CliRunner()
TESTS = Path(__file__).resolve().parent


# --------------------------------------------------------------------------- builders
def _sparse(n_target: int, n_source: int, k: int, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray]:
    """k distinct sources per target neuron, weights in [0.1, 1): (weight, indices)."""
    targets = np.repeat(np.arange(n_target), k)
    sources = np.concatenate([np.sort(rng.choice(n_source, size=k, replace=False))
                              for _ in range(n_target)])
    weight = rng.uniform(0.1, 1.0, size=targets.size).astype(np.float32)
    return weight, np.stack([targets, sources], axis=1).astype(np.int64)


def fitting_graph(seed: int = 0, n_in: int = 16, n_e: int = 24, n_i: int = 6, n_out: int = 4,
                  k_in: int = 6, k_inh: int = 2) -> EIGraph:
    """A hardware-sized E-I graph that fits DYNAP-SE2: integrate-and-fire encoded input, one
    sparse E-I layer (fan-in k_in AMPA + k_inh GABA + k_inh SHUNT), a spiking readout with its
    own interneurons, spike-count ("floor") interneurons everywhere."""
    rng = np.random.default_rng(seed)
    inh = {"response": "floor", "theta_i": 1.0}
    pops = [Population("input", "input", (n_in,)),
            Population("l1.inh", "inh", (n_i,), "l1", dict(inh)),
            Population("l1.exc", "exc", (n_e,), "l1",
                       {"tau": 2.0, "v_threshold": 1.0, "neuron": "lif"},
                       {"gain_e": np.ones(n_e, np.float32), "bias": np.zeros(n_e, np.float32)}),
            Population("out.inh", "inh", (2,), "out", dict(inh)),
            Population("out.readout", "readout", (n_out,), "out",
                       {"mode": "spiking", "v_threshold": 1.0})]
    projs = []
    for name, source, target, kind, n_t, n_s, k in (
            ("l1.ee", "input", "l1.exc", "exc", n_e, n_in, k_in),
            ("l1.ie", "input", "l1.inh", "exc", n_i, n_in, k_in),
            ("l1.sub", "l1.inh", "l1.exc", "sub", n_e, n_i, k_inh),
            ("l1.div", "l1.inh", "l1.exc", "div", n_e, n_i, k_inh),
            ("out.ee", "l1.exc", "out.readout", "exc", n_out, n_e, k_in),
            ("out.ie", "l1.exc", "out.inh", "exc", 2, n_e, k_in),
            ("out.sub", "out.inh", "out.readout", "sub", n_out, 2, 1)):
        weight, indices = _sparse(n_t, n_s, k, rng)
        projs.append(Projection(name, source, target, kind, "sparse", weight, indices))
    return EIGraph("fitting", 4, pops, projs, {"population": "input", "encoding": "if"},
                   {"population": "out.readout", "mode": "spiking", "classes": n_out},
                   {"stabilisation": "adaptive", "eps": 1e-3})


def one_chip():
    return load_target("dynapse2").with_chips(1)


def assert_graphs_equal(a: EIGraph, b: EIGraph) -> None:
    assert [p.name for p in a.populations] == [p.name for p in b.populations]
    for pa, pb in zip(a.populations, b.populations, strict=True):
        assert (pa.role, tuple(pa.shape), pa.layer, pa.params) == \
            (pb.role, tuple(pb.shape), pb.layer, pb.params)
        assert sorted(pa.arrays) == sorted(pb.arrays)
        for key in pa.arrays:
            np.testing.assert_array_equal(pa.arrays[key], pb.arrays[key])
    assert [p.name for p in a.projections] == [p.name for p in b.projections]
    for qa, qb in zip(a.projections, b.projections, strict=True):
        assert (qa.source, qa.target, qa.kind, qa.op) == (qb.source, qb.target, qb.kind, qb.op)
        np.testing.assert_array_equal(qa.indices, qb.indices)
        np.testing.assert_array_equal(qa.weight, qb.weight)
    assert (a.T, a.input, a.readout, a.division) == (b.T, b.input, b.readout, b.division)


def leftovers(directory: Path) -> list[str]:
    """Hidden staging directories an export may have left next to its destination."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def dense_model(tmp_path_factory, digits_arrays) -> Path:
    """A paper-style dense E-I MLP on digits, E-I initialised, never trained."""
    path = tmp_path_factory.mktemp("model") / "digits.pt"
    net = build_network("ei-mlp", in_shape=(1, 8, 8), num_classes=10, T=4, widths=[64])
    batch = digits_arrays[0][:256].view(-1, 1, 8, 8)
    ei_init(net, net.fold_time(batch))
    save_checkpoint(path, net, recipe={"name": "digits-dense"},
                    metrics={"test_accuracy": 11.5, "epochs": 0})
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "out"
    # one readout neuron per class: the structure below is the graph's own (readout copies are
    # tests/test_readout_copies.py's)
    export_graph(fitting_graph(), out, target=one_chip(), seed=3, readout_copies=1)
    return out


# --------------------------------------------------------------------------- bad input: exit 2
def _bad_model(case: str, good: Path, path: Path, marker: Path) -> None:
    if case == "not-a-model":
        torch.save({"state_dict": {}, "epoch": 3}, path)
    elif case == "text-file":
        path.write_text("name: not a model\n")
    elif case == "truncated":
        path.write_bytes(good.read_bytes()[:2000])
    elif case == "pickle-object":
        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {marker}",))
        path.write_bytes(pickle.dumps({"format": "eideploy-model", "x": Evil()}))
    elif case in ("nan-weights", "inf-weights", "negative-weights"):
        data = torch.load(good, weights_only=True)
        key = next(k for k in data["state_dict"] if k.endswith("weight_ee"))
        data["state_dict"][key][0, 0] = {"nan-weights": float("nan"),
                                         "inf-weights": float("inf"),
                                         "negative-weights": -0.5}[case]
        torch.save(data, path)
    elif case != "missing":
        raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing", "not-a-model", "text-file", "truncated",
                                  "pickle-object", "nan-weights", "inf-weights",
                                  "negative-weights"])
def test_bad_model_file_exits_2_naming_the_file_and_writes_nothing(tmp_path, dense_model, case):
    path = tmp_path / f"{case}.pt"
    marker = tmp_path / "executed"
    _bad_model(case, dense_model, path, marker)
    out = tmp_path / "out"
    res = runner.invoke(app, ["export", str(path), "--target", "dynapse2", "-o", str(out)])
    assert res.exit_code == 2, res.output
    assert path.name in res.output and "Traceback" not in res.output
    expected = {"missing": "no such file", "not-a-model": "not an eideploy model",
                "text-file": "text-file.pt", "truncated": "cannot be read",
                "pickle-object": "refused to load", "nan-weights": "NaN or infinite",
                "inf-weights": "NaN or infinite", "negative-weights": "negative"}[case]
    assert expected in " ".join(res.output.split())
    assert not out.exists() and not marker.exists()
    assert leftovers(tmp_path) == []


def test_unknown_target_exits_2_listing_the_known_ones(tmp_path, dense_model):
    out = tmp_path / "out"
    res = runner.invoke(app, ["export", str(dense_model), "--target", "loihi", "-o", str(out)])
    assert res.exit_code == 2
    assert "unknown target 'loihi'" in res.output and "dynapse2" in res.output
    assert not out.exists()


def test_destination_that_is_a_file_or_a_foreign_directory_is_refused(tmp_path, dense_model):
    file = tmp_path / "a-file"
    file.write_text("keep me")
    res = runner.invoke(app, ["export", str(dense_model), "-o", str(file)])
    assert res.exit_code == 2 and "not a directory" in res.output
    assert file.read_text() == "keep me"
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_text("meow")
    res = runner.invoke(app, ["export", str(dense_model), "-o", str(foreign)])
    assert res.exit_code == 2 and "--overwrite" in res.output
    assert (foreign / "cat.jpg").read_text() == "meow"
    with pytest.raises(ExportError, match="not an eideploy export"):
        export_graph(fitting_graph(), foreign, target=one_chip())
    assert sorted(p.name for p in foreign.iterdir()) == ["cat.jpg"]


# --------------------------------------------------------------------------- too large: exit 1
def test_dense_digits_model_does_not_fit_and_every_violation_is_listed(tmp_path, dense_model):
    out = tmp_path / "nested" / "out"
    res = runner.invoke(app, ["export", str(dense_model), "--target", "dynapse2", "-o", str(out)])
    assert res.exit_code == 1, res.output
    text = " ".join(res.output.split())
    assert "does not fit" in text and dense_model.name in text
    for rule in ("fan-in:", "spiking-readout:", "spike-input:", "spiking-inhibition:"):
        assert rule in text, rule
    # the 64 input pixels plus 2 x 16 interneurons: every hidden E neuron needs 96 entries
    assert "64 neuron(s) of layer layers.1 E exceed 64 CAM entries" in text
    assert "needs 96 = 64 AMPA + 16 GABA + 16 SHUNT" in text
    assert "hint: train with a fan-in budget" in text
    assert "hint: recipe target.input_encoding: if" in text
    assert "Traceback" not in res.output
    assert not out.exists() and not (tmp_path / "nested").exists()


def test_does_not_fit_is_raised_with_the_full_report_by_the_api(tmp_path):
    graph = fitting_graph()
    graph.input["encoding"] = "direct"
    with pytest.raises(DoesNotFit) as info:
        export_graph(graph, tmp_path / "out", target=one_chip())
    assert info.value.report.summary["violations"] == {"spike-input": 1}
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- inspect
def test_inspect_model_prints_architecture_layers_metrics_and_fit(dense_model):
    res = runner.invoke(app, ["inspect", str(dense_model)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "ei-mlp" in text and "7,098 parameters" in text and "recipe digits-dense" in text
    assert "layers.1" in text and "layers.3" in text and "linear (readout)" in text
    assert "test_accuracy=11.5" in text
    assert re.search(r"dynapse2: does NOT fit: 92 neurons in \d+ cores on 1 chip", text)
    assert "fan-in 2" in text and "spike-input 1" in text


def test_inspect_refuses_a_directory_that_is_not_an_export(tmp_path):
    res = runner.invoke(app, ["inspect", str(tmp_path)])
    assert res.exit_code == 2 and "not an export directory" in res.output


def test_inspect_export_shows_the_manifest_and_flags_modified_files(exported, tmp_path):
    res = runner.invoke(app, ["inspect", str(exported)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "graph 'fitting' for dynapse2 (1 chip(s)), seed 3" in text
    assert "samna.json" in text and "modified" not in text
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("manifest.json", "report.json"):
        (copy / name).write_bytes((exported / name).read_bytes())
    res = runner.invoke(app, ["inspect", str(copy)])
    assert res.exit_code == 0 and "missing" in res.output


# --------------------------------------------------------------------------- a fitting export
def test_export_writes_every_file_listed_with_its_hash(exported):
    manifest, report, state = read_export(exported)
    assert [f["path"] for f in manifest["files"]] == list(EXPORT_FILES)
    assert set(state.values()) == {"ok"}
    assert manifest["seed"] == 3 and manifest["target"]["name"] == "dynapse2"
    assert manifest["source"]["kind"] == "graph" and len(manifest["source"]["sha256"]) == 64
    assert set(manifest["versions"]) >= {"eideploy", "torch", "numpy", "rockpool"}
    assert "created" not in json.dumps(manifest) and "time" not in manifest
    assert (exported / "mapping.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["schema_version"] == 1
    assert report["summary"]["neurons"] == 24 + 6 + 2 + 4
    assert report["summary"]["worst_fan_in"]["entries"] == 6 + 2 + 2
    assert {c["role"] for c in report["cores"]} == {"exc", "inh", "readout"}
    assert report["fan_in_histogram"] == {"values": [6, 7, 10], "counts": [8, 4, 24]}
    assert [q["layer"] for q in report["quantization"]["layers"]] == ["l1", "out"]
    assert 0 < report["quantization"]["total"]["relative_rmse"] < 0.1
    assert {b["name"] for b in report["biases"]} >= {"SOIF_LEAK_N", "SOIF_SPKTHR_P",
                                                     "SYAM_W0_P", "SYAM_W3_P"}
    assert report["drc"]["ok"] is True
    md = (exported / "report.md").read_text()
    for heading in ("## Summary", "## Cores", "## Quantization error", "## Bias codes"):
        assert heading in md


def test_same_graph_and_seed_give_byte_identical_exports(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    export_graph(fitting_graph(), first, target=one_chip(), seed=3)
    export_graph(fitting_graph(), second, target=one_chip(), seed=3)
    for name in ("manifest.json", *EXPORT_FILES):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_export_is_byte_identical_in_a_fresh_process_with_another_hash_seed(exported):
    out = exported.parent / "fresh"
    code = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); "
            "from test_export import fitting_graph, one_chip; "
            "from eideploy.pipeline.export import export_graph; "
            f"export_graph(fitting_graph(), {str(out)!r}, target=one_chip(), seed=3, "
            "readout_copies=1)")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)
    assert (out / "manifest.json").read_bytes() == (exported / "manifest.json").read_bytes()


def test_configuration_reads_back_as_the_quantized_graph(exported):
    from_config = config_to_graph(read_config(exported / "dynapse2.json"))
    assert_graphs_equal(from_config, EIGraph.load(exported / "quantized"))
    float_graph = EIGraph.load(exported / "")
    assert_graphs_equal(float_graph, fitting_graph())


def test_reexport_replaces_an_earlier_export_and_overwrite_replaces_a_foreign_dir(tmp_path):
    out = tmp_path / "out"
    export_graph(fitting_graph(seed=1), out, target=one_chip())
    (out / "stale.txt").write_text("from an earlier run")
    export_graph(fitting_graph(seed=2), out, target=one_chip())
    assert not (out / "stale.txt").exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("x")
    export_graph(fitting_graph(), foreign, target=one_chip(), overwrite=True)
    assert sorted(p.name for p in foreign.iterdir()) == sorted(
        {"manifest.json", "quantized", *(n for n in EXPORT_FILES if "/" not in n)})
    assert leftovers(tmp_path) == []


def test_a_failure_while_writing_leaves_nothing_and_keeps_the_old_export(tmp_path, monkeypatch):
    import eideploy.pipeline.export as plots  # the mapping plot where the export calls it

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(plots, "plot_mapping", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export_graph(fitting_graph(), tmp_path / "new" / "out", target=one_chip())
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()
    old = tmp_path / "old"
    export_graph(fitting_graph(seed=1), old, target=one_chip())
    before = (old / "manifest.json").read_bytes()
    monkeypatch.setattr(plots, "plot_mapping", broken)
    with pytest.raises(RuntimeError):
        export_graph(fitting_graph(seed=2), old, target=one_chip())
    assert (old / "manifest.json").read_bytes() == before
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- the CLI end to end
def test_cli_export_of_a_fitting_network_prints_the_summary(tmp_path, dense_model, monkeypatch):
    """Models trained for hardware lower to fitting graphs; until lowering makes them, the
    lowered graph is replaced by a fitting one to run the command end to end."""
    lowering = importlib.import_module("eideploy.graph.lowering")  # the package re-exports lower()

    monkeypatch.setattr(lowering, "lower", lambda model, **kwargs: fitting_graph())
    out = tmp_path / "out"
    res = runner.invoke(app, ["export", str(dense_model), "--target", "dynapse2", "-o",
                              str(out), "--chips", "1", "--seed", "5", "--readout-copies", "1"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "neurons │ 36" in text and "worst fan-in │ 10 (l1.exc #" in text
    assert "quantization error (relative RMSE)" in text and f"to {out}" in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["file"] == dense_model.name and manifest["seed"] == 5
    assert manifest["source"]["architecture"] == "ei-mlp"


def test_reexport_into_the_directory_holding_the_model_is_refused(tmp_path, dense_model,
                                                                   monkeypatch):
    lowering = importlib.import_module("eideploy.graph.lowering")
    monkeypatch.setattr(lowering, "lower", lambda model, **kwargs: fitting_graph())
    out = tmp_path / "out"
    assert runner.invoke(app, ["export", str(dense_model), "-o", str(out), "--chips", "1"]
                         ).exit_code == 0
    model = out / "model.pt"
    model.write_bytes(dense_model.read_bytes())
    res = runner.invoke(app, ["export", str(model), "-o", str(out), "--chips", "1"])
    assert res.exit_code == 2 and "refusing to replace" in res.output
    assert model.is_file() and (out / "manifest.json").is_file()


def test_cli_export_without_rockpool_exits_3_and_writes_nothing(tmp_path, dense_model,
                                                                 monkeypatch):
    lowering = importlib.import_module("eideploy.graph.lowering")  # the package re-exports lower()

    def no_rockpool():
        raise ImportError("samna.json is written through rockpool's samna mirrors: "
                          "pip install rockpool==3.1.0")

    monkeypatch.setattr(lowering, "lower", lambda model, **kwargs: fitting_graph())
    monkeypatch.setattr(samna_module, "_alias", no_rockpool)
    out = tmp_path / "out"
    res = runner.invoke(app, ["export", str(dense_model), "-o", str(out), "--chips", "1"])
    assert res.exit_code == 3 and "pip install rockpool" in res.output
    assert not out.exists() and leftovers(tmp_path) == []


# --------------------------------------------------------------------------- samna.json
def test_samna_json_is_rockpools_form_of_the_configuration(exported):
    from rockpool.devices.dynapse import samna_alias as sa
    from rockpool.devices.dynapse.samna_alias.base import SamnaAlias

    snake_to_camel = SamnaAlias.snake_to_camel

    config = read_config(exported / "dynapse2.json")
    doc = json.loads((exported / "samna.json").read_text())
    assert doc == config_to_samna(config)
    assert list(doc) == ["value0"] and list(doc["value0"]) == ["chips"]
    chips = doc["value0"]["chips"]
    assert len(chips) == 1 and len(chips[0]["cores"]) == 4
    assert set(chips[0]) == {snake_to_camel(f.name)
                             for f in dataclasses.fields(sa.Dynapse2Chip)}
    core_keys = {snake_to_camel(f.name) for f in dataclasses.fields(sa.Dynapse2Core)}
    neuron_keys = {snake_to_camel(f.name)
                   for f in dataclasses.fields(sa.Dynapse2Neuron)}
    readout = {(r["chip"], r["core"], r["neuron"]): r["tag"] for r in config["readout_channels"]}
    checked = 0
    for core in config["chips"][0]["cores"]:
        samna_core = chips[0]["cores"][f"value{core['id']}"]
        assert set(samna_core) == core_keys and len(samna_core["neurons"]) == 256
        params = {p["key"]: p["value"] for p in samna_core["parameters"]}
        for name, code in core["bias_codes"].items():
            expected = sa.Dynapse2Parameter(type=name[-1], coarse_value=code["coarse"],
                                            fine_value=code["fine"],
                                            _initial_type=sa.ParameterType[name[-1].lower()])
            assert params[name] == expected.json_wrapper()
        for neuron in core["neurons"]:
            synapses = [sa.Dynapse2Synapse(
                dendrite=sa.Dendrite[e["dendrite"]], stp=e["stp"],
                weight=[bool(e["weight_mask"] >> k & 1) for k in range(4)],
                precise_delay=bool(e["delay"] & 1), mismatched_delay=bool(e["delay"] >> 1 & 1),
                tag=e["tag"]) for e in neuron["cam"]]
            synapses += [sa.Dynapse2Synapse(sa.Dendrite.none, False, [False] * 4, False, False, 0)
                         ] * (64 - len(synapses))
            key = (config["chips"][0]["id"], core["id"], neuron["id"])
            monitor = (sa.Dynapse2Destination([True] * 4, -7, -7, readout[key]) if key in readout
                       else sa.Dynapse2Destination([False] * 4, 0, 0, 0))
            destinations = [monitor] + [sa.Dynapse2Destination(
                [bool(e["core_mask"] >> k & 1) for k in range(4)], e["x_hop"], e["y_hop"],
                e["tag"]) for e in neuron["sram"]]
            destinations += [sa.Dynapse2Destination([False] * 4, 0, 0, 0)] * (
                4 - len(destinations))
            latches = {f.name: False for f in dataclasses.fields(sa.Dynapse2Neuron)
                       if f.name.startswith("latch_")}
            expected = sa.Dynapse2Neuron(synapses=synapses, destinations=destinations,
                                         **latches).json_wrapper()
            expected = json.loads(json.dumps(expected))  # enums as their values
            got = samna_core["neurons"][f"value{neuron['id']}"]
            assert set(got) == neuron_keys and got == expected
            checked += 1
    assert checked == 36
    # every readout neuron reaches the host through the reserved monitoring entry
    for (chip, core, slot), tag in readout.items():
        entry = chips[chip]["cores"][f"value{core}"]["neurons"][f"value{slot}"][
            "destinations"][f"value{MONITOR_SLOT}"]
        assert entry["tag"] == tag and entry["xHop"] == -7 and all(entry["core"].values())


def test_samna_json_refuses_values_samnas_objects_cannot_hold(exported):
    config = read_config(exported / "dynapse2.json")
    neuron = config["chips"][0]["cores"][0]["neurons"][0]
    neuron["cam"][0]["tag"] = 4096
    with pytest.raises(samna_module.SamnaJsonError, match=r"cam\[0\]\.tag' must be .*0\.\.2047"):
        config_to_samna(config)


def test_samna_json_never_imports_samna(exported):
    code = ("import sys, json; from eideploy.targets.dynapse2 import read_config; "
            "from eideploy.targets.dynapse2.samna import samna_json; "
            f"samna_json(read_config({str(exported / 'dynapse2.json')!r})); "
            "print('samna' in sys.modules and sys.modules['samna'] is not None)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    assert res.stdout.strip() == "False"
    assert "samna installation not found" not in res.stderr


def test_pypi_samna_stub_is_detected_and_never_run(tmp_path, monkeypatch):
    marker = tmp_path / "stub-ran"
    stub = tmp_path / "site" / "samna"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(f"PYPI_SAMNA = True\nopen({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "samna", raising=False)
    assert samna_is_pypi_stub()
    with rockpool_import():
        with pytest.raises(ImportError):
            import samna  # noqa: F401
    assert not marker.exists() and "samna" not in sys.modules


def test_overwrite_never_replaces_the_working_directory(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    monkeypatch.chdir(work)
    with pytest.raises(ExportError, match="refusing to replace"):
        export_graph(fitting_graph(), work, target=one_chip(), overwrite=True)
    assert (work / "notes.txt").read_text() == "mine" and leftovers(tmp_path) == []


def test_the_old_locations_still_import_the_split_modules_names():
    import eideploy.export as old
    from eideploy.pipeline import export, inspect, report

    assert old.build_report is report.build_report is export.build_report
    assert old.report_markdown is report.report_markdown
    assert old.model_overview is inspect.model_overview is export.model_overview
    assert old.REPORT_SCHEMA_VERSION == report.REPORT_SCHEMA_VERSION == 1
    assert set(old.__all__) >= {"export_model", "export_graph", "read_export", "build_report",
                                "report_markdown", "model_overview", "DoesNotFit"}
