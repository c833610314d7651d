"""The numba CPU kernels of splats (rasteriser, projection, SH colours) against their torch reference, and the fallbacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

pytest.importorskip("numba")

from render3d.cpu_kernels import ENV_VAR, kernels_enabled  # noqa: E402
from render3d.splat.rasterize_numba import TILE, rasterize_to_pixels_numba  # noqa: E402
from render3d.splat.rasterize_pairs import _pair_alpha, pixel_pairs, rasterize_to_pixels  # noqa: E402
from render3d.splat.project import covariance_3d, project_gaussians  # noqa: E402
from render3d.splat.project_numba import project_gaussians_numba, sh_colors_numba  # noqa: E402
from render3d.splat.render import rasterize, sh_colors  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def splats_2d(n: int, width: int, height: int, channels: int, seed: int, opacity=(0.0, 1.0), size=(0.5, 6.0),
              area=None):
    """Random screen-space Gaussians, round to needle-thin, whose last feature channel is the depth.

    ``area`` (x0, y0, x1, y1) is where the centres fall (default: the image and a margin around it,
    so some Gaussians straddle or miss the image); about 10% get zero radii (culled, e.g. behind
    the camera) and about 10% are centred on tile borders.
    """
    g = torch.Generator().manual_seed(seed)
    x0, y0, x1, y1 = area or (-8.0, -8.0, width + 8.0, height + 8.0)
    means2d = torch.stack([x0 + (x1 - x0) * torch.rand(n, generator=g), y0 + (y1 - y0) * torch.rand(n, generator=g)], -1)
    on_border = torch.rand(n, generator=g) < 0.1
    means2d[on_border] = torch.round(means2d[on_border] / TILE) * TILE + 0.3 * torch.randn(int(on_border.sum()), 2, generator=g)
    sigma = size[0] + (size[1] - size[0]) * torch.rand(n, 2, generator=g)  # std devs along the two axes
    sigma[torch.rand(n, generator=g) < 0.2, 1] = 0.3  # needles
    angle = torch.rand(n, generator=g) * torch.pi
    rot = torch.stack([torch.cos(angle), -torch.sin(angle), torch.sin(angle), torch.cos(angle)], -1).reshape(n, 2, 2)
    cov = rot @ torch.diag_embed(sigma**2) @ rot.transpose(1, 2) + 0.3 * torch.eye(2)
    inv = torch.linalg.inv(cov)
    conics = torch.stack([inv[:, 0, 0], inv[:, 0, 1], inv[:, 1, 1]], -1)
    opacities = opacity[0] + (opacity[1] - opacity[0]) * torch.rand(n, generator=g)
    depths = 0.5 + 10 * torch.rand(n, generator=g)
    feats = torch.cat([torch.rand(n, channels - 1, generator=g), depths[:, None]], -1)
    radii = torch.ceil(3.33 * torch.sqrt(torch.stack([cov[:, 0, 0], cov[:, 1, 1]], -1))).int()
    radii[torch.rand(n, generator=g) < 0.1] = 0
    return means2d, conics, feats, opacities, depths, radii


SCENES = {  # name: (n, width, height, channels, extra arguments of splats_2d)
    "translucent": (300, 61, 47, 4, {}),
    "opaque-early-stop": (500, 40, 33, 4, dict(opacity=(0.9, 1.0), size=(2.0, 8.0))),
    "empty-tiles": (150, 70, 50, 7, dict(area=(0.0, 0.0, 20.0, 50.0))),
    "large": (60, 48, 40, 1, dict(size=(6.0, 20.0))),
    "odd-17x9": (40, 17, 9, 4, {}),
    "1x1": (12, 1, 1, 7, dict(area=(-3.0, -3.0, 4.0, 4.0))),
    "eight-channels": (200, 45, 38, 8, dict(size=(1.0, 10.0))),
}


def close(got: torch.Tensor, want: torch.Tensor, name: str) -> None:
    """Within 1e-4 relative, with an absolute floor of 1e-4 of the tensor's largest value."""
    atol = 1e-4 * float(want.detach().abs().max()) + 1e-7 if want.numel() else 0.0
    torch.testing.assert_close(got, want, rtol=1e-4, atol=atol, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("scene", list(SCENES))
def test_compiled_matches_the_torch_rasterizer(scene):
    n, width, height, channels, extra = SCENES[scene]
    means2d, conics, feats, opacities, depths, radii = splats_2d(n, width, height, channels, seed=len(scene), **extra)
    outputs, grads = [], []
    for fn in (rasterize_to_pixels_numba, rasterize_to_pixels):
        inputs = [t.clone().requires_grad_() for t in (means2d, conics, feats, opacities)]
        img, alpha = fn(*inputs, depths, radii, width, height)
        g = torch.Generator().manual_seed(1)
        w_img, w_alpha = torch.randn(img.shape, generator=g), torch.randn(alpha.shape, generator=g)
        grads.append(torch.autograd.grad((img * w_img).sum() + (alpha * w_alpha).sum(), inputs))
        outputs.append((img, alpha))
    (img, alpha), (ref_img, ref_alpha) = outputs
    assert img.shape == (height, width, channels) and alpha.shape == (height, width, 1)
    close(img[..., :-1], ref_img[..., :-1], "colours")
    close(img[..., -1], ref_img[..., -1], "depth channel")
    close(alpha, ref_alpha, "alpha")
    for name, got, want in zip(("means2d", "conics", "feats", "opacities"), *grads):
        close(got, want, name)
    assert alpha.max() > 0.2
    if scene == "opaque-early-stop":  # pixels really stop early
        pairs = pixel_pairs(means2d, conics, opacities, depths, radii, width, height)
        assert not bool(_pair_alpha(pairs, width, means2d, conics, opacities)["kept"].all())
    if scene == "empty-tiles":
        assert alpha[:, 3 * TILE:].abs().max() == 0


def test_more_channels_than_the_kernels_take_fall_back_to_the_torch_rasterizer():
    means2d, conics, feats, opacities, depths, radii = splats_2d(80, 30, 20, 9, seed=3)
    with pytest.raises(ValueError, match="at most 8 feature channels"):
        rasterize_to_pixels_numba(means2d, conics, feats, opacities, depths, radii, 30, 20)
    from render3d.splat.kernels import splat_kernels

    kernels = splat_kernels(means2d)
    assert kernels.name == "compiled"
    img, alpha = kernels.composite(means2d, conics, feats, opacities, depths, radii, 30, 20)
    ref_img, ref_alpha = rasterize_to_pixels(means2d, conics, feats, opacities, depths, radii, 30, 20)
    assert img.shape == (20, 30, 9)
    close(img, ref_img, "colours")
    close(alpha, ref_alpha, "alpha")


def test_the_depth_order_is_a_stable_argsort():
    from render3d.splat.rasterize_numba import _depth_order

    g = torch.Generator().manual_seed(0)
    keys = torch.randn(5000, generator=g) * 10
    keys[100:600] = keys[2000:2500]  # ties
    keys[:3] = torch.tensor([0.0, -0.0, 1e-30])
    assert torch.equal(torch.from_numpy(_depth_order(keys.numpy())), torch.argsort(keys, stable=True))
    assert len(_depth_order(keys[:0].numpy())) == 0


def test_the_vectorized_exp_is_as_accurate_as_documented():
    """The kernels' polynomial exp(-sigma) (no libm call, so the pixel loops vectorise): within
    5e-9 of the true value wherever alpha can reach 1/255 (sigma <= 5.6), within 7e-6 up to 12,
    and under 1/255 from there on for every opacity."""
    import numba
    import numpy as np

    from render3d.splat.rasterize_numba import _exp_neg

    @numba.njit
    def exp_neg(s):
        return _exp_neg(s)

    sigma = np.linspace(0.0, 20.0, 40001).astype(np.float32)
    got = np.array([exp_neg(s) for s in sigma], np.float64)
    want = np.exp(-sigma.astype(np.float64))
    relative = np.abs(got / want - 1)
    assert relative[sigma <= 5.6].max() < 5e-9 + 6e-8  # plus float32's own rounding of the result
    assert relative[sigma <= 12.0].max() < 7e-6 + 6e-8
    assert got[sigma > 12.0].max() < 1 / 255


def test_scratch_slots_cover_a_tile_once_in_column_blocks():
    """The kernels hold a tile as 8-pixel-wide column blocks: slot and pixel map both ways, and a
    block's rows are consecutive slots."""
    import numba

    from render3d.splat.rasterize_numba import _block_runs, _slot, _slot_pixel

    @numba.njit
    def slot(row, col):
        return _slot(row, col)

    @numba.njit
    def pixel(p):
        return _slot_pixel(p)

    @numba.njit
    def runs(cx0, cx1, ry0, ry1):
        return _block_runs(cx0, cx1, ry0, ry1)

    slots = [slot(row, col) for row in range(TILE) for col in range(TILE)]
    assert sorted(slots) == list(range(TILE * TILE))
    assert all(pixel(slot(row, col)) == (row, col) for row in range(TILE) for col in range(TILE))
    first, last, s0, s1 = runs(3, 6, 2, 5)  # columns 3-5 lie in block 0
    assert (first, last) == (0, 1) and [pixel(p) for p in range(s0, s1)] == [(r, c) for r in range(2, 5) for c in range(8)]
    first, last, s0, s1 = runs(7, 9, 0, 1)  # columns 7-8 straddle both blocks
    assert (first, last) == (0, 2)


def test_nothing_drawable_gives_zeros_and_zero_gradients():
    means2d = torch.tensor([[-50.0, -50.0], [5.0, 5.0]], requires_grad=True)
    conics = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 1.0]])
    radii = torch.tensor([[3, 3], [0, 0]])  # off screen, and culled
    img, alpha = rasterize_to_pixels_numba(means2d, conics, torch.ones(2, 3), torch.ones(2), torch.ones(2), radii, 16, 12)
    assert img.shape == (12, 16, 3) and alpha.abs().max() == 0
    (grad,) = torch.autograd.grad(img.sum() + alpha.sum(), means2d)
    assert grad.abs().max() == 0


