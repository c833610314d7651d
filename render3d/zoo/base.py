"""The zoo's shared interface: :class:`ZooModel`, the model registry, save / load and likelihood helpers.

Every model works on images as float tensors ``[B, C, H, W]`` in ``[0, 1]`` holding 8-bit
values (``k / 255``); internally models may rescale to ``[-1, 1]`` with :func:`to_signed`.
What a model supports is declared by class attributes (``can_encode``, ``likelihood``,
``has_latent``) so the report and the callers never probe by catching exceptions.
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, ContextManager, Optional

import torch
from torch import Tensor, nn

from render3d.errors import Render3DError
from render3d.config_cli import option

ZOO_CHECKPOINT_VERSION = 2  # 2: diffusion U-Net with patches and EMA, faster GAN / VAE / AE nets
LN2 = math.log(2.0)


@dataclass
class ModelConfig:
    """Options every zoo model has (CLI: ``render3d zoo train MODEL --MODEL.NAME``).

    Each model's config (its ``config_type``) adds its own options and may change these defaults.

    Args:
        lr (float): Adam learning rate. Default: 2e-4.
        hidden (int): Width of the first convolution (deeper layers double it). Default: 32.
        grad_clip (float): Clip the gradient norm to this value (0: off). Default: 1.0.
        bf16 (bool): bfloat16 autocast for convolutions and matrix products while training and sampling, where the
            hardware computes bfloat16 natively (AVX512-BF16 / AMX CPUs, CUDA); weights stay float32. Default: True.
    """

    lr: float = option("Adam learning rate", default=2e-4)
    hidden: int = option("width of the first convolution (deeper layers double it)", default=32)
    grad_clip: float = option("clip the gradient norm to this value (0: off)", default=1.0)
    bf16: bool = option("bfloat16 autocast for convolutions and matrix products while training and sampling, where the "
                        "hardware computes bfloat16 natively (AVX512-BF16 / AMX CPUs, CUDA); weights stay float32", default=True)


@functools.lru_cache(maxsize=None)
def native_bf16(device_type: str) -> bool:
    """Whether ``device_type`` computes bfloat16 convolutions natively (else autocast would be slower)."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


@torch.no_grad()
def update_ema(average: nn.Module, live: nn.Module, decay: float, updates: int) -> None:
    """One step of an exponential moving average of ``live``'s parameters into ``average``.

    ``updates`` counts the steps so far (1 on the first); the decay warms up as
    ``min(decay, (1 + n) / (10 + n))`` so the average is not dominated by the random initial
    weights early in short runs. Buffers are copied.
    """
    d = min(decay, (1.0 + updates) / (10.0 + updates))
    torch._foreach_lerp_(list(average.parameters()), list(live.parameters()), 1.0 - d)
    for a, b in zip(average.buffers(), live.buffers()):
        a.copy_(b)


@dataclass(frozen=True)
class ImageSpec:
    """What a model was built for: channels, size, and the number of class labels (0: none)."""

    channels: int
    size: int
    num_classes: int = 0

    @property
    def dims(self) -> int:
        return self.channels * self.size * self.size


def registry() -> dict[str, type["ZooModel"]]:
    """Name -> model class for every installed zoo model (entry-point group ``render3d.zoo_models``)."""
    from render3d.registry import ZOO_MODELS

    return dict(ZOO_MODELS.items())


def get_model_class(name: str) -> type["ZooModel"]:
    """The zoo model class registered as ``name``, or a one-line error listing them."""
    from render3d.registry import ZOO_MODELS

    return ZOO_MODELS.get(name)


def to_signed(x: Tensor) -> Tensor:
    """``[0, 1]`` -> ``[-1, 1]``."""
    return x * 2.0 - 1.0


def to_unit(x: Tensor) -> Tensor:
    """``[-1, 1]`` -> ``[0, 1]``, clamped and snapped to the 8-bit grid."""
    return ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round() / 255.0


