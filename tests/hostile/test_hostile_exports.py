"""Tampered export directories (issue 15 items 1, 2, 6, 8, 10): fuzzed.

One real export (the shipped digits model on a one-chip board, made once per session) is
tampered with by a seeded generator: one field of ``dynapse2.json``, ``manifest.json``,
``graph.json``, ``report.json`` or ``weights.npz`` set to a wrong type, an out-of-range value,
NaN, a huge number, a wrong hash, a path out of the directory; a file truncated, replaced by a
link, a FIFO or a directory; sometimes with the manifest re-signed so that only the value
checks can catch it. Every case must be refused naming the file (and the field where there is
one), never read past a bound, never hang, and never reach a board:

* 400 configurations tampered in memory through ``check_config`` (the value checks against
  the shipped target) and 120 directories through ``load_export`` / ``_prepare`` (the loader
  every command uses);
* 21 directories through ``inspect``, ``simulate`` and ``run --board virtual`` in-process
  (exit 2, one message, no traceback, the virtual board never built); 500 more are
  ``@pytest.mark.slow``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _hostile import assert_refused, invoke, run_guarded

from eideploy.atomic import is_staging_name, staged_directory
from eideploy.pipeline.export import load_export
from eideploy.targets.dynapse2.board import runner
from eideploy.targets.dynapse2.config import ConfigError, check_config, read_config

SEED = 15
CONFIG_CASES = 400
DIRECTORY_CASES = 120
CLI_CASES = 7  # each through inspect, simulate and run
SLOW_CLI_CASES = 500
HANG_TIMEOUT_S = 120  # against a hang only


# ------------------------------------------------------------------ the export and its copies
@pytest.fixture(scope="module")
def pristine(digits_one_chip_export, tmp_path_factory) -> Path:
    """A private copy of the session's digits export (never written by a test)."""
    out = tmp_path_factory.mktemp("hostile-export") / "digits"
    shutil.copytree(digits_one_chip_export, out)
    return out


@pytest.fixture(scope="module")
def config(pristine) -> dict[str, Any]:
    return read_config(pristine / "dynapse2.json")


@pytest.fixture(scope="module")
def workdir(pristine, tmp_path_factory) -> Path:
    """A copy tampered with and restored case after case (each case writes one or two files)."""
    out = tmp_path_factory.mktemp("hostile-work") / "digits"
    shutil.copytree(pristine, out)
    return out


@pytest.fixture
def no_board(monkeypatch) -> list[str]:
    """Record every attempt to build the virtual board or open a board: must stay empty."""
    calls: list[str] = []

    def virtual(*args: Any, **kwargs: Any) -> Any:
        calls.append("virtual_samna")
        raise AssertionError("a refused export reached the virtual board")

    def opened(*args: Any, **kwargs: Any) -> Any:
        calls.append("_open")
        raise AssertionError("a refused export reached a board")

    monkeypatch.setattr(runner, "virtual_samna", virtual)
    monkeypatch.setattr(runner, "_open", opened)
    return calls


# ------------------------------------------------------------------ configuration mutations
_NOT_INT = ["70", 70.9, True, None, [], {}, math.nan, math.inf]
_NOT_NUMBER = ["1.0", True, None, [], math.nan, math.inf, -math.inf]


@dataclass
class Site:
    """A place in the configuration: its container, key, checker path and the bad values."""

    parent: Any
    key: Any
    path: str
    bad: list[Any]


def _int_site(parent: Any, key: Any, path: str, low: int, high: int) -> Site:
    return Site(parent, key, path, [high + 1, low - 1, 10 ** 30, -(10 ** 30), *_NOT_INT])


