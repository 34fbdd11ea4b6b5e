"""Depth condition: a depth video, encoded by the codec like a video, patchified on the video's own grid.

Depth reaches the model as normalised inverse depth (near = bright), the form depth estimators such as
Depth Anything produce and the only one that is defined up to scale for real footage: per clip,
disparity = 1 / depth is mapped to [0, 1] by its min and max, then to a grey 3-channel video in
[-1, 1] that the codec encodes (`depth_video`; `DepthCondition.prepare` for a batch). Its tokens share the video's
positions.

With `model.depth.reproject` the same tokens also read the first frame reprojected through the depth and the camera
(reproject.py) where a sample has metric depth, a camera path and a known first frame: the reprojected video and its
validity, each encoded by the codec like a video, through a second patch embedding added to the depth's (`aux` says
which samples have it; in training `link` keeps it only where the step gives the camera and the first frame).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from einops import rearrange
from torch import nn

from fulldit.conditions.base import ConditionInput, Encoding, Given, Grid
from fulldit.conditions.reproject import reproject_first_frame
from fulldit.errors import InputError
from fulldit.sequence import Segment, grid_positions
from fulldit.video_io import resize_center_crop, resize_depth

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


def reprojection_videos(given: Given, frames: int, size: tuple[int, int], device: torch.device) -> tuple | None:
    """(reprojected first frame, its validity) as two videos (3, F, H, W) in [-1, 1] at `size` (invalid pixels 0),
    or None where the sample lacks metric depth, a camera path or a first frame."""
    if given.depth is None or given.depth_is_disparity or given.camera is None or given.first_frame is None:
        return None
    if given.camera.num_frames != frames:
        where = given.sources.get("camera", "camera")
        raise InputError(f"{where}: {given.camera.num_frames} camera poses, but the video has {frames} frames")
    depth = resize_depth(given.depth.to(device), size)
    first = resize_center_crop(given.first_frame.to(device).float(), size)[0]
    video, valid = reproject_first_frame(first, depth, given.camera)
    shown = valid[None].expand(3, -1, -1, -1)
    return torch.where(shown, video * 2 - 1, torch.zeros_like(video)), shown.float() * 2 - 1


class DepthCondition(nn.Module):
    """Patch embedding of depth latents (B, C, T, H, W) with the model's 3D patch size; with `depth.reproject`, value
    (B, 3C, T, H, W) also holds the reprojected first frame's and its validity's latents (`aux`: which samples)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.patch = cfg.patch
        pt, ph, pw = cfg.patch
        self.embed = nn.Linear(cfg.in_channels * pt * ph * pw, cfg.dim)
        # `fulldit convert --from deepen --depth-reproject` adds it to a trained model with zero weights (the same
        # outputs until trained)
        self.reproject = nn.Linear(2 * cfg.in_channels * pt * ph * pw, cfg.dim) if cfg.depth.reproject else None

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
        latents = enc.codec.encode(torch.stack(videos))
        present_t = torch.tensor(present, device=enc.device)
        if not cfg.depth.reproject:
            return ConditionInput(latents, present_t)
        blank = torch.zeros(3, f, h, w, device=enc.device)
        warps = [reprojection_videos(g, f, (h, w), enc.device) if ok else None for g, ok in zip(given, present)]
        warp = enc.codec.encode(torch.stack([blank if r is None else r[0] for r in warps]))
        valid = enc.codec.encode(torch.stack([blank - 1 if r is None else r[1] for r in warps]))
        aux = torch.tensor([r is not None for r in warps], device=enc.device)
        return ConditionInput(torch.cat([latents, warp.to(latents.dtype), valid.to(latents.dtype)], 1), present_t, aux)

    @staticmethod
    def link(inp: ConditionInput, conditions: dict[str, ConditionInput], known: torch.Tensor) -> ConditionInput:
        """Training: the reprojection only where this step gives the camera and the first frame (known (B, T)), as
        generation has it only then."""
        if inp.aux is None:
            return inp
        camera = conditions.get("camera")
        aux = inp.aux & known[:, 0].to(inp.aux.device)
        aux = aux & camera.present.to(aux.device) if camera is not None else torch.zeros_like(aux)
        return ConditionInput(inp.value, inp.present, aux)

    @staticmethod
    def num_tokens(cfg: ModelConfig, inp: ConditionInput, grid: Grid) -> int:
        """Depth adds one token per video token: the same grid."""
        return grid.tokens

    def forward(self, inp: ConditionInput, grid: Grid) -> Segment:
        lat = inp.value.to(self.embed.weight.dtype)
        pt, ph, pw = self.patch
        c = self.embed.in_features // (pt * ph * pw)
        patches = rearrange(lat, "b c (t pt) (h ph) (w pw) -> b (t h w) (c pt ph pw)", pt=pt, ph=ph, pw=pw)
        tokens = self.embed(patches[..., : c * pt * ph * pw])  # channel-major: the depth's channels come first
        if self.reproject is not None and lat.shape[1] == 3 * c and inp.aux is not None:
            on = inp.aux.to(tokens.dtype)[:, None, None]  # (B, 1, 1): without a reprojection, nothing is added
            tokens = tokens + on * self.reproject(patches[..., c * pt * ph * pw :])
        b, n, _ = tokens.shape
        if n != grid.tokens:
            raise ValueError(f"depth latents give {n} tokens, the video has {grid.tokens}")
        pos = grid_positions(grid.t, grid.h, grid.w, lat.device)[None].expand(b, -1, -1)
        return Segment("depth", tokens, pos, inp.present[:, None].expand(b, n))
