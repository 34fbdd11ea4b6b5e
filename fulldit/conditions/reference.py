"""Reference (identity) condition: 1..N images, encoded by the codec, patchified into spatial-only tokens.

Input: latents (B, N, C, h, w) — each reference image encoded as a one-frame video — and present
(B, N), which says which of the N slots hold an image (samples may have different counts). Image i
sits at time position -1 - i, apart from the video, on its own spatial grid (sequence.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from einops import rearrange
from torch import nn

from fulldit.conditions.base import ConditionInput, Encoding, Given, Grid
from fulldit.errors import InputError
from fulldit.sequence import Segment, grid_positions
from fulldit.video_io import resize_center_crop

if TYPE_CHECKING:
    from fulldit.config import ModelConfig


class ReferenceCondition(nn.Module):
    """Patch embedding of reference-image latents (2D patches of the model's spatial patch size)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        _, self.ph, self.pw = cfg.patch
        self.max_images = cfg.reference.max_images
        self.embed = nn.Linear(cfg.in_channels * self.ph * self.pw, cfg.dim)

    @staticmethod
    def prepare(cfg: ModelConfig, given: Sequence[Given], enc: Encoding) -> ConditionInput | None:
        """The batch's reference latents (B, N, C, h, w), N the most any sample has; None when none has any.

        Each image is resized and centre-cropped to the video's size and encoded as a one-frame video; empty
        slots are black images marked absent. Training data keeps the first `max_images`; a request with more fails.
        """
        most = cfg.reference.max_images
        if not enc.training and any(len(g.references) > most for g in given):
            count = max(len(g.references) for g in given)
            raise InputError(f"{count} reference images, this model takes at most {most}")
        refs = [list(g.references)[:most] for g in given]
        n = max(len(r) for r in refs)
        if n == 0:
            return None
        b, size = len(given), enc.size
        images = torch.zeros(b * n, 3, *size, device=enc.device)
        present = torch.zeros(b, n, dtype=torch.bool, device=enc.device)
        for i, r in enumerate(refs):
            for j, img in enumerate(r):
                images[i * n + j] = img if tuple(img.shape[-2:]) == size else resize_center_crop(img, size)[0]
                present[i, j] = True
        lat = enc.codec.encode(images[:, :, None] * 2 - 1)[:, :, 0]  # each a one-frame video: (B*N, C, h, w)
        return ConditionInput(lat.unflatten(0, (b, n)), present)

    @staticmethod
    def num_tokens(cfg: ModelConfig, inp: ConditionInput, grid: Grid) -> int:
        """Tokens the references add per sample: one spatial grid per image slot."""
        return inp.value.shape[1] * grid.h * grid.w

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
