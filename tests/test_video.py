"""Video generation: tokenizer invariants, FSQ, the world model, clip data, generation, camera conditioning, CLI, viewer panel.

Everything runs on one CPU thread at 16-32 px (small tensors: extra threads only add contention).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from video_scene import BoxesScene, boxes_clips, pan_cameras, render_clip

from render3d.errors import Render3DError
from render3d.video.fsq import FSQ
from render3d.video.tokenizer import TokenizerConfig, VideoTokenizer, latent_frames
from render3d.video.wavelet import haar_decode, haar_encode
from render3d.video.world_model import TokenGrid, WorldModel, WorldModelConfig

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
TINY_TOKENIZER = {"width": 16, "heads": 2, "latent_channels": 4, "levels": "8,8,8", "lr": 5e-3}
TINY_WORLD = {"dim": 64, "layers": 2, "heads": 4, "kv_heads": 2, "warmup": 20, "lr": 2e-3,
              "dropout": 0.0}  # a few hundred steps on a tiny scene: nothing to regularise, and the loss curve stays sharp


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_tokenizer(kind: str) -> VideoTokenizer:
    torch.manual_seed(0)
    return VideoTokenizer(TokenizerConfig(kind=kind, **TINY_TOKENIZER)).eval()


# ----- the tokenizer ------------------------------------------------------------------------------------
def test_haar_patcher_is_exactly_invertible_and_keeps_the_first_frame_alone():
    video = torch.rand(2, 3, 9, 16, 16)
    bands = haar_encode(video)
    assert bands.shape == (2, 192, 3, 4, 4)
    torch.testing.assert_close(haar_decode(bands), video, atol=1e-6, rtol=0)
    later = video.clone()
    later[:, :, 1:] = torch.rand_like(later[:, :, 1:])
    torch.testing.assert_close(haar_encode(later)[:, :, 0], bands[:, :, 0])


def test_fsq_round_trip_codes_values_codes():
    fsq = FSQ([8, 5, 5, 5])
    codes = torch.arange(fsq.codebook_size).view(1, -1)
    values = fsq.indices_to_values(codes)
    assert values.shape == (1, 4, 1000) and values.min() >= -1 and values.max() <= 1
    assert torch.equal(fsq.values_to_indices(values), codes)
    quantized = fsq(torch.atanh(torch.rand(1, 4, 20000, generator=torch.Generator().manual_seed(0)) * 1.98 - 0.99))
    torch.testing.assert_close(fsq.indices_to_values(fsq.values_to_indices(quantized)), quantized)
    for i, levels in enumerate(fsq.levels):  # every level of every channel is reachable
        assert len(torch.unique(quantized[0, i])) == levels


@pytest.mark.parametrize("kind", ["continuous", "discrete"])
def test_tokenizer_latent_shape_formula_and_an_image_is_a_one_frame_video(kind):
    tok = tiny_tokenizer(kind)
    channels = 4 if kind == "continuous" else 3
    for frames, size in ((1, 16), (5, 16), (9, 24)):
        assert tok.latent_shape(frames, size, size) == (channels, 1 + (frames - 1) // 4, size // 8, size // 8)
    video = torch.rand(2, 9, 3, 16, 24)
    with torch.no_grad():
        z = tok.encode(video)
        image_z = tok.encode(video[:, 0])
        assert z.shape == (2, channels, latent_frames(9), 2, 3)
        assert image_z.shape == (2, channels, 1, 2, 3)
        torch.testing.assert_close(image_z[:, :, 0], z[:, :, 0], atol=1e-5, rtol=0)
        assert tok.decode(z).shape == video.shape
        assert tok.reconstruct(video[:, 0]).shape == (2, 3, 16, 24)
    with pytest.raises(Render3DError, match="1 \\+ 4k"):
        tok.encode(torch.rand(1, 8, 3, 16, 16))


@pytest.mark.parametrize("kind", ["continuous", "discrete"])
def test_tokenizer_is_causal_future_frames_leave_past_latents_and_frames_unchanged(kind):
    tok = tiny_tokenizer(kind)
    video = torch.rand(1, 13, 3, 16, 16)
    changed = video.clone()
    changed[:, 5:] = torch.rand_like(changed[:, 5:])  # frames 5.. belong to latent frames 2 and 3
    with torch.no_grad():
        z, z2 = tok.encode(video), tok.encode(changed)
        assert torch.equal(z[:, :, :2], z2[:, :, :2])
        if kind == "continuous":  # (an untrained FSQ may round both to the same tokens)
            assert not torch.allclose(z[:, :, 2:], z2[:, :, 2:])
        later = z.clone()
        later[:, :, 2:] = z2[:, :, 2:]
        assert torch.equal(tok.decode(z)[:, :5], tok.decode(later)[:, :5])  # the decoder is causal too


# ----- the world model --------------------------------------------------------------------------------------
def test_world_model_kv_cache_generation_matches_the_full_forward_pass():
    torch.manual_seed(0)
    grid = TokenGrid((5, 5, 5), 4, 2, 3)
    model = WorldModel(WorldModelConfig(**TINY_WORLD), grid).eval()
    first = torch.randint(0, 125, (2, 1, 2, 3))
    actions = torch.randn(2, 4, 24, 2, 3)
    tokens = model.generate(first, actions)
    assert tokens.shape == (2, 4, 2, 3) and torch.equal(tokens[:, :1], first)
    with torch.no_grad():
        again = model.most_likely(model.logits(tokens, actions))[:, :-1]
    assert torch.equal(again, tokens[:, 1:].reshape(2, 3, -1))


def test_world_model_dropout_acts_in_training_only():
    torch.manual_seed(0)
    model = WorldModel(WorldModelConfig(**{**TINY_WORLD, "dropout": 0.5}), TokenGrid((5, 5, 5), 3, 2, 2))
    tokens, actions = torch.randint(0, 125, (2, 3, 2, 2)), torch.randn(2, 3, 24, 2, 2)
    with torch.no_grad():
        assert not torch.equal(model.train().logits(tokens, actions), model.logits(tokens, actions))
        assert torch.equal(model.eval().logits(tokens, actions), model.logits(tokens, actions))
    with pytest.raises(Render3DError, match="--dropout"):
        WorldModelConfig(dropout=1.0).validate()


def test_expected_fsq_values_of_peaked_logits_are_the_argmax_tokens_values():
    torch.manual_seed(0)
    grid = TokenGrid((8, 5, 5), 3, 2, 2)
    model = WorldModel(WorldModelConfig(**TINY_WORLD), grid).eval()
    tokens = torch.randint(0, 200, (2, 4))
    digits = model.fsq.indices_to_digits(tokens)
    peaked = torch.cat([100 * torch.nn.functional.one_hot(digits[..., i], n).float() for i, n in enumerate(grid.levels)], -1)
    values = model.expected_values(peaked)  # [2, 4, 3]
    torch.testing.assert_close(values, model.fsq.indices_to_values(tokens).movedim(1, -1))
    flat = model.expected_values(torch.zeros(1, sum(grid.levels)))  # uniform over levels: the mean level
    torch.testing.assert_close(flat, torch.tensor([[-0.125, 0.0, 0.0]]))
    first = torch.randint(0, 200, (2, 1, 2, 2))
    actions = torch.randn(2, 3, 24, 2, 2)
    expected = model.generate(first, actions, expected=True)
    assert expected.shape == (2, 3, 3, 2, 2) and expected.abs().max() <= 1
    torch.testing.assert_close(expected[:, :, :1], model.fsq.indices_to_values(first))


def test_world_model_learning_rate_warms_up_then_decays_along_a_cosine_to_its_final_fraction():
    from render3d.video.train import warmup_cosine_lr

    assert warmup_cosine_lr(1e-3, 10, 0.1, 0, 0.0) == pytest.approx(1e-4)
    assert warmup_cosine_lr(1e-3, 10, 0.1, 9, 0.0) == pytest.approx(1e-3)
    assert warmup_cosine_lr(1e-3, 10, 0.1, 500, 0.5) == pytest.approx(1e-3 * 0.55)
    assert warmup_cosine_lr(1e-3, 10, 0.1, 1000, 1.0) == pytest.approx(1e-4)
    assert warmup_cosine_lr(1e-3, 0, 1.0, 1000, 0.7) == pytest.approx(1e-3)  # final 1: constant
    with pytest.raises(Render3DError, match="--final-lr"):
        WorldModelConfig(final_lr=2.0).validate()
    with pytest.raises(Render3DError, match="--final-lr"):
        TokenizerConfig(final_lr=-0.5).validate()


def test_world_model_block_causal_mask_sees_its_own_frame_and_the_past_only():
    model = WorldModel(WorldModelConfig(**{**TINY_WORLD, "dropout": 0.5}), TokenGrid((5, 5, 5), 3, 1, 2)).eval()
    mask = model.block_causal_mask(3).int()
    expected = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0],
                             [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    assert torch.equal(mask, expected)
    torch.manual_seed(0)
    tokens = torch.randint(0, 125, (1, 3, 1, 2))
    changed = tokens.clone()
    changed[:, 2] = (changed[:, 2] + 1) % 125
    actions = torch.randn(1, 3, 24, 1, 2)
    with torch.no_grad():
        torch.testing.assert_close(model.logits(tokens, actions)[:, :2], model.logits(changed, actions)[:, :2])


def test_context_noise_moves_fsq_digits_by_at_most_one_level():
    model = WorldModel(WorldModelConfig(**TINY_WORLD), TokenGrid((8, 5, 5, 5), 3, 2, 2))
    tokens = torch.randint(0, 1000, (4, 2, 2, 2))
    noisy = model.perturb(tokens, torch.tensor([0.0, 0.3, 0.6, 0.9]), torch.Generator().manual_seed(0))
    step = (model.fsq.indices_to_digits(noisy) - model.fsq.indices_to_digits(tokens)).abs()
    assert step.max() <= 1 and torch.equal(noisy[0], tokens[0]) and (step[3] > 0).float().mean() > 0.6


# ----- a pipeline trained in the tests: coloured boxes on a wall, panning cameras -----------------------------
@pytest.fixture(scope="module")
def boxes(tmp_path_factory):
    """Clips of the boxes scene, a discrete tokenizer and a world model trained on them (about 25 s on one free core)."""
    from render3d.video.train import TokenizerTrainer, VideoTrainConfig, WorldModelTrainer

    root = tmp_path_factory.mktemp("video")
    torch.manual_seed(0)
    clips = boxes_clips(n_train=128, n_test=8, frames=9, size=32)
    clips.save(root / "clips")
    quiet = {"progress": False, "save_every": 0, "log_every": 10, "device": "cpu"}
    tok = TokenizerTrainer(clips, VideoTrainConfig(steps=200, batch_size=8, out=str(root / "tok"), **quiet),
                           TokenizerConfig(kind="discrete", **TINY_TOKENIZER))
    tok_result = tok.run()
    world = WorldModelTrainer(clips, VideoTrainConfig(steps=300, batch_size=16, out=str(root / "world"), **quiet),
                              WorldModelConfig(**TINY_WORLD), root / "tok")
    world_result = world.run()
    return {"root": root, "clips": clips, "tok": tok, "world": world, "tok_result": tok_result, "world_result": world_result}


def test_world_model_loss_falls_and_run_folders_hold_their_files(boxes):
    history = boxes["world"].history
    first, last = np.mean([h["loss"] for h in history[:3]]), np.mean([h["loss"] for h in history[-3:]])
    assert last < 0.7 * first, (first, last)  # about 0.63 with the default cosine decay over 300 steps
    assert boxes["tok_result"]["psnr"] > 13 and boxes["world_result"]["held_out_loss"] < first
    for part in ("tok", "world"):
        names = {p.name for p in (boxes["root"] / part).iterdir()}
        assert {"model.pt", "config.json", "history.json", "metrics.json"} <= names
    assert (boxes["root"] / "world" / "tokenizer.pt").is_file()


def test_render3d_load_tells_a_tokenizer_from_a_world_model(boxes):
    import render3d
    from render3d.video.generate import VideoModel
    from render3d.video.tokenizer import VideoTokenizer

    assert isinstance(render3d.load(boxes["root"] / "tok"), VideoTokenizer)
    assert isinstance(render3d.load(boxes["root"] / "world" / "model.pt"), VideoModel)


def test_camera_conditioning_matters_each_generation_is_closest_to_its_own_path(boxes):
    assert_follows_its_own_camera_path(boxes["root"] / "world")


def assert_follows_its_own_camera_path(run: Path) -> None:
    """Two pans from the same first frame: the generations differ, each closest to its own path's render."""
    from render3d.video.generate import load_video_model

    model = load_video_model(run)
    scene = BoxesScene()
    left, right = pan_cameras(32, 9, (-0.12, 0.0), (0.5, 0.3)), pan_cameras(32, 9, (0.12, 0.0), (0.5, 0.3))
    renders = [torch.from_numpy(render_clip(scene, c).numpy()).permute(0, 3, 1, 2).float() / 255 for c in (left, right)]
    first = renders[0][:1]
    assert torch.equal(first, renders[1][:1])
    gens = [model.generate(first, c.K[None], c.c2w[None], generator=torch.Generator().manual_seed(0))[0] for c in (left, right)]
    assert not torch.allclose(gens[0][1:], gens[1][1:], atol=0.05)
    err = [[float((g[1:] - r[1:]).pow(2).mean()) for r in renders] for g in gens]
    # each generation paired with its own path's render fits better than the swapped pairing; per generation the
    # tiny model is not always that clear (on an AVX2 EPYC: [[0.042, 0.147], [0.070, 0.095]], the right pan weak)
    assert err[0][0] + err[1][1] < err[0][1] + err[1][0], err
    assert min(err[0][0], err[1][1]) < 0.5 * max(err[0][1], err[1][0]), err  # and at least one follows its path clearly


