"""``eideploy`` command line: parsing and printing; every computation is a function of
:mod:`eideploy.pipeline` (or of the stage it names).

Exit codes (DESIGN §4): 0 ok; 1 a validation threshold failed; 2 bad usage or bad input file;
3 missing optional dependency or device. User errors print one paragraph, no traceback
(``--debug`` shows it).

This module loads typer and rich only: each command imports the one pipeline module it calls
when it runs (one import line per command), so that ``--help`` answers at once and
``eideploy run`` without samna exits 3 within a second instead of loading torch first.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train deep E-I spiking networks and deploy them to DYNAP-SE2.")
console = Console(stderr=True)
_state = {"debug": False}

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_MISSING = 0, 1, 2, 3


class MissingDependency(RuntimeError):
    """An optional extra or a device is needed for this command (exit code 3)."""


def _fail(exc: BaseException, code: int) -> None:
    if _state["debug"]:
        console.print_exception()
    console.print(f"[bold red]error:[/] {exc}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def _run(fn, *args, **kwargs):
    """Call ``fn`` and turn user errors into a message and an exit code."""
    try:
        return fn(*args, **kwargs)
    except typer.Exit:
        raise
    except (MissingDependency, ImportError) as exc:
        _fail(exc, EXIT_MISSING)
    except (ValueError, FileNotFoundError, NotADirectoryError) as exc:
        _fail(exc, EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        console.print("interrupted")
        raise typer.Exit(130) from None


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="show tracebacks")] = False) -> None:
    _state["debug"] = debug


@app.command()
def train(
    recipe: Annotated[Path, typer.Argument(
        help="recipe YAML, or a shipped recipe's name (eideploy models), e.g. digits-mlp")],
    data_dir: Annotated[str | None, typer.Option(help="directory holding the data set")] = None,
    out: Annotated[Path | None, typer.Option(help="run directory (default runs/NAME)")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="override the recipe's epochs")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto")] = "auto",
    resume: Annotated[Path | None, typer.Option(help="latest.pt of a run to continue")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    threads: Annotated[int | None, typer.Option(
        min=1, help="torch intra-op threads (default: 1 for small models, else torch's)")] = None,
    overwrite: Annotated[bool, typer.Option(
        help="replace the run already in the run directory (--resume continues it)")] = False,
) -> None:
    """Train a recipe; writes model.pt (best), latest.pt, metrics.csv/json to the run directory."""
    from .pipeline.train import train_and_summarise as train_fn
    from .train import load_recipe

    def go():
        loaded = load_recipe(recipe)
        return train_fn(loaded, out_dir=out, device=device, data_dir=data_dir, epochs=epochs,
                        resume=resume, progress=progress and sys.stderr.isatty(),
                        log=lambda m: console.print(m, highlight=False), threads=threads,
                        overwrite=overwrite)

    result = _run(go)
    if result is not None:
        print(f"test accuracy: {result.best_accuracy:.2f}% (best), {result.final_accuracy:.2f}% "
              f"(final); {result.seconds:.1f} s; model: {result.run_dir / 'model.pt'}")


@app.command()
def evaluate(
    model: Annotated[Path, typer.Argument(help="a model.pt, or an export directory")],
    data: Annotated[str | None, typer.Option(help="data set (default: the model's recipe)")]
    = None,
    data_dir: Annotated[str | None, typer.Option(help="directory holding the data set")] = None,
    split: Annotated[str, typer.Option(help="train or test")] = "test",
    batch_size: Annotated[int, typer.Option(min=1)] = 256,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto")] = "auto",
) -> None:
    """Accuracy of a trained model, or of an export's float and quantized E-I graphs."""
    from .pipeline.evaluate import evaluate_export, evaluate_model

    if model.is_dir():
        name, acc = _run(evaluate_export, model, data=data, data_dir=data_dir, split=split,
                         batch_size=batch_size)
        print(f"{model}: {name} {split} accuracy: float graph {acc['float']:.2f}%, quantized "
              f"graph {acc['quantized']:.2f}% (drop {acc['float'] - acc['quantized']:.2f} "
              "points)")
        return
    name, metrics = _run(evaluate_model, model, data=data, data_dir=data_dir, split=split,
                         batch_size=batch_size, device=device)
    print(f"{model}: {name} {split} accuracy {metrics['accuracy']:.2f}%, "
          f"loss {metrics['loss']:.4f}")


