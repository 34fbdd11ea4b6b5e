"""Camera condition: a camera path becomes a few tokens per latent frame (FullDiT) or dense Plücker rays.

Input preparation (`CameraCondition.prepare`, one sample: `camera_input`) turns a `CameraPath` into the tensor this
module embeds:
- mode "tokens": per token frame, the relative, scale-normalised 3x4 pose and the 4 normalised
  intrinsics of each video frame it covers (G = frames_per_token of them, 16 numbers each) ->
  (B, T, G*16). An MLP maps them to `tokens_per_frame` tokens placed on the video's time axis.
- mode "plucker": the Plücker rays (moment, direction) through the centre of every video token, for
  each of its G frames -> (B, T, h, w, G*6), embedded by a linear layer on the video's own grid
  (the convention of CameraCtrl, CamI2V and AC3D).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from einops import rearrange
from torch import nn

from fulldit.camera import CameraPath, camera_features, plucker_rays
from fulldit.conditions.base import ConditionInput, Encoding, Given, Grid
from fulldit.conditions.frames import is_causal, latent_index
from fulldit.errors import InputError
from fulldit.sequence import Segment, grid_positions

if TYPE_CHECKING:
    from fulldit.config import ModelConfig

POSE_FEATURES = 16  # 12 (3x4 relative w2c) + 4 (fx, fy, cx, cy normalised)
RAY_FEATURES = 6  # Plücker moment + direction


def frame_groups(frames: int, stride_t: int, patch_t: int, causal: bool) -> list[list[int]]:
    """Which video frames each token frame covers.

    A causal video VAE (Wan2.1) encodes frame 0 alone and then groups of `stride_t` frames:
    latent l covers frames 4l-3..4l. A non-causal codec covers frames l*s..l*s+s-1.
    """
    latent = latent_index(frames, stride_t, causal)
    groups: dict[int, list[int]] = {}
    for f, lat in enumerate(latent):
        groups.setdefault(lat // patch_t, []).append(f)
    return [groups[j] for j in sorted(groups)]


def camera_input(
    cam: CameraPath, grid: Grid, mode: str, frames_per_token: int, stride_t: int, causal: bool
) -> torch.Tensor:
    """The camera tensor for one sample: (T, G*16) in mode "tokens", (T, h, w, G*6) in mode "plucker"."""
    rel = cam.relative()
    groups = frame_groups(cam.num_frames, stride_t, grid.patch[0], causal)
    if len(groups) != grid.t:
        raise ValueError(f"camera covers {len(groups)} token frames, the video has {grid.t}")
    # left-pad short groups (a causal codec's first latent holds one frame) by repeating their first frame
    idx = []
    for g in groups:
        if len(g) > frames_per_token:
            raise ValueError(f"a token frame covers {len(g)} video frames, model expects {frames_per_token}")
        idx.append([g[0]] * (frames_per_token - len(g)) + g)
    idx_t = torch.tensor(idx)  # (T, G)
    if mode == "tokens":
        return camera_features(rel)[idx_t].flatten(1)  # (T, G*16)
    rays = plucker_rays(rel, grid.h, grid.w)  # (F, 6, h, w): rays through token centres
    return rearrange(rays[idx_t], "t g c h w -> t h w (g c)")


class CameraCondition(nn.Module):
    """Camera tokens: `tokens_per_frame` per token frame ("tokens") or one per video token ("plucker")."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = cfg.camera
        self.mode, self.k, self.g = c.mode, c.tokens_per_frame, c.frames_per_token
        width = self.g * (POSE_FEATURES if self.mode == "tokens" else RAY_FEATURES)
        out = cfg.dim * (self.k if self.mode == "tokens" else 1)
        self.embed = nn.Sequential(nn.Linear(width, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, out))

    @staticmethod
    def prepare(cfg: ModelConfig, given: Sequence[Given], enc: Encoding) -> ConditionInput | None:
        """The batch's camera tensors, (B, T, G*16) or (B, T, h, w, G*6); None when no sample has a camera."""
        present = [g.camera is not None for g in given]
        if not any(present):
            return None
        values = []
        for g in given:
            if g.camera is not None and g.camera.num_frames != enc.frames:
                raise InputError(f"{g.sources.get('camera', 'camera')}: {g.camera.num_frames} camera poses, "
                                 f"but the video has {enc.frames} frames")  # fmt: skip
            values.append(None if g.camera is None else camera_input(
                g.camera, enc.grid, cfg.camera.mode, cfg.camera.frames_per_token, enc.codec.stride[0],
                is_causal(enc.codec)))  # fmt: skip
        like = next(v for v in values if v is not None)
        stacked = torch.stack([v if v is not None else torch.zeros_like(like) for v in values])
        return ConditionInput(stacked.to(enc.device), torch.tensor(present, device=enc.device))

    @staticmethod
    def num_tokens(cfg: ModelConfig, inp: ConditionInput, grid: Grid) -> int:
        """Tokens the camera adds per sample: a few per token frame, or one per video token (Plücker)."""
        return grid.tokens if cfg.camera.mode == "plucker" else grid.t * cfg.camera.tokens_per_frame

    def forward(self, inp: ConditionInput, grid: Grid) -> Segment:
        value = inp.value.to(self.embed[0].weight.dtype)
        b, device = value.shape[0], value.device
        if self.mode == "tokens":
            tokens = rearrange(self.embed(value), "b t (k d) -> b (t k) d", k=self.k)  # (B, T*k, D)
            t = torch.arange(grid.t, device=device, dtype=torch.float32).repeat_interleave(self.k)
            centre = torch.tensor([(grid.h - 1) / 2, (grid.w - 1) / 2], device=device).expand(t.shape[0], 2)
            pos = torch.cat([t[:, None], centre], 1)  # (T*k, 3): time of the frame, centre of the grid
        else:
            tokens = rearrange(self.embed(value), "b t h w d -> b (t h w) d")  # (B, T*h*w, D)
            pos = grid_positions(grid.t, grid.h, grid.w, device)
        mask = inp.present[:, None].expand(b, tokens.shape[1])
        return Segment("camera", tokens, pos[None].expand(b, -1, -1), mask)
