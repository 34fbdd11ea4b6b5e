"""Reference (identity) condition: 1..N images, encoded by the codec, patchified into spatial-only tokens.

Input: latents (B, N, C, h, w) — each reference image encoded as a one-frame video — and present
(B, N), which says which of the N slots hold an image (samples may have different counts). Image i
sits at time position -1 - i, apart from the video, on its own spatial grid (sequence.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from einops import rearrange
from torch import nn

from fulldit.conditions.base import ConditionInput, Grid
from fulldit.sequence import Segment, grid_positions

if TYPE_CHECKING:
    from fulldit.config import ModelConfig


class ReferenceCondition(nn.Module):
    """Patch embedding of reference-image latents (2D patches of the model's spatial patch size)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        _, self.ph, self.pw = cfg.patch
        self.max_images = cfg.reference.max_images
        self.embed = nn.Linear(cfg.in_channels * self.ph * self.pw, cfg.dim)

    def forward(self, inp: ConditionInput, grid: Grid) -> Segment:
        lat = inp.value.to(self.embed.weight.dtype)  # (B, N, C, h, w)
        b, n, _, h, w = lat.shape
        if n > self.max_images:
            raise ValueError(f"{n} reference images given, the model takes at most {self.max_images}")
        hp, wp = h // self.ph, w // self.pw
        tokens = self.embed(rearrange(lat, "b n c (h ph) (w pw) -> b (n h w) (c ph pw)", ph=self.ph, pw=self.pw))
        pos = torch.cat([grid_positions(1, hp, wp, lat.device, t0=-1.0 - i) for i in range(n)])  # (N*hp*wp, 3)
        mask = inp.present[:, :, None].expand(b, n, hp * wp).reshape(b, -1)
        return Segment("reference", tokens, pos[None].expand(b, -1, -1), mask)