@app.command()
def simulate(
    out: Annotated[Path, typer.Argument(help="an export directory written by 'eideploy export'")],
    data: Annotated[str | None, typer.Option(help="data set (default: the model's)")] = None,
    data_dir: Annotated[str | None, typer.Option(help="directory holding the data set")] = None,
    split: Annotated[str, typer.Option(help="train or test")] = "test",
    backend: Annotated[str, typer.Option(
        help="integer (bit-accurate, docs/integer-semantics.md) or analog "
             "(DPI neurons with device mismatch, docs/analog-model.md)")] = "integer",
    division: Annotated[list[str] | None, typer.Option(
        help="integer backend: exact, lut:N, lut:N:newton or shift; repeat to compare")] = None,
    mismatch: Annotated[float, typer.Option(
        min=0.0, help="analog backend: relative std of device mismatch (0.1 = 10%)")] = 0.0,
    trials: Annotated[int, typer.Option(min=1, help="analog backend: mismatch draws")] = 1,
    seed: Annotated[int, typer.Option(help="analog backend: seed of the first draw")] = 0,
    calibrate: Annotated[int, typer.Option(
        min=0, help="analog backend: also score each draw after calibrating the readout on "
                    "this many unlabelled training samples (0: off)")] = 0,
    rasters: Annotated[Path | None, typer.Option(
        help="directory for the spike rasters of the first sample (default OUT/simulation)")]
    = None,
    onnx: Annotated[bool, typer.Option(
        "--onnx", help="integer backend: also write each mode's integer network as ONNX "
                       "(integer operators only) and check that onnxruntime reproduces the "
                       "simulator bit for bit (extra eideploy[onnx])")] = False,
    batch_size: Annotated[int, typer.Option(min=1)] = 256,
) -> None:
    """Accuracy of the exported network in the integer or analog simulator; writes rasters."""
    if backend not in ("integer", "analog"):
        _fail(ValueError(f"--backend {backend!r}: use 'integer' or 'analog'"), EXIT_BAD_INPUT)
    from .pipeline import simulate as sim

    if backend == "analog":
        analog = _run(sim.simulate_analog, out, data=data, data_dir=data_dir, split=split,
                      mismatch=mismatch, trials=trials, seed=seed, calibrate=calibrate,
                      raster_dir=rasters, batch_size=batch_size, progress=True)
        _print_analog(out, split, analog)
        return
    result = _run(sim.simulate_integer, out, data=data, data_dir=data_dir, split=split,
                  divisions=division or sim.DEFAULT_DIVISIONS, raster_dir=rasters, onnx=onnx,
                  batch_size=batch_size)
    for mode in result.modes:
        print(f"{out}: {result.dataset} {split} integer simulator, division {mode.division}: "
              f"accuracy {mode.accuracy:.2f}%, saturation events {mode.saturation_events}")
    print(f"spike rasters of sample 0: {', '.join(str(p) for p in result.rasters)}")
    for check in result.onnx:
        verdict = "bit-identical" if check.bit_identical else "DIFFERENT"
        print(f"onnxruntime, division {check.division}: {verdict} to the simulator "
              f"({check.mismatches} of {check.elements} elements differ; model {check.path})")
    if any(not check.bit_identical for check in result.onnx):
        raise typer.Exit(EXIT_FAILED)


