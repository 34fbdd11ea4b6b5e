"""Rectified flow in Wan2.1's convention: timestep sampling, the training loss, and an Euler sampler.

x_t = (1 - t) x0 + t noise, t in [0, 1] (t = 1 is pure noise), velocity v = noise - x0, so that
dx/dt = v and sampling integrates from t = 1 down to 0. The network predicts either the velocity
(Wan2.1; right for latent codecs with few channels per token) or the clean sample x0 with the loss
still taken on velocity, v = (x_t - x0) / t (JiT, "Back to Basics", 2025): with large pixel patches
a token is as wide as the model, and velocity targets carry that full-dimensional noise
(docs/findings.md: noise vs coherent layouts after the same 7 minutes).

Times are per latent frame (B, T) so that frame conditions (STIV) can hold known frames at t = 0.

References: Rectified Flow (Liu et al. 2022), SD3 (Esser et al. 2024) for logit-normal sampling and
the timestep shift, Wan2.1 (2025), JiT (Li & He 2025).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from fulldit.conditions.frames import frame_timesteps, replace_frames
from fulldit.config import FlowConfig


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    """SD3/Wan timestep shift: shift > 1 spends more steps (or training) at high noise."""
    return shift * t / (1 + (shift - 1) * t)


def sample_time(batch: int, cfg: FlowConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Training times (B,) in (0, 1): logit-normal (SD3) or uniform, then shifted."""
    if cfg.timestep_sampling == "logit_normal":
        t = torch.sigmoid(torch.randn(batch, generator=generator))
    else:
        t = torch.rand(batch, generator=generator)
    return shift_time(t, cfg.shift)


def _frames(t: torch.Tensor) -> torch.Tensor:
    """Broadcast (B,) or (B, T) times against latents (B, C, T, H, W)."""
    return t[:, None, None, None, None] if t.ndim == 1 else t[:, None, :, None, None]


def interpolate(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x0 + t noise, t (B,) or per frame (B, T)."""
    tt = _frames(t).to(x0.dtype)
    return (1 - tt) * x0 + tt * noise


def to_velocity(out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, cfg: FlowConfig) -> torch.Tensor:
    """The velocity implied by a network output under cfg.prediction."""
    if cfg.prediction == "velocity":
        return out
    return (x_t - out) / _frames(t).clamp_min(cfg.x0_min_t)


def flow_loss(
    out: torch.Tensor,
    x0: torch.Tensor,
    noise: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    cfg: FlowConfig,
    known: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample mean squared velocity error (B,); known frames (B, T), clean inputs, are left out."""
    err = (to_velocity(out.float(), x_t.float(), t, cfg) - (noise - x0).float()).pow(2).mean(dim=(1, 3, 4))  # (B, T)
    weight = torch.ones_like(err) if known is None else (~known).float()
    return (err * weight).sum(1) / weight.sum(1).clamp_min(1)


def sampling_times(steps: int, shift: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """steps + 1 times from 1 to 0 (shifted), the Euler grid."""
    return shift_time(torch.linspace(1.0, 0.0, steps + 1, device=device, dtype=torch.float64), shift).float()


@torch.no_grad()
def euler_sample(
    velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    noise: torch.Tensor,
    times: torch.Tensor,
    clean: torch.Tensor | None = None,
    known: torch.Tensor | None = None,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Integrate dx/dt = velocity(x, t_frames) from times[0] to times[-1] (Euler).

    Known latent frames (B, T) are replaced by `clean` before every evaluation and at the end, and
    carry time 0 (STIV frame replacement).
    """
    b, _, frames = noise.shape[:3]
    known = torch.zeros(b, frames, dtype=torch.bool, device=noise.device) if known is None else known
    x = noise.float()
    for i in range(len(times) - 1):
        if clean is not None:
            x = replace_frames(x, clean, known)
        t = frame_timesteps(times[i].expand(b), known)  # (B, T)
        x = x + (times[i + 1] - times[i]) * velocity(x, t).float()
        if progress is not None:
            progress(i)
    return x if clean is None else replace_frames(x, clean, known)
