"""Depth-control metric: invariant errors, the synthetic-world estimator, its training script, transformers models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fulldit.errors import InputError
from fulldit.eval import depth_net
from fulldit.eval.depth_metrics import (
    SynthDepthNet,
    TransformersDepth,
    align_inverse_depth,
    clip_depth_errors,
    depth_control_scores,
    depth_errors,
    depth_rank_check,
    load_estimator,
)
from fulldit.eval.depth_net import depth_loss
from fulldit.world.clips import render_batch
from tests.conftest import bench_script


@pytest.fixture(scope="module")
def clips() -> tuple[torch.Tensor, torch.Tensor]:
    """4 ground-truth clips of 4 frames at 32x32: videos (4, 4, 3, 32, 32), metric depth (4, 4, 32, 32)."""
    rendered = render_batch(range(4), frames=4, height=32, width=32, references_per_object=0)
    return torch.stack([c.video for c in rendered]), torch.stack([c.depth for c in rendered])


def test_exact_and_affine_predictions_score_zero(clips) -> None:
    _, depth = clips
    inv = 1.0 / depth
    for pred in (inv, 3.7 * inv - 0.2, -2.0 * inv + 5.0):
        errs = depth_errors(pred, depth)
        assert errs["abs_rel"] < 1e-4 and errs["inv_mae"] < 1e-4, errs
        assert torch.allclose(align_inverse_depth(pred, depth), inv, rtol=1e-4, atol=1e-5)
    robust = depth_errors(0.5 * inv + 1.0, depth, method="median")
    assert robust["abs_rel"] < 1e-4 and robust["inv_mae"] < 1e-4
    # one clip alone, and per-frame alignment, too
    assert depth_errors(2 * inv[0], depth[0])["inv_mae"] < 1e-4
    assert depth_errors(inv * torch.rand(1, 4, 1, 1) * 5, depth, per_frame=True)["abs_rel"] < 1e-4


def test_other_clips_depth_scores_badly(clips) -> None:
    _, depth = clips
    other = 1.0 / depth.roll(1, 0)
    errs = depth_errors(other, depth)
    assert errs["abs_rel"] > 0.1 and errs["inv_mae"] > 0.05, errs
    noisy = 1.0 / depth + 0.05 * torch.randn(depth.shape, generator=torch.Generator().manual_seed(0))
    assert depth_errors(noisy, depth)["inv_mae"] < errs["inv_mae"]
    rank = depth_rank_check(1.0 / depth, depth)
    assert rank["rank_rate"] == 1.0 and rank["right"] < 1e-4 < rank["shuffled"]
    flat = depth_rank_check(torch.ones_like(depth), depth)  # a constant prediction is not closer to either
    assert flat["rank_rate"] == 0.5


def test_invalid_pixels_are_ignored(clips) -> None:
    _, depth = clips
    target = depth.clone()
    target[:, :, :8, :8] = 0  # no measurement
    pred = 1.0 / depth
    pred[:, :, :8, :8] = 1e3  # garbage where the target is invalid
    errs = depth_errors(pred, target)
    assert errs["abs_rel"] < 1e-4 and errs["inv_mae"] < 1e-4
    assert depth_errors(pred, depth)["inv_mae"] > 0.1  # the same garbage counted would be large
    pred[:, :, :8, :8] = float("nan")
    assert depth_errors(pred, target)["abs_rel"] < 1e-4
    mask = torch.ones_like(depth, dtype=torch.bool)
    mask[:, :, :8, :8] = False
    assert depth_errors(torch.where(mask, 1.0 / depth, torch.zeros_like(depth)), depth, valid=mask)["inv_mae"] < 1e-4
    empty = clip_depth_errors(pred, torch.zeros_like(depth))
    assert torch.isnan(empty["abs_rel"]).all()
    with pytest.raises(InputError):
        depth_errors(pred[..., :16], depth)


def test_synth_depth_net_shapes_and_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = SynthDepthNet()
    assert 0.5e6 < sum(p.numel() for p in net.parameters()) < 2e6
    for h, w in ((64, 64), (48, 80), (37, 50)):
        out = net(torch.rand(3, 3, h, w))
        assert out.shape == (3, h, w) and torch.isfinite(out).all()
    path = tmp_path / "w" / "depth.safetensors"
    net.save(path)
    loaded = SynthDepthNet.from_file(path)
    for (k, a), (k2, b) in zip(net.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    video = torch.rand(2, 3, 32, 48)
    net.eval()
    assert torch.equal(net(video), loaded(video))
    assert isinstance(load_estimator(str(path)), SynthDepthNet)
    net.save(tmp_path / "half.safetensors", torch.float16)
    assert (tmp_path / "half.safetensors").stat().st_size < path.stat().st_size
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    for bad in (tmp_path / "bad.safetensors", tmp_path / "missing.safetensors"):
        with pytest.raises(InputError, match=bad.name):
            SynthDepthNet.from_file(bad)
    with pytest.raises(InputError):
        net(torch.rand(3, 32, 32))


def test_missing_default_weights_say_how_to_train(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(depth_net, "DEFAULT_WEIGHTS", tmp_path / "synth_depth.safetensors")
    for spec in (None, "synth"):
        with pytest.raises(InputError, match="train_depth_net.py"):
            load_estimator(spec)
    with pytest.raises(InputError, match="nowhere"):
        load_estimator(str(tmp_path / "nowhere"))


def test_training_steps_reduce_the_loss(clips) -> None:
    videos, depth = clips
    rgb, target = videos[:2, :2].flatten(0, 1), depth[:2, :2].flatten(0, 1)  # 4 fixed frames, 2 per clip
    torch.manual_seed(0)
    net = SynthDepthNet(widths=(8, 16, 32, 64))  # the default net's code at a size that trains fast on any CPU
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        loss, parts = depth_loss(net(rgb), target, group=2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        assert set(parts) == {"ssi", "grad", "abs"}
    assert losses[-1] < 0.6 * losses[0], losses
    inv = 1.0 / target
    assert depth_loss(inv, target)[1]["ssi"] < 1e-5  # the exact answer has no SSI loss ...
    assert depth_loss(3 * inv + 1, target, group=2)[1]["ssi"] < 1e-5  # ... nor any affine function of it
    drift = inv * torch.tensor([1.0, 2.0, 1.0, 2.0])[:, None, None]  # scale changing between a clip's frames
    assert depth_loss(drift, target, group=1)[1]["ssi"] < 1e-5 < depth_loss(drift, target, group=2)[1]["ssi"]
    with pytest.raises(InputError):
        depth_loss(inv, target, group=3)


def test_train_script_smoke(tmp_path: Path, capsys) -> None:
    module = bench_script("train_depth_net")
    out = tmp_path / "depth.safetensors"
    args = ["--steps", "3", "--size", "32", "--device", "cpu", "--out", str(out), "--batch", "8",
            "--frames-per-clip", "2", "--val-clips", "2", "--eval-clips", "3", "--eval-frames", "4"]  # fmt: skip
    info = module.main(args)
    assert info["steps"] == 3 and {"abs_rel", "inv_mae", "rank_rate"} <= set(info["heldout"])
    assert out.is_file() and out.stat().st_size < 8 * 2**20
    net = SynthDepthNet.from_file(out)
    assert net(torch.rand(1, 3, 32, 32)).shape == (1, 32, 32)
    printed = capsys.readouterr().out
    assert "held-out" in printed and "rank rate" in printed


@pytest.fixture
def tiny_dpt(tmp_path: Path) -> Path:
    from transformers import AutoModelForDepthEstimation, DPTConfig, DPTImageProcessor

    torch.manual_seed(0)
    config = DPTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, image_size=32,
                       patch_size=8, backbone_out_indices=[0, 1], reassemble_factors=[2, 1], neck_hidden_sizes=[8, 16],
                       fusion_hidden_size=8, head_hidden_size=8)  # fmt: skip
    AutoModelForDepthEstimation.from_config(config).save_pretrained(tmp_path / "dpt")
    DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False).save_pretrained(tmp_path / "dpt")
    return tmp_path / "dpt"


def test_transformers_depth_from_a_local_directory(tiny_dpt: Path, clips) -> None:
    est = TransformersDepth(tiny_dpt)
    out = est(torch.rand(3, 3, 40, 56))
    assert out.shape == (3, 40, 56) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert isinstance(load_estimator(str(tiny_dpt)), TransformersDepth)
    videos, depth = clips
    scores = depth_control_scores(est, videos[:2], depth[:2])
    assert {"abs_rel", "inv_mae", "rank_rate"} <= set(scores)


def test_transformers_depth_bad_paths(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_model"
    with pytest.raises(InputError, match="no_such_model"):
        TransformersDepth(missing)
    broken = tmp_path / "broken_model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(InputError, match="broken_model"):
        TransformersDepth(broken)
