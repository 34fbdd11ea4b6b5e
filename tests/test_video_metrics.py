"""Flow, motion agreement, smoothness, dynamic degree, PSNR and SSIM on videos whose answer is known."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from fulldit.errors import InputError
from fulldit.eval.video_metrics import PSNR_CAP, dynamic_degree, motion_agreement, optical_flow, psnr, smoothness, ssim
from fulldit.world.clips import plan_clip
from fulldit.world.render import render
from fulldit.world.trajectories import Move, world_path


def _texture(seed: int = 0, size: int = 256) -> np.ndarray:
    """A smooth random colour texture in [0, 1] (trackable everywhere, no periodic aliasing)."""
    noise = np.random.default_rng(seed).random((size, size, 3)).astype(np.float32)
    tex = cv2.GaussianBlur(noise, (0, 0), 2.0)
    return (tex - tex.min()) / (tex.max() - tex.min())


def _translating(dx: float, dy: float, frames: int = 6, size: int = 96) -> torch.Tensor:
    """Content moving by (dx, dy) pixels per frame (integer shifts of a crop window, which moves the other way)."""
    tex, out = _texture(), []
    for t in range(frames):
        x0, y0 = 80 - int(round(dx * t)), 80 - int(round(dy * t))
        out.append(tex[y0 : y0 + size, x0 : x0 + size])
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


@pytest.mark.parametrize("dx, dy", [(2, 1), (-3, 2), (0, -4)])
def test_flow_of_a_translation(dx, dy):
    flow = optical_flow(_translating(dx, dy))
    assert flow.shape == (5, 96, 96, 2) and flow.dtype == np.float32
    interior = flow[:, 16:-16, 16:-16]
    assert np.abs(interior.mean((0, 1, 2)) - [dx, dy]).max() < 0.05
    assert np.abs(interior - [dx, dy]).max() < 0.3
    assert np.array_equal(flow, optical_flow(_translating(dx, dy)))  # deterministic


def test_motion_agreement_identical_and_opposite():
    a = optical_flow(_translating(3, 1))
    same = motion_agreement(a, a)
    assert same["flow_epe"] == 0.0
    assert same["flow_dir_cos"] == pytest.approx(1.0, abs=1e-6)
    assert same["flow_field_cos"] == pytest.approx(1.0, abs=1e-6)
    opposite = motion_agreement(optical_flow(_translating(-3, -1)), a)
    assert opposite["flow_dir_cos"] < -0.99 and opposite["flow_field_cos"] < -0.95
    assert opposite["flow_epe"] == pytest.approx(2 * math.hypot(3, 1), rel=0.1)
    still = np.zeros_like(a)
    assert motion_agreement(still, still)["flow_dir_cos"] == 1.0
    assert motion_agreement(still, a)["flow_dir_cos"] == 0.0
    # a flow of another size is resampled (vectors scaled with the image) before comparing
    half = np.stack([cv2.resize(f, (48, 48)) for f in a]) * 0.5
    assert motion_agreement(half, a)["flow_dir_cos"] > 0.99
    with pytest.raises(InputError):
        motion_agreement(a[:2], a)


def test_dynamic_degree_and_smoothness():
    still = _translating(0, 0)
    assert dynamic_degree(still) == pytest.approx(0.0, abs=1e-3)
    speeds = [dynamic_degree(_translating(s, 0)) for s in (1, 3, 6)]
    assert speeds[0] < speeds[1] < speeds[2]
    assert speeds[1] == pytest.approx(3.0, rel=0.1)
    assert dynamic_degree(_translating(3, 0), normalize=True) == pytest.approx(speeds[1] / math.hypot(96, 96))
    assert dynamic_degree(still[:1]) == 0.0

    smooth = smoothness(_translating(3, 2))
    noise = smoothness(torch.rand(6, 3, 96, 96, generator=torch.Generator().manual_seed(0)))
    shuffled = torch.stack([_translating(0, 0)[0] if t % 2 else torch.from_numpy(_texture(t + 1)[:96, :96]).permute(
        2, 0, 1) for t in range(6)])  # fmt: skip
    assert smooth < 0.005 < 0.05 < smoothness(shuffled) and 0.2 < noise
    with pytest.raises(InputError):
        smoothness(still[:1])


def test_psnr_and_ssim():
    video = _translating(1, 1, frames=4, size=64)
    assert psnr(video, video) == PSNR_CAP and ssim(video, video) == pytest.approx(1.0)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(video.shape, generator=g)
    p = [psnr(video, (video + s * noise).clamp(0, 1)) for s in (0.01, 0.05, 0.2)]
    q = [ssim(video, (video + s * noise).clamp(0, 1)) for s in (0.01, 0.05, 0.2)]
    assert PSNR_CAP > p[0] > p[1] > p[2] and 1.0 > q[0] > q[1] > q[2]
    assert p[0] == pytest.approx(40.0, abs=0.5)  # sigma 0.01 -> MSE 1e-4 (clamping barely matters here)
    with pytest.raises(InputError):
        psnr(video, video[:2])
    with pytest.raises(InputError):
        ssim(video[:, :2], video[:, :2])


def test_motion_agreement_on_the_synthetic_world():
    """The GT orbit-left render agrees with a degraded re-render of the same path far better than with orbit-right."""
    plan = plan_clip(3, frames=8, height=64, width=64, references_per_object=0, moves=["orbit-left"], motion=False)
    (kind, direction, amount), = plan.move.parts  # fmt: skip
    assert (kind, direction) == ("orbit", "left")
    target = np.mean([s.center for s in plan.scene.objects()], axis=0)
    target[1] = 0.35  # what plan_clip aims the camera at
    centre = plan.camera.camera_centers()[0]
    right = world_path(Move((("orbit", "right", amount),), plan.move.profile), 8, centre, target)
    assert np.allclose(world_path(plan.move, 8, centre, target).w2c, plan.camera.w2c, atol=1e-6)

    gt = render(plan.scene, plan.camera, 64, 64)[0]
    g = torch.Generator().manual_seed(0)
    again = (render(plan.scene, plan.camera, 64, 64)[0] + 0.02 * torch.randn(gt.shape, generator=g)).clamp(0, 1)
    other = (render(plan.scene, right, 64, 64)[0] + 0.02 * torch.randn(gt.shape, generator=g)).clamp(0, 1)
    ref = optical_flow(gt)
    good, bad = motion_agreement(optical_flow(again), ref), motion_agreement(optical_flow(other), ref)
    assert good["flow_epe"] < 0.5 * bad["flow_epe"]
    assert good["flow_dir_cos"] > 0.9 and bad["flow_dir_cos"] < 0.0
    assert good["flow_field_cos"] > 0.8 and bad["flow_field_cos"] < 0.0
    assert dynamic_degree(gt) > 0.5  # the orbit moves the image
