"""Helpers of the hostile-input suite (issue 15): every file is generated at test time.
From a small real E-I model and a real one-epoch training run.

Each case runs the command line and asserts exit code 2, one message naming the file and field,
no traceback, no raw control characters, nothing written and nothing executed. Cases that could
hang (a FIFO, /dev/zero) run in a subprocess under a generous timeout: a regression shows as a
timeout failure, never as a hung suite. No test asserts wall-clock time.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from eideploy.cli import app

REPO = Path(__file__).resolve().parents[2]
HANG_TIMEOUT_S = 120  # against a hang only; a refused file takes a few seconds on a busy machine
runner = CliRunner()


def tiny_recipe(**train: Any) -> dict[str, Any]:
    """A recipe that trains in about a second: a 16-unit E-I MLP on the 8x8 digits."""
    return {"name": "hostile-tiny", "seed": 3,
            "data": {"dataset": "digits", "batch_size": 64, "eval_batch_size": 360,
                     "augment": False},
            "model": {"arch": "ei-mlp", "T": 2, "args": {"widths": [16]}},
            "train": {"epochs": 1, "lr": 0.05, "init_lr": 1e-3, **train}}


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with its sha256: compared before and after a refused command."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            out[str(path.relative_to(root))] = "-"
            continue
        if path.stat().st_size > 1 << 24:  # sparse giants: their size stands for them
            out[str(path.relative_to(root))] = f"size {path.stat().st_size}"
            continue
        out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def invoke(args: list[str], cwd: Path) -> tuple[int, str]:
    """The command line in this process, from ``cwd`` (so a default ``runs/`` lands there)."""
    before = Path.cwd()
    os.chdir(cwd)
    try:
        res = runner.invoke(app, [str(a) for a in args])
    finally:
        os.chdir(before)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise AssertionError(f"uncaught {type(res.exception).__name__}: {res.exception}\n"
                             f"{res.output}")
    return res.exit_code, res.output


def run_guarded(args: list[str], cwd: Path) -> tuple[int, str]:
    """:func:`invoke` in a daemon thread joined with :data:`HANG_TIMEOUT_S`, for cases that could
    block (a FIFO, /dev/zero): a regression fails this test instead of hanging the suite."""
    result: list[tuple[int, str]] = []
    worker = threading.Thread(target=lambda: result.append(invoke(args, cwd)), daemon=True)
    worker.start()
    worker.join(HANG_TIMEOUT_S)
    assert not worker.is_alive(), f"eideploy {' '.join(map(str, args))} hung"
    assert result, "the command raised in its thread"
    return result[0]


def assert_refused(code: int, output: str, *needles: str) -> None:
    """Exit 2, one message naming what is wrong, no traceback, no raw escape sequences."""
    flat = " ".join(output.split())  # rich may wrap a long message
    assert code == 2, output
    assert "Traceback" not in output, output
    assert "\x1b" not in output, repr(output)
    for needle in needles:
        assert needle in flat, (needle, output)


def write_recipe(path: Path, data: dict[str, Any] | str) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path
