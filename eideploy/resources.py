"""The files eideploy ships: target descriptions, training recipes and trained models.

Their source is the repository's top-level ``hardware/`` (``*.toml``) and ``models/`` (``*.pt``,
``recipes/*.yaml``) folders. A wheel carries them inside the package as ``eideploy/_hardware/``
and ``eideploy/_models/`` (``setup.py`` maps those two package directories onto the top-level
folders, so there is one copy in git and nothing to keep in sync). They are found through
``importlib.resources``; in a source checkout or an editable install, where the package directory
has no ``_hardware/``, the top-level folders next to the package are used instead.

This is a base-layer module: it imports nothing from eideploy, so any layer may use it.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["hardware_dir", "models_dir", "recipes_dir", "target_path", "recipe_path",
           "shipped_targets", "shipped_models", "shipped_recipes", "ResourceError"]

_PACKAGE = "eideploy"
_SOURCE_ROOT = Path(__file__).resolve().parent.parent  # the repository, for a source checkout
RECIPE_SUFFIXES = (".yaml", ".yml")


class ResourceError(ValueError):
    """A shipped resource that was asked for by name and does not exist."""


def _shipped(packaged: str, source: str) -> Path:
    """The folder of one kind of resource: the packaged copy when the package has one, else the
    source checkout's. Paths, not Traversables: every reader here opens files by path (torch.load,
    tomllib, yaml), which a wheel installed on a file system allows; a zipped install is not
    supported."""
    candidate = files(_PACKAGE).joinpath(packaged)
    if candidate.is_dir():
        return Path(str(candidate))
    return _SOURCE_ROOT / source


def hardware_dir() -> Path:
    """The folder of the shipped target descriptions (``dynapse2.toml``, ``tiny.toml``)."""
    return _shipped("_hardware", "hardware")


def models_dir() -> Path:
    """The folder of the shipped trained models (``*.pt``)."""
    return _shipped("_models", "models")


def recipes_dir() -> Path:
    """The folder of the shipped training recipes (``*.yaml``)."""
    return models_dir() / "recipes"


def _names(folder: Path, pattern: str) -> list[str]:
    return sorted(p.stem for p in folder.glob(pattern)) if folder.is_dir() else []


def shipped_targets() -> list[str]:
    """Names of the shipped targets, e.g. ``["dynapse2", "tiny"]``."""
    return _names(hardware_dir(), "*.toml")


def shipped_recipes() -> list[str]:
    """Names of the shipped recipes, e.g. ``"digits-mlp"``."""
    return _names(recipes_dir(), "*.yaml")


def shipped_models() -> dict[str, Path]:
    """The shipped trained models, name -> file (``digits-dynapse2`` -> ``.../digits-dynapse2.pt``).
    """
    folder = models_dir()
    return {p.stem: p for p in sorted(folder.glob("*.pt"))} if folder.is_dir() else {}


def target_path(name: str) -> Path:
    """The description file of a shipped target, by name."""
    path = hardware_dir() / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(shipped_targets()) or f"none found in {hardware_dir()}"
        raise ResourceError(f"unknown target {name!r}; shipped targets: {known}")
    return path


def _is_bare_name(text: str) -> bool:
    return "/" not in text and "\\" not in text and not text.endswith(RECIPE_SUFFIXES)


def recipe_path(name_or_path: str | Path) -> Path:
    """A recipe file: an existing path as given, else a shipped recipe by name (``digits-mlp``).

    A path that exists always wins, so a local ``digits-mlp`` file shadows the shipped recipe.
    Anything else comes back unchanged as a path, for the caller to report as missing.
    """
    path = Path(name_or_path)
    if path.is_file() or not _is_bare_name(str(name_or_path)):
        return path
    shipped = recipes_dir() / f"{path.name}.yaml"
    return shipped if shipped.is_file() else path