def _scene_3d(n: int = 300, seed: int = 0):
    """Gaussians around the origin seen by two cameras; some lie behind the first camera."""
    from render3d.cameras import intrinsics_matrix, look_at

    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g) * 0.6
    means[: n // 10] = torch.tensor([0.3, -3.0, 0.8]) + torch.randn(n // 10, 3, generator=g) * 0.3  # around camera 0
    params = {
        "means": means,
        "quats": torch.randn(n, 4, generator=g),
        "scales": torch.rand(n, 3, generator=g) * 0.08 + 0.02,
        "opacities": torch.rand(n, generator=g),
        "coeffs": torch.randn(n, 16, 3, generator=g) * 0.3,
    }
    eyes = [torch.tensor([0.3, -3.0, 0.8]), torch.tensor([2.5, 1.0, -1.0])]
    c2w = torch.stack([look_at(e, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0])) for e in eyes])
    return params, torch.linalg.inv(c2w), intrinsics_matrix(70.0, 72.0, 35.0, 26.0)[None].expand(2, 3, 3)


@pytest.mark.parametrize("antialiased", [False, True])
def test_compiled_projection_matches_the_torch_projection(antialiased):
    """Values and gradients (means, quaternions, scales) of the numba projection against project_gaussians,
    with the antialiased mode's opacity compensations."""
    params, viewmats, Ks = _scene_3d(600)
    params["quats"][:5] *= 1e-3  # far from unit length: the normalisation's gradient matters
    params["scales"][-100:] *= 0.02  # smaller than a pixel: the compensation is well below 1
    results = []
    for compiled in (True, False):
        inputs = {k: params[k].clone().requires_grad_() for k in ("means", "quats", "scales")}
        if compiled:
            proj = project_gaussians_numba(*inputs.values(), viewmats, Ks, 70, 53, antialiased=antialiased)
        else:
            proj = project_gaussians(inputs["means"], covariance_3d(inputs["quats"], inputs["scales"]), viewmats, Ks, 70, 53,
                                     antialiased=antialiased)
        g = torch.Generator().manual_seed(2)
        drawn = (proj.radii > 0).all(-1)
        outputs = (proj.means2d, proj.conics, proj.depths) + ((proj.compensations,) if antialiased else ())
        loss = sum((t * torch.randn(t.shape, generator=g) * (drawn[..., None] if t.dim() == 3 else drawn)).sum()
                   for t in outputs)
        results.append((proj, dict(zip(inputs, torch.autograd.grad(loss, list(inputs.values()))))))
    (proj, grads), (ref, ref_grads) = results
    assert torch.equal(proj.radii, ref.radii) and (ref.radii == 0).all(-1).any() and (ref.radii > 0).all(-1).any()
    # some drawn Gaussians lie beyond the Jacobian's clamp, |t_x / t_z| > (70 - 35) / 70 + 0.15 (1.3x the field
    # of view): that gradient branch runs too
    t_cam = (viewmats[:, None, :3, :3] @ params["means"][None, :, :, None])[..., 0] + viewmats[:, None, :3, 3]
    assert ((t_cam[..., 0] / t_cam[..., 2]).abs() > 0.65)[(ref.radii > 0).all(-1)].any()
    drawn = (ref.radii > 0).all(-1)
    for name in ("means2d", "conics", "depths") + (("compensations",) if antialiased else ()):
        close(getattr(proj, name)[drawn], getattr(ref, name)[drawn], name)
    if antialiased:
        assert ref.compensations[drawn].min() < 0.5 and ref.compensations[drawn].max() <= 1.0
    else:
        assert proj.compensations is None and ref.compensations is None
    for name in ("means", "quats", "scales"):
        close(grads[name], ref_grads[name], f"d/d{name}")


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_compiled_sh_colors_match_the_torch_colors(degree):
    params, viewmats, _ = _scene_3d(400)
    centers = torch.linalg.inv(viewmats)[:, :3, 3]
    results = []
    for fn in (sh_colors_numba, sh_colors):
        means, coeffs = params["means"].clone().requires_grad_(), params["coeffs"].clone().requires_grad_()
        colors = fn(means, coeffs, degree, centers)
        weights = torch.randn(colors.shape, generator=torch.Generator().manual_seed(3))
        grads = torch.autograd.grad((colors * weights).sum(), [means, coeffs], allow_unused=True)
        results.append((colors, [torch.zeros_like(t) if g is None else g for t, g in zip((means, coeffs), grads)]))
    (colors, grads), (ref, ref_grads) = results
    if degree == 3:
        assert (ref == 0).any()  # clamped colours pass no gradient
    close(colors, ref, "colours")
    close(grads[0], ref_grads[0], "d/dmeans")
    close(grads[1], ref_grads[1], "d/dcoeffs")