# ----- the latent diffusion world model (over a continuous tokenizer's latents) --------------------------------
def tiny_diffusion(frames: int = 3) -> "LatentDiffusionWorldModel":  # noqa: F821 (imported below)
    from render3d.video.latent_diffusion import LatentDiffusionWorldModel, LatentGrid

    torch.manual_seed(0)
    return LatentDiffusionWorldModel(WorldModelConfig(**{**TINY_WORLD, "sample_steps": 4}), LatentGrid(4, frames, 2, 2)).eval()


def test_latent_diffusion_is_block_causal_and_cached_generation_keeps_the_first_frame_and_matches_the_full_pass():
    model = tiny_diffusion()
    x, actions = torch.randn(2, 3, 4, 2, 2), torch.randn(2, 3, 24, 2, 2)
    levels = torch.tensor([[0, 100, 900], [0, 5, 500]])
    changed = x.clone()
    changed[:, 2] = torch.randn(2, 4, 2, 2)
    with torch.no_grad():
        a, b = model.predict_v(x, actions, levels), model.predict_v(changed, actions, levels)
    torch.testing.assert_close(a[:, :2], b[:, :2])
    assert not torch.allclose(a[:, 2], b[:, 2])
    first = torch.randn(2, 4, 1, 2, 2) * 3 + 1
    out = model.generate(first, actions, torch.Generator().manual_seed(0))
    assert out.shape == (2, 4, 3, 2, 2) and torch.isfinite(out).all()
    torch.testing.assert_close(out[:, :, :1], first, atol=1e-5, rtol=0)
    assert torch.equal(out, model.generate(first, actions, torch.Generator().manual_seed(0)))
    torch.testing.assert_close(model.generate(first, actions, torch.Generator().manual_seed(0), cache=False), out,
                               atol=1e-4, rtol=1e-4)  # the KV caches change the arithmetic, not the result
    assert not torch.allclose(out, model.generate(first, actions, torch.Generator().manual_seed(1)))


