"""A codec with no learned weights: pixels folded into channels (space-to-depth).

It lets the whole stack (training, sampling, conditions) run on small synthetic videos without a
pretrained VAE, and it is exactly invertible, so codec error never hides model error.
"""

from __future__ import annotations

import torch
from einops import rearrange

from fulldit.errors import InputError

# Latents are pixels times SCALE. Pixels in [-1, 1] are already O(1): natural images have a per-channel
# std of about 0.5 and a mean near 0, the same order as the unit-variance noise of the diffusion. An identity
# scale keeps the codec an exact inverse and keeps latents readable as pixels, at the price of a slightly
# low signal-to-noise ratio at every timestep, which the noise schedule absorbs.
SCALE = 1.0


class PixelCodec:
    """Space-to-depth: each (pt, ph, pw) block of pixels becomes one latent with 3*pt*ph*pw channels."""

    def __init__(self, stride: tuple[int, int, int] = (1, 4, 4)) -> None:
        stride = tuple(stride)
        if len(stride) != 3 or not all(isinstance(s, int) and s > 0 for s in stride):
            raise InputError(f"pixel codec stride must be three positive integers (t, h, w), got {stride}")
        self.stride: tuple[int, int, int] = stride
        self.latent_channels: int = 3 * stride[0] * stride[1] * stride[2]

    def valid_frames(self, frames: int) -> bool:
        return frames > 0 and frames % self.stride[0] == 0

    def latent_frames(self, frames: int) -> int:
        if not self.valid_frames(frames):
            raise InputError(f"{frames} frames: the pixel codec needs a positive multiple of {self.stride[0]}")
        return frames // self.stride[0]

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        _, ph, pw = self.stride
        if height <= 0 or width <= 0 or height % ph or width % pw:
            raise InputError(f"size {height}x{width}: the pixel codec needs height % {ph} == 0 and width % {pw} == 0")
        return height // ph, width // pw

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, F, H, W) in [-1, 1] -> (B, 3*pt*ph*pw, F/pt, H/ph, W/pw)."""
        if video.ndim != 5 or video.shape[1] != 3:
            raise InputError(f"video must be (B, 3, F, H, W), got {tuple(video.shape)}")
        self.latent_frames(video.shape[2])
        self.latent_size(video.shape[3], video.shape[4])
        pt, ph, pw = self.stride
        latents = rearrange(video, "b c (t pt) (h ph) (w pw) -> b (c pt ph pw) t h w", pt=pt, ph=ph, pw=pw)
        return latents * SCALE

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Exact inverse of `encode`, clamped to [-1, 1] (sampled latents may overshoot)."""
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels:
            raise InputError(f"latents must be (B, {self.latent_channels}, T, h, w), got {tuple(latents.shape)}")
        pt, ph, pw = self.stride
        video = rearrange(latents / SCALE, "b (c pt ph pw) t h w -> b c (t pt) (h ph) (w pw)", pt=pt, ph=ph, pw=pw)
        return video.clamp(-1.0, 1.0)
