"""Batches of clips become latents and batched condition inputs the model accepts; absent parts are masked."""

from __future__ import annotations

import torch

from fulldit.codecs import PixelCodec
from fulldit.config import FlowConfig
from fulldit.data import collate
from fulldit.flow import flow_loss, interpolate
from fulldit.model import FullDiT
from fulldit.train.batch import prepare_batch
from fulldit.world.clips import render_batch
from tests.conftest import tiny_model_config


def test_prepare_batch_feeds_the_model() -> None:
    clips = render_batch([0, 1, 2], frames=4, height=16, width=16)
    clips[1].depth, clips[2].camera, clips[2].references = None, None, []  # a real dataset lacks things
    batch = collate(clips)
    cfg = tiny_model_config()
    codec = PixelCodec((1, 2, 2))
    inputs = prepare_batch(batch, cfg, codec, "cpu")
    assert inputs.x0.shape == (3, 12, 4, 8, 8)
    assert inputs.conditions["depth"].present.tolist() == [True, False, True]
    assert inputs.conditions["camera"].present.tolist() == [True, True, False]
    assert not inputs.conditions["reference"].present[2].any() and inputs.conditions["reference"].present[0].any()
    assert inputs.conditions["reference"].value.shape[2:] == (12, 8, 8)
    torch.testing.assert_close((codec.decode(inputs.x0) + 1) / 2, batch.video.permute(0, 2, 1, 3, 4))
    model = FullDiT(cfg)
    t = torch.full((3,), 0.5)
    noise = torch.randn_like(inputs.x0)
    x_t = interpolate(inputs.x0, noise, t)
    out = model(x_t, t, torch.randn(3, 5, cfg.text_dim), None, inputs.conditions)
    loss = flow_loss(out, inputs.x0, noise, x_t, t, FlowConfig())
    assert loss.shape == (3,) and torch.isfinite(loss).all()
