"""A user's images in class folders (``dataset: images``): ``ROOT/train/<class>/*.png`` and
``ROOT/test/<class>/*.png`` (torchvision's ImageFolder layout), or ``data.train`` and
``data.test`` directories of class folders each.

Classes are the training directory's sub-folder names in sorted order (label = position), for
both splits: a test folder whose name is not a training class is refused, so a class missing
from the test split can never shift the labels. Images are decoded with Pillow (the ``vision``
extra) into uint8 ``(N, C, H, W)``: one channel when every image of the split is greyscale,
else RGB (3) for all. Every image of a split must have the same size; eideploy does not resize
(the message names the first image of another size and the size expected).

The folder is hostile input until checked: only regular files with an image suffix are read
(each through the bounded reader, at most :data:`MAX_IMAGE_BYTES`), at most
:data:`MAX_IMAGES` of them and :data:`MAX_TOTAL_BYTES` in all, each of at most
:data:`MAX_PIXELS` pixels (Pillow's decompression-bomb guard raised to an error). The split's
identity is a sha256 over every image's path relative to the split directory and its bytes,
in sorted order: renaming a class or changing one pixel changes it.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..safefile import UnsafeFileError, printable, read_bounded
from .dataset import ArrayDataset
from .errors import DataError, MissingExtraError

__all__ = ["IMAGES", "IMAGE_SUFFIXES", "ImageSplit", "image_sources", "load_image_folder",
           "MAX_IMAGES", "MAX_IMAGE_BYTES", "MAX_TOTAL_BYTES", "MAX_PIXELS"]

IMAGES = "images"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".pbm", ".tif",
                  ".tiff", ".webp")
MAX_IMAGES = 2_000_000
MAX_IMAGE_BYTES = 64 << 20
MAX_TOTAL_BYTES = 4 << 30
MAX_PIXELS = 1 << 24  # 4096 x 4096
MAX_CLASSES = 100_000
_GREY = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F", "P")  # P: checked by its palette


@dataclass(frozen=True)
class ImageSplit:
    """One split's directory of class folders, and the training directory naming the classes."""

    path: Path
    classes_from: Path


def image_sources(path: str | Path | None = None, train: str | Path | None = None,
                  test: str | Path | None = None) -> dict[str, ImageSplit]:
    """Each split's directory, absolute: ``path/train`` and ``path/test``, or ``train`` and
    ``test`` as given."""
    if path is not None:
        root = Path(path).expanduser().absolute()
        train_dir, test_dir = root / "train", root / "test"
    elif train is not None and test is not None:
        train_dir = Path(train).expanduser().absolute()
        test_dir = Path(test).expanduser().absolute()
    else:
        raise DataError("dataset images needs data.path (a directory holding train/ and test/, "
                        "each with one sub-folder of images per class) or both data.train and "
                        "data.test (a directory of class folders each)")
    return {"train": ImageSplit(train_dir, train_dir), "test": ImageSplit(test_dir, train_dir)}


def _class_dirs(directory: Path, what: str) -> list[Path]:
    if not directory.is_dir():
        raise DataError(f"{printable(directory)}: no such directory ({what}); it should hold one "
                        "sub-folder of images per class, e.g. train/cat/001.png")
    dirs = sorted((p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")
                   and not p.is_symlink()), key=lambda p: p.name)
    if not dirs:
        raise DataError(f"{printable(directory)}: no class sub-folders; put each class's images "
                        "in a folder named after the class, e.g. train/cat/001.png")
    if len(dirs) > MAX_CLASSES:
        raise DataError(f"{printable(directory)}: {len(dirs)} class folders (limit {MAX_CLASSES})")
    return dirs


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise MissingExtraError("dataset images decodes with Pillow: pip install "
                                "'eideploy[vision]'", "vision") from None
    return Image


def _decode(image_module, raw: bytes, path: Path):
    try:
        with image_module.open(io.BytesIO(raw)) as img:
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise DataError(f"{printable(path)}: {width} x {height} pixels, over the limit "
                                f"of {MAX_PIXELS}")
            img.load()
            return img.copy()
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError, image_module.DecompressionBombError) as exc:
        raise DataError(f"{printable(path)}: not a readable image ({printable(exc, 120)}); "
                        "remove it or replace it") from None


def _is_grey(img) -> bool:
    if img.mode == "P":
        rgb = np.asarray(img.convert("RGB"))
        return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
    return img.mode in _GREY


def load_image_folder(split: str, sources: dict[str, ImageSplit]) -> ArrayDataset:
    """One split of a user's image folders, checked (module doc); ``source`` of the result holds
    the split's directory, its sha256 and its size."""
    source = sources[split]
    classes = [p.name for p in _class_dirs(source.classes_from, "the training split")]
    index = {name: i for i, name in enumerate(classes)}
    image_module = _pillow()
    digest = hashlib.sha256()
    images, labels, files = [], [], []
    total = 0
    for class_dir in _class_dirs(source.path, f"the {split} split"):
        if class_dir.name not in index:
            raise DataError(f"{printable(class_dir)}: class {printable(class_dir.name)!r} is not "
                            f"a class of the training split ({printable(source.classes_from)}: "
                            f"{printable(', '.join(classes), 160)})")
        paths = sorted(p for p in class_dir.iterdir()
                       if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        if not paths:
            raise DataError(f"{printable(class_dir)}: no images (files ending in "
                            f"{', '.join(IMAGE_SUFFIXES)}); remove the folder or add images")
        for path in paths:
            if len(files) >= MAX_IMAGES:
                raise DataError(f"{printable(source.path)}: more than {MAX_IMAGES} images")
            try:
                raw = read_bounded(path, MAX_IMAGE_BYTES,
                                   limit_text=f"{MAX_IMAGE_BYTES >> 20} MB limit of an image")
            except UnsafeFileError as exc:
                raise DataError(str(exc)) from None
            total += len(raw)
            if total > MAX_TOTAL_BYTES:
                raise DataError(f"{printable(source.path)}: its images exceed "
                                f"{MAX_TOTAL_BYTES >> 30} GiB")
            relative = path.relative_to(source.path).as_posix().encode("utf-8", "replace")
            digest.update(len(relative).to_bytes(4, "little") + relative)
            digest.update(len(raw).to_bytes(8, "little") + raw)
            images.append(_decode(image_module, raw, path))
            labels.append(index[class_dir.name])
            files.append(path)
    grey = all(_is_grey(img) for img in images)
    size = images[0].size
    arrays = []
    for img, path in zip(images, files, strict=True):
        if img.size != size:
            raise DataError(f"{printable(path)}: {img.size[0]} x {img.size[1]} pixels, but "
                            f"{printable(files[0])} is {size[0]} x {size[1]}; every image of a "
                            "split must have one size (eideploy does not resize: resize them "
                            "first, e.g. with Pillow's Image.resize)")
        pixels = np.asarray(img.convert("L" if grey else "RGB"), dtype=np.uint8)
        arrays.append(pixels[None] if grey else pixels.transpose(2, 0, 1))
    x = torch.from_numpy(np.stack(arrays))
    y = torch.tensor(labels, dtype=torch.int64)
    return ArrayDataset(IMAGES, x, y, max(len(classes), 2), source={
        "file": str(source.path), "sha256": digest.hexdigest(), "samples": len(labels)})