def test_latent_diffusion_training_levels_clean_first_frame_low_context_then_uniform():
    model = tiny_diffusion(frames=5)
    levels = model.training_levels(4000, 5, torch.Generator().manual_seed(0))
    assert (levels[:, 0] == 0).all() and levels.max() < 1000
    limit = model.config.context_noise * 1000
    assert (levels[:, 1] <= limit).float().mean() > 0.7  # frame 1 is context whenever the cut is after it (3 in 4)
    assert (levels[:, 4] > limit).float().mean() > 0.6  # the last frame is always past the cut: uniform


@pytest.fixture(scope="module")
def boxes_diffusion(boxes):
    """A continuous tokenizer and a latent diffusion world model trained on the boxes clips (about 25 s)."""
    from render3d.video.train import TokenizerTrainer, VideoTrainConfig, WorldModelTrainer

    root, clips = boxes["root"], boxes["clips"]
    quiet = {"progress": False, "save_every": 0, "log_every": 10, "device": "cpu"}
    torch.manual_seed(0)
    TokenizerTrainer(clips, VideoTrainConfig(steps=200, batch_size=8, out=str(root / "tok-c"), **quiet),
                     TokenizerConfig(kind="continuous", **TINY_TOKENIZER)).run()
    world = WorldModelTrainer(clips, VideoTrainConfig(steps=1500, batch_size=16, out=str(root / "diffusion"), **quiet),
                              WorldModelConfig(**TINY_WORLD), root / "tok-c")
    return {"run": root / "diffusion", "world": world, "result": world.run()}


