"""Event streams -> frames, and the per-class split of CIFAR10-DVS: the pure arithmetic.

These functions reproduce spikingjelly's `integrate_events_by_fixed_frames_number` with
`split_by='number'` and its `split_to_train_test_set`, which the reference uses (spec §7). They
take plain arrays so they can be tested on a handful of synthetic events.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

DVS_FRAME_SIDE = 48  # the reference resizes the 128x128 sensor frames to 48x48


def events_to_frames(
    x: np.ndarray, y: np.ndarray, p: np.ndarray, frames_number: int, height: int, width: int
) -> np.ndarray:
    """Bin events, in stream order, into `frames_number` frames holding equal numbers of events.

    With N events and T frames each frame gets N // T consecutive events and the last frame also
    takes the remainder (so with N < T all events land in the last frame), exactly as
    spikingjelly does. Channel 0 counts events with p == 0 (OFF), channel 1 the others (ON).

    Returns (T, 2, height, width) float32 event counts.
    """
    if frames_number < 1:
        raise ValueError(f"frames_number must be >= 1, got {frames_number}")
    x, y, p = (np.asarray(a).astype(np.int64, copy=False).ravel() for a in (x, y, p))
    if not x.shape == y.shape == p.shape:
        raise ValueError(f"x, y, p differ in length: {x.shape}, {y.shape}, {p.shape}")
    if x.size and (x.min() < 0 or x.max() >= width or y.min() < 0 or y.max() >= height):
        raise ValueError(
            f"event coordinates x in [{x.min()}, {x.max()}], y in [{y.min()}, {y.max()}] fall "
            f"outside the {width}x{height} sensor"
        )
    n = x.size
    per_frame = n // frames_number
    if per_frame > 0:
        frame = np.minimum(np.arange(n) // per_frame, frames_number - 1)
    else:
        frame = np.full(n, frames_number - 1)
    channel = (p != 0).astype(np.int64)
    flat = ((frame * 2 + channel) * height + y) * width + x
    counts = np.bincount(flat, minlength=frames_number * 2 * height * width)
    return counts.astype(np.float32).reshape(frames_number, 2, height, width)


def resize_frames(frames: np.ndarray | torch.Tensor, side: int = DVS_FRAME_SIDE) -> torch.Tensor:
    """Bilinear (antialiased) resize of (..., H, W) frames to side x side.

    Bilinear resizing makes the counts fractional, as torchvision's Resize does in the reference;
    antialiasing keeps the total event mass close to (side/H)^2 of the original instead of
    sampling a sparse subset of pixels.
    """
    frames = torch.as_tensor(frames, dtype=torch.float32)
    lead = frames.shape[:-2]
    flat = frames.reshape(1, -1, *frames.shape[-2:])
    out = F.interpolate(
        flat, size=(side, side), mode="bilinear", align_corners=False, antialias=True
    )
    return out.reshape(*lead, side, side)


def split_per_class(
    labels: np.ndarray, num_classes: int, train_fraction: float = 0.9
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic per-class split: the first ceil(fraction * n_c) samples of each class train.

    CIFAR10-DVS has no official split; the reference (spikingjelly's split_to_train_test_set with
    random_split=False) takes the first 90% of each class in file order. Indices come out grouped
    by class, train then test, as there.
    """
    labels = np.asarray(labels)
    train, test = [], []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        cut = math.ceil(len(members) * train_fraction)
        train.append(members[:cut])
        test.append(members[cut:])
    return np.concatenate(train).astype(np.int64), np.concatenate(test).astype(np.int64)
