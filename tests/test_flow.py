"""Rectified flow: analytic cases for the interpolation, the loss, the sampler and the timestep shift."""

from __future__ import annotations

import torch

from fulldit.config import FlowConfig
from fulldit.flow import euler_sample, flow_loss, interpolate, sample_time, sampling_times, shift_time, to_velocity


def test_interpolation_endpoints_and_per_frame_times() -> None:
    x0, noise = torch.randn(2, 3, 4, 5, 5), torch.randn(2, 3, 4, 5, 5)
    torch.testing.assert_close(interpolate(x0, noise, torch.zeros(2)), x0)
    torch.testing.assert_close(interpolate(x0, noise, torch.ones(2)), noise)
    t = torch.tensor([[0.0, 0.5, 1.0, 0.25]] * 2)
    x_t = interpolate(x0, noise, t)
    torch.testing.assert_close(x_t[:, :, 1], 0.5 * x0[:, :, 1] + 0.5 * noise[:, :, 1])
    torch.testing.assert_close(x_t[:, :, 0], x0[:, :, 0])


def test_loss_is_zero_for_the_true_velocity_and_x0() -> None:
    x0, noise, t = torch.randn(2, 3, 4, 5, 5), torch.randn(2, 3, 4, 5, 5), torch.tensor([0.3, 0.8])
    x_t = interpolate(x0, noise, t)
    assert flow_loss(noise - x0, x0, noise, x_t, t, FlowConfig(prediction="velocity")).abs().max() < 1e-10
    assert flow_loss(x0, x0, noise, x_t, t, FlowConfig(prediction="x0")).abs().max() < 1e-10
    wrong = flow_loss(torch.zeros_like(x0), x0, noise, x_t, t, FlowConfig(prediction="velocity"))
    assert (wrong > 0.5).all()


def test_loss_leaves_known_frames_out() -> None:
    x0, noise, t = torch.randn(1, 3, 4, 5, 5), torch.randn(1, 3, 4, 5, 5), torch.tensor([0.5])
    x_t = interpolate(x0, noise, t)
    pred = noise - x0
    pred[:, :, 0] += 10.0  # a terrible prediction on frame 0 only
    known = torch.tensor([[True, False, False, False]])
    cfg = FlowConfig(prediction="velocity")
    assert flow_loss(pred, x0, noise, x_t, t, cfg, known).item() < 1e-10
    assert flow_loss(pred, x0, noise, x_t, t, cfg).item() > 1.0


def test_x0_prediction_maps_to_velocity() -> None:
    x0, noise, t = torch.randn(2, 3, 2, 4, 4), torch.randn(2, 3, 2, 4, 4), torch.tensor([0.4, 0.9])
    x_t = interpolate(x0, noise, t)
    torch.testing.assert_close(to_velocity(x0, x_t, t, FlowConfig(prediction="x0")), noise - x0, atol=1e-5, rtol=1e-5)


def test_euler_with_the_exact_velocity_recovers_x0() -> None:
    """The straight path has constant velocity, so Euler is exact at any step count."""
    x0, noise = torch.randn(1, 3, 4, 5, 5), torch.randn(1, 3, 4, 5, 5)
    out = euler_sample(lambda x, t: noise - x0, noise, sampling_times(3, shift=3.0))
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=1e-5)


def test_euler_keeps_known_frames_clean_with_time_zero() -> None:
    x0, noise = torch.randn(1, 3, 4, 5, 5), torch.randn(1, 3, 4, 5, 5)
    known = torch.tensor([[True, False, False, True]])
    seen = []

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append((x.clone(), t.clone()))
        return torch.randn_like(x)

    out = euler_sample(velocity, noise, sampling_times(4, 1.0), clean=x0, known=known)
    torch.testing.assert_close(out[:, :, [0, 3]], x0[:, :, [0, 3]])
    for x, t in seen:
        torch.testing.assert_close(x[:, :, 0], x0[:, :, 0])
        assert t[0, 0] == 0 and t[0, 3] == 0 and t[0, 1] > 0


def test_shift_and_schedules() -> None:
    t = torch.linspace(0, 1, 11)
    torch.testing.assert_close(shift_time(t, 1.0), t)
    assert (shift_time(t[1:-1], 3.0) > t[1:-1]).all()  # shift > 1 spends more time at high noise
    s = sampling_times(10, 5.0)
    assert s[0] == 1 and s[-1] == 0 and (s[1:] < s[:-1]).all()
    u = sample_time(1000, FlowConfig(timestep_sampling="uniform"), torch.Generator().manual_seed(0))
    assert 0 < u.min() and u.max() < 1 and abs(u.mean().item() - 0.5) < 0.05