def _config_sites(doc: dict[str, Any], rng: random.Random) -> Iterator[Site]:
    """Sites to tamper with, drawn at random from every kind of field the board receives."""
    target = doc["target"]
    for key, limit in (("tags", 2048), ("cam_entries_per_neuron", 64), ("chips_per_board", 4),
                       ("neurons_per_core", 256)):
        yield Site(target, key, f"target.{key}", [limit + 1, 65536, 0, -1, *_NOT_INT])
    yield Site(target, "cores_per_chip", "target.cores_per_chip", [4.0, "4"])
    yield Site(target, "sram_reserved", "target.sram_reserved", [True])
    for key, value in (("name", "evil"), ("cores_per_chip", 8), ("sram_reserved", 0),
                       ("control_tag", 5), ("weight_mask_bits", 8), ("hop_range", [-99, 99]),
                       ("dendrites", {"ampa": 1}), ("delay_classes", 16),
                       ("base_weights_per_core", 8), ("chip_layout", "ring")):
        yield Site(target, key, f"target.{key}", [value])
    chip = doc["chips"][0]
    yield _int_site(chip, "id", "chips[0].id", 0, 0)
    yield Site(chip, "position", "chips[0].position", [[3, 0], [0.0, 0], "0,0", None])
    for _ in range(40):
        ki = rng.randrange(len(chip["cores"]))
        core = chip["cores"][ki]
        kw = f"chips[0].cores[{ki}]"
        names = sorted(core["bias_codes"])
        name = rng.choice(names)
        code = core["bias_codes"][name]
        yield _int_site(code, "coarse", f"{kw}.bias_codes.{name}.coarse", 0, 5)
        yield _int_site(code, "fine", f"{kw}.bias_codes.{name}.fine", 0, 255)
        yield Site(code, "requested", f"{kw}.bias_codes.{name}", ["x", math.nan, True])
        yield Site(core, "dc", f"{kw}.dc", _NOT_NUMBER)
        bi = rng.randrange(4)
        yield Site(core["base_weights"], bi, f"{kw}.base_weights[{bi}]",
                   [-1.0, *_NOT_NUMBER])
        yield Site(core["dendrite_scales"], "ampa", f"{kw}.dendrite_scales.ampa",
                   [0.0, -2.0, *_NOT_NUMBER])
        yield _int_site(core, "id", f"{kw}.id", 0, 3)
        yield _int_site(core, "parameter_group", f"{kw}.parameter_group", 0, 1 << 16)
        ni = rng.randrange(len(core["neurons"]))
        neuron = core["neurons"][ni]
        nw = f"{kw}.neurons[{ni}]"
        yield _int_site(neuron, "id", f"{nw}.id", 0, 255)
        yield Site(neuron, "population", f"{nw}.population", ["nope", 3, None])
        if neuron["cam"]:
            ei = rng.randrange(len(neuron["cam"]))
            entry = neuron["cam"][ei]
            ew = f"{nw}.cam[{ei}]"
            yield _int_site(entry, "tag", f"{ew}.tag", 0, 2047)
            yield Site(entry, "tag", f"{ew}.tag", [2047])  # the control tag
            yield _int_site(entry, "weight_mask", f"{ew}.weight_mask", 0, 15)
            yield _int_site(entry, "delay", f"{ew}.delay", 0, 3)
            yield Site(entry, "stp", f"{ew}.stp", [1, 0, "true", None])
            yield Site(entry, "dendrite", f"{ew}.dendrite", ["nmda2", "none", 1024, None])
            yield Site(neuron, "cam", f"{nw}.cam", [[entry] * 65, {"tag": 1}, "all"])
        if neuron["sram"]:
            entry = neuron["sram"][0]
            sw = f"{nw}.sram[0]"
            yield _int_site(entry, "x_hop", f"{sw}.x_hop", -7, 7)
            yield _int_site(entry, "core_mask", f"{sw}.core_mask", 0, 15)
            yield _int_site(entry, "chip", f"{sw}.chip", 0, 0)
            yield Site(neuron, "sram", f"{nw}.sram", [[entry] * 4])
        yield Site(core, "neurons", f"{kw}.neurons", [core["neurons"] * 2 if len(
            core["neurons"]) > 128 else [dict(core["neurons"][0], id=i) for i in range(257)]])
    for i, pop in enumerate(doc["graph"]["populations"]):
        yield Site(pop, "shape", f"graph.populations[{i}].shape",
                   [[-1], [0], [10 ** 9, 10 ** 9], [2.5], "64", []])
        if pop["params"]:
            key = sorted(pop["params"])[0]
            yield Site(pop["params"], key, f"graph.populations[{i}].params.{key}",
                       [math.nan, math.inf])
    yield _int_site(doc["graph"], "T", "graph.T", 1, 1 << 16)
    for _ in range(10):
        ii = rng.randrange(len(doc["input_channels"]))
        tag = _int_site(doc["input_channels"][ii], "tag", f"input_channels[{ii}].tag", 0, 2047)
        tag.bad.remove(None)  # an input channel without a tag is one the network ignores
        yield tag
        yield _int_site(doc["input_channels"][ii], "channel", f"input_channels[{ii}].channel",
                        0, 63)
        ri = rng.randrange(len(doc["readout_channels"]))
        for key, high in (("neuron", 255), ("core", 3), ("chip", 0), ("tag", 2047),
                          ("class", len(doc["readout_channels"]) - 1)):
            yield _int_site(doc["readout_channels"][ri], key, f"readout_channels[{ri}].{key}",
                            0, high)


