"""The first frame reprojected through depth and camera, and the depth condition that reads it
(`model.depth.reproject`): geometry, which samples get it (generation and training alike), and the zero start."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fulldit.camera import CameraPath
from fulldit.cli import main
from fulldit.conditions import ConditionInput, Encoding, Given, Grid, link_conditions, prepare_conditions
from fulldit.conditions.depth import DepthCondition
from fulldit.conditions.reproject import reproject_first_frame
from fulldit.config import DepthConfig
from fulldit.train.loop import train
from fulldit.world.clips import render_clip
from tests.conftest import randomize, tiny_config

INTR = [0.8, 0.8, 0.5, 0.5]


def _path(translations: list[list[float]]) -> CameraPath:
    w2c = np.stack([np.eye(4)] * len(translations))
    w2c[:, :3, 3] = -np.asarray(translations)  # camera centre c: t = -R c with R = I
    return CameraPath(np.tile(INTR, (len(translations), 1)), w2c)


def test_a_still_camera_gives_the_first_frame_everywhere() -> None:
    first = torch.rand(3, 24, 32, generator=torch.Generator().manual_seed(0))
    depth = (1 + torch.rand(24, 32, generator=torch.Generator().manual_seed(1))).expand(3, -1, -1).clone()
    depth[:, 0, 0] = 0  # no measurement: never valid
    video, valid = reproject_first_frame(first, depth, _path([[0, 0, 0]] * 3))
    assert video.shape == (3, 3, 24, 32) and valid.shape == (3, 24, 32)
    assert valid.sum() == 3 * (24 * 32 - 1) and not valid[:, 0, 0].any()
    assert torch.allclose(video[:, :, 1:], first[:, None, 1:].expand(-1, 3, -1, -1), atol=1e-5)


def test_a_sideways_move_shifts_a_wall_by_its_disparity_and_reveals_an_edge() -> None:
    """A wall at depth 2 seen by a camera that moves right by 2 * 4 / (0.8 * 32) world units: 4 pixels to the left."""
    first = torch.rand(3, 16, 32, generator=torch.Generator().manual_seed(2))
    depth = torch.full((2, 16, 32), 2.0)
    step = 2 * 4 / (0.8 * 32)
    video, valid = reproject_first_frame(first, depth, _path([[0, 0, 0], [step, 0, 0]]))
    assert torch.allclose(video[:, 1, :, :-4], first[:, :, 4:], atol=1e-4)
    assert valid[1, :, :-4].all() and not valid[1, :, -3:].any()  # the last columns were never seen
    assert (video[:, 1][:, ~valid[1]] == 0).all()


def test_a_nearer_surface_hides_what_frame_0_saw() -> None:
    """A near box in frame 1 covers pixels whose frame-0 surface lies behind it: those are not frame 0's colour."""
    first = torch.rand(3, 16, 16)
    depth = torch.full((2, 16, 16), 4.0)
    depth[1, 4:8, 4:8] = 1.0  # frame 1 sees something near that frame 0 saw as far wall
    _, valid = reproject_first_frame(first, depth, _path([[0, 0, 0], [0, 0, 0]]))
    assert not valid[1, 4:8, 4:8].any() and valid[1].sum() == 256 - 16


def test_on_a_still_world_the_valid_pixels_are_the_truth() -> None:
    """A rendered world with nothing moving: where valid, the reprojection matches the frames far better than the
    first frame copied (lighting follows the camera, so not exactly)."""
    clip = render_clip(5, frames=8, height=64, width=64, motion=False)
    video, valid = reproject_first_frame(clip.video[0], clip.depth, clip.camera)
    truth = clip.video.permute(1, 0, 2, 3)
    mask = valid[1:][None].expand(3, -1, -1, -1)
    warped = ((video[:, 1:] - truth[:, 1:])[mask] ** 2).mean()
    copied = ((truth[:, :1] - truth[:, 1:])[mask] ** 2).mean()
    assert valid[1:].float().mean() > 0.5 and -10 * torch.log10(warped) > 24 and warped < copied / 4


