"""Condition inputs: camera grouping and rays, depth normalisation, reference positions, CFG dropout."""

from __future__ import annotations

import dataclasses

import torch

from fulldit.camera import build_path
from fulldit.conditions import ConditionInput, Grid, drop_conditions
from fulldit.conditions.camera import camera_input
from fulldit.conditions.depth import depth_video
from fulldit.conditions.reference import ReferenceCondition
from tests.conftest import tiny_model_config


def test_camera_tokens_input_groups_frames_per_latent() -> None:
    cam = build_path("dolly-in 1", 9)
    grid = Grid(t=3, h=4, w=4, patch=(1, 2, 2))
    x = camera_input(cam, grid, "tokens", frames_per_token=4, stride_t=4, causal=True)
    assert x.shape == (3, 4 * 16)
    first = x[0].view(4, 16)
    assert torch.equal(first[0], first[3])  # latent 0 holds frame 0 alone: repeated to fill the group
    last = x[2].view(4, 16)
    # the last group holds frames 5..8; translation z of the relative pose grows along a dolly-in
    tz = last[:, 11]
    assert (tz[1:] < tz[:-1]).all() or (tz[1:] > tz[:-1]).all()


def test_camera_plucker_input_is_on_the_token_grid() -> None:
    cam = build_path("pan-right 0.5rad", 4)
    grid = Grid(t=2, h=3, w=5, patch=(2, 2, 2))
    x = camera_input(cam, grid, "plucker", frames_per_token=2, stride_t=1, causal=False)
    assert x.shape == (2, 3, 5, 12)
    directions = x[..., 3:6]
    assert torch.allclose(directions.norm(dim=-1), torch.ones(2, 3, 5), atol=1e-5)


def test_depth_video_is_normalised_inverse_depth() -> None:
    depth = torch.tensor([[[1.0, 2.0], [4.0, 0.0]]])  # 0 = no measurement
    v = depth_video(depth)
    assert v.shape == (3, 1, 2, 2)
    assert v[0, 0, 0, 0] == 1 and v[0, 0, 1, 0] == -1  # nearest -> brightest, farthest -> darkest
    assert v[0, 0, 0, 1] > v[0, 0, 1, 0] and v[0, 0, 1, 1] == -1  # missing depth reads as far
    torch.testing.assert_close(depth_video(1.0 / depth[:, :1], is_disparity=True), depth_video(depth[:, :1]))


def test_reference_positions_sit_apart_from_the_video() -> None:
    cond = ReferenceCondition(tiny_model_config())
    lat = torch.randn(1, 3, 12, 4, 4)
    seg = cond(ConditionInput(lat, torch.tensor([[True, True, False]])), Grid(2, 2, 2, (1, 2, 2)))
    assert seg.tokens.shape == (1, 12, 32)
    assert seg.pos[0, :4, 0].eq(-1).all() and seg.pos[0, 4:8, 0].eq(-2).all() and seg.pos[0, 8:, 0].eq(-3).all()
    assert seg.mask[0].tolist() == [True] * 8 + [False] * 4


def test_dropout_only_flips_presence() -> None:
    g = torch.Generator().manual_seed(0)
    conds = {
        "depth": ConditionInput(torch.randn(1000, 2), torch.ones(1000, dtype=torch.bool)),
        "reference": ConditionInput(torch.randn(1000, 2), torch.ones(1000, 2, dtype=torch.bool)),
    }
    out = drop_conditions(conds, {"depth": 0.3, "reference": 0.0}, g)
    assert torch.equal(out["depth"].value, conds["depth"].value)  # values untouched: no zeros to learn to ignore
    assert 0.25 < 1 - out["depth"].present.float().mean() < 0.35
    assert out["reference"].present.all()


def test_generation_and_training_prepare_a_clip_alike() -> None:
    """One clip through `fulldit generate`'s path (Pipeline.condition_inputs) and through training's
    (collate + prepare_batch, the clip beside another that lacks every condition) gives the same tensors: both call
    the condition modules' own `prepare`, and each module counts its tokens."""
    from fulldit.conditions import condition_tokens
    from fulldit.config import load_config
    from fulldit.data import Clip, collate
    from fulldit.generate import Pipeline, Request
    from fulldit.train.batch import prepare_batch
    from fulldit.world.clips import render_clip

    cfg = load_config("configs/synth-s16.yaml")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, layers=1))
    pipe = Pipeline.from_config(cfg)
    clip = render_clip(3, 8, 64, 64)
    req = Request(camera=clip.camera, references=clip.references, depth=clip.depth, frames=8, height=64, width=64)
    generation = pipe.condition_inputs(req)
    bare = Clip(clip.video)
    training = prepare_batch(collate([bare, clip]), cfg.model, pipe.codec, "cpu").conditions
    assert sorted(generation) == sorted(training) == ["camera", "depth", "reference"]
    for name, inp in generation.items():
        assert torch.equal(inp.value[0], training[name].value[1]), name
        assert bool(inp.present.all()) and bool(training[name].present[1].all()) and not training[name].present[0].any()
    grid = pipe.model.grid(prepare_batch(collate([clip]), cfg.model, pipe.codec, "cpu").x0.shape)
    assert condition_tokens(cfg.model, generation, grid) == [
        {"camera": grid.t * 2, "reference": len(clip.references) * grid.h * grid.w, "depth": grid.tokens}[n]
        for n in generation
    ]
