"""NeRF: hash encoding against a naive reference, samplers, training, resume and mesh extraction."""

from __future__ import annotations

import json
import math

import pytest
import torch

from helpers import resumed_matches_uninterrupted
from torch import nn

from render3d.cameras import Cameras, intrinsics_matrix, look_at
from render3d.cpu_kernels import ENV_VAR, kernels_enabled
from render3d.nerf.encoding import HashEncoding, PositionalEncoding
from render3d.nerf.field import SceneBox, contract
from render3d.nerf.mesh import extract_mesh
from render3d.nerf.estimators import GridEstimator
from render3d.nerf.method import NerfConfig, VanillaNerfConfig
from render3d.nerf.model import NerfModel
from render3d.nerf.render import render_dense
from render3d.nerf.sampler import OccupancyGrid, march_uniform, sample_pdf
from render3d.protocol import Previewable
from render3d.train import TrainConfig, Trainer


def naive_hash_encoding(enc: HashEncoding, x: torch.Tensor) -> torch.Tensor:
    """Point by point, corner by corner, with Instant-NGP's uint32 hash."""
    out = torch.zeros(len(x), enc.levels * enc.features)
    for level in range(enc.levels):
        res, size, offset = int(enc.resolutions[level]), int(enc.sizes[level]), int(enc.offsets[level])
        for i, p in enumerate(x):
            scaled = p * res
            cell = torch.floor(scaled)
            frac = scaled - cell
            acc = torch.zeros(enc.features)
            for dx in (0, 1):
                for dy in (0, 1):
                    for dz in (0, 1):
                        cx, cy, cz = int(cell[0]) + dx, int(cell[1]) + dy, int(cell[2]) + dz
                        w = (frac[0] if dx else 1 - frac[0]) * (frac[1] if dy else 1 - frac[1]) * (frac[2] if dz else 1 - frac[2])
                        if (res + 1) ** 3 <= enc.table_size:
                            index = cx + (res + 1) * (cy + (res + 1) * cz)
                        else:
                            index = ((cx * 1) ^ (cy * 2654435761) ^ (cz * 805459861)) % 2**32 % size
                        acc += w * enc.embeddings[offset + index]
            out[i, level * enc.features : (level + 1) * enc.features] = acc
    return out


def test_hash_encoding_matches_naive_reference():
    """The path the CPU takes (the compiled kernels where numba imports; the torch path is checked against them below)."""
    torch.manual_seed(0)
    enc = HashEncoding(levels=6, features=2, log2_table_size=12, base_resolution=4, max_resolution=128)
    assert enc.dense.any() and (~enc.dense).any()  # both dense and hashed levels are exercised
    nn.init.normal_(enc.embeddings)
    x = torch.rand(40, 3)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), naive_hash_encoding(enc, x), atol=1e-5, rtol=1e-5)
    # the hand-written backward (bincount) against autograd through the naive reference
    weights = torch.randn(40, enc.output_dim)
    (grad,) = torch.autograd.grad((enc(x) * weights).sum(), enc.embeddings)
    (expected,) = torch.autograd.grad((naive_hash_encoding(enc, x) * weights).sum(), enc.embeddings)
    torch.testing.assert_close(grad, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("frequency_limit", [1.0, 0.4])
def test_compiled_hash_encoding_matches_the_torch_path(monkeypatch, frequency_limit):
    """The numba kernels against the torch code at the default NeRF's sizes, grid edges included,
    with all levels and with FreeNeRF's frequency annealing masking the finer ones."""
    pytest.importorskip("numba")
    torch.manual_seed(0)
    enc = HashEncoding(levels=12, features=2, log2_table_size=16, base_resolution=16, max_resolution=512)
    enc.frequency_limit = frequency_limit
    nn.init.uniform_(enc.embeddings, -1, 1)
    x = torch.rand(3000, 3)
    x[:8] = torch.tensor([[a, b, c] for a in (0.0, 1.0) for b in (0.0, 1.0) for c in (0.0, 1.0)])  # cube corners
    x[8:20, 0] = 1.0  # on a face of the unit cube
    weights = torch.randn(len(x), enc.output_dim)
    results = {}
    for kernels in ("1", "0"):
        monkeypatch.setenv(ENV_VAR, kernels)
        assert kernels_enabled(x) == (kernels == "1")
        out = enc(x)
        (grad,) = torch.autograd.grad((out * weights).sum(), enc.embeddings)
        results[kernels] = (out.detach(), grad)
    (out, grad), (ref_out, ref_grad) = results["1"], results["0"]
    torch.testing.assert_close(out, ref_out, rtol=1e-6, atol=1e-6)
    # the torch path sums the gradient in float64 (bincount), the kernels in float32
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-5 * float(ref_grad.abs().max()))


