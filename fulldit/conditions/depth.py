"""Depth condition: a depth video, encoded by the codec like a video, patchified on the video's own grid.

Depth reaches the model as normalised inverse depth (near = bright), the form depth estimators such as
Depth Anything produce and the only one that is defined up to scale for real footage: per clip,
disparity = 1 / depth is mapped to [0, 1] by its min and max, then to a grey 3-channel video in
[-1, 1] that the codec encodes (`depth_video`; `DepthCondition.prepare` for a batch). Its tokens share the video's
positions.
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
from fulldit.video_io import resize_depth

if TYPE_CHECKING:
    from fulldit.config import ModelConfig


def depth_video(depth: torch.Tensor, is_disparity: bool = False) -> torch.Tensor:
    """Depth (F, H, W) -> grey video (3, F, H, W) in [-1, 1] of per-clip normalised inverse depth.

    Pixels without a measurement (depth 0) are treated as infinitely far: disparity 0, black.
    """
    depth = depth.float()
    valid = depth > 0
    disp = depth if is_disparity else torch.where(valid, 1.0 / depth.clamp_min(1e-12), torch.zeros_like(depth))
    if bool(valid.any()):
        lo, hi = disp[valid].min(), disp[valid].max()
        disp = torch.where(valid, (disp - lo) / (hi - lo).clamp_min(1e-8), torch.zeros_like(disp))
    return (disp * 2 - 1)[None].expand(3, -1, -1, -1)


class DepthCondition(nn.Module):
    """Patch embedding of depth latents (B, C, T, H, W) with the model's 3D patch size."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.patch = cfg.patch
        pt, ph, pw = cfg.patch
        self.embed = nn.Linear(cfg.in_channels * pt * ph * pw, cfg.dim)

    @staticmethod
    def prepare(cfg: ModelConfig, given: Sequence[Given], enc: Encoding) -> ConditionInput | None:
        """The batch's depth latents (B, C, T, h, w), a mid-grey video where a sample has none; None if none has."""
        present = [g.depth is not None for g in given]
        if not any(present):
            return None
        (h, w), f = enc.size, enc.frames
        videos = []
        for g in given:
            if g.depth is None:
                videos.append(torch.zeros(3, f, h, w, device=enc.device))
                continue
            if g.depth.shape[0] != f:
                raise InputError(
                    f"{g.sources.get('depth', 'depth')}: {g.depth.shape[0]} depth frames, but the video has {f} frames"
                )
            videos.append(depth_video(resize_depth(g.depth.to(enc.device), enc.size), g.depth_is_disparity))
        return ConditionInput(enc.codec.encode(torch.stack(videos)), torch.tensor(present, device=enc.device))

    @staticmethod
    def num_tokens(cfg: ModelConfig, inp: ConditionInput, grid: Grid) -> int:
        """Depth adds one token per video token: the same grid."""
        return grid.tokens

    def forward(self, inp: ConditionInput, grid: Grid) -> Segment:
        lat = inp.value.to(self.embed.weight.dtype)
        pt, ph, pw = self.patch
        tokens = self.embed(rearrange(lat, "b c (t pt) (h ph) (w pw) -> b (t h w) (c pt ph pw)", pt=pt, ph=ph, pw=pw))
        b, n, _ = tokens.shape
        if n != grid.tokens:
            raise ValueError(f"depth latents give {n} tokens, the video has {grid.tokens}")
        pos = grid_positions(grid.t, grid.h, grid.w, lat.device)[None].expand(b, -1, -1)
        return Segment("depth", tokens, pos, inp.present[:, None].expand(b, n))
