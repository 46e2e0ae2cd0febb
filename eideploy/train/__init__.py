"""Training: recipes, the trainer, checkpoints and distributed training."""

from .checkpoint import CheckpointError, load_model, read_checkpoint, save_checkpoint
from .recipe import Recipe, RecipeError, load_recipe, recipe_from_dict
from .trainer import TrainResult, evaluate, train

__all__ = ["CheckpointError", "load_model", "read_checkpoint", "save_checkpoint", "Recipe",
           "RecipeError", "load_recipe", "recipe_from_dict", "TrainResult", "evaluate", "train"]