@pytest.mark.parametrize("kernels", ["1", "0"])
def test_hash_encoding_gradient_in_the_points_matches_the_naive_reference(monkeypatch, kernels):
    """The points' gradient (learned camera poses move them) of the compiled kernels and of the torch path against
    autograd through the naive reference, with dense and hashed levels, and with the table frozen."""
    if kernels == "1":
        pytest.importorskip("numba")
    monkeypatch.setenv(ENV_VAR, kernels)
    torch.manual_seed(0)
    enc = HashEncoding(levels=6, features=2, log2_table_size=12, base_resolution=4, max_resolution=128)
    nn.init.normal_(enc.embeddings)
    x = (0.05 + 0.9 * torch.rand(60, 3)).requires_grad_(True)
    weights = torch.randn(60, enc.output_dim)
    (grad,) = torch.autograd.grad((enc(x) * weights).sum(), x)
    (expected,) = torch.autograd.grad((naive_hash_encoding(enc, x) * weights).sum(), x)
    torch.testing.assert_close(grad, expected, atol=1e-3, rtol=1e-4)
    assert expected.abs().max() > 1.0  # a gradient that is not trivially zero
    enc.embeddings.requires_grad_(False)  # the table frozen (test-pose fitting): the points' gradient alone
    (frozen,) = torch.autograd.grad((enc(x) * weights).sum(), x)
    torch.testing.assert_close(frozen, grad)
    # points that need no gradient (training on given poses) leave the table's gradient as it was
    enc.embeddings.requires_grad_(True)
    (table_grad,) = torch.autograd.grad((enc(x.detach()) * weights).sum(), enc.embeddings)
    (expected_table,) = torch.autograd.grad((naive_hash_encoding(enc, x.detach()) * weights).sum(), enc.embeddings)
    torch.testing.assert_close(table_grad, expected_table, atol=1e-5, rtol=1e-5)


def test_hash_encoding_gradients_reach_only_touched_rows():
    enc = HashEncoding(levels=2, features=2, log2_table_size=10, base_resolution=4, max_resolution=8)
    enc(torch.tensor([[0.5, 0.5, 0.5]])).sum().backward()
    touched = (enc.embeddings.grad.abs().sum(-1) > 0).sum().item()
    assert 0 < touched <= 16  # at most 8 corners per level


def test_positional_encoding_shape_and_values():
    pe = PositionalEncoding(3)
    x = torch.tensor([[0.5, -1.0, 2.0]])
    y = pe(x)
    assert y.shape == (1, pe.output_dim()) == (1, 21)
    assert y[0, 3].item() == pytest.approx(math.sin(0.5))


def test_contraction_keeps_the_unit_ball_and_bounds_everything():
    inside = torch.tensor([[0.3, -0.2, 0.1]])
    torch.testing.assert_close(contract(inside), inside)
    far = torch.tensor([[1e6, 0.0, 0.0], [3.0, 4.0, 0.0]])
    out = contract(far)
    assert (out.norm(dim=-1) < 2.0).all() and out[0, 0] > 1.99


def test_uniform_marcher_respects_box_and_occupancy():
    box = SceneBox(torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), contracted=False)
    grid = OccupancyGrid(box, resolution=8)
    grid.binary[:4] = False  # the x < 0 half is empty
    origins = torch.tensor([[-3.0, 0.1, 0.1], [-3.0, 5.0, 0.0]])
    dirs = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    s = march_uniform(origins, dirs, 0.1, 10.0, 32, grid, stratified=False)
    mids = s.midpoints
    assert s.valid[1].sum() == 0  # misses the box
    assert (mids[0][s.valid[0]] > 2.0).all() and (mids[0][s.valid[0]] < 4.0).all()  # only x in (-1, 1), x > 0
    assert s.valid[0].sum() > 0


