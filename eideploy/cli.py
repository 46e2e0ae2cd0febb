"""``eideploy`` command line: parsing and printing; every computation is a function of
:mod:`eideploy.pipeline` (or of the stage it names).

Exit codes (DESIGN §4): 0 ok; 1 a validation threshold failed; 2 bad usage or bad input file;
3 missing optional dependency or device. User errors print one paragraph, no traceback
(``--debug`` shows it).

Command-line habits (README "Command-line habits"): ``--version``, ``-h``/``--help`` on every
command, ``--install-completion``/``--show-completion``, ``--debug`` anywhere on the line;
``--json`` prints one JSON document on stdout and everything else on stderr; ``--quiet`` prints
nothing but errors (and the JSON document). Long work shows one line per stage on stderr (under
a spinner on a terminal).

This module loads typer and rich only: each command imports the one pipeline module it calls
when it runs (one import line per command), so that ``--help`` answers at once and
``eideploy run`` without samna exits 3 within a second instead of loading torch first.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from . import __version__

console = Console(stderr=True)
_state = {"debug": False}

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_MISSING = 0, 1, 2, 3
#: An unexpected error inside eideploy (a bug): its own code, never a user error's.
EXIT_INTERNAL = 4
#: One batch size for every command that runs a model or a simulator
#: (eideploy.pipeline.simulate.DEFAULT_BATCH_SIZE, not imported: it would load numpy at start).
DEFAULT_BATCH_SIZE = 128


class _Group(TyperGroup):
    """The command group; ``--debug`` is taken from anywhere on the line (before ``--``), so
    ``eideploy --debug export ...`` and ``eideploy export ... --debug`` both show tracebacks."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        end = args.index("--") if "--" in args else len(args)
        _state["debug"] = "--debug" in args[:end]
        args = [a for i, a in enumerate(args) if i >= end or a != "--debug"]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_Group, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Train deep E-I spiking networks and deploy them to DYNAP-SE2.")


class Split(str, Enum):
    """A data set's split."""

    train = "train"
    test = "test"


class Backend(str, Enum):
    """The simulator of ``eideploy simulate``."""

    integer = "integer"
    analog = "analog"


class AnalogIntegrator(str, Enum):
    """The analog simulator's integrator (``analog.INTEGRATORS``, docs/analog-model.md §5)."""

    piecewise = "piecewise"
    fast = "fast"
    reference = "reference"
    torch = "torch"


AnalogIntegratorOption = Annotated[str, typer.Option(
    "--analog-integrator", metavar="[piecewise|fast|reference|torch]",
    help="the analog simulator's integrator: piecewise (default, 100 us steps, exact spike "
         "times), fast (10 us steps, compiled), reference (10 us, numpy) or torch (the "
         "reference's steps in torch, on --analog-device)")]
AnalogDeviceOption = Annotated[str, typer.Option(
    "--analog-device", help="with --analog-integrator torch: auto (a CUDA GPU where torch sees "
                            "one, else the CPU), cpu or cuda[:N]")]


def _analog_options(integrator: str, device: str) -> dict[str, str]:
    """The analog simulator's integrator and device, checked before any work starts."""
    chosen = _choice("--analog-integrator", integrator, AnalogIntegrator)
    if chosen is AnalogIntegrator.torch:
        from .targets.dynapse2.analog_torch import resolve_device

        _run(resolve_device, device)
    elif device != "auto":
        _fail(ValueError("--analog-device is for --analog-integrator torch (the compiled "
                         "integrators run on the CPU)"), EXIT_BAD_INPUT)
    return {"integrator": chosen.value, "device": device}


class Board(str, Enum):
    """Where ``eideploy run`` runs an export."""

    dynapse2 = "dynapse2"
    virtual = "virtual"


SPLIT_HELP = "the data set's split: train or test"
JSON_HELP = "print one JSON document on stdout (everything else goes to stderr)"
QUIET_HELP = "print no progress and no tables (errors still; the JSON document with --json)"
BATCH_HELP = "samples per batch (memory against speed; results do not depend on it)"
SplitOption = Annotated[Split, typer.Option(help=SPLIT_HELP)]
JsonOption = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP)]
BatchOption = Annotated[int, typer.Option(min=1, help=BATCH_HELP)]


class _Output:
    """Where a command's words go. Results (lines, tables) on stdout; with ``--json`` one JSON
    document on stdout and the results on stderr; with ``--quiet`` no results and no progress.
    Errors always go to stderr (:func:`_fail`)."""

    def __init__(self, as_json: bool = False, quiet: bool = False) -> None:
        self.as_json, self.quiet = as_json, quiet
        from .pipeline.notes import set_quiet

        set_quiet(quiet)  # the pipeline's side notes (which data was read) follow --quiet

    def line(self, text: str) -> None:
        """A result line (plain text, printed as it is)."""
        if not self.quiet:
            print(text, file=sys.stderr if self.as_json else sys.stdout, flush=True)

    def show(self, *objects: Any, **kwargs: Any) -> None:
        """A table or rich text; at least 110 columns wide when not on a terminal (tables in
        logs and pipes stay readable); resolved at each print, so test runners capture it."""
        if self.quiet:
            return
        stream = sys.stderr if self.as_json else sys.stdout
        width = None if stream.isatty() else max(110, Console().width)
        Console(file=stream, highlight=False, width=width).print(*objects, **kwargs)

    def say(self, message: str) -> None:
        """A progress line on stderr."""
        if not self.quiet:
            console.print(message, highlight=False, markup=False, soft_wrap=True)

    @contextmanager
    def progress(self, first: str) -> Iterator[Callable[[str], None]]:
        """Long work: ``first`` and every line the work reports, one per stage, on stderr; on a
        terminal a spinner under them shows the latest. Yields the function to report with."""
        if self.quiet:
            yield lambda message: None
            return
        self.say(first)
        if not console.is_terminal:
            yield self.say
            return
        with console.status(escape(first)) as status:
            def say(message: str) -> None:
                self.say(message)
                status.update(escape(message))

            yield say

    def document(self, doc: Any) -> None:
        """The one JSON document of ``--json`` on stdout."""
        if self.as_json:
            from .atomic import json_plain

            print(json.dumps(json_plain(doc), indent=2), flush=True)


