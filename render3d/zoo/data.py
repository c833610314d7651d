"""The zoo's image data: Fashion-MNIST, LFW faces, views / patches of our 3D scene, or a folder of images.

Everything is offline. Images are kept as uint8 ``[N, C, S, S]`` tensors; batches come out as
floats in ``[0, 1]``. ``load_images(name, size)`` accepts ``fashion-mnist``, ``faces``,
``scene``, ``scene-patches`` or a folder path.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from render3d.errors import Render3DError
from render3d.zoo.base import ImageSpec

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
SOURCES = ("fashion-mnist", "faces", "scene", "scene-patches")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass
class ImageData:
    """Train / held-out images (uint8 ``[N, C, S, S]``), optional labels, and an honest description."""

    name: str
    train: Tensor
    test: Tensor
    train_labels: Optional[Tensor] = None
    test_labels: Optional[Tensor] = None
    num_classes: int = 0
    note: str = ""
    augment: bool = False  # random flips / shifts during training (small data sets)
    classifier_images: Optional[Tensor] = None  # data + labels for the metrics' feature classifier,
    classifier_labels: Optional[Tensor] = None  # when they differ from train / train_labels

    @property
    def spec(self) -> ImageSpec:
        return ImageSpec(int(self.train.shape[1]), int(self.train.shape[2]), self.num_classes)

    def batch(self, index: Tensor, generator: Optional[torch.Generator] = None) -> tuple[Tensor, Optional[Tensor]]:
        """Training images ``index`` as floats in ``[0, 1]`` (augmented if ``augment``) and their labels."""
        x = self.train[index].float() / 255.0
        if self.augment:
            x = augment(x, generator)
        y = self.train_labels[index] if self.train_labels is not None else None
        return x, y

    def summary(self) -> str:
        return f"{self.name}: {len(self.train)} train / {len(self.test)} held-out images, {self.spec.channels}x{self.spec.size}x{self.spec.size}" + (
            f", {self.num_classes} classes" if self.num_classes else "")


def augment(x: Tensor, generator: Optional[torch.Generator] = None, shift: int = 2) -> Tensor:
    """Random horizontal flips and shifts of up to ``shift`` pixels (edge-padded), per image, in one gather."""
    n, c, s, _ = x.shape
    flip = torch.rand(n, generator=generator) < 0.5
    dy, dx = torch.randint(0, 2 * shift + 1, (2, n), generator=generator)
    padded = F.pad(x, (shift,) * 4, mode="replicate")
    steps = torch.arange(s)
    rows, cols = dy[:, None] + steps, dx[:, None] + steps  # [n, s] padded coordinates of each output row / column
    cols = torch.where(flip[:, None], s - 1 + 2 * shift - cols, cols)  # mirrored (the edge padding is symmetric)
    picked = padded[torch.arange(n)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # [n, s, s, c]
    return picked.permute(0, 3, 1, 2).contiguous()


def resize(images: Tensor, size: int) -> Tensor:
    """uint8 ``[N, C, H, W]`` -> uint8 ``[N, C, size, size]`` (centre square crop; antialiased when
    shrinking, bicubic when enlarging)."""
    h, w = images.shape[-2:]
    m = min(h, w)
    top, left = (h - m) // 2, (w - m) // 2
    x = images[..., top:top + m, left:left + m].float()
    if m > size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    elif m < size:
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def fashion_mnist_dir() -> Path:
    """``$RENDER3D_FASHION_MNIST`` or Debian's ``/usr/share/datasets/fashion-mnist``."""
    return Path(os.environ.get("RENDER3D_FASHION_MNIST", FASHION_MNIST_DIR))