@pytest.mark.parametrize("antialiased", [False, True])
def test_torch_backend_end_to_end_matches_the_fallback(monkeypatch, antialiased):
    from render3d.splat.render import RasterSettings

    params, viewmats, Ks = _scene_3d()
    results = {}
    for mode in ("1", "0"):
        monkeypatch.setenv(ENV_VAR, mode)
        assert kernels_enabled(params["means"]) == (mode == "1")
        inputs = {k: v.clone().requires_grad_() for k, v in params.items()}
        colors, depth, alphas, info = rasterize("torch", *inputs.values(), 3, viewmats, Ks, 70, 53,
                                                RasterSettings(antialiased=antialiased),
                                                background=torch.tensor([0.2, 0.3, 0.4]))
        loss = colors.square().sum() + (depth * alphas).sum() + alphas.sum()
        results[mode] = (colors, depth, alphas, dict(zip(inputs, torch.autograd.grad(loss, list(inputs.values())))))
    (colors, depth, alphas, grads), (ref_colors, ref_depth, ref_alphas, ref_grads) = results["1"], results["0"]
    assert (info["radii"][0] == 0).any() and alphas.max() > 0.5
    close(colors, ref_colors, "colors")
    close(depth * alphas, ref_depth * ref_alphas, "depth")
    close(alphas, ref_alphas, "alphas")
    for name in ("means", "quats", "scales", "opacities", "coeffs"):
        close(grads[name], ref_grads[name], name)


