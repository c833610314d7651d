"""PixelCNN: masked convolutions, a categorical distribution per sub-pixel, exact likelihood;
an upward context stack (no blind spot, 16 rows of reach) and class conditioning."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from render3d.config_cli import option
from render3d.zoo.base import ImageSpec, ModelConfig, ZooModel, nats_to_bits_per_dim


@dataclass
class PixelCNNConfig(ModelConfig):
    """PixelCNN options.

    Args:
        lr (float): Adam learning rate. Default: 1e-3.
        hidden (int): Channels of the masked convolutions. Default: 32.
        grad_clip (float): Clip the gradient norm to this value (0: off). Default: 1.0.
        bf16 (bool): bfloat16 autocast for convolutions and matrix products while training and sampling, where the
            hardware computes bfloat16 natively (AVX512-BF16 / AMX CPUs, CUDA); weights stay float32. Default: True.
        blocks (int): Residual blocks of masked 3x3 convolutions. Default: 4.
        levels (int): Intensity levels per sub-pixel (256: 8-bit images; 2: binary). Default: 256.
        context (int): Layers of the upward context stack (dilations 1, 2, 4, ...; each sees only rows above; 0: off,
            the plain PixelCNN with its blind spot). Default: 4.
        label_dropout (float): Probability of training without the label, so bits/dim can be unconditional. Default:
            0.1.
    """

    lr: float = option("Adam learning rate", default=1e-3)
    hidden: int = option("channels of the masked convolutions", default=32)
    blocks: int = option("residual blocks of masked 3x3 convolutions", default=4)
    levels: int = option("intensity levels per sub-pixel (256: 8-bit images; 2: binary)", default=256)
    context: int = option("layers of the upward context stack (dilations 1, 2, 4, ...; each sees only rows above; "
                          "0: off, the plain PixelCNN with its blind spot)", default=4)
    label_dropout: float = option("probability of training without the label, so bits/dim can be unconditional", default=0.1)


def _group(index: Tensor, count: int, channels: int) -> Tensor:
    """Which colour channel (0..channels-1) each of ``count`` feature maps belongs to."""
    return index * channels // count


class MaskedConv2d(nn.Conv2d):
    """A convolution that sees only pixels above / to the left, and earlier colour channels.

    Type ``A`` (first layer) hides the current sub-pixel itself; type ``B`` lets each colour
    group see its own group at the centre. Feature maps are split into contiguous groups,
    one per image channel (R, then G, then B), so the model factorises over channels too.
    """

    def __init__(self, mask_type: str, in_channels: int, out_channels: int, kernel_size: int, image_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        k = kernel_size // 2
        mask = torch.ones_like(self.weight)
        mask[:, :, k, k + 1:] = 0
        mask[:, :, k + 1:, :] = 0
        g_out = _group(torch.arange(out_channels), out_channels, image_channels)[:, None]
        g_in = _group(torch.arange(in_channels), in_channels, image_channels)[None, :]
        center = (g_in < g_out) if mask_type == "A" else (g_in <= g_out)
        mask[:, :, k, k] = center.float()
        self.register_buffer("mask", mask)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)

    def masked_weight(self) -> Tensor:
        """``[out, in * k * k]``: the masked kernel as a matrix (for evaluating one pixel)."""
        return (self.weight * self.mask).flatten(1)

    def channels_last(self, x: Tensor) -> Tensor:
        """A 1x1 masked convolution as a matrix product: ``[B, in, H, W]`` -> ``[B, H, W, out]``.

        The output channels end up contiguous, which makes the softmax over them several times
        faster on a CPU than over a strided channel axis.
        """
        weight = (self.weight * self.mask).flatten(1)
        return F.linear(x.permute(0, 2, 3, 1), weight, self.bias)


class UpwardContext(nn.Module):
    """Features of each pixel computed from the rows strictly above it, all columns in reach.

    The image is shifted down by one row, then each layer's kernel covers its own row and the
    rows above (2 rows x 3 columns, dilated 1, 2, 4, ...): row i's output depends only on rows
    < i, so it may feed every pixel of row i (and every colour channel) without breaking the
    raster order. This removes the masked stack's blind spot (the upper-right region it never
    sees) and extends the reach to ``reach`` rows above, across the width.
    """

    def __init__(self, in_channels: int, width: int, layers: int) -> None:
        super().__init__()
        self.dilations = [2**i for i in range(layers)]
        self.inp = nn.Conv2d(in_channels, width, (2, 3))
        self.convs = nn.ModuleList(nn.Conv2d(width, width, (2, 3), dilation=d) for d in self.dilations)
        self.reach = 2 + sum(self.dilations)  # rows above the output row that it depends on

    @staticmethod
    def _upward(x: Tensor, conv: nn.Conv2d, dilation: int) -> Tensor:
        return conv(F.pad(x, (dilation, dilation, dilation, 0)))  # pad left/right and above only

    def forward(self, x: Tensor) -> Tensor:
        shifted = F.pad(x, (0, 0, 1, 0))[:, :, :-1]  # row i now holds row i-1
        h = self._upward(shifted, self.inp, 1)
        for d, conv in zip(self.dilations, self.convs):
            h = h + self._upward(F.relu(h), conv, d)
        return h


class _Block(nn.Module):
    def __init__(self, width: int, image_channels: int) -> None:
        super().__init__()
        self.conv = MaskedConv2d("B", width, width, 3, image_channels)
        self.mix = MaskedConv2d("B", width, width, 1, image_channels)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.mix(F.relu(self.conv(F.relu(h))))


# Called once per sub-pixel while walking an image: (row, column, channel, logits [B, levels]) -> level indices [B].
Chooser = Callable[[int, int, int, Tensor], Tensor]


class PixelCNN(ZooModel):
    """An autoregressive model over pixels in raster order (and channels within a pixel).

    ``log p(x) = sum_i log p(x_i | x_<i)`` is exact, so bits/dim is the true negative
    log-likelihood of the 8-bit image. An :class:`UpwardContext` stack adds what the rows above
    hold (fixing the masked stack's blind spot); with labels, a class embedding is added too,
    dropped with ``label_dropout`` in training so that unlabelled bits/dim is exact for
    p(x). Sampling evaluates every layer at one pixel at a time,
    keeping each layer's outputs of earlier pixels (what the masked kernels read), so a sample
    costs about one forward pass of the image instead of one per pixel.
    """

    name = "pixelcnn"
    description = "PixelCNN (masked convolutions + upward context, exact likelihood; class-conditional with labels)"
    config_type = PixelCNNConfig
    likelihood = "exact"

    FIRST_KERNEL = 7

    def __init__(self, config: PixelCNNConfig, spec: ImageSpec) -> None:
        super().__init__(config, spec)
        c, w, levels = spec.channels, max(config.hidden, spec.channels), config.levels
        self.first = MaskedConv2d("A", c, w, self.FIRST_KERNEL, c)
        self.context = UpwardContext(c, w, config.context) if config.context else None
        self.label = nn.Embedding(spec.num_classes + 1, w) if spec.num_classes else None  # last id: no label
        self.blocks = nn.Sequential(*[_Block(w, c) for _ in range(config.blocks)])
        self.out = MaskedConv2d("B", w, c * levels, 1, c)

    def _label_bias(self, y: Optional[Tensor], n: int) -> Optional[Tensor]:
        """The class embedding ``[n, w]`` (the "no label" one when ``y`` is None), or None without classes."""
        if self.label is None:
            return None
        if y is None:
            y = torch.full((n,), self.spec.num_classes, dtype=torch.long, device=self.device)
        return self.label(y)

    def _indices(self, x: Tensor) -> Tensor:
        return (x * (self.config.levels - 1)).round().long().clamp(0, self.config.levels - 1)

    def logits(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        """``[B, H, W, C, levels]`` float32 logits of each sub-pixel given the ones before it (and the label)."""
        inp = self._indices(x).float() / (self.config.levels - 1) * 2.0 - 1.0
        h = self.first(inp)
        if self.context is not None:
            h = h + self.context(inp)
        bias = self._label_bias(y, len(x))
        if bias is not None:
            h = h + bias[:, :, None, None].to(h.dtype)
        h = self.out.channels_last(F.relu(self.blocks(h)))
        b, hh, ww, _ = h.shape
        return h.float().view(b, hh, ww, self.spec.channels, self.config.levels)

    def log_prob(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        """Exact log p(x) (or log p(x | y) with labels) per image, in nats."""
        logits = self.logits(x, y)
        target = self._indices(x).permute(0, 2, 3, 1)  # [B, H, W, C], like the logits
        nll = F.cross_entropy(logits.reshape(-1, self.config.levels), target.reshape(-1), reduction="none")
        return -nll.view(len(x), -1).sum(1)

    def loss(self, x: Tensor, y: Optional[Tensor] = None) -> tuple[Tensor, dict[str, float]]:
        if y is not None and self.label is not None:
            drop = torch.rand(len(y), device=y.device) < self.config.label_dropout
            y = torch.where(drop, torch.full_like(y, self.spec.num_classes), y)
        return self.bits_per_dim(x, y).mean(), {}

    def bits_per_dim(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        return nats_to_bits_per_dim(-self.log_prob(x, y), self.spec.dims)

    @torch.no_grad()
    def walk(self, n: int, choose: Chooser, labels: Optional[Tensor] = None) -> Tensor:
        """Generate ``n`` images sub-pixel by sub-pixel in raster order; ``choose`` picks each value.

        Only the current pixel is computed at each layer: the masked kernels read earlier
        pixels' layer outputs from zero-padded buffers (zero, like ``F.conv2d``'s padding, and
        never read where the mask hides a pixel not generated yet). The upward context of a row
        is computed once per row, from the rows within its reach. ``labels``: class labels
        ``[n]`` for a class-conditional model (None: unconditional). Returns images in ``[0, 1]``.
        """
        c, s, levels = self.spec.channels, self.spec.size, self.config.levels
        k0, pad0 = self.FIRST_KERNEL, self.FIRST_KERNEL // 2
        inp = torch.zeros(n, c, s + 2 * pad0, s + 2 * pad0, device=self.device)  # inputs in [-1, 1]
        hidden = [torch.zeros(n, self.first.out_channels, s + 2, s + 2, device=self.device) for _ in self.blocks]  # relu(h)
        first, out = self.first.masked_weight(), self.out.masked_weight()
        convs = [(b.conv.masked_weight(), b.conv.bias, b.mix.masked_weight(), b.mix.bias) for b in self.blocks]
        bias = self._label_bias(labels, n)
        x = torch.zeros(n, c, s, s, device=self.device)
        for i in range(s):
            row = torch.zeros(n, self.first.out_channels, s, device=self.device) if bias is None else bias[:, :, None].expand(-1, -1, s)
            if self.context is not None:
                top = max(0, i - self.context.reach)
                row = row + self.context(inp[:, :, pad0 + top:pad0 + i + 1, pad0:pad0 + s])[:, :, -1]
            for j in range(s):
                for ch in range(c):
                    h = F.linear(inp[:, :, i:i + k0, j:j + k0].reshape(n, -1), first, self.first.bias) + row[:, :, j]
                    for buf, (w3, b3, w1, b1) in zip(hidden, convs):
                        buf[:, :, i + 1, j + 1] = F.relu(h)
                        h = h + F.linear(F.relu(F.linear(buf[:, :, i:i + 3, j:j + 3].reshape(n, -1), w3, b3)), w1, b1)
                    logits = F.linear(F.relu(h), out, self.out.bias).view(n, c, levels)[:, ch]
                    value = choose(i, j, ch, logits).to(x)
                    x[:, ch, i, j] = value / (levels - 1)
                    inp[:, ch, i + pad0, j + pad0] = value / (levels - 1) * 2.0 - 1.0
        return x

    @torch.no_grad()
    def sample(self, n: int, generator: Optional[torch.Generator] = None, temperature: float = 1.0,
               labels: Optional[Tensor] = None, **options: Any) -> Tensor:
        """``n`` images; with labels in the data, classes cycle 0, 1, 2, ... unless ``labels`` are given."""
        if self.label is not None and labels is None:
            labels = torch.arange(n, device=self.device) % self.spec.num_classes

        def draw(i: int, j: int, ch: int, logits: Tensor) -> Tensor:
            probs = F.softmax(logits / temperature, dim=1).cpu()
            return torch.multinomial(probs, 1, generator=generator).squeeze(1)

        return self.walk(n, draw, labels)
