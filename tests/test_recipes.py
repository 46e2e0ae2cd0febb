"""The shipped recipes against the paper's training setup (spec §6 parameter counts, §7 Table 5)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from eideploy.data import DATASET_INFO
from eideploy.networks import ARCHITECTURES
from eideploy.train import load_recipe
from eideploy.train.recipe import OptionsSection
from eideploy.train.trainer import build_from_recipe

RECIPES = Path(__file__).resolve().parents[1] / "models" / "recipes"
ALL_RECIPES = sorted(p.stem for p in RECIPES.glob("*.yaml"))

# Table 5 (spec §7), one recipe per row: data set, architecture, batch, T, peak lr, warm-up epochs.
TABLE_5: dict[str, tuple[str, str, int, int, float, int]] = {
    "cifar10-vgg8": ("cifar10", "ei-vgg8", 128, 4, 0.002, 10),
    "cifar10-vgg11": ("cifar10", "ei-vgg11", 128, 4, 0.002, 10),
    "cifar10-vgg16": ("cifar10", "ei-vgg16", 128, 4, 0.001, 30),
    "cifar10-vgg19": ("cifar10", "ei-vgg19", 128, 4, 0.001, 30),
    "cifar10-resnet18": ("cifar10", "ei-resnet18", 128, 4, 0.001, 30),
    "cifar100-vgg16": ("cifar100", "ei-vgg16", 128, 4, 0.001, 30),
    "cifar100-vgg19": ("cifar100", "ei-vgg19", 128, 4, 0.001, 30),
    "tinyimagenet-resnet18": ("tinyimagenet", "ei-resnet18", 128, 4, 0.003, 10),
    "cifar10dvs-vgg8": ("cifar10-dvs", "ei-vgg8", 32, 10, 0.001, 10),
    "cifar10dvs-vgg11": ("cifar10-dvs", "ei-vgg11", 32, 10, 0.001, 10),
    "dvsgesture-vgg8": ("dvs-gesture", "ei-vgg8", 32, 16, 0.001, 10),
}

# Parameter counts: the spec §6 table (in millions) where it has the row, and the exact count from
# its per-layer formula n_E·d + n_I·d + n_E·n_I + n_I + 2·n_E (checked against the formula below).
# CIFAR-100 only changes the readout (n_E = 100, n_I = 25, d = 512): +60,539 over CIFAR-10.
# DVS input has 2 channels instead of 3: the first conv loses (64 + 16)·9 = 720; 11 gesture
# classes add 516 to the 10-class readout. The 48x48 maps still flatten to 512 (48 -> ... -> 1).
PARAMETERS: dict[str, tuple[float | None, int]] = {
    "cifar10-vgg8": (5.05, 5_048_714),
    "cifar10-vgg11": (11.83, 11_834_570),
    "cifar10-vgg16": (18.86, 18_856_378),
    "cifar10-vgg19": (25.64, 25_642_234),
    "cifar10-resnet18": (14.40, 14_401_226),
    "tinyimagenet-resnet18": (14.53, 14_533_490),
    "cifar100-vgg16": (None, 18_916_917),
    "cifar100-vgg19": (None, 25_702_773),
    "cifar10dvs-vgg8": (None, 5_047_994),
    "cifar10dvs-vgg11": (None, 11_833_850),
    "dvsgesture-vgg8": (None, 5_048_510),
    # BN-SNN baseline: convs without bias, BatchNorm (weight, bias), biased linear head.
    "cifar10-bn-vgg8": (None, 3_917_386),
}

# Conv widths of the VGG plans of spec §6 (pools hold no parameters).
VGG_WIDTHS = {
    8: [64, 128, 256, 512, 512],
    11: [64, 128, 256, 256, 512, 512, 512, 512],
    16: [64, 64, 128, 128] + [256] * 3 + [512] * 6,
    19: [64, 64, 128, 128] + [256] * 4 + [512] * 8,
}


def ei_layer(n_e: int, d: int) -> int:
    n_i = n_e // 4
    return n_e * d + n_i * d + n_e * n_i + n_i + 2 * n_e


def ei_vgg(depth: int, in_channels: int, classes: int) -> int:
    total, c_in = 0, in_channels
    for width in VGG_WIDTHS[depth]:
        total += ei_layer(width, c_in * 9)
        c_in = width
    return total + ei_layer(classes, 512)


def ei_resnet18(classes: int) -> int:
    total, c_in = ei_layer(64, 3 * 9), 64
    for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        total += ei_layer(width, c_in * 9) + ei_layer(width, width * 9)  # block 1
        if stride != 1 or c_in != width:
            total += ei_layer(width, c_in)  # 1x1 shortcut
        total += 2 * ei_layer(width, width * 9)  # block 2
        c_in = width
    return total + ei_layer(classes, 512)


def bn_vgg(depth: int, in_channels: int, classes: int) -> int:
    total, c_in = 0, in_channels
    for width in VGG_WIDTHS[depth]:
        total += c_in * 9 * width + 2 * width
        c_in = width
    return total + 512 * classes + classes


SPEC_FORMULA = {
    "cifar10-vgg8": ei_vgg(8, 3, 10),
    "cifar10-vgg11": ei_vgg(11, 3, 10),
    "cifar10-vgg16": ei_vgg(16, 3, 10),
    "cifar10-vgg19": ei_vgg(19, 3, 10),
    "cifar10-resnet18": ei_resnet18(10),
    "tinyimagenet-resnet18": ei_resnet18(200),
    "cifar100-vgg16": ei_vgg(16, 3, 100),
    "cifar100-vgg19": ei_vgg(19, 3, 100),
    "cifar10dvs-vgg8": ei_vgg(8, 2, 10),
    "cifar10dvs-vgg11": ei_vgg(11, 2, 10),
    "dvsgesture-vgg8": ei_vgg(8, 2, 11),
    "cifar10-bn-vgg8": bn_vgg(8, 3, 10),
}


@cache
def parameter_count(stem: str) -> int:
    recipe = load_recipe(RECIPES / f"{stem}.yaml")
    info = DATASET_INFO[recipe.data.dataset]
    net = build_from_recipe(recipe, info.input_shape, info.num_classes)
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("stem", ALL_RECIPES)
def test_recipe_loads_names_known_data_and_architecture_and_builds(stem: str):
    recipe = load_recipe(RECIPES / f"{stem}.yaml")
    assert recipe.name == stem  # the default run directory is runs/<name>
    assert recipe.data.dataset in DATASET_INFO
    assert recipe.model.arch in ARCHITECTURES
    assert parameter_count(stem) > 0


def test_every_table_5_row_and_the_baseline_has_a_recipe():
    assert set(TABLE_5) | {"cifar10-bn-vgg8"} <= set(ALL_RECIPES)


@pytest.mark.parametrize("stem", sorted(TABLE_5))
def test_paper_recipe_follows_table_5(stem: str):
    dataset, arch, batch, T, lr, warmup = TABLE_5[stem]
    recipe = load_recipe(RECIPES / f"{stem}.yaml")
    assert (recipe.data.dataset, recipe.model.arch) == (dataset, arch)
    assert (recipe.data.batch_size, recipe.model.T) == (batch, T)
    assert (recipe.train.lr, recipe.train.warmup_epochs) == (lr, warmup)
    assert recipe.train.init_lr == (1e-3 if dataset == "tinyimagenet" else 1e-7)
    assert (recipe.train.epochs, recipe.train.momentum, recipe.train.weight_decay) == (
        300, 0.9, 5e-4)
    assert recipe.seed == 2025
    assert recipe.data.augment
    assert recipe.model.options == OptionsSection()  # the full method, no ablation switch
    assert recipe.model.args == {}
    assert T == DATASET_INFO[dataset].default_T


def test_bn_baseline_recipe_uses_the_reference_baseline_settings():
    recipe = load_recipe(RECIPES / "cifar10-bn-vgg8.yaml")
    assert (recipe.data.dataset, recipe.model.arch, recipe.model.T) == ("cifar10", "bn-vgg8", 4)
    assert (recipe.train.lr, recipe.train.weight_decay, recipe.train.warmup_epochs) == (
        0.1, 1e-4, 0)
    assert (recipe.train.epochs, recipe.train.momentum, recipe.seed) == (300, 0.9, 2025)


@pytest.mark.parametrize("stem", sorted(PARAMETERS))
def test_parameter_count_matches_the_spec(stem: str):
    millions, exact = PARAMETERS[stem]
    assert exact == SPEC_FORMULA[stem]
    if millions is not None:
        assert round(exact / 1e6, 2) == millions
    assert parameter_count(stem) == exact


@pytest.mark.parametrize("stem", sorted(PARAMETERS))
def test_recipe_comment_says_how_to_run_it(stem: str):
    text = (RECIPES / f"{stem}.yaml").read_text()
    header = text[: text.index("\nname:")]
    path = f"models/recipes/{stem}.yaml"
    assert f"eideploy train {path} --data-dir DIR" in header
    assert f"torchrun --nproc_per_node 8 -m eideploy.cli train {path} --data-dir DIR" in header
    assert "DIR:" in header
