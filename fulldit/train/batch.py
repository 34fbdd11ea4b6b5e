"""From a batch of clips to what the transformer trains on: clean latents and batched condition inputs.

Every clip of a batch brings what it has (a real dataset may lack depth or cameras for some clips); what a
clip lacks is marked absent (`present = False`), never filled with zeros the model must learn to ignore.
Training-time dropout (`fulldit.conditions.drop_conditions`), text dropout and frame conditions
(`fulldit.conditions.frames.sample_known_frames`) are applied by the training loop on top of this.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fulldit.codecs import Codec
from fulldit.conditions import ConditionInput, Grid
from fulldit.conditions.camera import camera_input
from fulldit.conditions.depth import depth_video
from fulldit.conditions.frames import is_causal
from fulldit.config import ModelConfig
from fulldit.data import Batch
from fulldit.video_io import resize_center_crop


@dataclass
class TrainInputs:
    """Clean latents x0 (B, C, T, h, w), condition inputs by name, and the captions."""

    x0: torch.Tensor
    conditions: dict[str, ConditionInput]
    captions: list[str]


def _encode(codec: Codec, video: torch.Tensor) -> torch.Tensor:
    """(B, F, 3, H, W) in [0, 1] -> latents (B, C, T, h, w)."""
    return codec.encode(video.permute(0, 2, 1, 3, 4) * 2 - 1)


@torch.no_grad()
def prepare_batch(batch: Batch, cfg: ModelConfig, codec: Codec, device: torch.device | str) -> TrainInputs:
    """Encode a Batch with the codec and lay out every condition the model has, on `device`."""
    device = torch.device(device)
    video = batch.video.to(device)
    b, f, _, h, w = video.shape
    x0 = _encode(codec, video)
    pt, ph, pw = cfg.patch
    grid = Grid(x0.shape[2] // pt, x0.shape[3] // ph, x0.shape[4] // pw, cfg.patch)
    conditions: dict[str, ConditionInput] = {}
    if "camera" in cfg.conditions:
        present = torch.tensor([c is not None for c in batch.cameras], device=device)
        if bool(present.any()):
            stride_t, causal = codec.stride[0], is_causal(codec)
            values = [camera_input(c, grid, cfg.camera.mode, cfg.camera.frames_per_token, stride_t, causal)
                      if c is not None else None for c in batch.cameras]  # fmt: skip
            like = next(v for v in values if v is not None)
            stacked = torch.stack([v if v is not None else torch.zeros_like(like) for v in values])
            conditions["camera"] = ConditionInput(stacked.to(device), present)
    if "reference" in cfg.conditions and batch.references is not None:
        refs = batch.references[:, : cfg.reference.max_images].to(device)  # (B, N, 3, h', w')
        has = batch.has_reference[:, : cfg.reference.max_images].to(device)
        n = refs.shape[1]
        if refs.shape[-2:] != (h, w):
            refs = resize_center_crop(refs.flatten(0, 1), (h, w))[0].unflatten(0, (b, n))
        lat = _encode(codec, refs.flatten(0, 1)[:, None])[:, :, 0]  # each reference a one-frame video
        conditions["reference"] = ConditionInput(lat.unflatten(0, (b, n)), has)
    if "depth" in cfg.conditions and batch.depth is not None:
        has = batch.has_depth.to(device)
        grey = torch.stack([depth_video(d.to(device)) if ok else torch.zeros(3, f, h, w, device=device)
                            for d, ok in zip(batch.depth, batch.has_depth.tolist())])  # fmt: skip
        conditions["depth"] = ConditionInput(codec.encode(grey), has)
    return TrainInputs(x0, conditions, list(batch.captions))
