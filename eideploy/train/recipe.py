"""Recipes: one YAML file names the data, the model, the schedule and the seed of a training run.

Validated with pydantic on load: an unknown key, a wrong type or an impossible value gives one
message that names the file, the key and what is allowed, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..nn.options import INHIBITORY_MODES, INIT_MODES, STABILISATIONS, WEI_GRAD_SCALES

__all__ = ["Recipe", "RecipeError", "load_recipe", "recipe_from_dict"]


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSection(_Strict):
    dataset: str = Field(description="data set name, e.g. digits, fashion-mnist, cifar10")
    data_dir: str | None = Field(None, description="directory holding the data set files")
    batch_size: int = Field(128, ge=1, description="global batch, split over processes")
    eval_batch_size: int = Field(256, ge=1)
    augment: bool = Field(True, description="apply the data set's training augmentations")


class OptionsSection(_Strict):
    init: Literal[INIT_MODES] = "ei"  # type: ignore[valid-type]
    stabilisation: Literal[STABILISATIONS] = "adaptive"  # type: ignore[valid-type]
    eps: float = Field(1e-3, gt=0)
    wei_grad_scale: Literal[WEI_GRAD_SCALES] = "1/d"  # type: ignore[valid-type]
    inhibitory: Literal[INHIBITORY_MODES] = "identity"  # type: ignore[valid-type]
    theta_i: float = Field(1.0, gt=0)
    ei_ratio: int = Field(4, ge=1)
    tau: float = Field(2.0, ge=1)
    v_threshold: float = Field(1.0, gt=0)
    surrogate_alpha: float = Field(4.0, gt=0)


class ModelSection(_Strict):
    arch: str = Field(description="architecture name, see eideploy.networks.ARCHITECTURES")
    T: int = Field(4, ge=1, description="time steps")
    args: dict[str, Any] = Field(default_factory=dict, description="architecture arguments")
    options: OptionsSection = Field(default_factory=OptionsSection)

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        from ..networks import ARCHITECTURES

        if value not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {value!r}; known: "
                             f"{', '.join(sorted(ARCHITECTURES))}")
        return value


class TrainSection(_Strict):
    epochs: int = Field(ge=1)
    lr: float = Field(gt=0, description="peak learning rate")
    init_lr: float = Field(1e-7, gt=0, description="learning rate of the first warm-up iteration")
    warmup_epochs: float = Field(0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    amp: bool = Field(False, description="bfloat16 autocast on CUDA (ignored on CPU); off by "
                      "default: I_EE - I_sub cancels two large currents, which bfloat16 rounds")
    compile: bool = Field(False, description="wrap the model in torch.compile")
    init_batch_size: int | None = Field(None, ge=2, description="batch used by E-I Init "
                                        "(default: data.batch_size)")


class Recipe(_Strict):
    name: str
    description: str = ""
    seed: int = 2025
    data: DataSection
    model: ModelSection
    train: TrainSection
    target: dict[str, Any] | None = Field(None, description="hardware target constraints")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _describe(err: dict[str, Any], model: type[BaseModel]) -> str:
    key = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        section: Any = model
        for part in err["loc"][:-1]:
            fields = getattr(section, "model_fields", {})
            field = fields.get(str(part))
            section = field.annotation if field is not None else None
        allowed = sorted(section.model_fields) if hasattr(section, "model_fields") else []
        return f"unknown key '{key}'" + (f"; allowed here: {', '.join(allowed)}" if allowed else "")
    if err["type"] == "missing":
        return f"missing required key '{key}'"
    return f"key '{key}': {err['msg']} (got {err.get('input')!r})"


def recipe_from_dict(data: Any, source: str = "<recipe>") -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe is a YAML mapping with keys name, data, model, "
                          f"train; got {type(data).__name__}")
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(e, Recipe) for e in exc.errors())
        raise RecipeError(f"{source}: {problems}") from None


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: no such recipe file; the shipped recipes are in "
                          "models/recipes/")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from None
    return recipe_from_dict(data, str(path))