class MissingDependency(RuntimeError):
    """An optional extra or a device is needed for this command (exit code 3)."""


def _plain(text: str) -> str:
    """``text`` as text: control characters (an escape sequence from a user's file) shown as
    escapes, never sent to the terminal raw; line breaks kept."""
    return "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in text)


def _fail(exc: BaseException, code: int) -> NoReturn:
    if _state["debug"]:
        console.print_exception()
    # escaped: a message such as "pip install 'eideploy[onnx]'" is text, not rich markup
    console.print(f"[bold red]error:[/] {escape(_plain(str(exc)))}", soft_wrap=True,
                  highlight=False)
    raise typer.Exit(code)


def _run(fn, *args, **kwargs):
    """Call ``fn`` and turn user errors into a message and an exit code; an unexpected error
    is an internal one (exit 4, with a hint to rerun with --debug for its traceback)."""
    try:
        return fn(*args, **kwargs)
    except typer.Exit:
        raise
    except (MissingDependency, ImportError) as exc:
        _fail(exc, EXIT_MISSING)
    except (ValueError, OSError) as exc:  # OSError: a full or read-only disk, a missing file
        _fail(exc, EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        console.print("interrupted")
        raise typer.Exit(130) from None
    except Exception as exc:
        _fail(RuntimeError(f"internal error ({type(exc).__name__}: {exc}); this is a bug in "
                           "eideploy: rerun with --debug for the traceback and report it"),
              EXIT_INTERNAL)


def _print_version(value: bool) -> None:
    if value:
        print(f"eideploy {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _main(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="print the version and exit")] = False,
    debug: Annotated[bool, typer.Option(
        "--debug", help="show tracebacks (accepted anywhere on the command line)")] = False,
) -> None:
    """Train deep E-I spiking networks and deploy them to DYNAP-SE2.

    Every command takes -h; evaluate, simulate, validate, run, inspect and export take --json
    (one JSON document on stdout) and --quiet.
    """
    _state["debug"] = _state["debug"] or debug


@app.command()
def train(
    recipe: Annotated[Path, typer.Argument(
        help="recipe YAML, or a shipped recipe's name (eideploy models), e.g. digits-mlp")],
    data_dir: Annotated[str | None, typer.Option(help="directory holding the data set")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="run directory (default runs/NAME)")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="override the recipe's epochs")] = None,
    device: Annotated[str, typer.Option(
        help="compute device: cpu, cuda, cuda:N or auto")] = "auto",
    resume: Annotated[Path | None, typer.Option(help="latest.pt of a run to continue")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    threads: Annotated[int | None, typer.Option(
        min=1, help="torch intra-op threads (default: 1 for small models, else torch's)")] = None,
    overwrite: Annotated[bool, typer.Option(
        help="replace the run already in the run directory (--resume continues it)")] = False,
    quiet: QuietOption = False,
) -> None:
    """Train a recipe; writes model.pt (best), latest.pt, metrics.csv/json to the run directory.

    On a terminal a progress bar shows each epoch; elsewhere (a log, a pipe) one line per epoch.
    """
    from .pipeline.train import train_and_summarise as train_fn
    from .train import load_recipe

    output = _Output(quiet=quiet)

    def go():
        loaded = load_recipe(recipe)
        return train_fn(loaded, out_dir=out, device=device, data_dir=data_dir, epochs=epochs,
                        resume=resume, progress=progress and not quiet and sys.stderr.isatty(),
                        log=output.say, threads=threads, overwrite=overwrite)

    result = _run(go)
    if result is not None and result.selected_on == "validation":
        output.line(f"test accuracy: {result.best_accuracy:.2f}% (the checkpoint chosen on the "
                    f"validation split); {result.seconds:.1f} s; model: "
                    f"{result.run_dir / 'model.pt'}")
    elif result is not None:
        output.line(f"test accuracy: {result.best_accuracy:.2f}% (best), "
                    f"{result.final_accuracy:.2f}% (final); {result.seconds:.1f} s; model: "
                    f"{result.run_dir / 'model.pt'}")


