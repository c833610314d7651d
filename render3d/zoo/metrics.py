"""Offline sample-quality metrics in the feature space of a small classifier trained on the same data.

No Inception weights are downloaded: a 2-layer CNN is trained once per data set (on its labels,
or on predicting image rotations when there are none) and cached; its 128-d penultimate layer
is the feature space for the Fréchet distance, KID and precision / recall / density / coverage.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from render3d.zoo.data import ImageData, augment

CLASSIFIER_VERSION = 1
FEATURES = 128


class FeatureClassifier(nn.Module):
    """conv-pool-conv-pool, then a 128-unit layer (the features) and the class scores."""

    def __init__(self, channels: int, size: int, classes: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(64 * (size // 4) ** 2, FEATURES), nn.ReLU())
        self.head = nn.Linear(FEATURES, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(self.convs(x * 2 - 1)))

    @torch.no_grad()
    def embed(self, images: Tensor, batch: int = 500) -> Tensor:
        """Features ``[N, 128]`` of float images in ``[0, 1]``."""
        self.eval()
        return torch.cat([self.features(self.convs(images[i:i + batch] * 2 - 1)) for i in range(0, len(images), batch)])


def _classifier_task(data: ImageData) -> tuple[Tensor, Optional[Tensor], int, str]:
    """(images, labels or None for rotation prediction, classes, description)."""
    if data.classifier_images is not None:
        return data.classifier_images, data.classifier_labels, int(data.classifier_labels.max()) + 1, "face / non-face"
    if data.train_labels is not None:
        return data.train, data.train_labels, data.num_classes, f"{data.num_classes}-class labels"
    return data.train, None, 4, "rotation prediction (no labels)"


def _rotated(x: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    k = torch.randint(0, 4, (len(x),), generator=generator)
    return torch.stack([torch.rot90(img, int(r), dims=(1, 2)) for img, r in zip(x, k)]), k


def _cache_file(data: ImageData, cache_dir: Path, steps: int) -> Path:
    h = hashlib.sha1(f"{CLASSIFIER_VERSION}|{steps}|{tuple(data.train.shape)}|".encode())
    h.update(data.train[:2000].numpy().tobytes())
    if data.classifier_images is not None:
        h.update(data.classifier_images.numpy().tobytes())
    return cache_dir / f"{data.name}-{data.spec.size}-{h.hexdigest()[:12]}.pt"


def default_cache_dir() -> Path:
    from render3d.datasets.synthetic import default_cache_root

    return default_cache_root() / "zoo-classifiers"


def feature_classifier(data: ImageData, steps: int = 1500, batch: int = 128, cache_dir: Optional[Path] = None,
                       seed: int = 0) -> FeatureClassifier:
    """The data set's feature classifier: loaded from the cache, or trained (and cached) now."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    file = _cache_file(data, cache_dir, steps)
    images, labels, classes, task = _classifier_task(data)
    model = FeatureClassifier(data.spec.channels, data.spec.size, classes)
    if file.is_file():
        from render3d.checkpoints import load_weights

        saved = load_weights(file, what="feature-classifier cache")
        model.load_state_dict(saved["state"])
        model.info = saved["info"]  # type: ignore[attr-defined]
        return model.eval()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    started = time.perf_counter()
    model.train()
    small = len(images) < 5000
    for _ in range(steps):
        idx = torch.randint(0, len(images), (batch,), generator=gen)
        x = images[idx].float() / 255.0
        if small:
            x = augment(x, gen)
        if labels is None:
            x, y = _rotated(x, gen)
        else:
            y = labels[idx]
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    info = {"task": task, "steps": steps, "seconds": round(time.perf_counter() - started, 1),
            "held_out_accuracy": _accuracy(model, data, labels is None, gen)}
    model.info = info  # type: ignore[attr-defined]
    from render3d.checkpoints import save_weights

    save_weights({"state": model.state_dict(), "info": info}, file)
    return model.eval()


@torch.no_grad()
def _accuracy(model: FeatureClassifier, data: ImageData, rotations: bool, gen: torch.Generator) -> Optional[float]:
    model.eval()
    if rotations:
        x, y = _rotated(data.test.float() / 255.0, gen)
    elif data.test_labels is not None:
        x, y = data.test.float() / 255.0, data.test_labels
    else:
        return None  # faces: the classifier saw every labelled image
    pred = torch.cat([model(x[i:i + 500]).argmax(1) for i in range(0, len(x), 500)])
    return round(float((pred == y).float().mean()), 4)