def _python(code: str, env: dict[str, str], timeout: float = 300) -> str:
    """Run ``code`` in a fresh interpreter from the repository root; its stdout."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env={**os.environ, **env},
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_trains_with_the_fallback_forced(tiny_scene, tmp_path, monkeypatch):
    from render3d.splat.method import SplatConfig
    from render3d.train import TrainConfig, Trainer

    monkeypatch.setenv(ENV_VAR, "0")
    assert not kernels_enabled()
    config = TrainConfig(steps=5, out=str(tmp_path / "run"), save_every=0, progress=False, backend="torch")
    trainer = Trainer(config, SplatConfig(init_points=300, sh_degree=1), scene=tiny_scene)
    stats = [trainer.step_once() for _ in range(5)]
    assert all(torch.isfinite(torch.tensor(list(step.values()))).all() for step in stats)


def test_imports_and_trains_where_numba_cannot_be_imported():
    """Splats and the hash NeRF both fall back to their torch code."""
    code = """
        import sys
        sys.modules["numba"] = None  # any "import numba" now raises ImportError
        import tempfile
        from render3d.datasets import load_scene
        from render3d.datasets.synthetic import generate_scene
        from render3d.cpu_kernels import kernels_enabled
        from render3d.nerf.method import NerfConfig
        from render3d.splat.method import SplatConfig
        from render3d.train import TrainConfig, Trainer

        assert not kernels_enabled()
        with tempfile.TemporaryDirectory() as tmp:
            scene = load_scene(generate_scene(f"{tmp}/scene", resolution=16, n_train=2, n_val=1, n_test=1))
            for method, method_config in (("splat", SplatConfig(init_points=200, sh_degree=1)),
                                          ("nerf", NerfConfig(target_samples=2048, initial_rays=64))):
                config = TrainConfig(method=method, steps=3, out=f"{tmp}/{method}", save_every=0, progress=False, backend="torch")
                trainer = Trainer(config, method_config, scene=scene)
                for _ in range(3):
                    trainer.step_once()
                print("trained", method)
    """
    assert _python(code, {}).split("\n")[:2] == ["trained splat", "trained nerf"]


FIRST_CALL = """
    import json, time
    import torch  # not timed: the same in both processes
    start = time.perf_counter()
    from render3d.splat.rasterize_numba import rasterize_to_pixels_numba
    means2d = torch.tensor([[4.0, 5.0]], requires_grad=True)
    img, alpha = rasterize_to_pixels_numba(means2d, torch.tensor([[0.5, 0.0, 0.5]]), torch.ones(1, 3),
                                           torch.full((1,), 0.8), torch.ones(1), torch.tensor([[6, 6]]), 9, 8)
    (img.sum() + alpha.sum()).backward()
    print(json.dumps({"seconds": time.perf_counter() - start, "grad": means2d.grad.abs().sum().item()}))
