"""Batched data augmentation that runs on whatever device the batch is on.

The reference applies torchvision/PIL transforms one image at a time in DataLoader workers. Here
every transform takes a float batch, (B, C, H, W) images or (B, T, C, H, W) event frames, plus a
torch.Generator, and draws its random parameters per sample with vectorised ops, so augmentation
costs a few kernels per batch on the GPU and one seed reproduces an epoch exactly. A sample's T
frames always share its parameters, as the reference transforms a whole (T, C, H, W) clip at once.

Every transform has the signature `f(x, generator, **params) -> x`; bind parameters with
functools.partial and chain with `Compose`. The generator may live on the CPU while x is on CUDA:
random numbers are drawn on the generator's device and then moved.

Values stay non-negative (images in [0, 1]); nothing here normalises, because E-I Init needs
E[x] > 0 (spec §10.1-2).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F

# f(x, generator) -> x: a float batch in, a float batch on the same device out.
Augmentation = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]

# ITU-R 601-2 luma, the weights of torchvision's rgb_to_grayscale.
_LUMA = (0.2989, 0.587, 0.114)


# ----------------------------------------------------------------------------- random draws


def _uniform(
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    device: torch.device,
    low: float | torch.Tensor = 0.0,
    high: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    draw_on = generator.device if generator is not None else device
    u = torch.rand(shape, generator=generator, device=draw_on).to(device)
    return low + (high - low) * u


def _integers(
    low: torch.Tensor | int,
    high: torch.Tensor | int,
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    device: torch.device,
) -> torch.Tensor:
    """Uniform integers in [low, high] inclusive, with per-sample bounds (like random.randint)."""
    u = _uniform(shape, generator, device)
    span = torch.as_tensor(high, device=device) - torch.as_tensor(low, device=device) + 1
    value = torch.floor(u * span).long().minimum(span - 1)  # guard float rounding at u -> 1
    return value + torch.as_tensor(low, device=device)


def _per_sample(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a (B,) tensor so it broadcasts against x's remaining dimensions."""
    return mask.view(-1, *([1] * (x.dim() - 1)))


def _as_planes(x: torch.Tensor) -> torch.Tensor:
    """(B, ..., H, W) -> (B, M, H, W): spatial ops then treat channels and time alike."""
    return x.reshape(x.shape[0], -1, *x.shape[-2:])


# ----------------------------------------------------------------------------- geometry


def _crop(
    planes: torch.Tensor, top: torch.Tensor, left: torch.Tensor, h: int, w: int
) -> torch.Tensor:
    """Per-sample crops of a fixed size from (B, M, H, W), by two gathers (no loop over B)."""
    b, m, _, width = planes.shape
    rows = top[:, None] + torch.arange(h, device=planes.device)
    cols = left[:, None] + torch.arange(w, device=planes.device)
    out = planes.gather(2, rows[:, None, :, None].expand(b, m, h, width))
    return out.gather(3, cols[:, None, None, :].expand(b, m, h, w))


