"""Video generation: tokenizer invariants, FSQ, the world model, clip data, generation, camera conditioning, CLI, viewer panel.

Everything runs on one CPU thread at 16-32 px (small tensors: extra threads only add contention).
"""

from __future__ import annotations

import json
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
TINY_TOKENIZER = {"width": 16, "heads": 2, "latent_channels": 4, "levels": "5,5,5", "lr": 2e-3}
TINY_WORLD = {"dim": 64, "layers": 2, "heads": 4, "kv_heads": 2, "warmup": 20, "lr": 2e-3}


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
    quantised = fsq(torch.atanh(torch.rand(1, 4, 20000, generator=torch.Generator().manual_seed(0)) * 1.98 - 0.99))
    torch.testing.assert_close(fsq.indices_to_values(fsq.values_to_indices(quantised)), quantised)
    for i, levels in enumerate(fsq.levels):  # every level of every channel is reachable
        assert len(torch.unique(quantised[0, i])) == levels


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


def test_world_model_block_causal_mask_sees_its_own_frame_and_the_past_only():
    model = WorldModel(WorldModelConfig(**TINY_WORLD), TokenGrid((5, 5, 5), 3, 1, 2))
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
