"""Chip-faithful fine-tuning of a trained hardware model, outside a recipe run.

Loads a ``model.pt`` (QAT done), fine-tunes it through the chip model
(``eideploy.train.chip_faithful.fine_tune``) on the digits training split and writes the result
as a checkpoint with the same recipe::

    OMP_NUM_THREADS=1 python scripts/chip_faithful_train.py models/digits-dynapse2.pt \
        --out runs/chip-faithful/model.pt --epochs 6
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch


def main() -> None:
    from eideploy.train.chip_faithful import ChipFaithfulSettings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    for f in dataclasses.fields(ChipFaithfulSettings):
        kind = type(f.default)
        parser.add_argument(f"--{f.name.replace('_', '-')}", default=f.default,
                            type=(lambda v: v.lower() in ("1", "true", "yes")) if kind is bool
                            else kind)
    args = parser.parse_args()

    from eideploy.data import load_dataset, to_float
    from eideploy.targets.dynapse2.target import resolve_target
    from eideploy.train.checkpoint import load_model, save_checkpoint
    from eideploy.train.chip_faithful import fine_tune

    settings = ChipFaithfulSettings(**{f.name: getattr(args, f.name)
                                       for f in dataclasses.fields(ChipFaithfulSettings)})
    model, checkpoint = load_model(args.model)
    torch.manual_seed(settings.seed)
    train = load_dataset("digits", "train", None, T=model.T)
    test = load_dataset("digits", "test", None, T=model.T)
    x_train, y_train = to_float(train.inputs), train.labels
    x_test, y_test = to_float(test.inputs), test.labels

    def batches(epoch: int):
        order = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(epoch))
        for start in range(0, len(order), settings.batch_size):
            index = order[start:start + settings.batch_size]
            yield x_train[index], y_train[index]

    args.out.parent.mkdir(parents=True, exist_ok=True)

    def keep(best: torch.nn.Module, history: list) -> None:
        save_checkpoint(args.out, best, recipe=checkpoint.get("recipe"),
                        metrics={"chip_faithful": history})

    model, history = fine_tune(model, resolve_target("dynapse2"), settings, batches, x_test,
                               y_test, on_best=keep)
    save_checkpoint(args.out, model, recipe=checkpoint.get("recipe"),
                    metrics={"chip_faithful": history})
    (args.out.parent / "chip_faithful.json").write_text(json.dumps(history, indent=1))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