def _print_analog(out: Path, split: str, analog) -> None:
    result, trials = analog.accuracy, analog.accuracy.trials
    spread = f" +- {result.std:.2f}" if trials > 1 else ""
    print(f"{out}: {analog.dataset} {split} analog simulator, mismatch "
          f"{100 * result.mismatch:g}%, {trials} draw(s) from seed {analog.seed}: accuracy "
          f"{result.mean:.2f}%{spread} (per draw: "
          f"{', '.join(f'{a:.2f}' for a in result.per_trial)})")
    if result.calibrated_per_trial is not None:
        print(f"  with the readout calibrated on {analog.calibration_samples} unlabelled "
              f"training samples: {result.calibrated_mean:.2f}%"
              + (f" +- {result.calibrated_std:.2f}" if trials > 1 else ""))
    if analog.rasters:
        print(f"spike rasters of sample 0: {', '.join(str(p) for p in analog.rasters)}")


@app.command()
def validate(
    model: Annotated[Path, typer.Argument(help="the trained model.pt")],
    out: Annotated[Path, typer.Argument(
        help="its export directory (exported to DYNAP-SE2 first if it does not exist)")],
    data: Annotated[str | None, typer.Option(help="data set (default: the model's)")] = None,
    data_dir: Annotated[str | None, typer.Option(help="directory holding the data set")] = None,
    split: Annotated[str, typer.Option(help="train or test")] = "test",
    division: Annotated[list[str] | None, typer.Option(
        help="integer division modes to compare (default exact, lut:8, shift)")] = None,
    analog: Annotated[bool, typer.Option(help="include the analog simulator")] = True,
    mismatch: Annotated[float, typer.Option(min=0.0, help="analog device mismatch")] = 0.1,
    trials: Annotated[int, typer.Option(min=0, help="analog mismatch draws")] = 5,
    calibrate: Annotated[int, typer.Option(
        min=0, help="also score the analog draws after calibrating the readout on this many "
                    "unlabelled training samples (0: off)")] = 200,
    report_dir: Annotated[Path | None, typer.Option(
        help="where report.json, report.md and the plots go (default OUT/validation)")] = None,
    max_accuracy_drop: Annotated[float | None, typer.Option(
        min=0.0, help="exit 1 when an integer mode loses more than this many points against "
                      "the float model")]
    = None,
    max_analog_drop: Annotated[float | None, typer.Option(
        min=0.0, help="exit 1 when the analog simulator without mismatch loses more than this "
                      "many points against the integer simulator (exact division)")]
    = None,
    limit: Annotated[int | None, typer.Option(min=1, help="use the first N samples only")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 128,
) -> None:
    """Compare float model, float and quantized graphs, integer simulator (each division mode)
    and analog simulator: accuracy, agreement, firing rates, spike-exactness, saturation."""
    if max_analog_drop is not None and not analog:
        _fail(ValueError("--max-analog-drop needs the analog simulator: drop --no-analog"),
              EXIT_BAD_INPUT)
    from .pipeline import validate as val

    directory = report_dir if report_dir is not None else out / "validation"

    def go():
        report, arrays = val.validate_export(
            model, out, data=data, data_dir=data_dir, split=split,
            divisions=division or ("exact", "lut:8", "shift"),
            analog_mismatch=mismatch if analog else None, analog_trials=trials if analog else 0,
            analog_calibration=calibrate, batch_size=batch_size, limit=limit,
            export_if_missing=True, log=lambda m: console.print(m, highlight=False))
        val.write_report(report, arrays, directory)
        return report

    report = _run(go)
    _print_validation(report, f"{out}: {report['data']['dataset']} {split}", val.headline(report))
    print(f"report: {directory / 'report.md'} (and report.json, rates.png, raster.png, "
          "divisors.png)")
    failed = []
    if max_accuracy_drop is not None:
        failed += [("--max-accuracy-drop", max_accuracy_drop, reason)
                   for reason in val.accuracy_gate(report, max_accuracy_drop)]
    if max_analog_drop is not None:
        failed += [("--max-analog-drop", max_analog_drop, reason)
                   for reason in _run(val.analog_gate, report, max_analog_drop)]
    for option, limit_points, reason in failed:
        console.print(f"[bold red]accuracy drop above {option} {limit_points:g}:[/] {reason}",
                      highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(EXIT_FAILED)


def _print_validation(report: dict, title: str, headline: list) -> None:
    """The headline (float, integer, analog side by side), every variant, spike-exactness."""
    table = Table(title=f"validation of {title}, {report['data']['samples']} samples")
    for column in ("stage", "accuracy %", "drop (points)"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for row in headline:
        table.add_row(row.label, row.accuracy, row.drop)
    _stdout.print(table)
    table = Table(title="every variant")
    for column in ("variant", "accuracy %", "agrees with float %", "saturation events"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for variant, entry in report["variants"].items():
        table.add_row(variant, f"{entry['accuracy']:.2f}", f"{entry['agreement_with_float']:.2f}",
                      str(entry.get("saturation_events", "")))
    _stdout.print(table)
    for pop, exact in report["spike_exact"].items():
        print(f"{pop}: {100 * exact['steps']:.2f}% of time steps spike-exact between the "
              f"quantized graph and integer exact ({100 * exact['spikes']:.3f}% of spikes)")


@app.command("run")
def run_command(
    out: Annotated[Path, typer.Argument(help="an export directory written by 'eideploy export'")],
    device: Annotated[str, typer.Option(help="dynapse2 (a board through the vendor's samna) or "
                                             "virtual (the virtual board)")] = "dynapse2",
    data: Annotated[str | None, typer.Option(help="data set (default: the model's)")] = None,
    data_dir: Annotated[str | None, typer.Option(help="directory holding the data set")] = None,
    split: Annotated[str, typer.Option(help="train or test")] = "test",
    board: Annotated[int, typer.Option(min=0, help="which connected board")] = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="use the first N samples only")] = None,
    check: Annotated[bool, typer.Option("--check", help="echo test instead of a run: each input "
                                        "channel driven alone must make a first-layer neuron "
                                        "it reaches spike")] = False,
    monitor: Annotated[bool, typer.Option("--monitor", help="record the hidden populations' "
                                          "spikes too (their rates are reported)")] = False,
) -> None:
    """Run the exported network on a DYNAP-SE2 board through the vendor's samna, or on the
    virtual board (--device virtual), which computes from the applied configuration alone."""
    if device not in ("dynapse2", "virtual"):
        _fail(ValueError(f"--device {device!r}: one of dynapse2 (a board), virtual"),
              EXIT_BAD_INPUT)
    from .targets.dynapse2.board.discovery import BoardError, BoardUnavailable, check_board

    virtual = device == "virtual"
    if not virtual:
        try:
            check_board()  # before any data is read: no samna or no board answers in under 1 s
        except BoardUnavailable as exc:
            _fail(exc, EXIT_MISSING)
    from .targets.dynapse2.board.runner import echo_check, run_on_board
    where = "the virtual DYNAP-SE2 board" if virtual else "the DYNAP-SE2 board"

    def on_board(fn, *args, **kwargs):
        try:
            return fn(*args, board_index=board, virtual=virtual, **kwargs)
        except BoardError as exc:  # no board, or it stopped answering: a device problem
            raise MissingDependency(str(exc)) from None

    if check:
        echo = _run(on_board, echo_check, out)
        print(f"{out}: echo test on {where}: {echo.channels - len(echo.silent)}/{echo.channels} "
              f"input channels made a first-layer neuron they reach spike "
              f"({echo.unexpected} spikes from neurons a channel does not reach, "
              f"{echo.seconds:.1f} s)")
        if echo.silent:
            print(f"  silent channels: {', '.join(map(str, echo.silent))}")
        raise typer.Exit(EXIT_OK if echo.ok else EXIT_FAILED)

    def go():
        graph, x, y, name = _export_data(out, data, data_dir, split, quantized=True)
        if limit is not None:
            x, y = x[:limit], y[:limit]
        hidden = [p.name for p in graph.populations if p.role not in ("input", "readout")]
        return name, on_board(run_on_board, out, x, y, progress=True,
                              monitor=hidden if monitor else ())

    name, result = _run(go)
    print(f"{out}: {name} {split} on {where}: accuracy {result.accuracy:.2f}% "
          f"({len(result.predictions)} samples, {result.events_sent} input events, "
          f"{result.events_received} output events, {result.seconds:.1f} s)")
    for pop, rate in (result.rates or {}).items():
        print(f"  {pop}: mean rate {float(rate):.1f} Hz")
    if result.routing is not None:
        r = result.routing
        print(f"  routing: {r['host_events']} host events, {r['spikes']} spikes, "
              f"{r['deliveries']} core deliveries, {r['to_host']} events to the host; "
              f"unrouted {r['unrouted']} (off the board {r['off_board']}, tag matching no CAM "
              f"entry {r['unmatched']}), tag collisions {r['tag_collisions']}, spikes without "
              f"a destination {r['no_destination']}, late host events {r['late_host_events']}")
    for note in result.notes:
        print(f"  note: {note}")


def _export_data(out: Path, data: str | None, data_dir: str | None, split: str,
                 quantized: bool):
    """``(graph, x, y, dataset)`` of an export directory (for ``run``; see
    :func:`eideploy.pipeline.simulate.export_data`)."""
    from .pipeline.simulate import export_data

    loaded = export_data(out, data, data_dir, split, quantized)
    return loaded.graph, loaded.x, loaded.y, loaded.dataset


class _Stdout:
    """Results go to stdout, at least 110 columns wide when it is not a terminal (tables in
    logs and pipes stay readable); resolved at each print, so test runners capture it."""

    def print(self, *objects, **kwargs) -> None:
        width = None if sys.stdout.isatty() else max(110, Console().width)
        Console(highlight=False, width=width).print(*objects, **kwargs)


_stdout = _Stdout()


def _print_does_not_fit(exc: BaseException, model: Path) -> None:
    """Exit 1: the network is valid but does not fit the board; show every violation."""
    report = getattr(exc, "report", None)
    console.print(f"[bold red]does not fit:[/] {model}", highlight=False)
    text = report.format(max_per_rule=1_000_000) if report is not None else str(exc)
    console.print(text, soft_wrap=True, highlight=False, markup=False)
    raise typer.Exit(EXIT_FAILED)


@app.command("export")
def export_command(
    model: Annotated[Path, typer.Argument(help="a model.pt written by 'eideploy train'")],
    out: Annotated[Path, typer.Option("--out", "-o", help="export directory to write")],
    target: Annotated[str, typer.Option(help="target name (dynapse2) or a target .toml file")]
    = "dynapse2",
    seed: Annotated[int, typer.Option(help="seed of the weight quantization")] = 0,
    chips: Annotated[int | None, typer.Option(min=1, help="chips on the board (default: the "
                                                           "target's)")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace a non-empty directory that is not "
                                                 "an earlier export")] = False,
    readout_copies: Annotated[int | None, typer.Option(
        min=1, max=64, help="readout neurons per class, decided by their summed spikes: the "
        "chip's mismatch averages over them (default: 8 where the readout layer still fits "
        "one core, else 1)")] = None,
) -> None:
    """Compile a model for a neuromorphic target and write an export directory.

    Exit codes: 0 written; 1 the network does not fit the target (every violation listed);
    2 bad input (model file, target, output directory); 3 a missing optional dependency.
    """
    from .pipeline import export as exp

    def go():
        try:
            return exp.export_model(model, out, target=target, seed=seed, chips=chips,
                                    overwrite=overwrite, readout_copies=readout_copies)
        except (exp.DoesNotFit, exp.MappingError) as exc:
            _print_does_not_fit(exc, model)

    result = _run(go)
    _stdout.print(_export_table(result.summary(), result.report["target"], result.graph.name))
    _stdout.print(f"wrote {len(result.files) + 1} files to {result.out_dir}", soft_wrap=True)


def _export_table(s: dict, target: dict, graph: str) -> Table:
    table = Table(title=f"{graph} on {target['name']} ({target['chips']} chip(s))")
    table.add_column("quantity")
    table.add_column("used", justify="right")
    table.add_column("limit", justify="right")
    worst = s["worst_fan_in"]
    quant = s["quantization"]
    rel = quant.get("relative_rmse")
    table.add_row("neurons", str(s["neurons"]),
                  str(target["chips"] * target["cores_per_chip"] * target["neurons_per_core"]))
    table.add_row("cores", str(s["cores"]), str(target["chips"] * target["cores_per_chip"]))
    table.add_row("chips", str(s["chips"]), str(target["chips"]))
    if s.get("readout_copies", 1) > 1:
        table.add_row("readout neurons per class", str(s["readout_copies"]), "")
    table.add_row("synapses (CAM entries)", str(s["cam"]["entries"]),
                  f"{s['cam']['capacity']} ({100 * s['cam']['utilisation']:.1f}% used)")
    table.add_row("worst fan-in",
                  f"{worst['entries']} ({worst['population']} #{worst['neuron']})",
                  str(worst["limit"]))
    table.add_row("SRAM entries per neuron (max)", str(s["sram"]["max_per_neuron"]),
                  str(s["sram"]["limit"]))
    table.add_row("tags", f"{s['tags']['used']} ({s['tags']['mode']})", str(s["tags"]["limit"]))
    table.add_row("quantization error (relative RMSE)",
                  "-" if rel is None else f"{100 * rel:.2f}%", "")
    table.add_row("quantization max error", f"{quant.get('max_error') or 0:.4g}", "")
    table.add_row("dropped synapses", str(s["dropped_synapses"]), "")
    return table


@app.command("inspect")
def inspect_command(
    path: Annotated[Path, typer.Argument(help="a model.pt, or an export directory")],
    target: Annotated[str, typer.Option(help="target to check a model against")] = "dynapse2",
    chips: Annotated[int | None, typer.Option(min=1, help="chips on the board")] = None,
) -> None:
    """Describe a model (architecture, layers, metrics, fit to a target) or an export."""
    from .pipeline import export as exp

    if path.is_dir():
        manifest, report, state = _run(exp.read_export, path)
        _print_export(path, manifest, report, state)
    else:
        # a few element-wise checks: torch's threads would only add start-up and contention
        overview = _run(exp.model_overview, path, target=target, chips=chips, threads=1)
        _print_model(overview)


def _print_model(o: dict) -> None:
    args = ", ".join(f"{k}={v}" for k, v in o["arguments"].items())
    _stdout.print(f"[bold]{o['file']}[/]  sha256 {o['sha256'][:16]}...", soft_wrap=True)
    _stdout.print(f"architecture: {o['architecture']}({args})", soft_wrap=True)
    _stdout.print(f"input {tuple(o['in_shape'])}, {o['classes']} classes, T = {o['T']}, "
                  f"{o['parameters']:,} parameters" +
                  (f", recipe {o['recipe']}" if o["recipe"] else ""), soft_wrap=True)
    if o["options"]:
        _stdout.print("options: " + ", ".join(f"{k}={v}" for k, v in o["options"].items()),
                      soft_wrap=True)
    has_drc = o["drc"] is not None
    table = Table(title="layers" + (f" (fit to {o['target']})" if has_drc else ""))
    for column in ("layer", "type", "inputs", "E", "I", "params"):
        table.add_column(column, justify="left" if column in ("layer", "type") else "right")
    if has_drc:
        limits = o["drc"]["summary"]["limits"]
        for column in ("neurons", "cores", f"worst fan-in (<= {limits['cam_entries']})"):
            table.add_column(column, justify="right")
    for layer in o["layers"]:
        row = [layer["layer"], layer["type"], str(layer["inputs"]), str(layer["n_e"]),
               str(layer["n_i"]), f"{layer['parameters']:,}"]
        if has_drc:
            fan = layer.get("fan_in_max", -1)
            over = fan > limits["cam_entries"]
            row += [str(layer.get("neurons", "-")), str(layer.get("cores", "-")),
                    f"[red]{fan}[/]" if over else str(fan)]
        table.add_row(*row)
    _stdout.print(table)
    if o["metrics"]:
        _stdout.print("training metrics: " + ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in o["metrics"].items() if not isinstance(v, (list, dict))),
            soft_wrap=True)
    if not has_drc:
        _stdout.print(f"{o['target']}: no design-rule check: {o['drc_error']}", soft_wrap=True)
        return
    s = o["drc"]["summary"]
    verdict = "fits" if o["drc"]["ok"] else "does NOT fit"
    _stdout.print(f"{o['target']}: {verdict}: {s['neurons']} neurons in {s['cores']} cores on "
                  f"{s['chips']} chip(s); the board has {s['limits']['neurons']} neurons in "
                  f"{s['limits']['cores']} cores on {s['limits']['chips']} chip(s)",
                  soft_wrap=True)
    if not o["drc"]["ok"]:
        _stdout.print("violations by rule: " + ", ".join(
            f"{rule} {n}" for rule, n in o["drc"]["violations"].items()) +
            " (eideploy export prints them all)", soft_wrap=True)