def test_latent_diffusion_world_model_learns_beats_copy_last_frame_and_follows_the_camera(boxes, boxes_diffusion):
    from render3d.video.evaluate import world_model_metrics
    from render3d.video.generate import load_video_model

    history = boxes_diffusion["world"].history
    first, last = np.mean([h["loss"] for h in history[:3]]), np.mean([h["loss"] for h in history[-3:]])
    assert last < 0.5 * first, (first, last)  # about 0.16
    assert boxes_diffusion["result"]["family"] == "latent-diffusion"
    model = load_video_model(boxes_diffusion["run"])
    assert model.world.family == "latent-diffusion"
    metrics = world_model_metrics(model, boxes["clips"], frechet=False)
    assert metrics["margin_over_copy_last_db"] > 2.0, metrics["psnr_first_8"]  # about +4.5 dB
    assert_follows_its_own_camera_path(boxes_diffusion["run"])


def test_cli_generates_with_the_latent_diffusion_model_and_its_mean_prediction(boxes_diffusion, tmp_path, capsys):
    import imageio.v3 as iio

    from render3d.cli import main
    from render3d.video.generate import load_video_model

    out = tmp_path / "gen.mp4"
    assert main(["video", "generate", str(boxes_diffusion["run"]), "--first-frame", "default", "--frames", "13",
                 "--scale", "1", "--out", str(out)]) == 0
    assert iio.imread(out).shape == (13, 32, 32, 3)
    sample, mean = load_video_model(boxes_diffusion["run"]), load_video_model(boxes_diffusion["run"], "mean")
    first, cams = torch.rand(1, 3, 32, 32), pan_cameras(32, 9, (0.1, 0.0), (0.5, 0.3))
    a = sample.generate(first, cams.K[None], cams.c2w[None], generator=torch.Generator().manual_seed(0))
    b = mean.generate(first, cams.K[None], cams.c2w[None], generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a[:, 0], b[:, 0])
    assert not torch.allclose(a[:, 1:], b[:, 1:], atol=1e-3)


