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
from fulldit.conditions import ConditionInput, Encoding, Given, Grid, prepare_conditions
from fulldit.config import ModelConfig
from fulldit.data import Batch
from fulldit.data.formats import RESERVED_META


@dataclass
class TrainInputs:
    """Clean latents x0 (B, C, T, h, w), condition inputs by name, and the captions."""

    x0: torch.Tensor
    conditions: dict[str, ConditionInput]
    captions: list[str]


def _encode(codec: Codec, video: torch.Tensor) -> torch.Tensor:
    """(B, F, 3, H, W) in [0, 1] -> latents (B, C, T, h, w)."""
    return codec.encode(video.permute(0, 2, 1, 3, 4) * 2 - 1)


def given_of(batch: Batch) -> list[Given]:
    """Each clip's raw token-condition inputs (what collate padded is left out again)."""
    refs = batch.references
    given = []
    for b, camera in enumerate(batch.cameras):
        depth = batch.depth[b] if batch.depth is not None and bool(batch.has_depth[b]) else None
        images = [] if refs is None else [refs[b, i] for i in range(refs.shape[1]) if bool(batch.has_reference[b, i])]
        # the first frame for the depth condition's reprojection (`model.depth.reproject`; kept by `link_conditions`
        # only in the samples whose step gives the camera and the first frame), where the depth is metric
        metric = batch.meta[b].get(RESERVED_META, {}).get("depth_kind", "metric") == "metric" if batch.meta else True
        given.append(Given(camera, images, depth, first_frame=batch.video[b, 0] if metric else None))
    return given


@torch.no_grad()
def prepare_batch(batch: Batch, cfg: ModelConfig, codec: Codec, device: torch.device | str) -> TrainInputs:
    """Encode a Batch with the codec and lay out every condition the model has, on `device`."""
    device = torch.device(device)
    video = batch.video.to(device)
    b, f, _, h, w = video.shape
    x0 = _encode(codec, video)
    pt, ph, pw = cfg.patch
    grid = Grid(x0.shape[2] // pt, x0.shape[3] // ph, x0.shape[4] // pw, cfg.patch)
    enc = Encoding(f, (h, w), grid, codec, device, training=True)
    return TrainInputs(x0, prepare_conditions(cfg, given_of(batch), enc), list(batch.captions))
