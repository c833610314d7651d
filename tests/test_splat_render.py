"""The torch splat backend against independent references (and gsplat's CUDA kernels on a GPU)."""

from __future__ import annotations

import math

import pytest
import torch

from render3d.cameras import intrinsics_matrix, look_at
from render3d.splat.project import covariance_3d, project_gaussians
from render3d.splat.rasterize_pairs import ALPHA_MAX, ALPHA_MIN, TRANSMITTANCE_MIN, rasterize_to_pixels
from render3d.splat.render import RasterSettings, rasterize
from render3d.splat.sh import eval_sh
from render3d.splat.strategies import relocation_torch


def brute_force_composite(means2d, conics, colors, opacities, depths, width, height):
    """Every pixel against every Gaussian, sorted by depth, with plain autograd (the reference)."""
    order = torch.argsort(depths)
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    px, py = xs.reshape(-1, 1), ys.reshape(-1, 1)
    m, c, col, o = means2d[order], conics[order], colors[order], opacities[order]
    dx, dy = px - m[:, 0], py - m[:, 1]
    sigma = 0.5 * (c[:, 0] * dx * dx + c[:, 2] * dy * dy) + c[:, 1] * dx * dy
    alpha = (o * torch.exp(-sigma)).clamp(max=ALPHA_MAX)
    alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_MIN), alpha, torch.zeros_like(alpha))
    trans = torch.cumprod(1 - alpha, dim=1)
    trans_excl = torch.cat([torch.ones_like(trans[:, :1]), trans[:, :-1]], dim=1)
    weight = alpha * trans_excl * (trans > TRANSMITTANCE_MIN)
    return (weight @ col).reshape(height, width, -1), weight.sum(1).reshape(height, width, 1)


def random_splats_2d(n: int, width: int, height: int, opacity_range=(0.0, 1.0), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    means2d = torch.rand(n, 2, generator=g) * torch.tensor([width, height])
    L = torch.randn(n, 2, 2, generator=g) * 0.8
    cov = L @ L.transpose(1, 2) + 1.5 * torch.eye(2)
    inv = torch.linalg.inv(cov)
    conics = torch.stack([inv[:, 0, 0], inv[:, 0, 1], inv[:, 1, 1]], -1)
    lo, hi = opacity_range
    opacities = lo + (hi - lo) * torch.rand(n, generator=g)
    colors = torch.rand(n, 4, generator=g)
    depths = torch.rand(n, generator=g)
    radii = torch.ceil(3.33 * torch.sqrt(torch.stack([cov[:, 0, 0], cov[:, 1, 1]], -1))).int()
    return means2d, conics, colors, opacities, depths, radii


@pytest.mark.parametrize("opacity_range", [(0.0, 1.0), (0.9, 1.0)], ids=["translucent", "opaque-early-stop"])
def test_rasterizer_matches_brute_force_values_and_gradients(opacity_range):
    width, height = 37, 29
    means2d, conics, colors, opacities, depths, radii = random_splats_2d(80, width, height, opacity_range)
    inputs = [t.clone().requires_grad_() for t in (means2d, conics, colors, opacities)]
    img, alpha = rasterize_to_pixels(*inputs, depths, radii, width, height)
    ref_inputs = [t.clone().requires_grad_() for t in (means2d, conics, colors, opacities)]
    ref_img, ref_alpha = brute_force_composite(*ref_inputs, depths, width, height)
    torch.testing.assert_close(img, ref_img, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alpha, ref_alpha, atol=1e-5, rtol=1e-5)
    if opacity_range[0] > 0.5:
        assert (1 - alpha).min() < 1e-3  # some pixels really do stop early

    g = torch.Generator().manual_seed(1)
    w_img, w_alpha = torch.randn(img.shape, generator=g), torch.randn(alpha.shape, generator=g)
    grads = torch.autograd.grad((img * w_img).sum() + (alpha * w_alpha).sum(), inputs)
    ref_grads = torch.autograd.grad((ref_img * w_img).sum() + (ref_alpha * w_alpha).sum(), ref_inputs)
    for name, got, want in zip(("means2d", "conics", "colors", "opacities"), grads, ref_grads):
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4, msg=lambda m: f"{name}: {m}")