def test_cli_trains_the_latent_diffusion_model_on_a_continuous_tokenizer_with_its_own_defaults(boxes, boxes_diffusion, tmp_path, capsys):
    from render3d.cli import main

    run = tmp_path / "world"
    assert main(["video", "train", str(boxes["root"] / "clips"), "--tokenizer", str(boxes["root"] / "tok-c"), "--steps", "2",
                 "--lr", "5e-4", "--dim", "32", "--layers", "1", "--heads", "2", "--no-progress", "--out", str(run)]) == 0
    assert "latent-diffusion world model" in capsys.readouterr().out
    config = json.loads((run / "config.json").read_text())
    assert config["family"] == "latent-diffusion"
    assert config["world_model"]["lr"] == 5e-4 and config["world_model"]["dropout"] == 0.0  # typed; the family's default


def test_tokenizer_training_resumes_where_it_stopped(boxes, tmp_path):
    from render3d.video.train import TokenizerTrainer, VideoTrainConfig

    quiet = {"progress": False, "save_every": 0, "log_every": 1, "device": "cpu", "batch_size": 2}
    config = TokenizerConfig(kind="continuous", **TINY_TOKENIZER)
    straight = TokenizerTrainer(boxes["clips"], VideoTrainConfig(steps=4, out=str(tmp_path / "a"), **quiet), config)
    straight.run()
    half = TokenizerTrainer(boxes["clips"], VideoTrainConfig(steps=2, out=str(tmp_path / "b"), **quiet), config)
    half.run()
    resumed = TokenizerTrainer.resume(tmp_path / "b", boxes["clips"], steps=4)
    assert resumed.step == 2
    resumed.run()
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in straight.history], rel=1e-4)