"""


@pytest.mark.slow
def test_compiled_code_is_cached_on_disk(tmp_path):
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "numba-cache"), ENV_VAR: "1"}
    cold = json.loads(_python(FIRST_CALL, env))
    warm = json.loads(_python(FIRST_CALL, env))
    assert cold["grad"] > 0 and warm["grad"] == cold["grad"]
    assert any((tmp_path / "numba-cache").rglob("*.nbi"))
    assert warm["seconds"] < 0.5 * cold["seconds"], (cold, warm)


def test_no_writable_cache_dir_still_works():
    """Where numba finds no writable cache dir anywhere, the kernels compile in memory instead."""
    code = """
        import numba.core.caching as caching
        def unwritable(self):
            raise PermissionError("read-only")
        caching._CacheLocator.ensure_cache_path = unwritable
        import numpy as np
        from render3d.splat import rasterize_numba as rn
        assert type(rn._bin_tiles._cache).__name__ == "NullCache"
        packed = np.array([[4, 5, 1, 0, 1, 1]], np.float32)
        boxes, offsets, ranks = rn._bin_tiles(packed, rn._levels(packed), np.array([[3, 3]], np.float32), 40, 20)
        print(offsets.tolist())
    """
    assert _python(code, {}).strip() == "[0, 1, 1, 1, 1, 1, 1]"


def test_the_kernel_setting_overrides_the_environment(monkeypatch, tiny_scene_dir):
    """``render3d --cpu-kernels`` / set_kernel_choice decide; RENDER3D_CPU_KERNELS only gives the default."""
    from render3d.cli import main
    from render3d.cpu_kernels import kernel_choice, set_kernel_choice
    from render3d.errors import Render3DError
    from render3d.splat.kernels import splat_kernels

    example = torch.zeros(3)
    try:
        monkeypatch.setenv(ENV_VAR, "1")
        set_kernel_choice("torch")
        assert not kernels_enabled(example) and splat_kernels(example).name == "torch"
        monkeypatch.setenv(ENV_VAR, "0")
        set_kernel_choice("compiled")
        assert kernels_enabled(example) and splat_kernels(example).name == "compiled"
        set_kernel_choice(None)
        assert kernel_choice() == "torch"  # the environment again
        with pytest.raises(Render3DError, match="--cpu-kernels 'fast' is not known"):
            set_kernel_choice("fast")
        assert main(["--cpu-kernels", "compiled", "info", str(tiny_scene_dir)]) == 0
        assert kernel_choice() == "compiled" and os.environ[ENV_VAR] == "1"  # worker processes inherit it
    finally:
        set_kernel_choice(None)
