"""Output places a user points at: a symlinked output directory and a board larger than the
target's (issue 15, classes 9 and 11)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from eideploy.cli import app

MODEL = Path(__file__).resolve().parents[2] / "models" / "digits-dynapse2.pt"
runner = CliRunner()


def test_an_export_through_a_symlinked_directory_lands_where_it_points(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "out"
    link.symlink_to(real)
    for _ in range(2):  # the first export and a re-export over it
        res = runner.invoke(app, ["export", str(MODEL), "-o", str(link), "-q"])
        assert res.exit_code == 0, res.output
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert (real / "manifest.json").is_file() and (real / "dynapse2.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "real"]  # no .out.old-* left


def test_more_chips_than_the_board_carries_is_refused_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    res = runner.invoke(app, ["export", str(MODEL), "-o", str(out), "--chips", "5"])
    assert res.exit_code == 2, res.output
    assert "carries 4 chip(s)" in res.output and "--chips 5" in res.output
    assert "Traceback" not in res.output and not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_an_output_path_under_a_file_is_refused_naming_the_file(tmp_path):
    (tmp_path / "afile").write_text("not a directory")
    res = runner.invoke(app, ["export", str(MODEL), "-o", str(tmp_path / "afile" / "sub")])
    assert res.exit_code == 2, res.output
    assert "afile is a file, not a directory" in " ".join(res.output.split())
    assert "Traceback" not in res.output and "Errno" not in res.output