def _print_export(path: Path, manifest: dict, report: dict | None, state: dict) -> None:
    src, tgt, versions = manifest["source"], manifest["target"], manifest["versions"]
    _stdout.print(f"[bold]{path}[/]: eideploy export (format {manifest['format_version']}) of "
                  f"graph {manifest['graph']!r} for {tgt['name']} ({tgt['chips']} chip(s)), "
                  f"seed {manifest['seed']}", soft_wrap=True)
    what = src.get("file") or src.get("name")
    _stdout.print(f"source: {src['kind']} {what} sha256 {src['sha256'][:16]}...",
                  soft_wrap=True)
    _stdout.print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v),
                  soft_wrap=True)
    files = Table(title="files")
    files.add_column("file")
    files.add_column("bytes", justify="right")
    files.add_column("sha256")
    files.add_column("state")
    for entry in manifest["files"]:
        st = state.get(entry["path"], "?")
        files.add_row(entry["path"], f"{entry['bytes']:,}", entry["sha256"][:16] + "...",
                      st if st == "ok" else f"[red]{st}[/]")
    _stdout.print(files)
    if report is not None:
        _stdout.print(_export_table(report["summary"], report["target"], manifest["graph"]))
        chips = Table(title="chips")
        for column in ("chip", "cores used", "neurons", "CAM entries", "SRAM entries"):
            chips.add_column(column, justify="right")
        for c in report["chips"]:
            chips.add_row(str(c["chip"]), f"{c['cores_used']}/{c['cores']}",
                          f"{c['neurons']}/{c['neurons_capacity']}", str(c["cam_entries"]),
                          str(c["sram_entries"]))
        _stdout.print(chips)
    bad = [p for p, st in state.items() if st != "ok"]
    if bad:
        console.print(f"[bold red]warning:[/] {len(bad)} file(s) differ from the manifest: "
                      f"{', '.join(bad)}", highlight=False)


@app.command("models")
def models_command() -> None:
    """List the shipped trained models, recipes and targets (usable by name from anywhere)."""
    import yaml

    from .resources import recipes_dir, shipped_models, shipped_recipes, shipped_targets

    out = Console()
    models = Table("model", "file", title="shipped models (eideploy export FILE ...)")
    for name, path in shipped_models().items():
        models.add_row(name, str(path))
    out.print(models)
    recipes = Table("recipe", "description", title="recipes (eideploy train NAME)")
    for name in shipped_recipes():
        try:
            doc = yaml.safe_load((recipes_dir() / f"{name}.yaml").read_text(encoding="utf-8"))
            description = str(doc.get("description", "")) if isinstance(doc, dict) else ""
        except (OSError, yaml.YAMLError):
            description = "(unreadable)"
        recipes.add_row(name, description)
    out.print(recipes)
    out.print(f"targets (--target NAME): {', '.join(shipped_targets())}", highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
