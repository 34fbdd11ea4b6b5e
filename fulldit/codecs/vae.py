"""The Wan2.1 video VAE (diffusers `AutoencoderKLWan`) as a frozen codec, loaded from a local directory.

Latents are normalised per channel with the VAE config's `latents_mean` / `latents_std`, exactly as Wan's
pipelines do, so a Wan2.1 transformer sees the latents it was trained on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from fulldit.dtypes import parse_dtype
from fulldit.errors import InputError


def find_vae_dir(path: str | os.PathLike) -> Path:
    """The directory holding the VAE's config.json: `path` itself, or `path/vae` of a diffusers pipeline."""
    if not str(path):
        raise InputError("wan-vae codec: no path given (set codec.path to a local AutoencoderKLWan directory)")
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"{root}: wan-vae codec directory does not exist")
    for candidate in (root, root / "vae"):
        if (candidate / "config.json").is_file():
            return candidate
    raise InputError(f"{root}: not a diffusers AutoencoderKLWan directory (no config.json, nor vae/config.json)")


class WanVAECodec:
    """Frozen Wan VAE. Strides come from the VAE's architecture: time 4 (F = 1 + 4k -> T = 1 + k), space 8."""

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu", dtype: str = "float32") -> None:
        self.device = torch.device(device)
        self.dtype = parse_dtype(dtype)
        directory = find_vae_dir(path)
        try:
            config = json.loads((directory / "config.json").read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"{directory / 'config.json'}: unreadable ({e})") from e
        if config.get("_class_name", "AutoencoderKLWan") != "AutoencoderKLWan":
            raise InputError(f"{directory}: holds a {config['_class_name']}, expected an AutoencoderKLWan")

        from diffusers import AutoencoderKLWan  # deferred: importing diffusers takes seconds

        try:
            vae = AutoencoderKLWan.from_pretrained(directory, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as e:
            raise InputError(f"{directory}: cannot load AutoencoderKLWan ({e})") from e
        self.vae = vae.to(self.device, self.dtype).eval().requires_grad_(False)

        cfg = self.vae.config
        # Each level but the last halves H and W; `temperal_downsample[i]` (diffusers' spelling) says whether
        # level i also halves time. Wan2.2-style VAEs fold `patch_size` pixels into channels before the encoder.
        # We derive strides from these instead of `scale_factor_*`, which are defaults diffusers never checks.
        levels = len(cfg.dim_mult) - 1
        t_stride = 2 ** sum(bool(d) for d in cfg.temperal_downsample[:levels])
        s_stride = 2**levels * (cfg.patch_size or 1)
        if t_stride != 4:
            # diffusers encodes time in chunks of 1, 4, 4, ... frames, which only matches a temporal stride of 4.
            raise InputError(f"{directory}: temporal stride {t_stride} is not supported (Wan VAEs use 4)")
        self.stride: tuple[int, int, int] = (t_stride, s_stride, s_stride)
        self.latent_channels: int = int(cfg.z_dim)

        mean, std = cfg.latents_mean, cfg.latents_std
        if len(mean) != self.latent_channels or len(std) != self.latent_channels:
            raise InputError(f"{directory}: latents_mean/latents_std must have z_dim={self.latent_channels} entries")
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1, 1)

    def valid_frames(self, frames: int) -> bool:
        return frames > 0 and (frames - 1) % self.stride[0] == 0

    def latent_frames(self, frames: int) -> int:
        if not self.valid_frames(frames):
            raise InputError(f"{frames} frames: the Wan VAE needs 1 + {self.stride[0]}k frames (e.g. 1, 5, 9, 81)")
        return 1 + (frames - 1) // self.stride[0]

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        s = self.stride[1]
        if height <= 0 or width <= 0 or height % s or width % s:
            raise InputError(f"size {height}x{width}: the Wan VAE needs height and width divisible by {s}")
        return height // s, width // s

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, F, H, W) in [-1, 1] -> normalised float32 (B, C, T, h, w), the posterior mode (deterministic)."""
        if video.ndim != 5 or video.shape[1] != 3:
            raise InputError(f"video must be (B, 3, F, H, W), got {tuple(video.shape)}")
        self.latent_frames(video.shape[2])
        self.latent_size(video.shape[3], video.shape[4])
        z = self.vae.encode(video.to(self.device, self.dtype)).latent_dist.mode()
        return (z.float() - self.mean) / self.std

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised (B, C, T, h, w) -> float32 (B, 3, F, H, W) clamped to [-1, 1]."""
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels:
            raise InputError(f"latents must be (B, {self.latent_channels}, T, h, w), got {tuple(latents.shape)}")
        z = latents.to(self.device, torch.float32) * self.std + self.mean
        video = self.vae.decode(z.to(self.dtype)).sample
        return video.float().clamp(-1.0, 1.0)
