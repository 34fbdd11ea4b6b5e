"""bench/train_wan_vae.py: a tiny AutoencoderKLWan trained on the world loads as a WanVAECodec, and its loss learns."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType

import pytest
import torch

from fulldit.codecs.vae import WanVAECodec
from fulldit.train.validate import VALIDATION_SEED_BASE
from fulldit.world.dataset import BENCH_SEED_BASE
from tests.conftest import bench_script


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return bench_script("train_wan_vae")


@pytest.mark.parametrize("spatial", [8, 4])
def test_training_writes_a_directory_the_codec_loads(script: ModuleType, tmp_path: Path, capsys, spatial: int) -> None:
    out = tmp_path / "vae"
    args = script.parse_args(["--out", str(out), "--steps", "2", "--batch", "1", "--frames", "5", "--size", "32",
                              "--base-dim", "8", "--z-dim", "4", "--spatial", str(spatial), "--heldout", "2",
                              "--stats-clips", "2", "--device", "cpu"])  # fmt: skip
    info = script.train_vae(args)
    assert info["steps"] == 2 and math.isfinite(info["heldout_psnr"]) and 0 <= info["render_share"] <= 1
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == info  # the one JSON line, printed last
    assert json.loads((out / "train_log.json").read_text()) == info
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vae"]  # no temporary directory left beside it

    codec = WanVAECodec(out)
    assert codec.stride == (4, spatial, spatial) and codec.latent_channels == 4
    video = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    latents = codec.encode(video)
    assert latents.shape == (1, 4, 2, 32 // spatial, 32 // spatial)
    assert codec.decode(latents).shape == video.shape

    config = json.loads((out / "config.json").read_text())
    mean, std = config["latents_mean"], config["latents_std"]
    assert len(mean) == len(std) == 4 and mean != [0.0] * 4 and std != [1.0] * 4 and min(std) > 0
    # the statistics are those of the training clips' latents: normalised by the codec, they are standard per channel
    train = script.render_videos(range(script.TRAIN_SEED_BASE, script.TRAIN_SEED_BASE + 2), 5, 32, "cpu")
    z = codec.encode(train)
    assert torch.allclose(z.mean((0, 2, 3, 4)), torch.zeros(4), atol=1e-3)
    assert torch.allclose(z.std((0, 2, 3, 4)), torch.ones(4), atol=1e-3)


def test_seed_ranges_are_apart(script: ModuleType) -> None:
    assert script.TRAIN_SEED_BASE + 10**9 < VALIDATION_SEED_BASE < script.HELDOUT_SEED_BASE
    assert script.HELDOUT_SEED_BASE + 10**6 < BENCH_SEED_BASE


def test_unclamped_decode_is_diffusers_decode_before_its_clamp(script: ModuleType) -> None:
    torch.manual_seed(0)
    vae = script.make_vae(8, 4, 8)
    z = torch.randn(1, 4, 2, 4, 4) * 3
    with torch.no_grad():
        raw = script.decode_unclamped(vae, z)
        assert raw.shape == (1, 3, 5, 32, 32)
        assert torch.equal(raw.clamp(-1, 1), vae.decode(z).sample)


def test_a_few_steps_learn_more_than_the_mean_colour(script: ModuleType) -> None:
    torch.manual_seed(0)
    video = script.render_videos([script.TRAIN_SEED_BASE], 5, 32, "cpu")  # (1, 3, 5, 32, 32)
    flat = video.flatten(2).median(2).values[:, :, None, None, None]
    baseline = float((video - flat).abs().mean())  # L1 of the best constant colour per channel
    vae = script.make_vae(8, 8, 8)
    opt = torch.optim.AdamW(vae.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss, parts = script.vae_loss(vae, video, 1e-6)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(parts["l1"]))
    final = sum(losses[-5:]) / 5
    assert final < 0.5 * losses[0] and final < 0.85 * baseline, (losses[0], final, baseline)