def test_contracted_marcher_spaces_samples_in_disparity_from_the_core():
    box = SceneBox(torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), contracted=True)
    grid = OccupancyGrid(box, resolution=8)
    origins = torch.tensor([[-4.0, 0.0, 0.0], [-4.0, 5.0, 0.0]])
    dirs = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    s = march_uniform(origins, dirs, 0.1, 50.0, 64, grid, stratified=False)
    assert s.t_starts[0, 0].item() == pytest.approx(3.0)  # enters the core at x = -1
    assert s.t_starts[1, 0].item() == pytest.approx(0.1)  # misses it: from near
    disparity = 1.0 / torch.cat([s.t_starts[0], s.t_ends[0, -1:]])
    steps = disparity[:-1] - disparity[1:]
    torch.testing.assert_close(steps, steps.mean().expand_as(steps), rtol=1e-3, atol=1e-6)
    assert ((s.midpoints[0] > 3.0) & (s.midpoints[0] < 5.0)).sum() >= 16  # the core gets a fair share


def test_pdf_sampling_follows_the_weights():
    bins = torch.linspace(0, 1, 11)[None]
    weights = torch.zeros(1, 10)
    weights[0, 7] = 1.0
    t = sample_pdf(bins, weights, 200, stratified=False)
    assert ((t > 0.7) & (t < 0.8)).float().mean() > 0.95


class SphereField(nn.Module):
    """A solid red sphere of radius 0.5: density 50 inside, 0 outside."""

    def __init__(self):
        super().__init__()
        self.box = SceneBox(torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), contracted=False)

    def density(self, x):
        return 50.0 * (x.norm(dim=-1) < 0.5).float()

    def forward(self, x, d):
        return torch.tensor([1.0, 0.0, 0.0]).expand(len(x), 3), self.density(x)


def test_volume_rendering_of_a_known_sphere():
    field = SphereField()
    origins = torch.tensor([[0.0, 0.0, -3.0], [0.0, 0.9, -3.0]])
    dirs = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    s = march_uniform(origins, dirs, 0.1, 6.0, 256, None, stratified=False)
    out, _ = render_dense(field, origins, dirs, s.t_starts, s.t_ends, s.valid, torch.ones(3))
    assert out.alpha[0].item() > 0.999 and out.alpha[1].item() < 1e-6
    torch.testing.assert_close(out.rgb[0], torch.tensor([1.0, 0.0, 0.0]), atol=1e-3, rtol=0)
    torch.testing.assert_close(out.rgb[1], torch.ones(3))  # the white background
    assert out.distance[0].item() == pytest.approx(2.5, abs=0.05)


@pytest.mark.parametrize("eps", [0.0, 1e-4])
def test_front_to_back_rendering_matches_the_training_path(eps):
    """Inference marches in segments and stops rays early; training renders densely after a density pass."""
    torch.manual_seed(0)
    box = SceneBox(torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), contracted=False)
    field = NerfModelFieldForTest(box)
    marcher = GridEstimator(OccupancyGrid(box, 16), 0.1, 6.0, 96, early_stop_eps=eps)
    origins = torch.tensor([0.0, 0.0, -3.0]).expand(300, 3) + 0.3 * torch.randn(300, 3)
    dirs = nn.functional.normalize(torch.tensor([0.0, 0.0, 1.0]) + 0.2 * torch.randn(300, 3), dim=-1)
    background = torch.tensor([0.2, 0.4, 0.6])
    with torch.enable_grad():
        dense = marcher.render(field, origins, dirs, background, stratified=False)
    with torch.no_grad():
        marched = marcher.render(field, origins, dirs, background, stratified=False)
    assert marched.alpha.max() > 0.99 and marched.alpha.min() < 0.5  # opaque and missed rays both present
    tolerance = 1e-5 if eps == 0 else 2e-3
    torch.testing.assert_close(marched.rgb, dense.rgb.detach(), atol=tolerance, rtol=0)
    torch.testing.assert_close(marched.alpha, dense.alpha.detach(), atol=tolerance, rtol=0)
    hit = dense.alpha[:, 0] > 0.5
    torch.testing.assert_close(marched.distance[hit], dense.distance.detach()[hit], atol=1e-3, rtol=1e-3)
    if eps > 0:  # samples behind the surface were never evaluated
        every = march_uniform(origins, dirs, 0.1, 6.0, 96, marcher.grid, stratified=False).valid.sum()
        assert marched.num_samples < 0.8 * every


