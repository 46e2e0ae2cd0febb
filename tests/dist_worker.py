"""Run under torchrun by test_train.py: train digits for one epoch, save this rank's weights."""

import sys
from pathlib import Path

import torch

from eideploy.train import recipe_from_dict, train

out = Path(sys.argv[1])
recipe = recipe_from_dict({
    "name": "dist-digits", "seed": 3,
    "data": {"dataset": "digits", "batch_size": 32, "eval_batch_size": 360},
    "model": {"arch": "ei-mlp", "T": 2, "args": {"widths": [32]}},
    "train": {"epochs": 1, "lr": 0.05, "warmup_epochs": 0},
})
result = train(recipe, out_dir=out, device="cpu", progress=False, log=lambda m: None)
rank = torch.distributed.get_rank()
torch.save({k: v.clone() for k, v in result.model.state_dict().items()}, out / f"rank{rank}.pt")
# both ranks done writing before either tears gloo down: a rank that exits while the other still
# talks to it can abort in gloo's destructor ("terminate called without an active exception")
torch.distributed.barrier()
torch.distributed.destroy_process_group()