@app.command()
def evaluate(
    model: Annotated[Path, typer.Argument(help="a model.pt, or an export directory")],
    data: Annotated[str | None, typer.Option(help="data set (default: the model's recipe)")]
    = None,
    data_dir: Annotated[str | None, typer.Option(help="directory holding the data set")] = None,
    split: SplitOption = Split.test,
    batch_size: BatchOption = DEFAULT_BATCH_SIZE,
    device: Annotated[str, typer.Option(
        help="compute device: cpu, cuda, cuda:N or auto")] = "auto",
    neurobench: Annotated[bool, typer.Option(
        "--neurobench", help="a model's NeuroBench metrics through NeuroBench's harness "
        "(extra: pip install 'eideploy[neurobench]')")] = False,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Accuracy of a trained model, or of an export's float and quantized E-I graphs."""
    from .pipeline.evaluate import evaluate_export, evaluate_model

    output = _Output(as_json, quiet)
    where = {"command": "evaluate", "path": model, "split": split.value}
    if neurobench:
        from .pipeline.neurobench_metrics import neurobench_line, neurobench_model_metrics

        if model.is_dir():
            _fail(ValueError(f"{model}: --neurobench evaluates a model.pt, not an export "
                             "directory"), EXIT_BAD_INPUT)
        name, nb = _run(neurobench_model_metrics, model, data=data, data_dir=data_dir,
                        split=split.value, batch_size=batch_size)
        output.line(f"{model}: {name} {split.value} " + neurobench_line(nb))
        output.document({**where, "kind": "model", "dataset": name, "neurobench": nb})
        return
    if model.is_dir():
        name, acc = _run(evaluate_export, model, data=data, data_dir=data_dir, split=split.value,
                         batch_size=batch_size)
        output.line(f"{model}: {name} {split.value} accuracy: float graph {acc['float']:.2f}%, "
                    f"quantized graph {acc['quantized']:.2f}% (drop "
                    f"{acc['float'] - acc['quantized']:.2f} points)")
        output.document({**where, "kind": "export", "dataset": name, "accuracy": acc})
        return
    name, metrics = _run(evaluate_model, model, data=data, data_dir=data_dir, split=split.value,
                         batch_size=batch_size, device=device)
    output.line(f"{model}: {name} {split.value} accuracy {metrics['accuracy']:.2f}%, "
                f"loss {metrics['loss']:.4f}")
    output.document({**where, "kind": "model", "dataset": name, **metrics})


@app.command()
def simulate(
    export_dir: Annotated[Path, typer.Argument(
        metavar="EXPORT_DIR", help="an export directory written by 'eideploy export'")],
    data: Annotated[str | None, typer.Option(help="data set (default: the model's)")] = None,
    data_dir: Annotated[str | None, typer.Option(help="directory holding the data set")] = None,
    split: SplitOption = Split.test,
    backend: Annotated[str, typer.Option(
        metavar="[integer|analog]",
        help="integer: bit-accurate (docs/integer-semantics.md); analog: DPI neurons with "
             "device mismatch (docs/analog-model.md)")] = Backend.integer.value,
    division: Annotated[list[str] | None, typer.Option(
        help="integer backend: exact, lut:N, lut:N:newton or shift; repeat to compare")] = None,
    mismatch: Annotated[float, typer.Option(
        min=0.0, help="analog backend: relative std of device mismatch (0.1 = 10%)")] = 0.0,
    trials: Annotated[int, typer.Option(min=1, help="analog backend: mismatch draws")] = 1,
    seed: Annotated[int, typer.Option(help="analog backend: seed of the first draw")] = 0,
    calibrate: Annotated[int, typer.Option(
        min=0, help="analog backend: also score each draw after calibrating the readout on "
                    "this many unlabelled training samples (0: off)")] = 0,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="directory for the spike rasters of the first sample (and the ONNX "
                            "files; default EXPORT_DIR/simulation)")] = None,
    rasters: Annotated[Path | None, typer.Option(hidden=True, help="old name of --out")] = None,
    onnx: Annotated[bool, typer.Option(
        "--onnx", help="integer backend: also write each mode's integer network as ONNX "
                       "(integer operators only) and check that onnxruntime reproduces the "
                       "simulator bit for bit (extra: pip install 'eideploy[onnx]')")] = False,
    batch_size: BatchOption = DEFAULT_BATCH_SIZE,
    analog_integrator: AnalogIntegratorOption = AnalogIntegrator.piecewise.value,
    analog_device: AnalogDeviceOption = "auto",
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Accuracy of the exported network in the integer or analog simulator; writes rasters."""
    chosen = _choice("--backend", backend, Backend)
    analog_options = _analog_options(analog_integrator, analog_device)
    from .pipeline import simulate as sim

    output = _Output(as_json, quiet)
    raster_dir = out if out is not None else rasters
    where = {"command": "simulate", "export": export_dir, "split": split.value}
    if chosen is Backend.analog:
        with output.progress(f"simulating {export_dir} on the analog chip model, {trials} "
                             "mismatch draw(s)"):
            analog = _run(sim.simulate_analog, export_dir, data=data, data_dir=data_dir,
                          split=split.value, mismatch=mismatch, trials=trials, seed=seed,
                          calibrate=calibrate, raster_dir=raster_dir, batch_size=batch_size,
                          progress=not quiet, **analog_options)
        _print_analog(output, export_dir, split.value, analog)
        output.document({**where, **analog.to_dict()})
        return
    with output.progress(f"integer simulator on {export_dir}") as say:
        result = _run(sim.simulate_integer, export_dir, data=data, data_dir=data_dir,
                      split=split.value, divisions=division or sim.DEFAULT_DIVISIONS,
                      raster_dir=raster_dir, onnx=onnx, batch_size=batch_size, log=say)
    for mode in result.modes:
        output.line(f"{export_dir}: {result.dataset} {split.value} integer simulator, division "
                    f"{mode.division}: accuracy {mode.accuracy:.2f}%, saturation events "
                    f"{mode.saturation_events}")
    output.line(f"spike rasters of sample 0: {', '.join(str(p) for p in result.rasters)}")
    for check in result.onnx:
        verdict = "bit-identical" if check.bit_identical else "DIFFERENT"
        output.line(f"onnxruntime, division {check.division}: {verdict} to the simulator "
                    f"({check.mismatches} of {check.elements} elements differ; model "
                    f"{check.path})")
    output.document({**where, **result.to_dict()})
    if any(not check.bit_identical for check in result.onnx):
        raise typer.Exit(EXIT_FAILED)


def _print_analog(output: _Output, out: Path, split: str, analog) -> None:
    result, trials = analog.accuracy, analog.accuracy.trials
    spread = f" +- {result.std:.2f}" if trials > 1 else ""
    output.line(f"{out}: {analog.dataset} {split} analog simulator, mismatch "
                f"{100 * result.mismatch:g}%, {trials} draw(s) from seed {analog.seed}: "
                f"accuracy {result.mean:.2f}%{spread} (per draw: "
                f"{', '.join(f'{a:.2f}' for a in result.per_trial)})")
    if result.calibrated_per_trial is not None:
        output.line(f"  with the readout calibrated on {analog.calibration_samples} unlabelled "
                    f"training samples: {result.calibrated_mean:.2f}%"
                    + (f" +- {result.calibrated_std:.2f}" if trials > 1 else ""))
    if result.decoded_per_trial is not None:
        output.line(f"  decided by a readout decoder fitted on the same samples to the model's "
                    f"own class totals (no labels): {result.decoded_mean:.2f}%"
                    + (f" +- {result.decoded_std:.2f}" if trials > 1 else ""))
    if analog.rasters:
        output.line(f"spike rasters of sample 0: {', '.join(str(p) for p in analog.rasters)}")


@app.command()
def validate(
    model: Annotated[Path, typer.Argument(help="the trained model.pt")],
    export_dir: Annotated[Path, typer.Argument(
        metavar="EXPORT_DIR",
        help="its export directory (exported to DYNAP-SE2 first if it does not exist)")],
    data: Annotated[str | None, typer.Option(help="data set (default: the model's)")] = None,
    data_dir: Annotated[str | None, typer.Option(help="directory holding the data set")] = None,
    split: SplitOption = Split.test,
    division: Annotated[list[str] | None, typer.Option(
        help="integer division modes to compare (default exact, lut:8, shift)")] = None,
    analog: Annotated[bool, typer.Option(help="include the analog simulator")] = True,
    mismatch: Annotated[float, typer.Option(min=0.0, help="analog device mismatch")] = 0.1,
    trials: Annotated[int, typer.Option(min=0, help="analog mismatch draws")] = 5,
    calibrate: Annotated[int, typer.Option(
        min=0, help="also score the analog draws after calibrating the readout on this many "
                    "unlabelled training samples (0: off)")] = 200,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="where report.json, report.md and the plots go (default "
                            "EXPORT_DIR/validation)")] = None,
    report_dir: Annotated[Path | None, typer.Option(hidden=True, help="old name of --out")]
    = None,
    max_accuracy_drop: Annotated[float | None, typer.Option(
        min=0.0, help="exit 1 when an integer mode loses more than this many points against "
                      "the float model")]
    = None,
    max_analog_drop: Annotated[float | None, typer.Option(
        min=0.0, help="exit 1 when the analog simulator without mismatch loses more than this "
                      "many points against the integer simulator (exact division)")]
    = None,
    limit: Annotated[int | None, typer.Option(min=1, help="use the first N samples only")] = None,
    batch_size: BatchOption = DEFAULT_BATCH_SIZE,
    analog_integrator: AnalogIntegratorOption = AnalogIntegrator.piecewise.value,
    analog_device: AnalogDeviceOption = "auto",
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Compare float model, float and quantized graphs, integer simulator (each division mode)
    and analog simulator: accuracy, agreement, firing rates, spike-exactness, saturation."""
    analog_options = _analog_options(analog_integrator, analog_device)
    if max_analog_drop is not None and not analog:
        _fail(ValueError("--max-analog-drop needs the analog simulator: drop --no-analog"),
              EXIT_BAD_INPUT)
    from .pipeline import validate as val

    output = _Output(as_json, quiet)
    chosen = out if out is not None else report_dir
    directory = chosen if chosen is not None else export_dir / "validation"

    def go(say: Callable[[str], None]) -> dict:
        report, arrays = val.validate_export(
            model, export_dir, data=data, data_dir=data_dir, split=split.value,
            divisions=division or ("exact", "lut:8", "shift"),
            analog_mismatch=mismatch if analog else None, analog_trials=trials if analog else 0,
            analog_calibration=calibrate, batch_size=batch_size, limit=limit,
            export_if_missing=True, log=say, analog_options=analog_options)
        say(f"writing the report and the plots to {directory}")
        val.write_report(report, arrays, directory)
        return report

    with output.progress("loading the model, the export and the data set") as say:
        report = _run(go, say)
    _print_validation(output, report, f"{export_dir}: {report['data']['dataset']} {split.value}",
                      val.headline(report))
    output.line(f"report: {directory / 'report.md'} (and report.json, rates.png, raster.png, "
                "divisors.png, cost.png)")
    failed = []
    if max_accuracy_drop is not None:
        failed += [("--max-accuracy-drop", max_accuracy_drop, reason)
                   for reason in val.accuracy_gate(report, max_accuracy_drop)]
    if max_analog_drop is not None:
        failed += [("--max-analog-drop", max_analog_drop, reason)
                   for reason in _run(val.analog_gate, report, max_analog_drop)]
    for option, limit_points, reason in failed:
        console.print(f"[bold red]accuracy drop above {option} {limit_points:g}:[/] "
                      f"{escape(reason)}", highlight=False, soft_wrap=True)
    output.document({"command": "validate", "export": export_dir, "report_dir": directory,
                     "gates_failed": [{"option": option, "limit": limit_points, "reason": reason}
                                      for option, limit_points, reason in failed],
                     "report": report})
    if failed:
        raise typer.Exit(EXIT_FAILED)


