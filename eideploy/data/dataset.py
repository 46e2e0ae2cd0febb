"""The in-memory data set record shared by every loader, batcher and trainer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class ArrayDataset:
    """A whole split held as two tensors.

    All the data sets of the paper fit in host memory (CIFAR-10 train is 150 MiB as uint8), so
    keeping them as tensors and slicing batches by index is both simpler and faster than a
    per-sample DataLoader. Static images stay uint8 until they reach the device (four times less
    to copy); DVS frames are float32 event counts because bilinear resizing makes them fractional.

    Attributes:
        name: the data set name as given to `load_dataset`.
        inputs: static images (N, C, H, W) uint8 in 0..255 or float32 in [0, 1]; DVS frames
            (N, T, 2, H, W) float32 event counts. Never mean/std normalised: E-I Init needs
            E[x] > 0 (spec §10.1-2).
        labels: (N,) int64 class indices.
        num_classes: number of classes of the data set (not just those present in this split).
        source: where a user's own data came from (file, sha256, samples), else None.
    """

    name: str
    inputs: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    source: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.inputs.shape[0] != self.labels.shape[0]:
            raise ValueError(
                f"{self.name}: {self.inputs.shape[0]} inputs but {self.labels.shape[0]} labels"
            )
        if self.labels.dtype != torch.int64 or self.labels.dim() != 1:
            raise ValueError(f"{self.name}: labels must be a 1-d int64 tensor")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. (3, 32, 32) or (T, 2, 48, 48)."""
        return tuple(int(s) for s in self.inputs.shape[1:])


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1]; float tensors pass through unchanged.

    Division by 255 matches torchvision's ToTensor, which the reference uses with no
    normalisation after it, so inputs stay non-negative.
    """
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255.0)
    return x