# ----- distances between feature sets -------------------------------------------------------
def frechet_distance(a: Tensor, b: Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between Gaussians fitted to the features."""
    from scipy import linalg

    a64, b64 = a.double().numpy(), b.double().numpy()
    mu_a, mu_b = a64.mean(0), b64.mean(0)
    eps = np.eye(a64.shape[1]) * 1e-6  # dead ReLU features make the covariances singular
    cov_a, cov_b = np.cov(a64, rowvar=False) + eps, np.cov(b64, rowvar=False) + eps
    covmean = linalg.sqrtm(cov_a @ cov_b)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean.real))


def kernel_inception_distance(a: Tensor, b: Tensor, subsets: int = 10, subset_size: int = 500, seed: int = 0) -> float:
    """KID: unbiased MMD^2 with the cubic polynomial kernel, averaged over random subsets."""
    gen = torch.Generator().manual_seed(seed)
    m = min(subset_size, len(a), len(b))
    d = a.shape[1]
    total = 0.0
    for _ in range(subsets):
        x = a[torch.randperm(len(a), generator=gen)[:m]].double()
        y = b[torch.randperm(len(b), generator=gen)[:m]].double()
        kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
        off = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
        total += float(off - 2 * kxy.mean())
    return total / subsets


def prdc(real: Tensor, fake: Tensor, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage (Naeem et al. 2020) with k-nearest-neighbour balls."""
    real, fake = real.double(), fake.double()
    k = min(k, len(real) - 1, len(fake) - 1)
    r_radius = torch.cdist(real, real).kthvalue(k + 1, dim=1).values  # +1: skip the point itself
    f_radius = torch.cdist(fake, fake).kthvalue(k + 1, dim=1).values
    d_rf = torch.cdist(real, fake)  # [R, F]
    inside_real = d_rf < r_radius[:, None]
    return {
        "precision": float(inside_real.any(0).float().mean()),
        "recall": float((d_rf < f_radius[None, :]).any(1).float().mean()),
        "density": float(inside_real.sum(0).float().mean() / k),
        "coverage": float((d_rf.min(1).values < r_radius).float().mean()),
    }


# Fréchet distance fits a 128-d Gaussian to each set: with fewer images its bias swamps the differences.
MIN_FRECHET_IMAGES = 1000


def sample_quality(real: Tensor, fake: Tensor) -> dict[str, Optional[float]]:
    """Every distance between two feature sets (Fréchet only when both hold ``MIN_FRECHET_IMAGES``)."""
    enough = min(len(real), len(fake)) >= MIN_FRECHET_IMAGES
    return {"frechet": frechet_distance(real, fake) if enough else None, "kid": kernel_inception_distance(real, fake),
            **prdc(real, fake)}


# ----- calibration and memorisation ---------------------------------------------------------
def blur3x3(images: Tensor) -> Tensor:
    """A 3x3 box blur of float images (edge-padded): the "blurry but right" calibration row."""
    c = images.shape[1]
    kernel = torch.full((c, 1, 3, 3), 1.0 / 9.0)
    return F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernel, groups=c)


def nearest_neighbors(queries: Tensor, references: Tensor, batch: int = 256) -> tuple[Tensor, Tensor]:
    """For each query image, the pixel RMS distance to its nearest reference image, and that image's index."""
    ref = references.flatten(1).float()
    ref_sq = ref.pow(2).sum(1)
    dims = ref.shape[1]
    dist, index = [], []
    for i in range(0, len(queries), batch):
        q = queries[i:i + batch].flatten(1).float()
        d2 = (q.pow(2).sum(1, keepdim=True) - 2 * q @ ref.T + ref_sq[None]).clamp_min(0)
        best = d2.min(1)
        dist.append((best.values / dims).sqrt())
        index.append(best.indices)
    return torch.cat(dist), torch.cat(index)


def memorization(samples: Tensor, train: Tensor, held_out: Tensor) -> dict[str, float]:
    """How close samples come to training images, measured against how close unseen real images come.

    ``nn_rms``: median pixel RMS distance of a sample to its nearest training image;
    ``nn_rms_held_out``: the same for held-out real images (what "new but real" looks like);
    ``copies``: the fraction of samples nearer to a training image than the nearest held-out
    image ever is (near-copies of the training set).
    """
    d_samples, _ = nearest_neighbors(samples, train)
    d_held, _ = nearest_neighbors(held_out, train)
    return {"nn_rms": float(d_samples.median()), "nn_rms_held_out": float(d_held.median()),
            "copies": float((d_samples < d_held.min()).float().mean())}
