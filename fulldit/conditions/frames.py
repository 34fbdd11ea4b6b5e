"""Frame conditions by STIV's frame replacement: first frame, prefix, last frame, any keyframes.

Known latent frames are the clean latents of the given frames. At every denoising step they replace
the noisy ones and carry their own timestep 0; in training they are left out of the loss. No tokens
are added, so image-to-video, video prediction (FCA), interpolation and completion cost nothing.

With a causal video VAE (Wan2.1: latent 0 = frame 0, latent l = frames 4l-3..4l) a latent frame is
known when any of its video frames is given; the other frames of its group are filled with the nearest
given frame before encoding. The pixel codec maps frames to latents one to one, so there it is exact.
"""

from __future__ import annotations

import torch

from fulldit.codecs import Codec
from fulldit.config import FramesConfig


def is_causal(codec: Codec) -> bool:
    """A temporally causal codec encodes frame 0 alone (F = 1 + s*k frames give 1 + k latents)."""
    s = codec.stride[0]
    return s > 1 and codec.valid_frames(1 + s)


def latent_index(frames: int, stride_t: int, causal: bool) -> list[int]:
    """The latent frame each video frame is encoded into."""
    return [(f + stride_t - 1) // stride_t if causal else f // stride_t for f in range(frames)]


def known_latents(given: dict[int, torch.Tensor], frames: int, codec: Codec) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode given frames {index: (3, H, W) in [0, 1]} of an F-frame clip.

    Returns the clean latents (C, T, h, w) (meaningful where known) and known (T,) bool.
    """
    if not given:
        raise ValueError("no frames given")
    order = sorted(given)
    idx = torch.tensor(order)
    nearest = [order[int((idx - f).abs().argmin())] for f in range(frames)]
    video = torch.stack([given[i] for i in nearest], dim=1) * 2 - 1  # (3, F, H, W) in [-1, 1]
    device = next(iter(given.values())).device
    latents = codec.encode(video[None].to(device))[0]  # (C, T, h, w)
    lat = latent_index(frames, codec.stride[0], is_causal(codec))
    known = torch.zeros(latents.shape[1], dtype=torch.bool)
    known[[lat[i] for i in order]] = True
    return latents, known.to(latents.device)


def replace_frames(x: torch.Tensor, clean: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """x (B, C, T, H, W) with the known (B, T) latent frames taken from clean."""
    return torch.where(known[:, None, :, None, None], clean.to(x.dtype), x)


def frame_timesteps(t: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Per-frame flow time (B, T): t (B,) for noisy frames, 0 for known ones."""
    return torch.where(known, torch.zeros((), device=t.device), t[:, None].expand_as(known))


def sample_known_frames(
    batch: int, latent_frames: int, cfg: FramesConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Training: draw per sample none / first / prefix / last / keyframes with cfg's probabilities -> (B, T) bool."""
    known = torch.zeros(batch, latent_frames, dtype=torch.bool)
    if latent_frames < 2:
        return known
    probs = torch.tensor([cfg.first, cfg.prefix, cfg.last, cfg.keyframes])
    u = torch.rand(batch, generator=generator)
    edges = probs.cumsum(0)
    for b in range(batch):
        mode = int((u[b] >= edges).sum())  # 0 first, 1 prefix, 2 last, 3 keyframes, 4 none
        if mode == 0:
            known[b, 0] = True
        elif mode == 1:
            n = int(torch.randint(1, latent_frames, (1,), generator=generator))
            known[b, :n] = True
        elif mode == 2:
            known[b, -1] = True
        elif mode == 3:
            known[b] = torch.rand(latent_frames, generator=generator) < 0.25
            known[b, 0] = known[b, 0] | ~known[b].any()
            known[b, -1] &= ~known[b, :-1].all()  # never every frame
    return known