def test_empty_and_offscreen_gaussians_render_background():
    width, height = 16, 12
    means2d = torch.tensor([[-50.0, -50.0]])
    conics = torch.tensor([[1.0, 0.0, 1.0]])
    img, alpha = rasterize_to_pixels(means2d, conics, torch.ones(1, 3), torch.ones(1), torch.ones(1), torch.tensor([[0, 0]]), width, height)
    assert img.shape == (height, width, 3) and alpha.abs().max() == 0


def _scene(n: int = 200, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g) * 0.5
    quats = torch.randn(n, 4, generator=g)
    scales = torch.rand(n, 3, generator=g) * 0.08 + 0.02
    opacities = torch.rand(n, generator=g)
    coeffs = torch.randn(n, 16, 3, generator=g) * 0.3
    K = intrinsics_matrix(70.0, 72.0, 31.0, 25.0)[None]
    c2w = torch.stack([
        look_at(torch.tensor([0.3, -3.0, 0.8]), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0])),
        look_at(torch.tensor([2.5, 1.0, -1.0]), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0])),
    ])
    return means, quats, scales, opacities, coeffs, torch.linalg.inv(c2w), K.expand(2, 3, 3)


def test_projection_matches_gsplat_reference():
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

    means, quats, scales, _, _, viewmats, Ks = _scene()
    covars = covariance_3d(quats, scales)
    ref_covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    torch.testing.assert_close(covars, ref_covars, atol=1e-6, rtol=1e-5)
    proj = project_gaussians(means, covars, viewmats, Ks, 64, 50)
    radii, means2d, depths, conics, _ = _fully_fused_projection(means, covars, viewmats, Ks, 64, 50)
    torch.testing.assert_close(proj.means2d, means2d)
    torch.testing.assert_close(proj.depths, depths)
    torch.testing.assert_close(proj.conics, conics, atol=1e-5, rtol=1e-4)
    assert torch.equal(proj.radii, radii)
    assert (proj.radii > 0).any() and (proj.radii == 0).any()


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_spherical_harmonics_match_gsplat_reference(degree):
    from gsplat.cuda._torch_impl import _spherical_harmonics

    g = torch.Generator().manual_seed(degree)
    dirs = torch.randn(500, 3, generator=g)
    coeffs = torch.randn(500, 16, 3, generator=g)
    torch.testing.assert_close(eval_sh(degree, dirs, coeffs), _spherical_harmonics(degree, dirs, coeffs), atol=1e-5, rtol=1e-5)


