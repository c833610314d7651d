"""The 2D generative model zoo: interface, sanity checks of each model, metrics, training and CLI."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from render3d.zoo import ImageSpec, load, registry
from render3d.zoo.data import ImageData, fashion_mnist_dir, load_images

MODELS = ("ae", "vae", "vqvae", "pixelcnn", "gan", "diffusion")
TINY = {  # small widths so every test runs in seconds
    "ae": {"hidden": 8, "latent": 4},
    "vae": {"hidden": 8, "latent": 4},
    "vqvae": {"hidden": 8, "codes": 16, "code_dim": 8, "prior_dim": 16, "prior_layers": 1, "prior_heads": 2},
    "pixelcnn": {"hidden": 8, "blocks": 1},
    "gan": {"hidden": 8, "latent": 8},
    "diffusion": {"hidden": 8, "timesteps": 100, "sample_steps": 5},
}
FASHION = pytest.mark.skipif(not (fashion_mnist_dir() / "t10k-images-idx3-ubyte.gz").is_file(),
                             reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")


def tiny_model(name: str, spec: ImageSpec = ImageSpec(1, 12, 0), **overrides):
    cls = registry()[name]
    torch.manual_seed(0)
    return cls(cls.config_type(**{**TINY[name], **overrides}), spec)


def tiny_data(n: int = 32, size: int = 12, classes: int = 0) -> ImageData:
    """Blobs of varying position and brightness on a dark background: structured, learnable."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centers = torch.randint(3, size - 3, (n, 2), generator=g)
    d2 = (yy[None] - centers[:, 0, None, None]) ** 2 + (xx[None] - centers[:, 1, None, None]) ** 2
    images = (255 * torch.exp(-d2 / 6.0)).round().to(torch.uint8)[:, None]
    labels = torch.arange(n) % classes if classes else None
    return ImageData("blobs", images[: n * 3 // 4], images[n * 3 // 4:], labels[: n * 3 // 4] if classes else None,
                     labels[n * 3 // 4:] if classes else None, classes, note="test blobs")


# ----- sanity checks of the models ----------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 3])
def test_pixelcnn_probabilities_of_all_binary_2x2_images_sum_to_one(channels):
    model = tiny_model("pixelcnn", ImageSpec(channels, 2, 0), levels=2, hidden=6, blocks=2).eval()
    bits = channels * 4
    images = torch.tensor(list(itertools.product([0.0, 1.0], repeat=bits))).view(-1, channels, 2, 2)
    with torch.no_grad():
        total = model.log_prob(images).double().exp().sum()
    assert total.item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("channels,classes", [(1, 0), (3, 0), (1, 2)])
def test_pixelcnn_pixel_by_pixel_walk_matches_the_full_forward_pass(channels, classes):
    """Sampling evaluates one pixel at a time; fed a given image, it must see the logits the training pass sees
    (masked stack, upward context reaching past the 12-pixel image, and the label)."""
    model = tiny_model("pixelcnn", ImageSpec(channels, 12, classes), hidden=6, blocks=2, context=3).eval()
    image = torch.randint(0, 256, (3, channels, 12, 12)) / 255.0
    labels = torch.tensor([0, 1, 0]) if classes else None
    seen = torch.zeros(3, 12, 12, channels, 256)

    def teacher(i, j, ch, logits):
        seen[:, i, j, ch] = logits
        return (image[:, ch, i, j] * 255).round()

    assert torch.equal(model.walk(3, teacher, labels), image)
    with torch.no_grad():
        torch.testing.assert_close(seen, model.logits(image, labels), atol=1e-4, rtol=1e-4)
        changed = image.clone()
        changed[:, :, 5:] = 1 - changed[:, :, 5:]  # rows from 5 on must not affect the logits of rows 0..4
        torch.testing.assert_close(model.logits(changed, labels)[:, :5], model.logits(image, labels)[:, :5])


def test_diffusion_forward_process_ends_in_standard_normal():
    model = tiny_model("diffusion", timesteps=1000)
    assert model.alphas_cumprod[-1] < 1e-3
    x0 = torch.rand(4096, 1, 12, 12).round()  # far from Gaussian: 0 / 1 pixels
    t = torch.full((len(x0),), model.config.timesteps - 1)
    xt = model.add_noise(x0 * 2 - 1, t, torch.randn_like(x0)).flatten()
    assert abs(xt.mean().item()) < 0.01 and abs(xt.std().item() - 1) < 0.01
    assert abs(((xt - xt.mean()) ** 4).mean().item() / xt.var().item() ** 2 - 3) < 0.05  # Gaussian kurtosis


def test_ddim_is_deterministic_for_a_seed_and_ddpm_sampling_runs():
    model = tiny_model("diffusion", ImageSpec(1, 12, 3)).eval()
    a = model.sample(4, generator=torch.Generator().manual_seed(7), sampler="ddim", steps=4)
    b = model.sample(4, generator=torch.Generator().manual_seed(7), sampler="ddim", steps=4)
    c = model.sample(4, generator=torch.Generator().manual_seed(8), sampler="ddim", steps=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    d = model.sample(4, generator=torch.Generator().manual_seed(7), sampler="ddpm", steps=10, guidance=3.0)
    assert d.shape == (4, 1, 12, 12) and 0 <= d.min() and d.max() <= 1


def test_discretized_gaussian_is_a_distribution():
    from render3d.zoo.base import discretized_gaussian_log_prob

    levels = torch.linspace(-1, 1, 256)
    for mean, log_std in [(0.3, -2.0), (-0.99, -5.0), (0.999, -6.0), (2.0, 0.5)]:
        p = discretized_gaussian_log_prob(levels, torch.tensor(mean), torch.tensor(log_std)).double().exp().sum()
        assert p.item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_each_model_loss_falls_on_a_small_batch(name):
    data = tiny_data(24)
    x = data.train.float() / 255.0
    # (for the GAN, "loss" is the discriminator's hinge loss: it falls from 2 while D learns to tell
    # real from generated images; at its usual learning rate, before the generator catches up)
    model = tiny_model(name) if name == "gan" else tiny_model(name, lr=3e-3)
    torch.manual_seed(0)
    first = [model.fit(x)["loss"] for _ in range(3)]
    for _ in range(30):
        stats = model.fit(x)
    last = [model.fit(x)["loss"] for _ in range(3)]
    assert np.mean(last) < np.mean(first), (name, first, last, stats)


@pytest.mark.parametrize("name", MODELS)
def test_interface_sample_save_load(name, tmp_path):
    model = tiny_model(name, ImageSpec(3, 8, 2) if name in ("gan", "diffusion") else ImageSpec(3, 8, 0))
    model.fit(torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 0, 1]) if model.spec.num_classes else None)
    model.eval()
    images = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert images.shape == (3, 3, 8, 8) and images.min() >= 0 and images.max() <= 1
    assert torch.allclose(images * 255, (images * 255).round(), atol=1e-3)  # 8-bit values
    x = torch.rand(2, 3, 8, 8)
    if model.can_encode:
        assert model.reconstruct(x).shape == x.shape
    if model.likelihood:
        assert model.bits_per_dim(x).shape == (2,)
    model.save(tmp_path / "model.pt")
    again = load(tmp_path)
    assert type(again) is type(model) and again.config == model.config
    if name != "diffusion" and name != "pixelcnn":  # (those two draw many random numbers; compared via state)
        torch.testing.assert_close(again.sample(3, generator=torch.Generator().manual_seed(0)), images)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value)


def test_vqvae_reports_code_usage_and_restarts_dead_codes():
    model = tiny_model("vqvae")
    x = tiny_data(24).train.float() / 255.0
    model.fit(x)
    model.codebook.cluster_size[: len(model.codebook.cluster_size) // 2] = 0.0  # half the codes "never used"
    model.fit(x)
    stats = model.stats()
    assert stats["code_restarts"] > 0  # the unused ones among them were moved onto encoder outputs
    assert (model.codebook.cluster_size >= model.codebook.dead_threshold).all()
    assert 1 <= stats["code_perplexity"] <= len(model.codebook.cluster_size) and 0 < stats["codes_used"] <= 1
    assert model.encode(x).dtype == torch.long


def test_diffusion_public_noise_predictor_and_schedule():
    model = tiny_model("diffusion", ImageSpec(1, 12, 3)).eval()
    x0 = torch.rand(4, 1, 12, 12) * 2 - 1
    t, noise = torch.tensor([0, 10, 50, 99]), torch.randn(4, 1, 12, 12)
    ab = model.alphas_cumprod
    assert ab.shape == (100,) and bool((ab[1:] < ab[:-1]).all())
    torch.testing.assert_close(model.add_noise(x0, t, noise), ab[t].sqrt()[:, None, None, None] * x0
                               + (1 - ab[t]).sqrt()[:, None, None, None] * noise)
    x_t = model.add_noise(x0, t, noise).requires_grad_()
    labels = torch.tensor([0, 1, 2, 0])
    eps = model.predict_noise(x_t, t, labels)
    assert eps.shape == x_t.shape and eps.dtype == torch.float32
    eps.square().sum().backward()  # differentiable in x_t (score distillation needs this)
    assert x_t.grad is not None and all(p.grad is None for p in model.parameters())
    with torch.no_grad():
        uncond, cond = model.predict_noise(x_t, t), model.predict_noise(x_t, t, labels)
        torch.testing.assert_close(model.predict_noise(x_t, t, labels, guidance=3.0), uncond + 3.0 * (cond - uncond))
        torch.testing.assert_close(model.predict_noise(x_t, torch.tensor(10)), model.predict_noise(x_t, torch.full((4,), 10)))
    with pytest.raises(ValueError, match="trained on"):
        model.predict_noise(torch.zeros(1, 1, 16, 16), torch.tensor([0]))


def test_transformer_prior_uses_grouped_query_attention_and_is_causal():
    from render3d.zoo.transformer import TokenTransformer

    prior = TokenTransformer(vocab=10, length=6, dim=16, layers=1, heads=4, kv_heads=2)
    attn = prior.layers[0].attn
    assert attn.kv.out_features == 2 * 2 * 4  # k and v for 2 heads of 4 dims, shared by 4 query heads
    t = torch.randint(0, 10, (3, 6))
    changed = t.clone()
    changed[:, 4:] = (t[:, 4:] + 1) % 10
    torch.testing.assert_close(prior.logits(t)[:, :5], prior.logits(changed)[:, :5])  # later tokens never leak


# ----- training loop ----------------------------------------------------------------------
def test_resume_continues_to_the_same_result(tmp_path):
    from render3d.zoo.train import ZooTrainConfig, ZooTrainer

    data = tiny_data(32, classes=2)
    cfg = dict(data="blobs", batch_size=8, progress=False, save_every=0)
    model_cfg = registry()["diffusion"].config_type(**TINY["diffusion"])
    straight = ZooTrainer("diffusion", ZooTrainConfig(steps=6, out=str(tmp_path / "a"), **cfg), model_cfg, data)
    straight.run()
    part = ZooTrainer("diffusion", ZooTrainConfig(steps=3, out=str(tmp_path / "b"), **cfg), model_cfg, data)
    part.run()
    resumed = ZooTrainer.resume(tmp_path / "b", data=data, steps=6)
    assert resumed.step == 3
    resumed.run()
    for key, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, msg=key)
    assert load(tmp_path / "b").info["steps"] == 6


def test_threads_apply_while_a_trainer_runs_and_no_longer(tmp_path, monkeypatch):
    """``--threads`` is not a process-wide side effect of building a trainer in Python."""
    from render3d.zoo.train import ZooTrainConfig, ZooTrainer

    before = torch.get_num_threads()
    seen = []
    config = ZooTrainConfig(data="blobs", steps=2, batch_size=8, progress=False, save_every=0, threads=before + 1,
                            out=str(tmp_path / "run"))
    trainer = ZooTrainer("diffusion", config, registry()["diffusion"].config_type(**TINY["diffusion"]), tiny_data(16))
    assert torch.get_num_threads() == before
    step = trainer.train_one_step
    monkeypatch.setattr(trainer, "train_one_step", lambda: seen.append(torch.get_num_threads()) or step())
    trainer.run()
    assert seen == [before + 1] * 2 and torch.get_num_threads() == before


# ----- data and metrics -------------------------------------------------------------------
def test_faces_and_folder_sources(tmp_path):
    faces = load_images("faces")
    assert faces.train.shape == (80, 1, 32, 32) and faces.test.shape == (20, 1, 32, 32) and faces.augment
    assert "only 80" in faces.note
    x, _ = faces.batch(torch.arange(8), torch.Generator().manual_seed(0))
    assert x.shape == (8, 1, 32, 32) and 0 <= x.min() and x.max() <= 1
    for i, size in enumerate([(40, 30), (17, 50), (64, 64)]):
        Image.fromarray(np.full((*size[::-1], 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    folder = load_images(str(tmp_path), size=16)
    assert folder.train.shape[1:] == (3, 16, 16) and len(folder.train) + len(folder.test) == 3


def test_scene_patches_source(tiny_scene_dir, monkeypatch):
    import render3d.datasets.synthetic as synthetic

    monkeypatch.setattr(synthetic, "default_scene_dir", lambda resolution=128: tiny_scene_dir)
    data = load_images("scene-patches", size=8)
    assert data.train.shape[1:] == (3, 8, 8) and len(data.train) == 40 * 18 and data.num_classes == 0


def test_unknown_data_is_a_one_line_error():
    from render3d.errors import Render3DError

    with pytest.raises(Render3DError, match="unknown data"):
        load_images("no-such-source")


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    """Fashion-MNIST and a briefly trained feature classifier, shared by the metric tests."""
    from render3d.zoo.metrics import feature_classifier

    data = load_images("fashion-mnist")
    return data, feature_classifier(data, steps=150, cache_dir=tmp_path_factory.mktemp("classifier"))


@FASHION
def test_held_out_real_scores_near_zero_and_noise_far(fashion, tmp_path):
    from render3d.zoo.metrics import blur3x3, sample_quality

    data, clf = fashion
    assert clf.info["held_out_accuracy"] > 0.7
    real = clf.embed(data.train[:1000].float() / 255.0)
    test = data.test[:1000].float() / 255.0
    held_out = sample_quality(real, clf.embed(test))
    blurred = sample_quality(real, clf.embed(blur3x3(test)))
    noise = sample_quality(real, clf.embed(torch.rand(1000, 1, 28, 28)))
    assert held_out["frechet"] < 0.05 * noise["frechet"] and held_out["kid"] < 0.05 * noise["kid"]
    assert held_out["frechet"] < blurred["frechet"] < noise["frechet"]
    assert held_out["precision"] > 0.5 and held_out["coverage"] > 0.5 and noise["coverage"] < 0.1
    assert sample_quality(real[:100], clf.embed(test[:100]))["frechet"] is None  # too few images for a Fréchet distance


@FASHION
@pytest.mark.slow
def test_default_diffusion_trained_for_a_minute_beats_noise_and_blur(fashion, tmp_path):
    """A regression to noise (or to blobs) of the default diffusion model is caught here."""
    from render3d.zoo.metrics import blur3x3, kernel_inception_distance
    from render3d.zoo.train import ZooTrainConfig, ZooTrainer

    data, clf = fashion
    trainer = ZooTrainer("diffusion", ZooTrainConfig(data="fashion-mnist", budget=60, progress=False,
                                                     save_every=0, out=str(tmp_path)), data=data)
    trainer.run()
    model = trainer.model.eval()
    samples = model.sample(200, generator=torch.Generator().manual_seed(0), steps=20)
    real = clf.embed(data.train[:1000].float() / 255.0)
    test = data.test[:200].float() / 255.0
    kid = {name: kernel_inception_distance(real, clf.embed(images), subsets=4) for name, images in
           (("model", samples), ("blur", blur3x3(test)), ("noise", torch.rand(200, 1, 28, 28)))}
    assert kid["model"] < kid["blur"] < kid["noise"], (trainer.step, kid)


# ----- command line -----------------------------------------------------------------------
def test_cli_train_sample_compare(tmp_path, monkeypatch, capsys):
    from render3d.cli import main

    monkeypatch.setenv("RENDER3D_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "vae"
    assert main(["zoo", "train", "vae", "--data", "faces", "--steps", "4", "--batch-size", "8", "--no-progress",
                 "--out", str(run), "--vae.hidden", "8"]) == 0
    assert main(["zoo", "train", "--resume", str(run), "--steps", "6", "--no-progress"]) == 0
    assert load(run).info["steps"] == 6
    assert main(["zoo", "sample", str(run), "-n", "6", "--out", str(tmp_path / "grid.png")]) == 0
    assert Image.open(tmp_path / "grid.png").size[0] > 0
    report = tmp_path / "report"
    assert main(["zoo", "compare", str(run), "--out", str(report), "-n", "20", "--n-eval", "10", "--classifier-steps", "20"]) == 0
    text = (report / "report.md").read_text()
    assert "only 80 real" in text and "vae_samples.png" in text and "held-out real images" in text
    for pic in ("vae_samples.png", "vae_reconstructions.png", "vae_interpolations.png"):
        assert (report / pic).is_file()
    capsys.readouterr()
    assert main(["zoo", "sample", str(tmp_path / "missing")]) == 2
    assert "no zoo model" in capsys.readouterr().err