def _config_cases(doc: dict[str, Any], n: int, seed: int) -> list[tuple[Site, Any]]:
    rng = random.Random(seed)
    sites = list(_config_sites(doc, rng))
    return [(site, rng.choice(site.bad)) for site in (rng.choice(sites) for _ in range(n))]


_MISSING = object()


def _apply(site: Site, value: Any) -> Callable[[], None]:
    """Set the site to ``value`` (``_MISSING``: delete it); returns the undo."""
    old = site.parent[site.key] if (isinstance(site.parent, list) or
                                    site.key in site.parent) else _MISSING
    if value is _MISSING:
        del site.parent[site.key]
    else:
        site.parent[site.key] = value

    def undo() -> None:
        if old is _MISSING:
            site.parent.pop(site.key, None)
        else:
            site.parent[site.key] = old
    return undo


def test_400_tampered_configurations_are_refused_against_the_shipped_target(config):
    source = "/export/dynapse2.json"
    check_config(config, source)  # the real one passes
    refused = 0
    for site, value in _config_cases(config, CONFIG_CASES, SEED):
        undo = _apply(site, value)
        try:
            with pytest.raises(ConfigError) as info:
                check_config(config, source)
        except BaseException:
            print(f"not refused: {site.path} = {value!r}")
            raise
        finally:
            undo()
        message = str(info.value)
        assert message.startswith(f"{source}: field '"), message
        assert site.path in message or site.path.rsplit(".", 1)[0] in message, (site.path,
                                                                              message)
        assert "\x1b" not in message
        refused += 1
    assert refused == CONFIG_CASES
    check_config(config, source)  # every tamper was undone


# ------------------------------------------------------------------ directory mutations
def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _resign(out: Path, name: str) -> None:
    """Update the manifest's size and sha256 of ``name``: only the value checks can tell."""
    manifest = json.loads((out / "manifest.json").read_text())
    data = (out / name).read_bytes()
    for entry in manifest["files"]:
        if entry["path"] == name:
            entry["bytes"], entry["sha256"] = len(data), _sha(data)
    (out / "manifest.json").write_text(json.dumps(manifest))


def _edit_json(name: str, edit: Callable[[Any], None], resign: bool) -> Callable[[Path], str]:
    def mutate(out: Path) -> str:
        doc = json.loads((out / name).read_text())
        edit(doc)
        (out / name).write_text(json.dumps(doc))
        if resign:
            _resign(out, name)
        return name
    return mutate


def _setter(*path: Any, value: Any) -> Callable[[Any], None]:
    def edit(doc: Any) -> None:
        node = doc
        for key in path[:-1]:
            node = node[key]
        if value is _MISSING:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return edit


def _raw(name: str, edit: Callable[[bytes], bytes], resign: bool = False
         ) -> Callable[[Path], str]:
    def mutate(out: Path) -> str:
        (out / name).write_bytes(edit((out / name).read_bytes()))
        if resign:
            _resign(out, name)
        return name
    return mutate


def _replace_file(name: str, kind: str) -> Callable[[Path], str]:
    def mutate(out: Path) -> str:
        path = out / name
        path.unlink()
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "dir":
            path.mkdir()
        elif kind == "outside":
            path.symlink_to("/etc/hostname" if Path("/etc/hostname").exists() else "/etc/passwd")
        else:
            path.symlink_to("/dev/zero")
        return name
    return mutate


def _npz_array(name: str, key: str, make: Callable[[np.ndarray], np.ndarray],
               resign: bool) -> Callable[[Path], str]:
    """Replace one array of an npz (written as numpy writes it)."""
    def mutate(out: Path) -> str:
        with np.load(out / name) as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays[key] = make(arrays[key])
        with open(out / name, "wb") as fh:
            np.savez(fh, **arrays)
        if resign:
            _resign(out, name)
        return name
    return mutate