def discretized_gaussian_log_prob(x: Tensor, mean: Tensor, log_std: Tensor, levels: int = 256) -> Tensor:
    """log P(x) per element for a Gaussian discretised into ``levels`` bins over ``[-1, 1]``.

    ``x`` holds bin centres in ``[-1, 1]``; the outermost bins extend to +-infinity, so the
    probabilities of all ``levels`` values sum to exactly one (a proper discrete likelihood,
    as in DDPM's decoder and the VAE's bits/dim).
    """
    half = 1.0 / (levels - 1)
    inv = torch.exp(-log_std)
    centered = x - mean
    upper, lower = (centered + half) * inv, (centered - half) * inv
    log_cdf_upper = torch.special.log_ndtr(upper)  # the lowest bin: (-inf, x + half]
    log_sf_lower = torch.special.log_ndtr(-lower)  # the highest bin: [x - half, inf)
    delta = torch.special.ndtr(upper) - torch.special.ndtr(lower)
    # far in a tail the difference of CDFs underflows: use the density times the bin width there
    log_density = -0.5 * (centered * inv) ** 2 - log_std - 0.5 * math.log(2 * math.pi) + math.log(2 * half)
    log_mid = torch.where(delta > 1e-5, torch.log(delta.clamp_min(1e-12)), log_density)
    edge = 1.0 - half / 2
    return torch.where(x < -edge, log_cdf_upper, torch.where(x > edge, log_sf_lower, log_mid))


def nats_to_bits_per_dim(nats: Tensor, dims: int) -> Tensor:
    """Negative log-likelihood in nats per image -> bits per dimension."""
    return nats / (dims * LN2)