def test_preview_marches_fewer_samples_and_stays_close():
    """The viewer's moving frames: half the samples, rays stopped at 1% transmittance, nearly the same picture."""
    torch.manual_seed(0)
    box = SceneBox(torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), contracted=False)
    field = NerfModelFieldForTest(box)
    model = NerfModel(field, GridEstimator(OccupancyGrid(box, 16), 0.1, 6.0, 96), torch.ones(3), render_chunk=4096)
    preview = model.estimator.preview()
    assert preview.grid is model.estimator.grid and preview.samples_per_ray == 48 and preview.early_stop_eps == 1e-2
    assert isinstance(model, Previewable)
    origins = torch.tensor([0.0, 0.0, -3.0]).expand(300, 3) + 0.3 * torch.randn(300, 3)
    dirs = nn.functional.normalize(torch.tensor([0.0, 0.0, 1.0]) + 0.2 * torch.randn(300, 3), dim=-1)
    with torch.no_grad():
        full = model.render_rays(origins, dirs)
        coarse = model.render_rays(origins, dirs, estimator=preview)
    assert full.alpha.max() > 0.99 and coarse.num_samples < 0.6 * full.num_samples
    torch.testing.assert_close(coarse.rgb, full.rgb, atol=0.05, rtol=0)
    camera = Cameras(intrinsics_matrix(20.0, 20.0, 12.0, 8.0), look_at(torch.tensor([0.0, -3.0, 0.5]), torch.zeros(3),
                                                                      torch.tensor([0.0, 0.0, 1.0])), 24, 16)
    assert model.render_preview(camera).rgb.shape == model.render(camera).rgb.shape == (1, 16, 24, 3)


class NerfModelFieldForTest(nn.Module):
    """A hash field made dense near the origin: a fuzzy ball with varying colour."""

    def __init__(self, box):
        super().__init__()
        from render3d.nerf.field import HashField

        self.inner = HashField(box, levels=4, log2_table_size=12, base_resolution=4, max_resolution=32, hidden=16)
        self.box = box

    def density(self, x):
        return 30.0 * torch.sigmoid(8.0 * (0.6 - x.norm(dim=-1)))

    def forward(self, x, d):
        rgb, _ = self.inner(x, d)
        return rgb, self.density(x)


def test_mesh_of_a_known_sphere_has_the_right_radius():
    field = SphereField()
    model = NerfModel(field, GridEstimator(OccupancyGrid(field.box, 8), 0.1, 6.0, 128), torch.ones(3), 4096)
    mesh = extract_mesh(model.field, model.estimator.step_size, resolution=48, threshold=25.0)
    radii = torch.from_numpy(mesh.vertices).norm(dim=-1)
    assert abs(radii.mean().item() - 0.5) < 0.03 and radii.std().item() < 0.03
    assert mesh.visual.vertex_colors[:, 0].min() > 200 and mesh.visual.vertex_colors[:, 1].max() < 50
    assert mesh.volume > 0  # faces wind outwards


def small_nerf(method: str):
    if method == "nerf":
        return NerfConfig(levels=6, log2_table_size=12, max_resolution=64, hidden=32, samples_per_ray=48, target_samples=4096,
                          initial_rays=256, grid_resolution=16, grid_warmup=20, grid_every=4)
    return VanillaNerfConfig(hidden=32, layers=3, coarse_samples=16, fine_samples=16, rays_per_step=128, lr=2e-3)


@pytest.mark.parametrize("method", ["nerf", "vanilla-nerf"])
def test_nerf_methods_learn_and_resume_exactly(tiny_scene, tmp_path, method):
    def trainer(name, steps=80):
        config = TrainConfig(method=method, steps=steps, out=str(tmp_path / name), save_every=0, progress=False, backend="torch")
        return Trainer(config, small_nerf(method), scene=tiny_scene)

    untrained = trainer("untrained").evaluate("test", write_images=False)["psnr"]
    resumed = resumed_matches_uninterrupted(trainer, 40, tiny_scene)
    trained = json.loads((resumed.run_dir.parent / "full" / "metrics.json").read_text())["psnr"]
    assert trained > untrained + 3.0, (untrained, trained)


