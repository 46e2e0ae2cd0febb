"""``eideploy`` command line: a thin layer over the API.

Exit codes (DESIGN §4): 0 ok; 1 a validation threshold failed; 2 bad usage or bad input file;
3 missing optional dependency or device. User errors print one paragraph, no traceback
(``--debug`` shows it).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

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
    recipe: Annotated[Path, typer.Argument(help="recipe YAML, e.g. models/recipes/x.yaml")],
    data_dir: Annotated[str | None, typer.Option(help="directory holding the data set")] = None,
    out: Annotated[Path | None, typer.Option(help="run directory (default runs/NAME)")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="override the recipe's epochs")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto")] = "auto",
    resume: Annotated[Path | None, typer.Option(help="latest.pt of a run to continue")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Train a recipe; writes model.pt (best), latest.pt, metrics.csv/json to the run directory."""
    from .train import load_recipe
    from .train import train as train_fn

    def go():
        loaded = load_recipe(recipe)
        return train_fn(loaded, out_dir=out, device=device, data_dir=data_dir, epochs=epochs,
                        resume=resume, progress=progress and sys.stderr.isatty(),
                        log=lambda m: console.print(m, highlight=False))

    result = _run(go)
    if result is not None:
        print(f"test accuracy: {result.best_accuracy:.2f}% (best), {result.final_accuracy:.2f}% "
              f"(final); {result.seconds:.1f} s; model: {result.run_dir / 'model.pt'}")


@app.command()
def evaluate(
    model: Annotated[Path, typer.Argument(help="a model.pt written by 'eideploy train'")],
    data: Annotated[str | None, typer.Option(help="data set (default: the model's recipe)")]
    = None,
    data_dir: Annotated[str | None, typer.Option(help="directory holding the data set")] = None,
    split: Annotated[str, typer.Option(help="train or test")] = "test",
    batch_size: Annotated[int, typer.Option(min=1)] = 256,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto")] = "auto",
) -> None:
    """Accuracy and loss of a trained model on a data split."""
    from .data import eval_transform, load_dataset
    from .train import load_model
    from .train.trainer import evaluate as eval_fn
    from .train.trainer import resolve_device

    def go():
        dev = resolve_device(device)
        net, ckpt = load_model(model, dev)
        recipe = ckpt.get("recipe") or {}
        name = data or (recipe.get("data") or {}).get("dataset")
        if not name:
            raise ValueError(f"{model}: the checkpoint names no data set; pass --data NAME")
        root = data_dir or (recipe.get("data") or {}).get("data_dir")
        T = getattr(net, "T", 4)
        dataset = load_dataset(name, split, root, T=T)
        return name, eval_fn(net, dataset, batch_size=batch_size, device=dev,
                             transform=eval_transform(name))

    name, metrics = _run(go)
    print(f"{model}: {name} {split} accuracy {metrics['accuracy']:.2f}%, "
          f"loss {metrics['loss']:.4f}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