class ZooModel(nn.Module):
    """One 2D generative model behind the zoo's interface.

    Subclasses set ``name``, ``config_type``, the capability flags, and implement
    :meth:`loss` and :meth:`sample`; encoders implement :meth:`encode` / :meth:`decode`,
    likelihood models :meth:`bits_per_dim`. :meth:`fit` (one optimisation step), the
    optimisers, :meth:`save` and :func:`load` are shared.

    Examples:
        >>> import tempfile
        >>> from render3d.zoo import ImageSpec, load, registry
        >>> VAE = registry()["vae"]  # every installed model, by name
        >>> model = VAE(VAE.config_type(hidden=8, latent=4), ImageSpec(channels=1, size=8))
        >>> images = torch.randint(0, 256, (16, 1, 8, 8)) / 255.0  # 8-bit values in [0, 1]
        >>> sorted(model.fit(images))  # one optimisation step; its stats
        ['kl_nats', 'loss']
        >>> model.sample(4).shape
        torch.Size([4, 1, 8, 8])
        >>> model.can_encode, model.likelihood, model.bits_per_dim(images).shape
        (True, 'bound', torch.Size([16]))
        >>> tmp = tempfile.TemporaryDirectory()
        >>> load(model.save(tmp.name + "/model.pt")).name
        'vae'
        >>> tmp.cleanup()
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    config_type: ClassVar[type[ModelConfig]] = ModelConfig
    can_encode: ClassVar[bool] = False
    likelihood: ClassVar[Optional[str]] = None  # "exact", "bound" (ELBO) or None
    has_latent: ClassVar[bool] = False  # sample_latent / generate support interpolation
    default_batch_size: ClassVar[int] = 64  # what the trainer uses unless told otherwise

    def __init__(self, config: ModelConfig, spec: ImageSpec) -> None:
        super().__init__()
        self.config = config
        self.spec = spec
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.info: dict[str, Any] = {}  # data name, training steps, seconds: filled by the trainer / load

    # ----- training ---------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """One Adam over all parameters; models with several players override this."""
        return {"main": torch.optim.Adam(self.trainable_parameters(), lr=self.config.lr)}

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimisers update (not weight averages kept for sampling)."""
        return [p for p in self.parameters() if p.requires_grad]

    def loss(self, x: Tensor, y: Optional[Tensor] = None) -> tuple[Tensor, dict[str, float]]:
        """The training loss on a batch ``x`` in ``[0, 1]`` (labels ``y`` when the data has them)."""
        raise NotImplementedError

    def fit(self, x: Tensor, y: Optional[Tensor] = None) -> dict[str, float]:
        """One optimisation step on a batch; returns scalar stats (always including ``loss``)."""
        if not self.optimizers:
            self.optimizers = self.configure_optimizers()
        from render3d.training import backward_and_step

        self.train()
        opt = self.optimizers["main"]
        opt.zero_grad(set_to_none=True)
        with self.autocast():
            loss, stats = self.loss(x, y)
        backward_and_step(loss, [opt], self.config.grad_clip)
        self.after_step()
        return {"loss": float(loss.detach()), **stats}

    def after_step(self) -> None:
        """Hook after each optimiser step (EMA weights, codebook restarts)."""

    def autocast(self) -> ContextManager[Any]:
        """bfloat16 autocast when ``config.bf16`` is on and the device computes bfloat16 natively."""
        kind = self.device.type
        if getattr(self.config, "bf16", False) and native_bf16(kind):
            return torch.autocast(kind, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ----- generation and inference -----------------------------------------------------
    def sample(self, n: int, generator: Optional[torch.Generator] = None, **options: Any) -> Tensor:
        """``n`` new images in ``[0, 1]``."""
        if self.has_latent:
            return self.generate(self.sample_latent(n, generator), **options)
        raise NotImplementedError

    def sample_latent(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """Latent noise that :meth:`generate` maps to images (models with ``has_latent``)."""
        raise NotImplementedError(f"{self.name} has no latent noise")

    def generate(self, z: Tensor, **options: Any) -> Tensor:
        """Images from latent noise ``z`` (deterministic for a given ``z``)."""
        raise NotImplementedError(f"{self.name} has no latent noise")

    def encode(self, x: Tensor) -> Tensor:
        raise NotImplementedError(f"{self.name} does not encode")

    def decode(self, z: Tensor) -> Tensor:
        raise NotImplementedError(f"{self.name} does not decode")

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    def bits_per_dim(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        """Negative log-likelihood (exact or an ELBO bound, see ``likelihood``) per image, in bits/dim."""
        raise NotImplementedError(f"{self.name} has no likelihood")

    def stats(self) -> dict[str, float]:
        """Model-specific numbers worth reporting (codebook usage, ...)."""
        return {}

    def num_parameters(self) -> int:
        """Trainable parameters (weight averages kept for sampling are not counted twice)."""
        return sum(p.numel() for p in self.trainable_parameters())

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ----- persistence ------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to rebuild the model (and continue training it)."""
        return {
            "version": ZOO_CHECKPOINT_VERSION,
            "kind": "zoo",
            "model": self.name,
            "model_config": asdict(self.config),
            "spec": asdict(self.spec),
            "state": self.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "info": dict(self.info),
        }

    def save(self, path: str | Path) -> Path:
        """Write :meth:`checkpoint` atomically to ``path``."""
        from render3d.checkpoints import save_weights

        return save_weights(self.checkpoint(), path)

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> "ZooModel":
        model_cls = get_model_class(ckpt["model"])
        model = model_cls(model_cls.config_type(**ckpt["model_config"]), ImageSpec(**ckpt["spec"]))
        model.load_state_dict(ckpt["state"])
        if ckpt.get("optimizers"):
            model.optimizers = model.configure_optimizers()
            for key, state in ckpt["optimizers"].items():
                model.optimizers[key].load_state_dict(state)
        model.info = dict(ckpt.get("info", {}))
        return model


ZOO_CHECKPOINT_NAME = "model.pt"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A zoo checkpoint from a run folder or a ``.pt`` file, with one-line errors."""
    from render3d.checkpoints import load_tagged, require_keys

    p = Path(path)
    file = p / ZOO_CHECKPOINT_NAME if p.is_dir() else p
    if not file.is_file():
        raise Render3DError(f"no zoo model at {file}: pass a run folder of `render3d zoo train` or its {ZOO_CHECKPOINT_NAME}")
    ckpt = load_tagged(file, ("zoo",), ZOO_CHECKPOINT_VERSION, "zoo checkpoint")
    return require_keys(ckpt, ("model", "model_config", "spec", "state"), file, what="zoo checkpoint")


def load(path: str | Path) -> ZooModel:
    """The trained model in a run folder (or checkpoint file), in eval mode on the CPU.

    Examples:
        >>> from render3d.zoo import load
        >>> model = load("runs/zoo-fashion-mnist-diffusion-20250101-120000")  # doctest: +SKIP
        >>> model.sample(16).shape  # doctest: +SKIP
        torch.Size([16, 1, 28, 28])
    """
    from render3d.checkpoints import reading_contents

    ckpt = read_checkpoint(path)
    with reading_contents(path, "zoo checkpoint"):
        model = ZooModel.from_checkpoint(ckpt)
    return model.eval()