def _box_theta(
    top: torch.Tensor, left: torch.Tensor, h: torch.Tensor, w: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Affine grids (align_corners=False) that map an output image onto a box of the input.

    Output pixel k samples input coordinate left - 1/2 + (k + 1/2) * w / out_w, i.e. the crop is
    resized with pixel centres aligned, as PIL and torchvision resize do.
    """
    theta = torch.zeros(top.shape[0], 2, 3, device=top.device)
    theta[:, 0, 0] = w / width
    theta[:, 0, 2] = (2 * left + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * top + h) / height - 1
    return theta


def _warp(x: torch.Tensor, theta: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    planes = _as_planes(x)
    theta = theta.to(planes.dtype)
    grid = F.affine_grid(theta, [planes.shape[0], 1, *size], align_corners=False)
    out = F.grid_sample(planes, grid, mode=mode, padding_mode="zeros", align_corners=False)
    return out.reshape(*x.shape[:-2], *size)


def random_crop(
    x: torch.Tensor, generator: torch.Generator | None = None, *, pad: int = 4
) -> torch.Tensor:
    """torchvision RandomCrop(size, padding=pad): zero-pad by `pad`, crop back at a random offset.

    Shifted images show zero borders; the model sees them as "no input", which E-I layers handle
    without normalisation.
    """
    height, width = x.shape[-2:]
    padded = F.pad(_as_planes(x), (pad, pad, pad, pad))
    b = x.shape[0]
    top = _integers(0, 2 * pad, (b,), generator, x.device)
    left = _integers(0, 2 * pad, (b,), generator, x.device)
    return _crop(padded, top, left, height, width).reshape(x.shape)


def horizontal_flip(
    x: torch.Tensor, generator: torch.Generator | None = None, *, p: float = 0.5
) -> torch.Tensor:
    """Mirror each sample left-right with probability p."""
    flip = _uniform((x.shape[0],), generator, x.device) < p
    return torch.where(_per_sample(flip, x), x.flip(-1), x)


def _resized_crop_boxes(
    b: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """torchvision RandomResizedCrop.get_params for a whole batch: 10 tries, then a centre crop.

    Each try draws an area fraction and a log-uniform aspect ratio; the first try whose box fits
    wins. Samples with no fitting try fall back to the largest centred box within `ratio`.
    """
    tries = 10
    area = float(height * width)
    target = area * _uniform((b, tries), generator, device, scale[0], scale[1])
    log_ratio = _uniform((b, tries), generator, device, math.log(ratio[0]), math.log(ratio[1]))
    aspect = torch.exp(log_ratio)
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # first True (0 if none)
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)
    found = fits.any(dim=1)
    in_ratio = width / height
    if in_ratio < min(ratio):
        fallback_w, fallback_h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fallback_w, fallback_h = round(height * max(ratio)), height
    else:
        fallback_w, fallback_h = width, height
    w = torch.where(found, w, torch.full_like(w, fallback_w))
    h = torch.where(found, h, torch.full_like(h, fallback_h))
    top = _integers(0, (height - h).long(), (b,), generator, device)
    left = _integers(0, (width - w).long(), (b,), generator, device)
    top = torch.where(found, top, ((height - h) // 2).long())
    left = torch.where(found, left, ((width - w) // 2).long())
    return top.float(), left.float(), h, w


def random_resized_crop(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    size: int | tuple[int, int],
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    mode: str = "bilinear",
) -> torch.Tensor:
    """torchvision RandomResizedCrop, batched: a random box per sample resized to `size`.

    The resize is one grid_sample over the batch; unlike PIL it does not antialias, which only
    matters when a box shrinks by more than 2x (TinyImageNet: at most 64 -> 32).
    """
    out_size = (size, size) if isinstance(size, int) else tuple(size)
    height, width = x.shape[-2:]
    top, left, h, w = _resized_crop_boxes(
        x.shape[0], height, width, scale, ratio, generator, x.device
    )
    return _warp(x, _box_theta(top, left, h, w, height, width), out_size, mode)


def resize(
    x: torch.Tensor, generator: torch.Generator | None = None, *, size: int | tuple[int, int]
) -> torch.Tensor:
    """torchvision Resize: bilinear with antialiasing (as PIL does), no randomness.

    An int matches the smaller edge and keeps the aspect ratio, like torchvision.
    """
    height, width = x.shape[-2:]
    if isinstance(size, int):
        if height <= width:
            out_size = (size, int(size * width / height))
        else:
            out_size = (int(size * height / width), size)
    else:
        out_size = tuple(size)
    planes = F.interpolate(
        _as_planes(x), size=out_size, mode="bilinear", align_corners=False, antialias=True
    )
    return planes.reshape(*x.shape[:-2], *out_size)


# ----------------------------------------------------------------------------- erasing


def cutout(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    p: float = 0.5,
    scale: tuple[float, float] = (0.02, 0.4),
    ratio: tuple[float, float] = (0.4, 1 / 0.4),
) -> torch.Tensor:
    """torchtoolbox.transform.Cutout with its defaults, quirk included (spec §7).

    With probability p a rectangle of area s*H*W (s ~ U(scale)) and aspect r ~ U(ratio) is
    erased: w = int(sqrt(s/r)), h = int(sqrt(s*r)) at a uniform position. torchtoolbox fills it
    with PIL's `paste(c)` for an integer c in 0..255, which an RGB image reads as the colour
    (c, 0, 0): the red channel becomes c/255 and every other channel 0. We reproduce that,
    because it is what the paper's numbers were trained with.
    """
    b = x.shape[0]
    channels, height, width = x.shape[-3:]
    device = x.device
    apply = _uniform((b,), generator, device) < p
    area = _uniform((b,), generator, device, scale[0], scale[1]) * height * width
    aspect = _uniform((b,), generator, device, ratio[0], ratio[1])
    w = torch.floor(torch.sqrt(area / aspect)).long().clamp(0, width)
    h = torch.floor(torch.sqrt(area * aspect)).long().clamp(0, height)
    left = _integers(0, width - w, (b,), generator, device)
    top = _integers(0, height - h, (b,), generator, device)
    red = _integers(0, 255, (b,), generator, device).to(x.dtype) / 255.0
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    inside_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])
    inside_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])
    box = inside_rows[:, :, None] & inside_cols[:, None, :] & apply[:, None, None]  # (B, H, W)
    lead = [1] * (x.dim() - 4)  # time axis of event frames, if any
    fill = torch.zeros(b, channels, device=device, dtype=x.dtype)
    fill[:, 0] = red
    return torch.where(box.view(b, *lead, 1, height, width), fill.view(b, *lead, channels, 1, 1), x)


def square_cutout(
    x: torch.Tensor, generator: torch.Generator | None = None, *, side: int = 16
) -> torch.Tensor:
    """Classic Cutout (DeVries & Taylor), used by NDA on event frames: zero a side x side square.

    The centre is uniform over the image and the square is clipped at the borders, so near an
    edge less than side^2 pixels are erased.
    """
    b = x.shape[0]
    height, width = x.shape[-2:]
    cy = _integers(0, height - 1, (b,), generator, x.device)
    cx = _integers(0, width - 1, (b,), generator, x.device)
    rows = torch.arange(height, device=x.device)
    cols = torch.arange(width, device=x.device)
    half = side // 2
    inside_rows = (rows >= (cy - half)[:, None]) & (rows < (cy + half)[:, None])
    inside_cols = (cols >= (cx - half)[:, None]) & (cols < (cx + half)[:, None])
    box = inside_rows[:, :, None] & inside_cols[:, None, :]
    return x.masked_fill(box.view(b, *([1] * (x.dim() - 3)), height, width), 0.0)


# ----------------------------------------------------------------------------- colour


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(-3)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(-3)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(-3)
    maxc = x.amax(-3)
    minc = x.amin(-3)
    delta = maxc - minc
    grey = delta == 0
    s = delta / torch.where(grey, torch.ones_like(maxc), maxc)
    safe = torch.where(grey, torch.ones_like(delta), delta)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(grey, torch.zeros_like(h), h)
    h = torch.remainder(h / 6.0, 1.0)
    return torch.stack((h, s, maxc), dim=-3)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(-3)
    sector = torch.floor(h * 6.0)
    f = h * 6.0 - sector
    sector = sector.long().remainder(6)
    p = (v * (1.0 - s)).clamp(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0)

    def pick(*candidates: torch.Tensor) -> torch.Tensor:
        return torch.stack(candidates).gather(0, sector.unsqueeze(0)).squeeze(0)

    return torch.stack(
        (pick(v, q, p, p, t, v), pick(t, v, v, q, p, p), pick(p, p, t, v, v, q)), dim=-3
    )


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    f = _per_sample(factor, x)
    return (f * x + (1 - f) * other).clamp(0.0, 1.0)


def _adjust_brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _blend(x, torch.zeros_like(x), f)


def _adjust_contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _blend(x, _grayscale(x).mean(dim=(-3, -2, -1), keepdim=True), f)


def _adjust_saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _blend(x, _grayscale(x), f)


def _adjust_hue(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    hsv = _rgb_to_hsv(x)
    h = torch.remainder(hsv[:, 0] + f[:, None, None], 1.0)
    return _hsv_to_rgb(torch.stack((h, hsv[:, 1], hsv[:, 2]), dim=1))


def color_jitter(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.1,
) -> torch.Tensor:
    """torchvision ColorJitter on (B, 3, H, W): four adjustments in a random order per sample.

    Factors are U(1 - a, 1 + a) (hue: a shift U(-hue, hue) of a turn). The order is drawn per
    sample as in torchvision; step k applies, to each group of samples whose k-th operation is
    the same, that operation, so the work is four batched ops however the orders fall.
    """
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"color_jitter needs (B, 3, H, W) RGB images, got {tuple(x.shape)}")
    b, device = x.shape[0], x.device
    factors = torch.stack(
        (
            _uniform((b,), generator, device, max(0.0, 1 - brightness), 1 + brightness),
            _uniform((b,), generator, device, max(0.0, 1 - contrast), 1 + contrast),
            _uniform((b,), generator, device, max(0.0, 1 - saturation), 1 + saturation),
            _uniform((b,), generator, device, -hue, hue),
        ),
        dim=1,
    )
    order = _uniform((b, 4), generator, device).argsort(dim=1)  # a random permutation per row
    adjust = (_adjust_brightness, _adjust_contrast, _adjust_saturation, _adjust_hue)
    out = x.clone()
    for step in range(4):
        for op, fn in enumerate(adjust):
            chosen = order[:, step] == op
            out[chosen] = fn(out[chosen], factors[chosen, op])
    return out


# ----------------------------------------------------------------------------- event frames


def random_roll(
    x: torch.Tensor, generator: torch.Generator | None = None, *, max_shift: int = 5
) -> torch.Tensor:
    """torch.roll by a per-sample (dy, dx), each uniform in [-max_shift, max_shift] (NDA)."""
    b = x.shape[0]
    height, width = x.shape[-2:]
    dy = _integers(-max_shift, max_shift, (b,), generator, x.device)
    dx = _integers(-max_shift, max_shift, (b,), generator, x.device)
    # roll: out[i] = in[(i - shift) mod n]; a crop of the input tiled twice, at offset n - shift.
    planes = _as_planes(x).repeat(1, 1, 2, 2)
    out = _crop(planes, (height - dy) % height, (width - dx) % width, height, width)
    return out.reshape(x.shape)


def random_rotate(
    x: torch.Tensor, generator: torch.Generator | None = None, *, degrees: float = 30.0
) -> torch.Tensor:
    """torchvision RandomRotation(degrees): about the centre, nearest, corners filled with 0."""
    b = x.shape[0]
    height, width = x.shape[-2:]
    angle = _uniform((b,), generator, x.device, -degrees, degrees) * (math.pi / 180.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(b, 2, 3, device=x.device)
    # Rotation in pixel units expressed in normalised coordinates (they differ when H != W).
    theta[:, 0, 0] = cos
    theta[:, 0, 1] = -sin * height / width
    theta[:, 1, 0] = sin * width / height
    theta[:, 1, 1] = cos
    return _warp(x, theta, (height, width), "nearest")


def nda_one_of(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    max_shift: int = 5,
    degrees: float = 30.0,
    side: int = 16,
) -> torch.Tensor:
    """The NDA step of the reference for CIFAR10-DVS: roll, rotate or cutout, chosen per sample."""
    choice = _integers(0, 2, (x.shape[0],), generator, x.device)
    ops = (
        partial(random_roll, max_shift=max_shift),
        partial(random_rotate, degrees=degrees),
        partial(square_cutout, side=side),
    )
    out = x.clone()
    for k, op in enumerate(ops):
        chosen = choice == k
        out[chosen] = op(x[chosen], generator)
    return out


# ----------------------------------------------------------------------------- pipelines


@dataclass(frozen=True)
class Compose:
    """Apply transforms in order, all drawing from the same generator."""

    transforms: Sequence[Augmentation]

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for transform in self.transforms:
            x = transform(x, generator)
        return x


_CIFAR_TRAIN = Compose((partial(random_crop, pad=4), cutout, horizontal_flip))

_TRAIN: dict[str, Augmentation | None] = {
    "npz": None,  # a user's own arrays: no augmentation is assumed to suit them
    "images": None,  # a user's own image folders: likewise
    "digits": None,
    "fashion-mnist": None,
    # RandomCrop(32, 4) -> Cutout -> RandomHorizontalFlip (spec §7)
    "cifar10": _CIFAR_TRAIN,
    "cifar100": _CIFAR_TRAIN,
    # RandomResizedCrop(32, (0.08, 1)) -> HFlip -> ColorJitter(.4, .4, .4, .1) -> Cutout
    "tinyimagenet": Compose(
        (
            partial(random_resized_crop, size=32, scale=(0.08, 1.0)),
            horizontal_flip,
            color_jitter,
            cutout,
        )
    ),
    # Frames are already 48x48: the reference's crop at 128 then Resize(48) becomes a crop at
    # 48, nearest so that event counts are moved, not blended.
    "cifar10-dvs": Compose(
        (
            partial(random_resized_crop, size=48, scale=(0.7, 1.0), mode="nearest"),
            horizontal_flip,
            nda_one_of,
        )
    ),
    # RandomTemporalDelete(T_remain=T) of the reference is a no-op on T frames (spec §7).
    "dvs-gesture": Compose(
        (
            partial(random_resized_crop, size=48, scale=(0.5, 1.0), mode="nearest"),
            horizontal_flip,
        )
    ),
}

_EVAL: dict[str, Augmentation | None] = {
    "npz": None,
    "images": None,
    "digits": None,
    "fashion-mnist": None,
    "cifar10": None,
    "cifar100": None,
    "tinyimagenet": partial(resize, size=32),
    "cifar10-dvs": None,  # resized to 48x48 when loaded
    "dvs-gesture": None,
}


def _lookup(table: dict[str, Augmentation | None], dataset_name: str) -> Augmentation | None:
    if dataset_name not in table:
        raise ValueError(f"unknown data set {dataset_name!r}; known: {', '.join(table)}")
    return table[dataset_name]


def train_augmentation(dataset_name: str) -> Augmentation | None:
    """The reference's training augmentation for a data set, or None where it uses none."""
    return _lookup(_TRAIN, dataset_name)


def eval_transform(dataset_name: str) -> Augmentation | None:
    """The deterministic transform applied at validation (TinyImageNet: Resize(32)), or None."""
    return _lookup(_EVAL, dataset_name)