def test_video_trainers_refuse_an_existing_run_unless_resuming_or_overwriting(boxes, tmp_path, capsys):
    """``video tokenizer train`` / ``video train --out RUN`` with a model in RUN: one line, exit 2, the model untouched."""
    from render3d.cli import main

    clips, tok, world = boxes["root"] / "clips", boxes["root"] / "tok", boxes["root"] / "world"
    for argv, run in ((["video", "tokenizer", "train", str(clips)], tok), (["video", "train", str(clips), "--tokenizer", str(tok)], world)):
        before = (run / "model.pt").read_bytes()
        assert main([*argv, "--out", str(run), "--steps", "1", "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "already holds a video model" in err and "--overwrite" in err
        assert (run / "model.pt").read_bytes() == before
    copy = tmp_path / "tok"
    shutil.copytree(tok, copy)
    assert main(["video", "tokenizer", "train", str(clips), "--out", str(copy), "--steps", "1", "--no-progress", "--overwrite",
                 "--width", "8"]) == 0


def test_cli_generate_writes_an_mp4_with_the_asked_frame_count_and_compare_doubles_the_width(boxes, tmp_path, capsys):
    import imageio.v3 as iio

    from render3d.cli import main

    out = tmp_path / "gen.mp4"
    assert main(["video", "generate", str(boxes["root"] / "world"), "--first-frame", "default", "--path", "orbit",
                 "--frames", "11", "--compare", "--scale", "2", "--out", str(out)]) == 0
    video = iio.imread(out)
    assert video.shape == (11, 64, 2 * 64 + 4, 3)
    assert "PSNR of each generated frame" in capsys.readouterr().out
    image = tmp_path / "first.png"
    iio.imwrite(image, (np.random.default_rng(0).uniform(0, 255, (40, 50, 3))).astype(np.uint8))
    assert main(["video", "generate", str(boxes["root"] / "world"), "--first-frame", str(image), "--frames", "5",
                 "--scale", "1", "--out", str(tmp_path / "img.mp4")]) == 0
    assert iio.imread(tmp_path / "img.mp4").shape == (5, 32, 32, 3)
    assert main(["video", "generate", str(boxes["root"] / "world"), "--first-frame", str(image), "--compare"]) == 2
    assert "--compare needs a 3D scene" in capsys.readouterr().err


def test_cli_eval_prints_the_curves_beside_copy_last_frame_and_the_ceiling(boxes, tmp_path, capsys):
    from render3d.cli import main

    assert main(["video", "eval", str(boxes["root"] / "world"), str(boxes["root"] / "clips"), "--no-frechet", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "copy_last_frame PSNR" in text and "margin_over_copy_last_db" in text
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["curves"]["generated"]["psnr"]) == 9 and (tmp_path / "psnr_curve.png").is_file()
    assert main(["video", "eval", str(boxes["root"] / "world"), str(boxes["root"] / "clips"), "--no-frechet", "--decode", "mean",
                 "--out", str(tmp_path / "mean")]) == 0
    capsys.readouterr()
    mean = json.loads((tmp_path / "mean" / "metrics.json").read_text())
    assert mean["decode"] == "mean" and mean["curves"]["copy_last_frame"] == metrics["curves"]["copy_last_frame"]
    assert mean["curves"]["generated"]["psnr"] != metrics["curves"]["generated"]["psnr"]
    assert main(["video", "eval", str(boxes["root"] / "tok"), str(boxes["root"] / "clips")]) == 0
    assert json.loads(capsys.readouterr().out)["psnr"] > 13


def test_frechet_distance_in_the_zoo_feature_space_is_smallest_for_real_frames(boxes, tmp_path, monkeypatch):
    from render3d.video.evaluate import frechet_distances

    monkeypatch.setenv("RENDER3D_CACHE", str(tmp_path))
    clips = boxes["clips"]
    real = clips.test.video(slice(None))
    noise = torch.rand_like(real)
    fd = frechet_distances(clips, {"noise": noise, "same": real}, real, classifier_steps=30)
    assert fd["same"] < 1e-3 < fd["noise"] and fd["real_train_frames"] < fd["noise"]


# ----- clip data -------------------------------------------------------------------------------------------------
def test_cli_data_renders_the_default_scene_with_poses_and_a_held_out_split(tmp_path, capsys):
    from render3d.cli import main
    from render3d.video.clips import load_clips

    out = tmp_path / "clips"
    assert main(["video", "data", "default", "--clips", "2", "--test-clips", "1", "--frames", "5", "--size", "16",
                 "--out", str(out), "--no-progress"]) == 0
    clips = load_clips(out)
    assert clips.train.frames.shape == (2, 5, 16, 16, 3) and clips.test.frames.shape == (1, 5, 16, 16, 3)
    assert clips.train.c2w.shape == (2, 5, 4, 4) and clips.test.K.shape == (1, 5, 3, 3)
    assert not torch.allclose(clips.train.c2w[:, 0], clips.test.c2w[:, 0].expand(2, 4, 4))  # its own paths
    assert (out / "preview.png").is_file() and json.loads((out / "dataset.json").read_text())["posed"] is True
    assert main(["video", "data", "default", "--frames", "6", "--out", str(tmp_path / "x")]) == 2
    assert "1 + 4k" in capsys.readouterr().err


@pytest.mark.skipif(not VTEST.is_file(), reason=f"{VTEST} is missing (apt-get install opencv-doc)")
def test_cli_data_cuts_a_video_file_into_clips_held_out_by_time(tmp_path):
    from render3d.cli import main
    from render3d.video.clips import load_clips

    out = tmp_path / "vtest"
    assert main(["video", "data", str(VTEST), "--clips", "3", "--test-clips", "2", "--frames", "5", "--size", "16",
                 "--frame-step", "8", "--out", str(out), "--no-progress"]) == 0
    clips = load_clips(out)
    assert not clips.posed and clips.train.frames.shape == (3, 5, 16, 16, 3)
    assert clips.meta["test_from_frame"] == 8 * int(0.8 * 100)  # 795 frames / 8 = 100; the last 20% are held out
    with pytest.raises(Render3DError, match="camera poses"):
        from render3d.video.clips import require_posed

        require_posed(clips, "training a world model")


# ----- the viewer panel -----------------------------------------------------------------------------------------------
def test_viewer_video_panel_generates_from_the_view_along_the_path_and_plays_beside_the_render(boxes, tmp_path):
    from helpers import wait_for

    from render3d.video.generate import load_video_model
    from render3d.viewer.camera import CameraPose
    from render3d.viewer.render_loop import ViewSettings
    from render3d.viewer.server import Viewer
    from render3d.viewer.source import ViewerContent
    from render3d.viewer.video_panel import VideoPanel

    content = ViewerContent("boxes", tmp_path, torch.tensor([[-1.0, -1.0, 1.5], [1.0, 1.0, 2.5]]), static_model=BoxesScene())
    viewer = Viewer(content, port=0, settings=ViewSettings(max_side=32), verbose=False)
    try:
        panel = VideoPanel(viewer, load_video_model(boxes["root"] / "world"))
        pose = CameraPose((1.0, 0.0, 0.0, 0.0), (0.5, 0.3, 0.0), 0.9, 1.0)
        for x in (0.0, 0.6):  # a path sliding right, drawn elsewhere: only its motion matters
            viewer.path_editor.add_keyframe(None, CameraPose((1.0, 0.0, 0.0, 0.0), (x - 3.0, 0.0, 0.0), 0.9, 1.0))
        panel.n_frames.value = 9
        K, c2w = panel.cameras(pose, 9)
        torch.testing.assert_close(c2w[0, :3, 3], torch.tensor([0.5, 0.3, 0.0]))
        torch.testing.assert_close(c2w[-1, :3, 3], torch.tensor([1.1, 0.3, 0.0]), atol=1e-5, rtol=0)
        panel.start(pose)
        panel.thread.join(60)
        assert panel.last_video is not None and panel.last_video.is_file(), panel.status.content
        assert len(panel.frames) == 9 and panel.frames[0].shape[1] > 2 * panel.frames[0].shape[0]
        assert wait_for(lambda: panel.image.image.shape == panel.frames[0].shape, 10)
        panel.stop_playing()
    finally:
        viewer.stop()
