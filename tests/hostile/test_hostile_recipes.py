"""Hostile recipes (issue 15 items 3, 4, 5, 7): refused by the one loader, eideploy.train.recipe,
with exit 2 and the key named, before anything is written; plus property-based fuzzing of the
loader (only RecipeError, never another exception)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from _hostile import assert_refused, invoke, run_guarded, snapshot, tiny_recipe, write_recipe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eideploy.train.recipe import (
    MAX_RECIPE_BYTES,
    Recipe,
    RecipeError,
    load_recipe,
    parse_recipe_text,
    recipe_from_dict,
)

BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n"
    for i in range(9))


def _train_refused(tmp_path: Path, recipe: Path | str, *needles: str,
                   guarded: bool = False) -> None:
    """``eideploy train RECIPE`` exits 2 naming ``needles``; nothing is written (no runs/)."""
    before = snapshot(tmp_path)
    args = ["train", recipe, "--no-progress", "--device", "cpu"]
    code, output = (run_guarded if guarded else invoke)(args, tmp_path)
    assert_refused(code, output, *needles)
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "runs").exists()


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    data = tiny_recipe()
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return data


# ------------------------------------------------------------------ bombs and odd files
def test_billion_laughs_is_refused_at_the_first_alias(tmp_path):
    assert len(BILLION_LAUGHS) < 600  # would expand to 9^10 = 3.5e9 nodes
    _train_refused(tmp_path, write_recipe(tmp_path / "r.yaml", BILLION_LAUGHS), "r.yaml",
                   "alias", guarded=True)


def test_a_single_alias_is_refused_too(tmp_path):
    text = yaml.safe_dump(tiny_recipe()) + "extra: &e 1\nmore: *e\n"
    _train_refused(tmp_path, write_recipe(tmp_path / "r.yaml", text), "r.yaml", "line")


def test_deep_nesting_is_refused(tmp_path):
    _train_refused(tmp_path, write_recipe(tmp_path / "r.yaml", "a: " + "[" * 5000 + "]" * 5000),
                   "r.yaml", "nesting")


def test_python_tags_are_never_constructed(tmp_path):
    marker = tmp_path / "executed"
    text = f"name: !!python/object/apply:os.system ['touch {marker}']\n"
    _train_refused(tmp_path, write_recipe(tmp_path / "r.yaml", text), "r.yaml")
    assert not marker.exists()


def test_a_fifo_recipe_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "r.yaml")
    _train_refused(tmp_path, tmp_path / "r.yaml", "r.yaml", "not a regular file", guarded=True)


def test_dev_zero_as_a_recipe_is_refused_without_reading(tmp_path):
    (tmp_path / "r.yaml").symlink_to("/dev/zero")
    _train_refused(tmp_path, tmp_path / "r.yaml", "r.yaml", "not a regular file", guarded=True)


def test_an_oversized_recipe_is_refused_by_its_size(tmp_path):
    text = yaml.safe_dump(tiny_recipe()) + "#" * (MAX_RECIPE_BYTES + 1) + "\n"
    _train_refused(tmp_path, write_recipe(tmp_path / "r.yaml", text), "r.yaml", "kB limit")


def test_a_recipe_that_is_not_utf8_is_refused(tmp_path):
    (tmp_path / "r.yaml").write_bytes(b"name: \xff\xfe\n")
    _train_refused(tmp_path, tmp_path / "r.yaml", "r.yaml", "UTF-8")


# ------------------------------------------------------------------ values (items 3, 4)
@pytest.mark.parametrize("path, value, needle", [
    (("train", "lr"), float("inf"), "train.lr"),
    (("train", "lr"), float("nan"), "train.lr"),
    (("train", "lr"), 1e30, "train.lr"),
    (("train", "weight_decay"), float("inf"), "train.weight_decay"),
    (("train", "weight_decay"), 1e6, "train.weight_decay"),
    (("train", "init_lr"), float("-inf"), "train.init_lr"),
    (("model", "args", "widths"), [10**9], "model.args.widths"),
    (("model", "args", "widths"), [1e9], "model.args.widths"),
    (("model", "args", "widths"), [16] * 5000, "model.args.widths"),
    (("model", "T"), 10**9, "model.T"),
    (("model", "options", "tau"), float("nan"), "model.options.tau"),
    (("model", "options", "v_threshold"), 0.0, "model.options.v_threshold"),
    (("model", "options", "theta_i"), 0.0, "model.options.theta_i"),
    (("data", "batch_size"), 10**12, "data.batch_size"),
    (("train", "epochs"), 10**12, "train.epochs"),
])
def test_non_finite_or_absurd_values_are_refused_with_the_key(tmp_path, path, value, needle):
    _train_refused(tmp_path, write_recipe(tmp_path / "r.yaml", _with(path, value)), "r.yaml",
                   needle)


# ------------------------------------------------------------------ run directory (item 5)
@pytest.mark.parametrize("name", ["/tmp/elsewhere", "../../x", "a/b", "..", "", "x\x1b[2J"])
def test_a_run_name_that_leaves_runs_is_refused(tmp_path, name):
    _train_refused(tmp_path, write_recipe(tmp_path / "r.yaml", _with(("name",), name)),
                   "r.yaml", "key 'name'", "--out")


def test_escape_sequences_in_a_recipe_reach_the_terminal_escaped(tmp_path):
    data = _with(("model", "arch"), "ei-\x1b]0;owned\x07mlp")
    _train_refused(tmp_path, write_recipe(tmp_path / "r.yaml", data), "model.arch",
                   "\\x1b]0;owned\\x07")


# ------------------------------------------------------------------ fuzzing
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                     st.text(max_size=20), st.binary(max_size=8).map(bytes.hex))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
_PATHS = [("name",), ("seed",), ("data",), ("data", "dataset"), ("data", "batch_size"),
          ("model",), ("model", "arch"), ("model", "T"), ("model", "args"),
          ("model", "args", "widths"), ("model", "options"), ("model", "options", "tau"),
          ("model", "options", "theta_i"), ("train",), ("train", "lr"), ("train", "epochs"),
          ("train", "weight_decay"), ("train", "momentum"), ("target",),
          ("target", "fan_in"), ("target", "chips"), ("target", "connectivity"), ("extra",)]


def _mutated(edits: list[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    data = copy.deepcopy(tiny_recipe())
    for path, value in edits:
        node = data
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[path[-1]] = value
    return data


@settings(max_examples=250, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.lists(st.tuples(st.sampled_from(_PATHS), _values), min_size=1, max_size=4))
def test_fuzzed_recipe_values_give_a_recipe_or_a_recipe_error(edits):
    data = _mutated(edits)
    try:
        text = yaml.safe_dump(data)
    except yaml.YAMLError:
        return
    try:
        recipe = recipe_from_dict(parse_recipe_text(text, "fuzz.yaml"), "fuzz.yaml")
    except RecipeError as exc:
        assert "fuzz.yaml" in str(exc) and "\x1b" not in str(exc)
        return
    assert isinstance(recipe, Recipe)
    assert recipe.train.lr <= 10 and "/" not in recipe.name


_yaml_text = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(["name: x\n", "&a ", "*a ", "[", "]", "{", "}", "- ", "!!python/",
                              "!!binary ", ": ", "\n  ", "? ", "|\n", ".inf", ".nan", "1e400",
                              "0x", "<<: *a\n", "\t", "'", '"', "%YAML 1.1\n", "---\n"]),
             max_size=40).map("".join))


@settings(max_examples=250, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(_yaml_text)
def test_fuzzed_recipe_text_gives_a_recipe_or_a_recipe_error(text):
    try:
        recipe_from_dict(parse_recipe_text(text, "fuzz.yaml"), "fuzz.yaml")
    except RecipeError as exc:
        assert "fuzz.yaml" in str(exc)


def test_the_shipped_recipes_still_load():
    """The bounds refuse nothing the project ships."""
    from eideploy.resources import recipes_dir

    names = sorted(recipes_dir().glob("*.yaml"))
    assert len(names) >= 10
    for path in names:
        assert load_recipe(path).name == path.stem