def _print_validation(output: _Output, report: dict, title: str, headline: list) -> None:
    """The headline (float, integer, analog side by side), every variant, spike-exactness."""
    table = Table(title=escape(f"validation of {title}, {report['data']['samples']} samples"))
    for column in ("stage", "accuracy %", "drop (points)"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for row in headline:
        table.add_row(row.label, row.accuracy, row.drop)
    output.show(table)
    table = Table(title="every variant")
    for column in ("variant", "accuracy %", "agrees with float %", "saturation events"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for variant, entry in report["variants"].items():
        table.add_row(variant, f"{entry['accuracy']:.2f}", f"{entry['agreement_with_float']:.2f}",
                      str(entry.get("saturation_events", "")))
    output.show(table)
    for pop, exact in report["spike_exact"].items():
        output.line(f"{pop}: {100 * exact['steps']:.2f}% of time steps spike-exact between the "
                    f"quantized graph and integer exact ({100 * exact['spikes']:.3f}% of "
                    "spikes)")


@app.command("run")
def run_command(
    export_dir: Annotated[Path, typer.Argument(
        metavar="EXPORT_DIR", help="an export directory written by 'eideploy export'")],
    board: Annotated[str, typer.Option(
        metavar="[dynapse2|virtual]",
        help="dynapse2: a board through the vendor's samna; virtual: the virtual board, which "
             "routes every spike from the applied configuration alone")] = Board.dynapse2.value,
    device: Annotated[str | None, typer.Option(hidden=True, help="old name of --board")] = None,
    data: Annotated[str | None, typer.Option(help="data set (default: the model's)")] = None,
    data_dir: Annotated[str | None, typer.Option(help="directory holding the data set")] = None,
    split: SplitOption = Split.test,
    board_index: Annotated[int, typer.Option(min=0, help="which connected board")] = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="use the first N samples only")] = None,
    check: Annotated[bool, typer.Option("--check", help="echo test instead of a run: each input "
                                        "channel driven alone must make a first-layer neuron "
                                        "it reaches spike")] = False,
    monitor: Annotated[bool, typer.Option("--monitor", help="record the hidden populations' "
                                          "spikes too (their rates are reported)")] = False,
    calibrate: Annotated[int, typer.Option(
        min=0, help="first run this many unlabelled training samples on the board and fit its "
                    "readout decoder to the model's own outputs on them; the decoded accuracy "
                    "is reported on its own line (0: off)")] = 0,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Run the exported network on a DYNAP-SE2 board through the vendor's samna, or on the
    virtual board (--board virtual), which computes from the applied configuration alone."""
    kind = device if device is not None else board
    if kind.isdigit():  # the old spelling of --board-index: --board N
        kind, board_index = Board.dynapse2.value, int(kind)
    kind = _choice("--board", kind, Board).value
    from .targets.dynapse2.board.discovery import BoardError, BoardUnavailable, check_board

    output = _Output(as_json, quiet)
    virtual = kind == Board.virtual.value
    if not virtual:
        try:
            check_board()  # before any data is read: no samna or no board answers in under 1 s
        except BoardUnavailable as exc:
            _fail(exc, EXIT_MISSING)
    from .targets.dynapse2.board.runner import echo_check, run_on_board
    where = "the virtual DYNAP-SE2 board" if virtual else "the DYNAP-SE2 board"
    doc: dict[str, Any] = {"command": "run", "export": export_dir, "board": kind,
                           "board_index": board_index}

    def on_board(fn, *args, **kwargs):
        try:
            return fn(*args, board_index=board_index, virtual=virtual, **kwargs)
        except BoardError as exc:  # no board, or it stopped answering: a device problem
            raise MissingDependency(str(exc)) from None

    if check:
        with output.progress(f"echo test of {export_dir} on {where}"):
            echo = _run(on_board, echo_check, export_dir)
        output.line(f"{export_dir}: echo test on {where}: "
                    f"{echo.channels - len(echo.silent)}/{echo.channels} input channels made a "
                    f"first-layer neuron they reach spike ({echo.unexpected} spikes from neurons "
                    f"a channel does not reach, {echo.seconds:.1f} s)")
        if echo.silent:
            output.line(f"  silent channels: {', '.join(map(str, echo.silent))}")
        output.document({**doc, "check": {
            "ok": echo.ok, "channels": echo.channels, "silent": echo.silent,
            "unexpected": echo.unexpected, "seconds": echo.seconds}})
        raise typer.Exit(EXIT_OK if echo.ok else EXIT_FAILED)

    def go():
        graph, x, y, name = _export_data(export_dir, data, data_dir, split.value,
                                         quantized=True)
        if limit is not None:
            x, y = x[:limit], y[:limit]
        hidden = [p.name for p in graph.populations if p.role not in ("input", "readout")]
        decoded = None
        if calibrate:
            decoded = _board_decoder(export_dir, graph, name, data_dir, calibrate, on_board,
                                     not quiet)
        result = on_board(run_on_board, export_dir, x, y, progress=not quiet,
                          monitor=hidden if monitor else ())
        if decoded is not None:
            import numpy as np

            hits = decoded.predict(result.counts) == np.asarray(y).reshape(-1)
            decoded = 100.0 * float(hits.mean())
        return name, result, decoded

    with output.progress(f"running {export_dir} on {where}"):
        name, result, decoded = _run(go)
    output.line(f"{export_dir}: {name} {split.value} on {where}: accuracy "
                f"{result.accuracy:.2f}% ({len(result.predictions)} samples, "
                f"{result.events_sent} input events, {result.events_received} output events, "
                f"{result.seconds:.1f} s)")
    if decoded is not None:
        output.line(f"  decided by the board's readout decoder, fitted on {calibrate} unlabelled "
                    f"training samples to the model's own outputs: {decoded:.2f}%")
    for pop, rate in (result.rates or {}).items():
        output.line(f"  {pop}: mean rate {float(rate):.1f} Hz")
    if result.routing is not None:
        r = result.routing
        output.line(f"  routing: {r['host_events']} host events, {r['spikes']} spikes, "
                    f"{r['deliveries']} core deliveries, {r['to_host']} events to the host; "
                    f"unrouted {r['unrouted']} (off the board {r['off_board']}, tag matching "
                    f"no CAM entry {r['unmatched']}), tag collisions {r['tag_collisions']}, "
                    f"spikes without a destination {r['no_destination']}, late host events "
                    f"{r['late_host_events']}")
    if result.energy is not None:
        from .targets.dynapse2.energy import BoardEnergy
        output.line(f"  {BoardEnergy(**result.energy).line()}")
    for note in result.notes:
        output.line(f"  note: {note}")
    output.document({**doc, "dataset": name, "split": split.value,
                     "accuracy": result.accuracy, "samples": len(result.predictions),
                     "predictions": result.predictions, "events_sent": result.events_sent,
                     "events_received": result.events_received,
                     "ignored_events": result.ignored_events, "seconds": result.seconds,
                     "rates": result.rates, "routing": result.routing, "energy": result.energy,
                     "decoded_accuracy": decoded,
                     "calibration_samples": calibrate if decoded is not None else 0,
                     "notes": result.notes})


def _board_decoder(export_dir: Path, graph, dataset: str, data_dir: str | None, samples: int,
                   on_board, progress: bool):
    """The board's readout decoder (``analog.fit_readout_decoder``): ``samples`` unlabelled
    training inputs run on the board, fitted to the integer simulator's class totals on them."""
    import numpy as np

    from .graph.host import class_totals
    from .pipeline.simulate import calibration_inputs
    from .sim.integer import IntegerSimulator
    from .targets.dynapse2.analog import fit_readout_decoder
    from .targets.dynapse2.board.runner import run_on_board

    x_cal = calibration_inputs(dataset, data_dir, graph.T, samples, graph.meta.get("data"))
    teacher = class_totals(IntegerSimulator(graph, "exact").run(x_cal).counts,
                           graph.readout_settings.classes)
    # the board decides by class totals: it reports one count per class, the decoder's input
    chip = on_board(run_on_board, export_dir, x_cal, np.zeros(len(x_cal), dtype=np.int64),
                    progress=progress)
    return fit_readout_decoder(chip.counts, teacher)


def _choice(option: str, value: str, choices: type[Enum]) -> Any:
    """The member of ``choices`` named ``value``; anything else is bad usage (exit 2) with a
    message naming every choice. The command checks, not click, where an option also takes an
    old spelling (``--board N``, the board's index) that click's choices would refuse."""
    try:
        return choices(value)
    except ValueError:
        names = [f"'{member.value}'" for member in choices]
        _fail(ValueError(f"{option} {value!r}: use {', '.join(names[:-1])} or {names[-1]}"),
              EXIT_BAD_INPUT)


def _export_data(out: Path, data: str | None, data_dir: str | None, split: str,
                 quantized: bool):
    """``(graph, x, y, dataset)`` of an export directory (for ``run``; see
    :func:`eideploy.pipeline.simulate.export_data`)."""
    from .pipeline.simulate import export_data

    loaded = export_data(out, data, data_dir, split, quantized)
    return loaded.graph, loaded.x, loaded.y, loaded.dataset


def _print_does_not_fit(exc: BaseException, model: Path) -> None:
    """Exit 1: the network is valid but does not fit the board; show every violation."""
    report = getattr(exc, "report", None)
    console.print(f"[bold red]does not fit:[/] {escape(str(model))}", highlight=False)
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
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Compile a model for a neuromorphic target and write an export directory.

    Exit codes: 0 written; 1 the network does not fit the target (every violation listed);
    2 bad input (model file, target, output directory); 3 a missing optional dependency.
    """
    from .pipeline import export as exp

    output = _Output(as_json, quiet)
    if target.lower() in ("nir", "onnx"):  # one file of the network, not a chip's export
        return _export_file(model, out, target.lower(), overwrite, output)

    def go(say: Callable[[str], None]):
        try:
            return exp.export_model(model, out, target=target, seed=seed, chips=chips,
                                    overwrite=overwrite, readout_copies=readout_copies, log=say)
        except (exp.DoesNotFit, exp.MappingError) as exc:
            _print_does_not_fit(exc, model)

    with output.progress(f"exporting {model} for {target}: loading, lowering, checking the "
                         "design rules, placing, quantizing, routing") as say:
        result = _run(go, say)
    output.show(_export_table(result.summary(), result.report["target"], result.graph.name))
    output.line(f"wrote {len(result.files) + 1} files to {result.out_dir}")
    output.document({"command": "export", "model": model, "out_dir": result.out_dir,
                     "files": ["manifest.json", *result.files], "summary": result.summary()})


def _export_file(model: Path, out: Path, kind: str, overwrite: bool, output: _Output) -> None:
    """``--target nir`` (docs/nir.md) or ``--target onnx`` (the float network, docs/onnx.md)."""
    if kind == "nir":
        from .pipeline.nir import export_nir

        path, graph = _run(export_nir, model, out, overwrite=overwrite)
        output.line(f"wrote {path}: the E-I graph {graph.name} as NIR ({len(graph.populations)} "
                    f"populations, {len(graph.projections)} projections)")
        output.document({"command": "export", "target": "nir", "model": model, "out": path})
        return
    from .pipeline.onnx_float import export_float_onnx

    result = _run(export_float_onnx, model, out, overwrite=overwrite)
    output.line(f"wrote {result.path}: the float network as ONNX; onnxruntime vs torch on "
                f"{result.samples} inputs: max |difference| {result.max_abs_error:.3g}, "
                f"{100 * result.agreement:.2f}% same class")
    output.document({"command": "export", "target": "onnx", "model": model,
                     "out": result.path, "check": result.summary()})


def _export_table(s: dict, target: dict, graph: str) -> Table:
    table = Table(title=escape(f"{graph} on {target['name']} ({target['chips']} chip(s))"))
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
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Describe a model (architecture, layers, metrics, fit to a target) or an export."""
    from .pipeline import export as exp

    output = _Output(as_json, quiet)
    if path.is_dir():
        manifest, report, state = _run(exp.read_export, path)
        _print_export(output, path, manifest, report, state)
        output.document({"command": "inspect", "kind": "export", "path": path,
                         "manifest": manifest, "report": report, "files": state})
    else:
        # a few element-wise checks: torch's threads would only add start-up and contention
        overview = _run(exp.model_overview, path, target=target, chips=chips, threads=1)
        _print_model(output, overview)
        output.document({"command": "inspect", "kind": "model", **overview})


def _print_model(output: _Output, o: dict) -> None:
    args = ", ".join(f"{k}={v}" for k, v in o["arguments"].items())
    output.line(f"{o['file']}  sha256 {o['sha256'][:16]}...")
    output.line(f"architecture: {o['architecture']}({args})")
    output.line(f"input {tuple(o['in_shape'])}, {o['classes']} classes, T = {o['T']}, "
                f"{o['parameters']:,} parameters" +
                (f", recipe {o['recipe']}" if o["recipe"] else ""))
    if o["options"]:
        output.line("options: " + ", ".join(f"{k}={v}" for k, v in o["options"].items()))
    has_drc = o["drc"] is not None
    table = Table(title="layers" + (escape(f" (fit to {o['target']})") if has_drc else ""))
    for column in ("layer", "type", "inputs", "E", "I", "params"):
        table.add_column(column, justify="left" if column in ("layer", "type") else "right")
    if has_drc:
        limits = o["drc"]["summary"]["limits"]
        for column in ("neurons", "cores", f"worst fan-in (<= {limits['cam_entries']})"):
            table.add_column(column, justify="right")
    for layer in o["layers"]:
        row = [escape(layer["layer"]), layer["type"], str(layer["inputs"]), str(layer["n_e"]),
               str(layer["n_i"]), f"{layer['parameters']:,}"]
        if has_drc:
            fan = layer.get("fan_in_max", -1)
            over = fan > limits["cam_entries"]
            row += [str(layer.get("neurons", "-")), str(layer.get("cores", "-")),
                    f"[red]{fan}[/]" if over else str(fan)]
        table.add_row(*row)
    output.show(table)
    if o["metrics"]:
        output.line("training metrics: " + ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in o["metrics"].items() if not isinstance(v, (list, dict))))
    if not has_drc:
        output.line(f"{o['target']}: no design-rule check: {o['drc_error']}")
        return
    s = o["drc"]["summary"]
    verdict = "fits" if o["drc"]["ok"] else "does NOT fit"
    output.line(f"{o['target']}: {verdict}: {s['neurons']} neurons in {s['cores']} cores on "
                f"{s['chips']} chip(s); the board has {s['limits']['neurons']} neurons in "
                f"{s['limits']['cores']} cores on {s['limits']['chips']} chip(s)")
    if not o["drc"]["ok"]:
        output.line("violations by rule: " + ", ".join(
            f"{rule} {n}" for rule, n in o["drc"]["violations"].items()) +
            " (eideploy export prints them all)")


