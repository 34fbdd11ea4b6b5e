"""Frame conditions (STIV frame replacement): which latent frames are known, and their clean values."""

from __future__ import annotations

import torch

from fulldit.codecs import PixelCodec
from fulldit.conditions.camera import frame_groups
from fulldit.conditions.frames import frame_timesteps, known_latents, latent_index, replace_frames, sample_known_frames
from fulldit.config import FramesConfig


def test_latent_index_causal_and_not() -> None:
    assert latent_index(9, 4, causal=True) == [0, 1, 1, 1, 1, 2, 2, 2, 2]  # Wan2.1: frame 0 alone
    assert latent_index(6, 2, causal=False) == [0, 0, 1, 1, 2, 2]
    assert frame_groups(9, 4, 1, causal=True) == [[0], [1, 2, 3, 4], [5, 6, 7, 8]]
    assert frame_groups(4, 1, 2, causal=False) == [[0, 1], [2, 3]]


def test_known_latents_pixel_codec_is_exact() -> None:
    codec = PixelCodec((1, 2, 2))
    first, last = torch.rand(3, 8, 8), torch.rand(3, 8, 8)
    clean, known = known_latents({0: first, 5: last}, 6, codec)
    assert known.tolist() == [True, False, False, False, False, True]
    video = codec.decode(clean[None])[0]  # (3, F, H, W) in [-1, 1]
    torch.testing.assert_close((video[:, 0] + 1) / 2, first, atol=1e-6, rtol=0)
    torch.testing.assert_close((video[:, 5] + 1) / 2, last, atol=1e-6, rtol=0)


def test_replace_and_timesteps() -> None:
    x, clean = torch.randn(2, 3, 4, 2, 2), torch.randn(2, 3, 4, 2, 2)
    known = torch.tensor([[True, False, False, False], [False, False, False, True]])
    y = replace_frames(x, clean, known)
    torch.testing.assert_close(y[0, :, 0], clean[0, :, 0])
    torch.testing.assert_close(y[0, :, 1:], x[0, :, 1:])
    t = frame_timesteps(torch.tensor([0.7, 0.2]), known)
    assert t.tolist() == [[0.0, 0.7, 0.7, 0.7], [0.2, 0.2, 0.2, 0.0]] or torch.allclose(
        t, torch.tensor([[0.0, 0.7, 0.7, 0.7], [0.2, 0.2, 0.2, 0.0]])
    )


def test_training_draws_every_mode_and_never_all_frames() -> None:
    cfg = FramesConfig(first=0.2, prefix=0.2, last=0.2, keyframes=0.2)
    known = sample_known_frames(2000, 6, cfg, torch.Generator().manual_seed(0))
    assert not known.all(1).any()
    none = (~known.any(1)).float().mean().item()
    first_only = (known[:, 0] & ~known[:, 1:].any(1)).float().mean().item()
    last_only = (known[:, -1] & ~known[:, :-1].any(1)).float().mean().item()
    assert 0.15 < none < 0.25 and first_only > 0.2 and last_only > 0.15
