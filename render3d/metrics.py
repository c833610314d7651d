"""Image quality metrics: PSNR, SSIM (differentiable, also used in the splat loss), LPIPS when available."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor


def psnr(pred: Tensor, target: Tensor) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1]."""
    mse = torch.mean((pred.float() - target.float()) ** 2).item()
    return float("inf") if mse == 0 else -10.0 * torch.log10(torch.tensor(mse)).item()


@functools.lru_cache(maxsize=8)
def _gaussian_taps(size: int, sigma: float, device: str) -> Tensor:
    """The normalised 1D Gaussian ``[size]``; the 2D window is its outer product with itself."""
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return (g / g.sum()).to(device)


def _gaussian_filter(maps: Tensor, taps: Tensor) -> Tensor:
    """'valid' filtering of every channel of ``maps [B, C, H, W]`` with the separable window ``taps ⊗ taps``."""
    c, size = maps.shape[1], len(taps)
    maps = F.conv2d(maps, taps.reshape(1, 1, size, 1).expand(c, 1, size, 1), groups=c)
    return F.conv2d(maps, taps.reshape(1, 1, 1, size).expand(c, 1, 1, size), groups=c)


def _gaussian_filter_transposed(maps: Tensor, taps: Tensor) -> Tensor:
    """The adjoint of :func:`_gaussian_filter`: ``[B, C, H - k + 1, W - k + 1]`` back to ``[B, C, H, W]``."""
    c, size = maps.shape[1], len(taps)
    maps = F.conv_transpose2d(maps, taps.reshape(1, 1, 1, size).expand(c, 1, 1, size), groups=c)
    return F.conv_transpose2d(maps, taps.reshape(1, 1, size, 1).expand(c, 1, size, 1), groups=c)


class _MeanSSIM(torch.autograd.Function):
    """Mean SSIM of ``[B, C, H, W]`` images with the gradient written out by hand.

    With ``A1 = 2 mu_x mu_y + c1``, ``A2 = 2 s_xy + c2``, ``B1 = mu_x^2 + mu_y^2 + c1`` and
    ``B2 = s_xx + s_yy + c2`` (filtered means, variances and covariance), ``S = A1 A2 / (B1 B2)``
    depends on ``x`` through three filtered maps, ``mu_x``, ``E[x^2]`` and ``E[xy]``:
    ``dS/dmu_x = 2 mu_y (A2 - A1) / (B1 B2) + 2 mu_x S (1/B2 - 1/B1)``, ``dS/dE[x^2] = -S / B2``,
    ``dS/dE[xy] = 2 A1 / (B1 B2)``. The gradient image is those three maps filtered back (the
    window's adjoint) and combined as ``g_mu + 2 x g_xx + y g_xy``; ``y`` likewise, by
    symmetry. One transposed filtering pass instead of autograd's graph of some thirty
    element-wise operations and two filterings.
    """

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, taps: Tensor) -> Tensor:  # type: ignore[override]
        c = x.shape[1]
        filtered = _gaussian_filter(torch.cat([x, y, x * x, y * y, x * y], dim=1), taps)
        mu_x, mu_y, xx, yy, xy = filtered.split(c, dim=1)
        c1, c2 = 0.01**2, 0.03**2
        a1 = 2 * mu_x * mu_y + c1
        a2 = 2 * (xy - mu_x * mu_y) + c2
        b1 = mu_x**2 + mu_y**2 + c1
        b2 = (xx - mu_x**2) + (yy - mu_y**2) + c2
        ctx.save_for_backward(x, y, taps, mu_x, mu_y, a1, a2, b1, b2)
        return (a1 * a2 / (b1 * b2)).mean()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, y, taps, mu_x, mu_y, a1, a2, b1, b2 = ctx.saved_tensors
        scale = grad / a1.numel()
        den = b1 * b2
        s = a1 * a2 / den
        shared = [-s / b2 * scale, 2 * a1 / den * scale]  # dS/dE[x^2] (= dS/dE[y^2]), dS/dE[xy]

        def image_gradient(own: Tensor, other: Tensor, mu_own: Tensor, mu_other: Tensor) -> Tensor:
            d_mu = (2 * mu_other * (a2 - a1) / den + 2 * mu_own * s * (1 / b2 - 1 / b1)) * scale
            g_mu, g_sq, g_cross = _gaussian_filter_transposed(torch.cat([d_mu, *shared], dim=1), taps).split(own.shape[1], dim=1)
            return g_mu + 2 * own * g_sq + other * g_cross

        grad_x = image_gradient(x, y, mu_x, mu_y) if ctx.needs_input_grad[0] else None
        grad_y = image_gradient(y, x, mu_y, mu_x) if ctx.needs_input_grad[1] else None
        return grad_x, grad_y, None


def ssim(pred: Tensor, target: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean structural similarity of ``[..., H, W, C]`` images in [0, 1] (Wang et al. 2004).

    Gaussian window 11 / sigma 1.5, 'valid' filtering as in the reference implementation
    used by 3DGS evaluations. Differentiable, with a hand-written gradient (:class:`_MeanSSIM`).
    The window is applied as two 1D passes over the five maps (x, y, x², y², xy) at once:
    the same sums as one 11x11 pass per map, in a fifth of the multiplications and two
    convolution calls instead of five.
    """
    x = pred.reshape(-1, *pred.shape[-3:]).permute(0, 3, 1, 2).float()
    y = target.reshape(-1, *target.shape[-3:]).permute(0, 3, 1, 2).float()
    return _MeanSSIM.apply(x, y, _gaussian_taps(window, sigma, str(x.device)).to(x.dtype))


def lpips_status() -> tuple[bool, str]:
    """Whether LPIPS can be computed offline here, and why not if it cannot.

    LPIPS needs the ``lpips`` package and its pretrained weights already on disk; we never
    download weights during training or evaluation.
    """
    try:
        import lpips  # noqa: F401
    except ImportError:
        return False, "the lpips package is not installed (pip install lpips; it needs its network weights on disk)"
    from pathlib import Path

    hub = Path(torch.hub.get_dir()) / "checkpoints"
    if not any(hub.glob("alexnet*.pth")):
        return False, f"AlexNet weights are not in {hub}; LPIPS would need to download them"
    return True, "available"


@functools.lru_cache(maxsize=1)
def _lpips_net():
    import lpips

    return lpips.LPIPS(net="alex", verbose=False).eval()


def lpips(pred: Tensor, target: Tensor) -> float:
    """LPIPS (AlexNet) of ``[H, W, 3]`` images; call only when :func:`lpips_status` says available."""
    net = _lpips_net()
    to_net = lambda im: im.permute(2, 0, 1)[None].float().cpu() * 2 - 1  # noqa: E731
    with torch.no_grad():
        return float(net(to_net(pred), to_net(target)).item())
