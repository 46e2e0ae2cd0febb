"""Recipes: one YAML file names the data, the model, the schedule and the seed of a training run.

Validated with pydantic on load: an unknown key, a wrong type or an impossible value gives one
message that names the file, the key and what is allowed, never a traceback. The file itself is
read with bounds (issue 15): a regular file of at most :data:`MAX_RECIPE_BYTES`, YAML without
aliases (a 500-byte "billion laughs" of nested anchors would expand to gigabytes) and with a
bounded nesting depth; numbers finite and within :data:`MAX_LR` etc.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..nn.connectivity import CONNECTIVITIES
from ..nn.encoding import ENCODINGS
from ..nn.options import BIAS_MODES, INHIBITORY_MODES, INIT_MODES, STABILISATIONS, WEI_GRAD_SCALES
from ..resources import recipe_path, shipped_recipes
from ..safefile import UnsafeFileError, read_bounded

__all__ = ["Recipe", "RecipeError", "TargetSection", "load_recipe", "recipe_from_dict",
           "HARDWARE_ARCHS"]

MAX_RECIPE_BYTES = 256 << 10  # the shipped recipes are under 2 kB
MAX_YAML_DEPTH = 32  # a recipe is four levels deep
MAX_LR = 10.0  # SGD learning rates beyond this diverge on every shipped model
MAX_WEIGHT_DECAY = 1.0
#: A run's name becomes runs/NAME: one path component, no separators, no '..'.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")

#: Architectures whose connectivity, encoding and readout a ``target`` section sets.
HARDWARE_ARCHS = ("ei-hw-mlp",)


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    # allow_inf_nan=False: '.inf' or '.nan' for any number is refused with the key named
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DataSection(_Strict):
    dataset: str = Field(description="data set name, e.g. digits, fashion-mnist, cifar10")
    data_dir: str | None = Field(None, description="directory holding the data set files")
    batch_size: int = Field(128, ge=1, le=1 << 20, description="global batch, split over "
                            "processes")
    eval_batch_size: int = Field(256, ge=1, le=1 << 20)
    augment: bool = Field(True, description="apply the data set's training augmentations")
    path: str | None = Field(None, description="dataset npz: one .npz holding x_train, y_train, "
                             "x_test, y_test (docs/own-data.md)")
    train: str | None = Field(None, description="dataset npz: the training .npz (x, y)")
    test: str | None = Field(None, description="dataset npz: the test .npz (x, y)")
    num_classes: int | None = Field(None, ge=2, le=100_000, description="dataset npz: classes "
                                    "(default: the largest training label + 1)")
    validation_split: float = Field(0.0, ge=0, le=0.5, description="fraction of the training "
                                    "data held out (seeded) to choose the best checkpoint; the "
                                    "test split is then evaluated once, at the end. 0: choose "
                                    "on the test split (the shipped models' behaviour)")

    @model_validator(mode="after")
    def _npz_files(self) -> DataSection:
        own = {k: getattr(self, k) for k in ("path", "train", "test", "num_classes")
               if getattr(self, k) is not None}
        if self.dataset not in ("npz", "images"):
            if own:
                raise ValueError(f"data.{', data.'.join(own)} only apply to dataset: npz "
                                 f"(your own arrays) or images, not {self.dataset!r}")
            return self
        if self.dataset == "images":  # directories of class folders (data/image_folder.py)
            if self.path is None and (self.train is None or self.test is None):
                raise ValueError("dataset images needs data.path (a directory holding train/ "
                                 "and test/ class folders) or both data.train and data.test")
            return self
        if self.path is not None and (self.train is not None or self.test is not None):
            raise ValueError("dataset npz: give data.path (one file) or data.train and "
                             "data.test (one file each), not both")
        if self.path is None and (self.train is None or self.test is None):
            raise ValueError("dataset npz needs data.path (one .npz with x_train, y_train, "
                             "x_test, y_test) or both data.train and data.test (x and y each)")
        return self


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
    bias: Literal[BIAS_MODES] = "free"  # type: ignore[valid-type]
    bias_group: int = Field(256, ge=1, description="neurons sharing b_E under bias: per_core")


class ModelSection(_Strict):
    arch: str = Field(description="architecture name, see eideploy.networks.ARCHITECTURES")
    T: int = Field(4, ge=1, le=4096, description="time steps")
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

    @field_validator("args")
    @classmethod
    def _bounded_sizes(cls, value: dict[str, Any]) -> dict[str, Any]:
        from .checkpoint import check_arch_kwargs

        check_arch_kwargs(value, "model.args")  # widths of 1e9 would allocate without bound
        return value


class ChipFaithfulSection(_Strict):
    """``train.chip_faithful``: after QAT, fine-tune through the analog chip's equations with
    per-batch mismatch (train/chip_faithful.py, docs/hardware-aware.md)."""

    epochs: int = Field(6, ge=0, le=100_000)
    lr: float = Field(0.005, gt=0, le=MAX_LR)
    batch_size: int = Field(128, ge=1)
    mismatch: float = Field(0.15, ge=0, description="per-device log-normal sigma")
    core_mismatch: float = Field(0.05, ge=0, description="per-core log-normal sigma")
    substeps: int = Field(10, ge=2, description="substeps of the chip model per model step")
    beta: float = Field(3.0, gt=0, description="logits = beta * log(1 + readout score)")
    model_weight: float = Field(0.5, ge=0, description="weight of the discrete model's loss")
    eval_draws: int = Field(3, ge=1)
    max_model_drop: float = Field(1.0, ge=0)
    seed: int = 0


class TrainSection(_Strict):
    epochs: int = Field(ge=1, le=100_000)
    lr: float = Field(gt=0, le=MAX_LR, description="peak learning rate")
    init_lr: float = Field(1e-7, gt=0, le=MAX_LR, description="learning rate of the first "
                           "warm-up iteration")
    warmup_epochs: float = Field(0, ge=0, le=100_000)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0, le=MAX_WEIGHT_DECAY)
    amp: bool = Field(False, description="bfloat16 autocast on CUDA (ignored on CPU); off by "
                      "default: I_EE - I_sub cancels two large currents, which bfloat16 rounds")
    compile: bool = Field(False, description="wrap the model in torch.compile")
    init_batch_size: int | None = Field(None, ge=2, description="batch used by E-I Init "
                                        "(default: data.batch_size)")
    chip_faithful: ChipFaithfulSection | None = Field(None, description="fine-tuning through "
                                                      "the chip model after QAT")


Connectivity = Literal[CONNECTIVITIES]  # type: ignore[valid-type]


class TargetSection(_Strict):
    """Train for a chip: the constraints a model must meet to be exported without violations.

    The hardware architecture (``ei-hw-mlp``) takes its fan-in budgets, connectivity, input
    encoding and readout from here (``build_from_recipe``), and the E-I options ``bias`` and
    the divisor (``divisor: chip`` = ``stabilisation: fixed-eps`` with ``eps = leak``).
    """

    name: Literal["dynapse2"] = Field("dynapse2", description="hardware target (hardware/*.toml)")
    fan_in: int | list[int] = Field(48, description="K_in: inputs per neuron (one value, or one "
                                    "per E-I layer: hidden layers then the readout)")
    fan_in_inh: int = Field(8, ge=1, description="K_inh: interneurons per E neuron")
    connectivity: Connectivity | list[Connectivity] = Field(  # type: ignore[valid-type]
        "random", description="random | local | pruned, one value or one per E-I layer")
    window: int | None = Field(None, ge=1, description="side of local receptive fields")
    prune_start: int = Field(0, ge=0, description="epoch at which pruning starts")
    prune_epochs: int = Field(1, ge=1, description="epochs over which the per-neuron budget of "
                              "'pruned' layers shrinks linearly from dense to fan_in")
    input_encoding: Literal[ENCODINGS] = "if"  # type: ignore[valid-type]
    spiking_readout: bool = Field(True, description="integrate-and-fire readout decoded by "
                                  "spike counts")
    theta_out: float = Field(1.0, gt=0, description="threshold of the spiking readout")
    bias: Literal[BIAS_MODES] = Field("none", description="b_E: none (0), per_core (tied per "  # type: ignore[valid-type]
                                      "core) or free (per neuron: does not fit the chip)")
    divisor: Literal["chip", "adaptive"] = Field(
        "chip", description="chip: I_div + leak (realisable); adaptive: the paper's Stab()")
    leak: float = Field(0.05, gt=0, description="divisor floor: the membrane leak in current "
                        "units (eps of fixed-eps stabilisation)")
    qat_epochs: int = Field(0, ge=0, description="quantization-aware fine-tuning epochs after "
                            "train.epochs")
    qat_lr: float | None = Field(None, gt=0, le=MAX_LR, description="peak lr of the QAT "
                                 "epochs (default train.lr / 10), cosine to 0")
    chips: int | None = Field(None, ge=1, le=64, description="chips on the board (default: the "
                              "target's)")
    seed: int | None = Field(None, description="seed of the connectivity (default: the "
                             "recipe's seed)")

    def budgets(self, n_layers: int) -> list[int]:
        values = self.fan_in if isinstance(self.fan_in, list) else [self.fan_in] * n_layers
        if len(values) != n_layers:
            raise ValueError(f"target.fan_in has {len(values)} entries; the network has "
                             f"{n_layers} E-I layers (hidden layers and the readout)")
        return values

    @model_validator(mode="after")
    def _fits_the_cam(self) -> TargetSection:
        from ..targets.dynapse2.target import load_target

        limit = load_target(self.name).cam_entries_per_neuron
        values = self.fan_in if isinstance(self.fan_in, list) else [self.fan_in]
        for k_in in values:
            if k_in < 1:
                raise ValueError(f"target.fan_in must be >= 1, got {k_in}")
            if k_in + 2 * self.fan_in_inh > limit:
                raise ValueError(
                    f"fan-in budget K_in + 2*K_inh = {k_in} + 2*{self.fan_in_inh} = "
                    f"{k_in + 2 * self.fan_in_inh} exceeds the {limit} CAM entries of a "
                    f"{self.name} neuron (each interneuron costs a GABA and a SHUNT entry); "
                    "lower target.fan_in or target.fan_in_inh")
        return self


class Recipe(_Strict):
    name: str
    description: str = ""
    seed: int = 2025
    data: DataSection
    model: ModelSection
    train: TrainSection
    target: TargetSection | None = Field(None, description="hardware target constraints")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not NAME_PATTERN.fullmatch(value) or value in (".", ".."):
            raise ValueError(f"{_printable(value)!r} is not a run name: the run directory is "
                             "runs/NAME, so use letters, digits, '.', '_', '+' and '-' (at most "
                             "100, no '/' and no '..'); give --out DIR to write elsewhere")
        return value

    @model_validator(mode="after")
    def _target_fits_the_model(self) -> Recipe:
        if self.target is None:
            return self
        if self.model.arch not in HARDWARE_ARCHS:
            raise ValueError(f"a target section needs a hardware architecture "
                             f"({', '.join(HARDWARE_ARCHS)}), got model.arch {self.model.arch!r}")
        clash = sorted(set(self.model.args) & _TARGET_ARGS)
        if clash:
            raise ValueError(f"model.args {', '.join(clash)} are set by the target section; "
                             "give them there (target.fan_in, target.connectivity, ...)")
        last = self.target.prune_start + self.target.prune_epochs
        pruned = "pruned" in (self.target.connectivity if isinstance(self.target.connectivity,
                                                                       list)
                              else [self.target.connectivity])
        if pruned and last > self.train.epochs:
            raise ValueError(f"pruning ends after epoch {last} (target.prune_start + "
                             f"target.prune_epochs) but train.epochs is {self.train.epochs}: "
                             "the budget must be reached before training ends")
        return self


#: Architecture arguments of ``ei-hw-mlp`` that come from the target section.
_TARGET_ARGS = frozenset({"fan_in", "fan_in_inh", "connectivity", "encoding", "theta_out",
                          "window"})


def _describe(err: dict[str, Any], model: type[BaseModel]) -> str:
    key = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        section: Any = model
        for part in err["loc"][:-1]:
            fields = getattr(section, "model_fields", {})
            field = fields.get(str(part))
            section = field.annotation if field is not None else None
            # ``Section | None``: look inside the optional
            section = next((a for a in getattr(section, "__args__", ())
                            if hasattr(a, "model_fields")), section)
        allowed = sorted(section.model_fields) if hasattr(section, "model_fields") else []
        return f"unknown key '{key}'" + (f"; allowed here: {', '.join(allowed)}" if allowed else "")
    if err["type"] == "missing":
        return f"missing required key '{key}'"
    if err["type"] == "value_error":  # our own validators: the message says it all
        message = str(err["msg"]).removeprefix("Value error, ")
        return f"key '{key}': {message}" if key else message
    return f"key '{key}': {err['msg']} (got {err.get('input')!r})"


def _printable(text: object) -> str:
    from .checkpoint import printable

    return printable(text)


def recipe_from_dict(data: Any, source: str = "<recipe>") -> Recipe:
    source = _printable(source)
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe is a YAML mapping with keys name, data, model, "
                          f"train; got {type(data).__name__}")
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(e, Recipe) for e in exc.errors())
        raise RecipeError(f"{source}: {_printable_long(problems)}") from None
    except (RecursionError, MemoryError, OverflowError) as exc:
        raise RecipeError(f"{source}: cannot be checked ({type(exc).__name__})") from None


def _printable_long(text: str) -> str:
    from .checkpoint import printable

    return printable(text, limit=2000)


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases (``*name``) and nesting deeper than
    :data:`MAX_YAML_DEPTH`: an alias is what lets a few hundred bytes expand to gigabytes
    (billion laughs), and no recipe needs one. Plain ``SafeLoader`` otherwise: no Python tags."""

    _depth = 0

    def compose_node(self, parent, index):  # noqa: ANN001, ANN201 (PyYAML's signature)
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.YAMLError(f"YAML alias at line {mark.line + 1}, column {mark.column + 1}: "
                                 "recipes may not use anchors and aliases ('&name', '*name'); "
                                 "write the values out")
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(f"nesting deeper than {MAX_YAML_DEPTH} levels at line "
                                     f"{mark.line + 1}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def parse_recipe_text(text: str, source: str = "<recipe>") -> Any:
    """The YAML document of a recipe, parsed by :class:`_BoundedLoader`; RecipeError otherwise."""
    if len(text) > MAX_RECIPE_BYTES:
        raise RecipeError(f"{_printable(source)}: {len(text)} characters, over the "
                          f"{MAX_RECIPE_BYTES >> 10} kB limit of a recipe")
    loader = None
    try:
        loader = _BoundedLoader(text)  # the reader refuses control characters here
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise RecipeError(f"{_printable(source)}: not a valid recipe YAML: "
                          f"{_printable_long(str(exc))}") from None
    except (RecursionError, MemoryError, OverflowError, ValueError, TypeError) as exc:
        raise RecipeError(f"{_printable(source)}: not a valid recipe YAML "
                          f"({type(exc).__name__}: {_printable(exc)})") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate the recipe at ``path``, or a shipped recipe by name (``digits-mlp``):
    a regular file within the size limit, YAML within its bounds, then the schema."""
    path = recipe_path(path)
    where = _printable(path)
    try:
        raw = read_bounded(path, MAX_RECIPE_BYTES,  # a regular file, within the limit
                           limit_text=f"{MAX_RECIPE_BYTES >> 10} kB limit of a recipe")
    except FileNotFoundError:
        raise RecipeError(f"{where}: no such recipe file; shipped recipes (by name): "
                          f"{', '.join(shipped_recipes())}") from None
    except UnsafeFileError as exc:
        raise RecipeError(f"{exc}; give a recipe YAML file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return recipe_from_dict(parse_recipe_text(text, str(path)), str(path))