def test_full_render_matches_brute_force_of_projected_gaussians():
    """End to end (projection + SH + compositing) against the brute-force compositor."""
    means, quats, scales, opacities, coeffs, viewmats, Ks = _scene()
    colors, depth, alphas, info = rasterize("torch", means, quats, scales, opacities, coeffs, 3, viewmats, Ks, 64, 50)
    proj = project_gaussians(means, covariance_3d(quats, scales), viewmats, Ks, 64, 50)
    for c in range(2):
        visible = (proj.radii[c] > 0).all(-1)
        from render3d.splat.render import sh_colors

        rgb = sh_colors(means, coeffs, 3, torch.linalg.inv(viewmats)[:, :3, 3])[c]
        ref, ref_alpha = brute_force_composite(
            proj.means2d[c][visible], proj.conics[c][visible], rgb[visible], opacities[visible], proj.depths[c][visible], 64, 50
        )
        torch.testing.assert_close(colors[c], ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(alphas[c], ref_alpha, atol=1e-5, rtol=1e-5)
    assert info["means2d"].shape == (2, 200, 2) and info["radii"].shape == (2, 200, 2)
    assert alphas.max() > 0.5


def test_relocation_matches_the_mcmc_formula():
    from gsplat.strategy import MCMCStrategy

    binoms = MCMCStrategy().initialize_state()["binoms"]
    opacities = torch.tensor([0.3, 0.9, 0.5, 0.05])
    scales = torch.rand(4, 3) + 0.1
    ratios = torch.tensor([1, 2, 3, 7])
    new_o, new_s = relocation_torch(opacities, scales, ratios, binoms)
    for i in range(4):
        n, o = int(ratios[i]), float(opacities[i])
        o_new = 1 - (1 - o) ** (1 / n)
        denom = sum(math.comb(j - 1, k) * (-1) ** k / math.sqrt(k + 1) * o_new ** (k + 1) for j in range(1, n + 1) for k in range(j))
        assert new_o[i].item() == pytest.approx(o_new, rel=1e-5)
        torch.testing.assert_close(new_s[i], scales[i] * o / denom, rtol=1e-4, atol=1e-6)
    # one copy changes nothing
    assert new_o[0].item() == pytest.approx(0.3) and torch.allclose(new_s[0], scales[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the cuda backend (gsplat kernels) needs a CUDA GPU")
@pytest.mark.parametrize("packed,antialiased", [(False, False), (True, False), (True, True)],
                         ids=["unpacked", "packed", "antialiased"])
def test_torch_and_cuda_backends_agree(packed, antialiased):
    means, quats, scales, opacities, coeffs, viewmats, Ks = _scene(2000)
    outputs = {}
    for backend, device in (("torch", "cpu"), ("cuda", "cuda")):
        leaves = [t.to(device).clone().requires_grad_() for t in (means, quats, scales, opacities, coeffs)]
        colors, depth, alphas, _ = rasterize(
            backend, *leaves, 3, viewmats.to(device), Ks.to(device), 64, 50, RasterSettings(packed=packed, antialiased=antialiased)
        )
        g = torch.Generator().manual_seed(0)
        w = torch.randn(colors.shape, generator=g).to(device)
        grads = torch.autograd.grad((colors * w).sum() + alphas.sum(), leaves)
        outputs[backend] = [colors.detach().cpu(), alphas.detach().cpu()] + [x.cpu() for x in grads]
    names = ["colors", "alphas", "means", "quats", "scales", "opacities", "coeffs"]
    for name, a, b in zip(names, outputs["torch"], outputs["cuda"]):
        scale = b.abs().max().clamp_min(1e-6)
        assert (a - b).abs().max() / scale < 2e-3, name


def test_normals_are_each_gaussians_shortest_axis_facing_the_camera():
    """Two flat Gaussians: one in a plane facing the camera, one turned 45 degrees; normals render as their axes."""
    from render3d.splat.model import GaussianSplats, init_params

    params = init_params(torch.tensor([[-0.4, 0.0, 0.0], [0.4, 0.0, 0.0]]), torch.full((2, 3), 0.5), 0, init_opacity=0.99)
    with torch.no_grad():
        params["scales"].copy_(torch.log(torch.tensor([[0.25, 0.25, 0.005], [0.005, 0.25, 0.25]])))  # shortest axes: z, then x
        params["quats"][1] = torch.tensor([math.cos(math.pi / 8), 0.0, math.sin(math.pi / 8), 0.0])  # x turned 45 deg about y
    model = GaussianSplats(params, 0)
    eye = torch.tensor([0.0, 0.0, -3.0])
    c2w = look_at(eye, torch.zeros(3), torch.tensor([0.0, -1.0, 0.0]))
    cam = __import__("render3d.cameras", fromlist=["Cameras"]).Cameras(intrinsics_matrix(40.0, 40.0, 24.0, 24.0), c2w, 48, 48)
    normals = model.render(cam, mode="normal").extras["normal"][0]
    facing = normals[24, 19]  # the left Gaussian's centre (x = -0.4 at depth 3 -> column 18.7)
    torch.testing.assert_close(facing, torch.tensor([0.0, 0.0, -1.0]), atol=1e-4, rtol=0)  # +z flipped to face the camera
    turned = normals[24, 29]  # the right one's centre (column 29.3)
    half = math.sqrt(0.5)
    torch.testing.assert_close(turned, torch.tensor([half, 0.0, -half]), atol=1e-2, rtol=0)  # a faint tail of the other blends in
    assert "normal" not in model.render(cam, mode="rgb").extras  # computed only when asked for


def test_the_gsplat_adaptations_refuse_another_gsplat_version(monkeypatch):
    """gsplat_compat patches gsplat internals: on any other gsplat release it stops with one line naming the fix."""
    import gsplat

    from render3d.errors import Render3DError
    from render3d.splat.gsplat_compat import GSPLAT_VERSION, require_gsplat

    require_gsplat()  # the pinned release is installed
    monkeypatch.setattr(gsplat, "__version__", "9.9.9")
    with pytest.raises(Render3DError, match=f"gsplat 9.9.9 is installed: pip install gsplat=={GSPLAT_VERSION}"):
        require_gsplat()