def _print_export(output: _Output, path: Path, manifest: dict, report: dict | None,
                  state: dict) -> None:
    src, tgt, versions = manifest["source"], manifest["target"], manifest["versions"]
    output.line(f"{path}: eideploy export (format {manifest['format_version']}) of "
                f"graph {manifest['graph']!r} for {tgt['name']} ({tgt['chips']} chip(s)), "
                f"seed {manifest['seed']}")
    what = src.get("file") or src.get("name")
    output.line(f"source: {src['kind']} {what} sha256 {src['sha256'][:16]}...")
    output.line("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v))
    files = Table(title="files")
    files.add_column("file")
    files.add_column("bytes", justify="right")
    files.add_column("sha256")
    files.add_column("state")
    for entry in manifest["files"]:
        st = state.get(entry["path"], "?")
        files.add_row(escape(entry["path"]), f"{entry['bytes']:,}",
                      entry["sha256"][:16] + "...", st if st == "ok" else f"[red]{escape(st)}[/]")
    output.show(files)
    if report is not None:
        output.show(_export_table(report["summary"], report["target"], manifest["graph"]))
        chips = Table(title="chips")
        for column in ("chip", "cores used", "neurons", "CAM entries", "SRAM entries"):
            chips.add_column(column, justify="right")
        for c in report["chips"]:
            chips.add_row(str(c["chip"]), f"{c['cores_used']}/{c['cores']}",
                          f"{c['neurons']}/{c['neurons_capacity']}", str(c["cam_entries"]),
                          str(c["sram_entries"]))
        output.show(chips)
    from .pipeline.cost import cost_line

    output.line(cost_line(path))
    bad = [p for p, st in state.items() if st != "ok"]
    if bad:
        console.print(f"[bold red]warning:[/] {len(bad)} file(s) differ from the manifest: "
                      f"{escape(', '.join(bad))}", highlight=False)


@app.command("import")
def import_command(
    source: Annotated[Path, typer.Argument(help="a checkpoint of another implementation, or "
                                                "a .nir file")],
    out: Annotated[Path, typer.Option("--out", "-o", help="model.pt to write (a graph "
                                                          "directory for a .nir file)")],
    arch: Annotated[str | None, typer.Option(
        help="the eideploy architecture it matches (ei-vgg8)")] = None,
    from_: Annotated[str, typer.Option("--from", help="its implementation: deepeisnn, or nir "
                                                      "(the default for a .nir file)")]
    = "deepeisnn",
    in_shape: Annotated[str | None, typer.Option(
        help="input C,H,W (default: the checkpoint's data set's)")] = None,
    steps: Annotated[int | None, typer.Option("--T", min=1, help="time steps (default: the "
                                                                 "checkpoint's, else 4)")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing model file")] = False,
    dt: Annotated[float | None, typer.Option(
        help="NIR: seconds per time step the writer discretised with (snntorch: 1e-4)")] = None,
    reset: Annotated[str | None, typer.Option(
        help="NIR: the writer's reset: subtract, subtract-delayed (snntorch's Leaky) or "
        "to-v_reset (NIR's own; the default)")] = None,
    approximate: Annotated[bool, typer.Option(
        help="NIR: accept neurons that differ from eideploy's (each difference reported)")]
    = False,
) -> None:
    """Turn a reference DeepEISNN checkpoint into an eideploy model.pt (same outputs), or a NIR
    graph into an E-I graph directory that 'eideploy export DIR' compiles (docs/nir.md)."""
    if from_ == "nir" or source.suffix.lower() == ".nir":
        from .pipeline.nir import import_nir

        result = _run(import_nir, source, out, T=steps, dt=dt, reset=reset,
                      approximate=approximate, overwrite=overwrite)
        for note in result.notes:
            console.print(f"note: {escape(_plain(note))}", soft_wrap=True, highlight=False)
        print(f"imported {source} ({result.writer}, {'exact' if result.exact else 'APPROXIMATE'}"
              f"): {len(result.graph.populations)} populations; wrote {out} (graph.json, "
              f"weights.npz, nir-import.json); next: eideploy export {out} -o OUT")
        return
    from .train import reference

    if arch is None:
        _fail(ValueError("--arch: name the eideploy architecture the checkpoint matches, e.g. "
                         "--arch ei-vgg8"), EXIT_BAD_INPUT)

    def go():
        shape = None
        if in_shape is not None:
            parts = in_shape.split(",")
            if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
                raise ValueError(f"--in-shape {in_shape!r}: give C,H,W as three positive "
                                 "integers, e.g. 3,32,32")
            shape = tuple(int(p) for p in parts)
        return reference.import_reference(source, out, arch=arch, fmt=from_, in_shape=shape,
                                          T=steps, overwrite=overwrite)

    result = _run(go)
    print(f"imported {2 * len(result.layers)} reference modules into {result.arch} "
          f"({len(result.layers)} E-I layers, {result.num_classes} classes, input "
          f"{result.in_shape}, T={result.T}): wrote {out}")


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