def _encoding(cfg, frames: int = 4, size: int = 16) -> Encoding:  # noqa: ANN001
    from fulldit.codecs import build_codec

    codec = build_codec(cfg.codec)
    grid = Grid(frames, size // 4, size // 4, cfg.model.patch)
    return Encoding(frames, (size, size), grid, codec, torch.device("cpu"))


def test_the_depth_condition_reprojects_only_where_camera_first_frame_and_metric_depth_are_given() -> None:
    cfg = tiny_config(conditions=("camera", "depth"), depth=DepthConfig(reproject=True))
    enc = _encoding(cfg)
    cam = _path([[0, 0, 0], [0.05, 0, 0], [0.1, 0, 0], [0.15, 0, 0]])
    depth, first = torch.full((4, 16, 16), 2.0), torch.rand(3, 16, 16)
    given = [
        Given(cam, (), depth, first_frame=first),  # all three: reprojected
        Given(None, (), depth, first_frame=first),  # no camera
        Given(cam, (), depth),  # no first frame
        Given(cam, (), depth, True, first_frame=first),  # disparity: no metric depth
        Given(cam, (), None, first_frame=first),  # no depth at all
    ]
    depth_in = prepare_conditions(cfg.model, given, enc)["depth"]
    assert depth_in.value.shape[1] == 3 * cfg.model.in_channels
    assert depth_in.aux.tolist() == [True, False, False, False, False]
    assert depth_in.present.tolist() == [True, True, True, True, False]
    plain = prepare_conditions(tiny_config(conditions=("camera", "depth")).model, given, enc)["depth"]
    assert plain.aux is None and torch.equal(plain.value, depth_in.value[:, : cfg.model.in_channels])


def test_relative_depth_from_a_dataset_is_never_reprojected() -> None:
    from fulldit.data import Clip, collate
    from fulldit.train.batch import given_of

    clip = render_clip(3, frames=4, height=16, width=16)
    relative = Clip(clip.video, clip.depth, clip.camera, [], clip.caption, {"dataset": {"depth_kind": "relative"}})
    metric = Clip(clip.video, clip.depth, clip.camera, [], clip.caption, {"dataset": {"depth_kind": "metric"}})
    given = given_of(collate([relative, metric, clip]))
    assert [g.first_frame is not None for g in given] == [False, True, True]


def test_training_keeps_the_reprojection_only_with_the_camera_and_a_known_first_frame() -> None:
    value, on = torch.zeros(4, 36, 4, 4, 4), torch.ones(4, dtype=torch.bool)
    conds = {
        "depth": ConditionInput(value, on, on.clone()),
        "camera": ConditionInput(torch.zeros(4, 2, 8), torch.tensor([True, True, False, True])),
    }
    known = torch.tensor([[True, False], [False, False], [True, False], [True, True]])
    assert link_conditions(conds, known)["depth"].aux.tolist() == [True, False, False, True]
    without_camera = link_conditions({"depth": conds["depth"]}, known)["depth"]
    assert not without_camera.aux.any()


def test_the_reprojection_adds_to_the_depth_tokens_only_where_given() -> None:
    cfg = tiny_config(conditions=("depth",), depth=DepthConfig(reproject=True)).model
    module = randomize(DepthCondition(cfg))
    c = cfg.in_channels
    grid = Grid(4, 4, 4, cfg.patch)
    value = torch.randn(2, 3 * c, 4, 8, 8)
    with_aux = module(ConditionInput(value, torch.ones(2, dtype=torch.bool), torch.tensor([True, False])), grid)
    altered = value.clone()
    altered[:, c:] += 1  # other reprojections
    again = module(ConditionInput(altered, torch.ones(2, dtype=torch.bool), torch.tensor([True, False])), grid)
    assert not torch.allclose(with_aux.tokens[0], again.tokens[0])  # read where given
    assert torch.equal(with_aux.tokens[1], again.tokens[1])  # ignored where not
    plain = DepthCondition(tiny_config(conditions=("depth",)).model)
    plain.embed.load_state_dict(module.embed.state_dict())
    alone = plain(ConditionInput(value[:, :c], torch.ones(2, dtype=torch.bool)), grid)
    assert torch.allclose(alone.tokens[1], with_aux.tokens[1], atol=1e-6)


@pytest.mark.parametrize("extra", [[], ["--layers", "3"]])
def test_deepen_adds_a_zero_reprojection_that_changes_nothing(tmp_path: Path, extra: list[str]) -> None:
    """A trained checkpoint grown with --depth-reproject computes what it computed, on a request with camera, depth
    and first frame (the case it then reads the reprojection in)."""
    from fulldit.generate import Pipeline, Request

    fast = ["train.steps=1", "train.batch_size=2", "train.data.frames=4", "train.data.height=32",
            "train.data.width=32", "train.data.workers=0", "train.precision=fp32", "train.warmup=1",
            "sample.frames=4", "sample.height=32", "sample.width=32", "sample.steps=2", "model.layers=2"]  # fmt: skip
    run = train("configs/tiny.yaml", str(tmp_path / "run"), fast, device="cpu")
    out = tmp_path / "grown"
    assert main(["convert", "--from", "deepen", str(run.model), "--out", str(out), "--depth-reproject", *extra]) == 0
    clip = render_clip(7, frames=4, height=32, width=32)
    req = Request(prompt=clip.caption, camera=clip.camera, depth=clip.depth, first_frame=clip.video[0], seed=3)
    old, new = Pipeline.from_pretrained(run.model, device="cpu"), Pipeline.from_pretrained(out, device="cpu")
    assert new.config.model.depth.reproject and bool(new.condition_inputs(new._resolve(req))["depth"].aux[0])
    assert torch.allclose(old.generate(req), new.generate(req), atol=1e-5)
    assert main(["convert", "--from", "deepen", str(out), "--out", str(tmp_path / "twice"), "--depth-reproject"]) == 2


def test_a_reprojecting_model_trains(tmp_path: Path) -> None:
    """A few steps of the training loop with the reprojection on (first frames known in every sample)."""
    fast = ["train.steps=2", "train.batch_size=2", "train.data.frames=4", "train.data.height=32",
            "train.data.width=32", "train.data.workers=0", "train.precision=fp32", "train.warmup=1",
            "sample.frames=4", "sample.height=32", "sample.width=32", "sample.steps=2", "model.layers=2",
            "model.depth.reproject=true", "frames.first=1.0", "frames.prefix=0", "frames.last=0",
            "train.curriculum.stages=[{start: 0, conditions: [camera, depth]}]"]  # fmt: skip
    run = train("configs/tiny.yaml", str(tmp_path / "run"), fast, device="cpu")
    assert run.step == 2 and all(np.isfinite(v) for v in run.losses.values())
    weights = load_file(str(run.model / "model.safetensors"))
    reproject, embed = weights["conditions.depth.reproject.weight"], weights["conditions.depth.embed.weight"]
    assert reproject.shape[1] == 2 * embed.shape[1]