def test_nerf_eval_and_checkpoint_load_through_the_registry(tiny_scene, tmp_path):
    from render3d.methods import model_from_checkpoint
    from render3d.train import load_checkpoint

    config = TrainConfig(method="nerf", steps=10, out=str(tmp_path / "run"), save_every=0, progress=False, backend="torch")
    Trainer(config, small_nerf("nerf"), scene=tiny_scene).run()
    model = model_from_checkpoint(load_checkpoint(tmp_path / "run"), "torch", torch.device("cpu"))
    out = model.render(tiny_scene.test.cameras[0])
    assert out.rgb.shape == (1, 32, 32, 3) and out.depth.shape == (1, 32, 32, 1)
    assert torch.isfinite(out.rgb).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="nerfacc's occupancy-grid kernels need a CUDA GPU")
def test_cuda_nerf_with_nerfacc_estimator_learns(tiny_scene, tmp_path):
    from render3d.nerf.estimators import NerfaccGridEstimator

    config = TrainConfig(method="nerf", steps=200, out=str(tmp_path / "run"), save_every=0, progress=False, backend="cuda")
    trainer = Trainer(config, small_nerf("nerf"), scene=tiny_scene)
    assert isinstance(trainer.method.model.estimator, NerfaccGridEstimator)
    before = trainer.evaluate("test", write_images=False)["psnr"]
    metrics = trainer.run()
    assert metrics["psnr"] > before + 3.0, (before, metrics["psnr"])


def test_random_background_recomposites_targets_on_each_rays_color():
    from render3d.cameras import Cameras
    from render3d.datasets.scene import Split
    from render3d.batches import RayBatcher

    white = torch.ones(3)
    images = torch.full((1, 1, 2, 3), 255, dtype=torch.uint8)
    images[0, 0, 1] = torch.tensor([255, 0, 0], dtype=torch.uint8)  # an opaque red pixel beside a transparent one
    alpha = torch.tensor([0, 255], dtype=torch.uint8).reshape(1, 1, 2, 1)
    cameras = Cameras(K=torch.eye(3)[None], c2w=torch.eye(4)[None], width=2, height=1)
    sampler = RayBatcher(Split(images, cameras, ["a.png"], alpha=alpha), torch.device("cpu"), seed=0, background=white,
                         random_background=True)
    batch = sampler.next(64)
    target, background = batch.rgb, batch.background
    assert background.shape == (64, 3) and background.std() > 0.1
    red = (target - torch.tensor([1.0, 0.0, 0.0])).abs().sum(-1) < 1e-6
    transparent = (target - background).abs().sum(-1) < 1e-6
    assert (red ^ transparent).all() and red.any() and transparent.any()
    fixed = RayBatcher(Split(images, cameras, ["a.png"], alpha=alpha), torch.device("cpu"), seed=0, background=white)
    assert fixed.next(4).background.shape == (3,)  # off: the scene's background for every ray


def test_unbounded_inward_facing_scenes_center_the_core_on_the_cameras_focus():
    from types import SimpleNamespace

    from render3d.cameras import look_at
    from render3d.nerf.method import scene_box

    target = torch.tensor([1.0, 2.0, 0.5])
    eyes = [target + 4.0 * torch.tensor([math.cos(a), math.sin(a), 0.3]) for a in torch.linspace(0, 2 * math.pi, 9)[:-1].tolist()]
    c2w = torch.stack([look_at(eye, target, torch.tensor([0.0, 0.0, 1.0])) for eye in eyes])
    train = SimpleNamespace(alpha=None, cameras=SimpleNamespace(c2w=c2w))
    whole_scene = torch.tensor([[-30.0, -30, -30], [30, 30, 30]])  # e.g. instant-ngp's aabb_scale box
    inward = scene_box(SimpleNamespace(train=train, bounds=whole_scene, forward_facing=False), "auto", 0.0)
    assert inward.contracted
    torch.testing.assert_close(inward.aabb.mean(0), target, atol=1e-3, rtol=0)
    assert (inward.aabb[1] - inward.aabb[0]).max() < 5.0  # half the camera distance on each side
    forward = scene_box(SimpleNamespace(train=train, bounds=whole_scene, forward_facing=True), "auto", 0.0)
    torch.testing.assert_close(forward.aabb, whole_scene)  # forward-facing captures keep the data's bounds
