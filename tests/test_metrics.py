"""Image metrics: the separable SSIM against the one-window-per-map form it replaced, and against scikit-image."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from render3d.metrics import ssim


def ssim_2d_window(pred: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """The previous implementation: one 11x11 depthwise convolution per map."""
    x = pred.reshape(-1, *pred.shape[-3:]).permute(0, 3, 1, 2).float()
    y = target.reshape(-1, *target.shape[-3:]).permute(0, 3, 1, 2).float()
    c = x.shape[1]
    coords = torch.arange(window, dtype=torch.float32) - (window - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    w = (g[:, None] * g[None, :]).expand(c, 1, window, window).contiguous()
    mu_x, mu_y = F.conv2d(x, w, groups=c), F.conv2d(y, w, groups=c)
    sxx = F.conv2d(x * x, w, groups=c) - mu_x**2
    syy = F.conv2d(y * y, w, groups=c) - mu_y**2
    sxy = F.conv2d(x * y, w, groups=c) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu_x * mu_y + c1) * (2 * sxy + c2) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))).mean()


def _pair(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(shape, generator=g)
    return (target + 0.15 * torch.randn(shape, generator=g)).clamp(0, 1), target


def test_separable_ssim_matches_the_2d_window_in_value_and_gradient():
    """The separable filter with its hand-written gradient against autograd through the 2D window (both images)."""
    for shape in ((37, 53, 3), (2, 24, 20, 3)):
        pred, target = _pair(shape)
        values, grads = [], []
        for fn in (ssim, ssim_2d_window):
            p, t = pred.clone().requires_grad_(), target.clone().requires_grad_()
            value = fn(p, t)
            values.append(value.detach())
            grads.append(torch.autograd.grad(value, (p, t)))
        torch.testing.assert_close(values[0], values[1], rtol=1e-6, atol=1e-6)
        for got, want in zip(*grads):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


def test_ssim_gradient_passes_a_finite_difference_check():
    from render3d.metrics import _MeanSSIM, _gaussian_taps

    g = torch.Generator().manual_seed(2)
    x, y = (torch.rand(1, 2, 14, 13, dtype=torch.float64, generator=g).requires_grad_() for _ in range(2))
    taps = _gaussian_taps(11, 1.5, "cpu").double()
    assert torch.autograd.gradcheck(lambda a, b: _MeanSSIM.apply(a, b, taps), (x, y))


def test_ssim_agrees_with_scikit_image():
    from skimage.metrics import structural_similarity

    pred, target = _pair((40, 48, 3), seed=1)
    expected = structural_similarity(target.numpy(), pred.numpy(), channel_axis=-1, data_range=1.0, gaussian_weights=True,
                                     sigma=1.5, use_sample_covariance=False)
    assert abs(float(ssim(pred, target)) - expected) < 1e-5
    assert float(ssim(target, target)) == 1.0