def load_fashion_mnist(size: int = 28) -> ImageData:
    root = fashion_mnist_dir()
    files = {k: root / f"{k}-idx{3 if 'images' in k else 1}-ubyte.gz" for k in ("train-images", "train-labels", "t10k-images", "t10k-labels")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise Render3DError(f"Fashion-MNIST is not installed ({missing[0]} missing): `apt-get install dataset-fashion-mnist` (Debian) or set "
                            "RENDER3D_FASHION_MNIST")
    arrays = {k: torch.from_numpy(_read_idx(p).copy()) for k, p in files.items()}
    return ImageData(
        name="fashion-mnist",
        train=resize(arrays["train-images"][:, None], size),
        test=resize(arrays["t10k-images"][:, None], size),
        train_labels=arrays["train-labels"].long(),
        test_labels=arrays["t10k-labels"].long(),
        num_classes=10,
        note="Fashion-MNIST (Debian dataset-fashion-mnist): 60,000 train / 10,000 test grey 28x28 images, 10 classes.",
    )


def load_faces(size: int = 32, held_out: int = 20) -> ImageData:
    """scikit-image's LFW subset: the 100 face crops (25x25), ``held_out`` of them kept for evaluation.

    The crops are already face-aligned (LFW's funnelled faces: eyes on one line, the face
    filling the frame), so they are only enlarged (bicubic) to ``size``; training adds random
    flips and +-2 px shifts.
    """
    from skimage import data as skdata

    raw = torch.from_numpy((skdata.lfw_subset() * 255).round().astype(np.uint8))[:, None]  # [200, 1, 25, 25]
    faces, others = raw[:100], raw[100:]
    faces = faces[torch.randperm(100, generator=torch.Generator().manual_seed(0))]
    images = resize(faces, size)
    train, test = images[held_out:], images[:held_out]
    classifier = torch.cat([resize(raw[:100], size), resize(others, size)])
    labels = torch.cat([torch.ones(100, dtype=torch.long), torch.zeros(100, dtype=torch.long)])
    return ImageData(
        name="faces",
        train=train,
        test=test,
        note=(f"LFW subset from scikit-image: only {len(train)} real 25x25 aligned face crops for training ({held_out} held "
              f"out), enlarged to {size}x{size}; training uses random flips and +-2 px shifts. With this little data, models "
              "memorise: compare each sample with its nearest training face. Fréchet distance needs thousands of images, "
              "so faces are scored with KID (unbiased for small sets) and nearest-neighbour distances. The metrics' "
              "feature classifier is a face / non-face CNN trained on all 200 LFW-subset images."),
        augment=True,
        classifier_images=classifier,
        classifier_labels=labels,
    )


def load_scene_images(size: int = 32, patches: bool = False, per_view: int = 40) -> ImageData:
    """Views of the bundled default 3D scene (rendered once at 128 px and cached), whole or as patches."""
    from render3d.datasets import load_scene
    from render3d.datasets.synthetic import default_scene_dir

    scene = load_scene(default_scene_dir())
    gen = torch.Generator().manual_seed(0)

    def prepare(split_images: Tensor) -> Tensor:
        views = split_images.permute(0, 3, 1, 2).contiguous()  # [N, 3, 128, 128] uint8
        if not patches:
            return resize(views, size)
        half = resize(views, views.shape[-1] // 2)  # patches of 64 px views: objects, not flat texture
        s = half.shape[-1]
        out = []
        for v in half:
            ys, xs = torch.randint(0, s - size + 1, (2, per_view), generator=gen).tolist()
            out += [v[:, y:y + size, x:x + size] for y, x in zip(ys, xs)]
        return torch.stack(out)

    train = prepare(torch.cat([scene.train.images, scene.val.images]))
    test = prepare(scene.test.images)
    what = f"{per_view} random {size}x{size} patches per 64 px view" if patches else f"whole views resized to {size}x{size}"
    return ImageData(
        name="scene-patches" if patches else "scene",
        train=train,
        test=test,
        note=(f"renders of render3d's default 3D scene ({len(scene.train) + len(scene.val)} train+val views, "
              f"{len(scene.test)} test views; {what}): {len(train)} train / {len(test)} held-out images. "
              "No labels: the metrics' feature classifier learns to predict image rotations."),
        augment=not patches,
    )


def load_folder(folder: Path, size: int = 32, held_out: float = 0.1) -> ImageData:
    """Every image under ``folder`` (recursively), centre-cropped and resized; grey if all are grey."""
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 2:
        raise Render3DError(f"{folder} holds {len(files)} images ({', '.join(sorted(IMAGE_SUFFIXES))}): the zoo needs at least 2")
    pil = []
    for p in files:
        try:
            pil.append(Image.open(p))
            pil[-1].load()
        except (UnidentifiedImageError, OSError) as exc:
            raise Render3DError(f"cannot read image {p} ({type(exc).__name__}): remove or replace it") from None
    gray = all(im.mode in ("L", "LA", "1", "I;16", "I") for im in pil)
    arrays = []
    for im in pil:
        im = im.convert("L" if gray else "RGB")
        w, h = im.size
        m = min(w, h)
        im = im.crop(((w - m) // 2, (h - m) // 2, (w - m) // 2 + m, (h - m) // 2 + m)).resize((size, size), Image.Resampling.LANCZOS)
        a = np.asarray(im, dtype=np.uint8)
        arrays.append(a[None] if gray else a.transpose(2, 0, 1))
    images = torch.from_numpy(np.stack(arrays))
    images = images[torch.randperm(len(images), generator=torch.Generator().manual_seed(0))]
    n_test = max(1, int(round(len(images) * held_out)))
    return ImageData(
        name=folder.resolve().name,
        train=images[n_test:],
        test=images[:n_test],
        note=(f"{len(files)} images from {folder} (centre-cropped, resized to {size}x{size}): {len(images) - n_test} train / "
              f"{n_test} held out. No labels: the metrics' feature classifier learns to predict image rotations."),
        augment=len(images) < 1000,
    )


def default_size(name: str) -> int:
    """28 for Fashion-MNIST (its own size), 32 for everything else."""
    return 28 if name == "fashion-mnist" else 32


def load_images(name: str, size: Optional[int] = None) -> ImageData:
    """One of :data:`SOURCES`, or a folder of images; ``size`` (divisible by 4) defaults to 28 for
    Fashion-MNIST and 32 otherwise."""
    size = size or default_size(name)
    if size % 4 or size < 8:
        raise Render3DError(f"image size {size} must be a multiple of 4 and at least 8 (the models downsample twice)")
    if name == "fashion-mnist":
        return load_fashion_mnist(size)
    if name == "faces":
        return load_faces(size)
    if name in ("scene", "scene-patches"):
        return load_scene_images(size, patches=name == "scene-patches")
    folder = Path(name).expanduser()
    if folder.is_dir():
        return load_folder(folder, size)
    raise Render3DError(f"unknown data {name!r}: use {', '.join(SOURCES)} or a folder of images")
