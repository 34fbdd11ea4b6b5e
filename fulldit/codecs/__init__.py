"""Codecs map videos to the latents the transformer denoises, and back.

A codec owns its normalisation: `encode` returns latents of roughly unit variance and `decode` undoes it,
so no scale factor appears anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from fulldit.codecs.pixel import PixelCodec
from fulldit.codecs.vae import WanVAECodec
from fulldit.errors import InputError, check

__all__ = ["Codec", "CodecConfig", "PixelCodec", "WanVAECodec", "build_codec"]


@runtime_checkable
class Codec(Protocol):
    latent_channels: int
    stride: tuple[int, int, int]  # (t, h, w) pixel frames / rows / cols per latent

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, F, H, W) in [-1, 1] -> (B, C, T, h, w), normalised to roughly unit variance."""
        ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Inverse of `encode` -> (B, 3, F, H, W) clamped to [-1, 1]."""
        ...

    def latent_frames(self, frames: int) -> int:
        """Latent frame count T for `frames` video frames; InputError if the codec cannot take `frames`."""
        ...

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        """Latent (h, w) for a video size; InputError if it is not divisible by the stride."""
        ...

    def valid_frames(self, frames: int) -> bool: ...


@dataclass(frozen=True)
class CodecConfig:
    kind: str = "pixel"  # "pixel" | "wan-vae"
    stride: tuple[int, int, int] = (1, 4, 4)  # pixel codec only
    path: str = ""  # wan-vae: local AutoencoderKLWan directory (or a diffusers pipeline directory with vae/)
    dtype: str = "float32"  # wan-vae compute dtype: float32 | bfloat16

    def __post_init__(self) -> None:
        check(self.kind in ("pixel", "wan-vae"), "codec.kind", self.kind, "expected 'pixel' or 'wan-vae'")
        check(all(s >= 1 for s in self.stride), "codec.stride", list(self.stride), "must be three integers >= 1")
        check(self.dtype in ("float32", "bfloat16"), "codec.dtype", self.dtype, "expected 'float32' or 'bfloat16'")


def build_codec(cfg: CodecConfig, device: str | torch.device = "cpu") -> Codec:
    if cfg.kind == "pixel":
        return PixelCodec(tuple(cfg.stride))
    if cfg.kind == "wan-vae":
        return WanVAECodec(cfg.path, device=device, dtype=cfg.dtype)
    raise InputError(f"codec kind {cfg.kind!r}: expected 'pixel' or 'wan-vae'")