def _huge_header(name: str) -> Callable[[Path], str]:
    """An npz whose one member declares 10^12 float64 elements in a 200-byte file."""
    def mutate(out: Path) -> str:
        import io
        import zipfile

        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": "<f8", "fortran_order": False, "shape": (10 ** 6, 10 ** 6)})
        with zipfile.ZipFile(out / name, "w") as archive:
            archive.writestr("projection/x/weight.npy", header.getvalue() + b"\0" * 64)
        _resign(out, name)
        return name
    return mutate


def _directory_cases(out: Path, n: int, seed: int) -> list[tuple[str, Callable[[Path], str]]]:
    """``n`` named mutations of an export directory, drawn from every kind."""
    rng = random.Random(seed)
    manifest = json.loads((out / "manifest.json").read_text())
    listed = [f["path"] for f in manifest["files"]]
    npz = {}
    for name in ("weights.npz", "quantized/weights.npz"):
        with np.load(out / name) as archive:
            npz[name] = sorted(archive.files)
    config = json.loads((out / "dynapse2.json").read_text())
    kinds: list[Callable[[], tuple[str, Callable[[Path], str]]]] = []

    def manifest_field() -> tuple[str, Callable[[Path], str]]:
        i = rng.randrange(len(listed))
        path, value = rng.choice([
            (("files", i, "sha256"), "0" * 64), (("files", i, "sha256"), 7),
            (("files", i, "bytes"), manifest["files"][i]["bytes"] + 1),
            (("files", i, "bytes"), -1), (("files", i, "bytes"), "12"),
            (("files", i, "path"), "/etc/passwd"), (("files", i, "path"), "../digits/x"),
            (("files", i, "path"), "quantized/../../x"), (("files", i, "path"), ""),
            (("files", i, "path"), 5), (("files", i), "graph.json"),
            (("files",), {}), (("files",), None), (("format_version",), "1"),
            (("format_version",), 2), (("format_version",), True), (("target", "chips"), 0),
            (("target", "chips"), "1"), (("target", "chips"), 10 ** 20),
            (("target", "name"), 3), (("source", "sha256"), "xyz"), (("graph",), 5),
            (("seed",), "0"), (("versions",), [1]), (("source", "file"), "\x1b[2J\x1b[31mx"),
            (("format",), "eideploy-exp0rt"), (("seed",), _MISSING), (("target",), _MISSING),
        ])
        return (f"manifest.json {path}={value!r}",
                _edit_json("manifest.json", _setter(*path, value=value), resign=False))

    def config_field(resign: bool) -> tuple[str, Callable[[Path], str]]:
        site, value = _config_cases(config, 1, rng.randrange(1 << 30))[0]
        edit_path = _site_path(config, site)
        return (f"dynapse2.json {site.path}={value!r} resigned={resign}",
                _edit_json("dynapse2.json", _setter(*edit_path, value=value), resign))

    def graph_field() -> tuple[str, Callable[[Path], str]]:
        name = rng.choice(["graph.json", "quantized/graph.json"])
        path, value = rng.choice([
            (("T",), "8"), (("T",), -3), (("T",), 10 ** 30), (("populations", 0, "shape"), [-1]),
            (("populations", 1, "shape"), [10 ** 6, 10 ** 6]), (("projections", 0, "op"), "x"),
            (("projections", 0, "kind"), "add"), (("populations", 2, "role"), "boss"),
            (("populations",), "all"), (("input",), [1]), (("name",), {"a": 1}),
            (("format",), "pickle"), (("projections", 0, "source"), "nowhere"),
            (("populations", 2, "arrays"), ["evil"]), (("division",), None),
        ])
        return (f"{name} {path}={value!r}",
                _edit_json(name, _setter(*path, value=value), resign=rng.random() < 0.8))

    def npz_array() -> tuple[str, Callable[[Path], str]]:
        name = rng.choice(["weights.npz", "quantized/weights.npz"])
        # the float graph's own neuron arrays (b_E, g_E) may take any finite value; the
        # quantized graph's must be what dynapse2.json holds
        key = rng.choice([k for k in npz[name]
                          if name.startswith("quantized") or k.startswith("projection/")])
        label, make = rng.choice([
            ("nan", lambda a: np.full(a.shape, np.nan)),
            ("inf", lambda a: np.full(a.shape, np.inf)),
            ("negative", lambda a: -np.ones(a.shape)),
            ("complex", lambda a: a.astype(np.complex128)),
            ("strings", lambda a: np.full(a.shape, "x")),
            ("short", lambda a: a.reshape(-1)[:1].copy()),
            ("bigger", lambda a: np.concatenate([a.reshape(-1), a.reshape(-1)])),
            ("huge index", lambda a: np.full(a.shape, 10 ** 9, dtype=np.int64)),
            ("bool", lambda a: a.astype(bool)),
        ])
        return (f"{name} {key} {label}", _npz_array(name, key, make, resign=True))

    def report_field() -> tuple[str, Callable[[Path], str]]:
        path, value = rng.choice([
            (("summary", "neurons"), "322"), (("summary", "cam"), None),
            (("summary", "worst_fan_in", "entries"), 1.5), (("target", "chips"), [4]),
            (("chips", 0, "cores_used"), "3"), (("chips",), {}), (("summary",), _MISSING),
            (("summary", "quantization", "relative_rmse"), "low"),
        ])
        return (f"report.json {path}={value!r}",
                _edit_json("report.json", _setter(*path, value=value), resign=True))

    def raw_file() -> tuple[str, Callable[[Path], str]]:
        name = rng.choice(listed)
        label, edit, resign = rng.choice([
            ("truncated", lambda b: b[: len(b) // 2], False),
            ("emptied", lambda b: b"", False),
            ("bit flip", lambda b: b[:-1] + bytes([b[-1] ^ 1]), False),
            ("appended", lambda b: b + b"\0", False),
        ])
        if name.endswith(".npz") and rng.random() < 0.5:
            label, edit, resign = "truncated, resigned", lambda b: b[: len(b) // 2], True
        if name.endswith(".json") and name != "samna.json" and rng.random() < 0.5:
            label, resign = "deep nesting, resigned", True
            edit = lambda b: b"[" * 100_000 + b"]" * 100_000  # noqa: E731
        return f"{name} {label}", _raw(name, edit, resign)

    def replaced() -> tuple[str, Callable[[Path], str]]:
        name = rng.choice([*listed, "manifest.json"])
        kind = rng.choice(["fifo", "dir", "outside", "zero"])
        return f"{name} replaced by {kind}", _replace_file(name, kind)

    kinds = [manifest_field, manifest_field, lambda: config_field(True),
             lambda: config_field(False), graph_field, npz_array, report_field, raw_file,
             raw_file, replaced, lambda: ("weights.npz 10^12 elements",
                                          _huge_header(rng.choice(list(npz))))]
    return [rng.choice(kinds)() for _ in range(n)]


def _site_path(doc: dict[str, Any], site: Site) -> tuple[Any, ...]:
    """The key path of a site's container in ``doc`` (found by identity) plus its key."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(doc, ())]
    while stack:
        node, path = stack.pop()
        if node is site.parent:
            return (*path, site.key)
        items = node.items() if isinstance(node, dict) else enumerate(node)
        stack.extend((value, (*path, key)) for key, value in items
                     if isinstance(value, (dict, list)))
    raise AssertionError(site.path)


def _restore(work: Path, pristine: Path, names: list[str]) -> None:
    for name in [*names, "manifest.json"]:
        path = work / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        shutil.copy2(pristine / name, path)


def _guarded(call: Callable[[], Any]) -> BaseException | None:
    """The exception ``call`` raised (None: it returned), in a thread joined with a timeout."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - what it raised is the result
            outcome.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(HANG_TIMEOUT_S)
    assert not worker.is_alive(), "the loader hung"
    return outcome[0]


def _assert_named(error: BaseException | None, name: str, label: str) -> None:
    assert error is not None, f"{label}: accepted"
    assert isinstance(error, ValueError), f"{label}: {type(error).__name__}: {error}"
    message = str(error)
    assert Path(name).name in message or "manifest.json" in message, (label, message)
    assert message.isprintable(), (label, repr(message))


def test_120_tampered_export_directories_are_refused_by_the_loader_and_the_runner(
        workdir, pristine, no_board):
    load_export(workdir)  # the untouched copy loads
    for label, mutate in _directory_cases(pristine, DIRECTORY_CASES, SEED):
        name = mutate(workdir)
        try:
            _assert_named(_guarded(lambda: load_export(workdir)), name, label)
            _assert_named(_guarded(lambda: load_export(workdir, complete=False)), name, label)
            if name in ("dynapse2.json", "manifest.json") or name.startswith("samna"):
                _assert_named(_guarded(lambda: runner._prepare(workdir, None, True)), name,
                              label)
        finally:
            _restore(workdir, pristine, [name])
    assert no_board == []
    load_export(workdir)


# ------------------------------------------------------------------ the commands
def _cli_cases(pristine: Path, n: int, seed: int) -> list[tuple[str, Callable[[Path], str]]]:
    cases = _directory_cases(pristine, n, seed)
    # the five kinds every short run covers, then the generator's draws
    fixed = [
        ("tags beyond the shipped target, resigned",
         _edit_json("dynapse2.json", _setter("target", "tags", value=65536), True)),
        ("fine code 70.9, resigned",
         _edit_json("dynapse2.json", lambda d: d["chips"][0]["cores"][0]["bias_codes"][
             "SOIF_GAIN_N"].update(fine=70.9), True)),
        ("manifest path /etc/passwd",
         _edit_json("manifest.json", _setter("files", 0, "path", value="/etc/passwd"), False)),
        ("weights.npz truncated", _raw("weights.npz", lambda b: b[:100], False)),
        ("manifest.json a FIFO", _replace_file("manifest.json", "fifo")),
    ]
    return (fixed + cases)[:max(n, len(fixed))]


def _run_commands(tmp_path: Path, pristine: Path, cases, no_board: list[str]) -> int:
    checked = 0
    for i, (label, mutate) in enumerate(cases):
        out = tmp_path / f"case{i}"
        shutil.copytree(pristine, out, ignore=shutil.ignore_patterns("samna.json"))
        shutil.copy2(pristine / "samna.json", out / "samna.json")
        name = mutate(out)
        for args in (["inspect", out], ["simulate", out, "--division", "exact"],
                     ["run", out, "--board", "virtual", "--limit", "2"]):
            code, output = run_guarded(args, tmp_path)
            if code != 2:
                raise AssertionError(f"{args[0]} on {label}: exit {code}\n{output}")
            assert_refused(code, output)
            flat = " ".join(output.split())
            assert Path(name).name in flat or "manifest.json" in flat, (label, output)
            assert output.count("error:") == 1, output
            checked += 1
        shutil.rmtree(out)
    assert no_board == []
    return checked


def test_tampered_exports_are_refused_by_inspect_simulate_and_run(tmp_path, pristine,
                                                                   no_board):
    cases = _cli_cases(pristine, CLI_CASES, SEED)
    assert _run_commands(tmp_path, pristine, cases, no_board) == 3 * len(cases)


@pytest.mark.slow
def test_500_more_tampered_exports_through_every_command(tmp_path, pristine, no_board):
    cases = _directory_cases(pristine, SLOW_CLI_CASES, SEED + 1)
    assert _run_commands(tmp_path, pristine, cases, no_board) == 3 * len(cases)


# ------------------------------------------------------------------ named cases
def test_an_export_without_a_manifest_is_refused_by_every_command(tmp_path, pristine,
                                                                  no_board):
    out = tmp_path / "copy"
    shutil.copytree(pristine, out)
    (out / "manifest.json").unlink()
    for args in (["inspect", out], ["simulate", out], ["run", out, "--board", "virtual"]):
        code, output = invoke(args, tmp_path)
        assert_refused(code, output, "no manifest.json")
    assert no_board == []


def test_a_listed_file_that_is_missing_is_refused_by_run_and_simulate(tmp_path, pristine,
                                                                      no_board):
    out = tmp_path / "copy"
    shutil.copytree(pristine, out)
    (out / "samna.json").unlink()
    for args in (["simulate", out], ["run", out, "--board", "virtual"]):
        code, output = invoke(args, tmp_path)
        assert_refused(code, output, "samna.json", "missing")
    assert no_board == []


def test_a_staging_directory_is_refused(tmp_path, pristine, no_board):
    stage = tmp_path / ".digits.partial-999999999-abcd1234"
    shutil.copytree(pristine, stage)
    assert is_staging_name(stage.name)
    for args in (["inspect", stage], ["simulate", stage], ["run", stage, "--board", "virtual"]):
        code, output = invoke(args, tmp_path)
        assert_refused(code, output, "staging directory")
    assert no_board == []


def test_the_next_export_removes_stages_a_killed_export_left(tmp_path):
    out = tmp_path / "out"
    dead = tmp_path / ".out.partial-999999999-abcd1234"  # no process has this PID
    legacy = tmp_path / ".out.partial-k3j4h5g6"  # an earlier version's name, long untouched
    live = tmp_path / f".out.partial-{os.getpid()}-zzzz0000"  # an export still writing
    fresh_legacy = tmp_path / ".out.partial-a1b2c3d4"
    other = tmp_path / ".another.partial-999999999-abcd1234"  # not this destination's
    for stage in (dead, legacy, live, fresh_legacy, other):
        stage.mkdir()
        (stage / "dynapse2.json").write_text("{}")
    old = time.time() - 3600
    os.utime(legacy, (old, old))
    with staged_directory(out) as stage:
        (stage / "manifest.json").write_text("{}")
    assert (out / "manifest.json").is_file()
    assert not dead.exists() and not legacy.exists()
    assert live.exists() and fresh_legacy.exists() and other.exists()


def test_an_output_directory_whose_manifest_is_a_fifo_is_refused_without_hanging(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "manifest.json")
    model = Path(__file__).resolve().parents[2] / "models" / "digits-dynapse2.pt"
    result: list[tuple[int, str]] = []
    worker = threading.Thread(target=lambda: result.append(
        invoke(["export", model, "-o", out, "--chips", "1"], tmp_path)), daemon=True)
    worker.start()
    worker.join(HANG_TIMEOUT_S)
    assert not worker.is_alive(), "export hung on a FIFO named manifest.json"
    assert_refused(*result[0], "not an eideploy export")


def test_run_refuses_what_validate_refuses_before_opening_a_board(tmp_path, pristine):
    """A samna-like object that records every attribute asked of it: a tampered export must
    not touch it (the runner checks the export before it opens anything)."""
    touched: list[str] = []

    class Recorder:
        def __getattr__(self, name: str) -> Any:
            touched.append(name)
            raise AssertionError(f"samna.{name} used")

    out = tmp_path / "copy"
    shutil.copytree(pristine, out)
    _edit_json("dynapse2.json", lambda d: d["chips"][0]["cores"][0]["neurons"][0][
        "cam"].extend([{"tag": 5000, "dendrite": "ampa", "weight_mask": 1, "stp": False,
                        "delay": 0}] * 100), True)(out)
    _edit_json("dynapse2.json", _setter("target", "cam_entries_per_neuron", value=128),
               True)(out)
    x = np.zeros((1, 1, 8, 8), dtype=np.float32)
    with pytest.raises(ConfigError, match="cam_entries_per_neuron"):
        runner.run_on_board(out, x, np.zeros(1), samna=Recorder(), progress=False)
    assert touched == []


# ------------------------------------------------------------------ the error handler
def test_an_internal_error_exits_4_with_a_hint_to_rerun_with_debug(tmp_path, pristine,
                                                                   monkeypatch):
    from eideploy.pipeline import export

    def broken(out_dir: Any) -> Any:
        raise KeyError("a bug")

    monkeypatch.setattr(export, "read_export", broken)
    code, output = invoke(["inspect", pristine], tmp_path)
    assert code == 4, output
    flat = " ".join(output.split())
    assert "internal error (KeyError" in flat and "--debug" in flat
    assert "Traceback" not in output


def test_control_characters_in_a_message_are_escaped(tmp_path, pristine, monkeypatch):
    from eideploy.pipeline import export

    def hostile(out_dir: Any) -> Any:
        raise ValueError("manifest.json: field 'source.file' is '\x1b[2J\x1b[31mred'")

    monkeypatch.setattr(export, "read_export", hostile)
    code, output = invoke(["inspect", pristine], tmp_path)
    assert_refused(code, output, "manifest.json", "\\x1b[2J")
