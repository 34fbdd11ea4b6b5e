"""Video metrics without learned weights: optical flow, camera-motion agreement, smoothness, motion, PSNR and SSIM.

Videos are (F, 3, H, W) float in [0, 1] (torch tensors; numpy arrays of that layout are accepted too).

* `optical_flow`: dense flow between consecutive frames with OpenCV's DIS (preset medium) on 8-bit grey frames
  (BT.601 luma), each pair computed on its own (no flow carried over), so the result is reproducible (checked
  bit-identical across runs and OpenCV thread counts). (F-1, H, W, 2) float32, (dx, dy) in pixels, frame t -> t+1.
* `motion_agreement`: does the generated clip move like the ground-truth render of the same camera path? Compares
  the two clips' flows without structure from motion: "flow_epe" mean end-point error in pixels (lower is better),
  "flow_dir_cos" the cosine between the two mean flow vectors of each frame pair (the global image motion: pans,
  trucks, orbits; meaningless for dollies and zooms, whose flow averages to ~0), "flow_field_cos" the cosine
  between the two whole flow fields of each frame pair flattened (sensitive to radial flow too). Both cosines lie
  in [-1, 1] and are averaged over frame pairs weighted by the larger of the two flows' magnitudes (mean vector
  resp. RMS, at least 0.05 px), so that the nearly still pairs of an eased move, whose direction is estimation
  noise, count little; a pair where both flows are ~0 (< 0.05 px) counts 1, where only one is, 0.
* `smoothness`: flow-warping error (Lai et al. 2018, "Learning blind video temporal consistency"): frame t+1 is
  warped back onto frame t with the forward flow, and the mean absolute RGB difference (in [0, 1] units) is taken
  over non-occluded pixels. Occlusions are found by forward-backward consistency (Sundaram et al. 2010): a pixel
  is kept when |f(x) + b(x + f(x))|^2 < 0.01 (|f|^2 + |b|^2) + 0.5 and x + f(x) lies inside the frame. When fewer
  than 5% of a pair's pixels pass (incoherent frames have no consistent flow), every in-frame pixel of that pair
  counts, so an incoherent video cannot hide behind the mask. Lower = smoother.
* `dynamic_degree`: mean flow magnitude in pixels per frame pair (`normalize=True`: as a fraction of the frame
  diagonal, for comparing clips of different sizes).
* `psnr`, `ssim`: per frame, then the mean over frames. Each frame's PSNR is capped at `PSNR_CAP` = 100 dB (MSE
  floored at 1e-10), so an exact copy (a conditioning frame, identical clips) gives 100 rather than inf and tables
  of means stay finite. SSIM is `skimage.metrics.structural_similarity` on RGB (channel_axis), data_range 1,
  uniform 7x7 windows (smaller for frames under 7 pixels); identical frames give 1.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from skimage.metrics import structural_similarity

from fulldit.errors import InputError

__all__ = ["optical_flow", "motion_agreement", "smoothness", "dynamic_degree", "psnr", "ssim", "PSNR_CAP"]

PSNR_CAP = 100.0  # dB, the PSNR of an exact copy
_STILL = 0.05  # pixels: a mean flow (or flow field RMS) below this counts as no motion
_FB_REL, _FB_ABS = 0.01, 0.5  # forward-backward consistency thresholds (Sundaram et al. 2010)
_MIN_VALID = 0.05  # fraction of pixels below which the occlusion mask is ignored


def _frames(video: torch.Tensor | np.ndarray, what: str = "video") -> np.ndarray:
    """(F, 3, H, W) in [0, 1] -> (F, H, W, 3) float32 numpy, with shape checks."""
    arr = video.detach().float().cpu().numpy() if isinstance(video, torch.Tensor) else np.asarray(video, np.float32)
    if arr.ndim != 4 or arr.shape[1] != 3:
        raise InputError(f"{what}: expected a (F, 3, H, W) video, got shape {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        raise InputError(f"{what}: contains NaN or infinite values")
    return np.ascontiguousarray(arr.transpose(0, 2, 3, 1).astype(np.float32))


def _grey(frames: np.ndarray) -> list[np.ndarray]:
    u8 = (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in u8]


def _dis_flows(grey: list[np.ndarray], backward: bool = False) -> np.ndarray:
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)  # no initial flow passed: pairs independent
    pairs = [(b, a) if backward else (a, b) for a, b in zip(grey[:-1], grey[1:])]
    flows = [dis.calc(a, b, None) for a, b in pairs]
    h, w = grey[0].shape
    return np.stack(flows).astype(np.float32) if flows else np.zeros((0, h, w, 2), np.float32)


def optical_flow(video: torch.Tensor) -> np.ndarray:
    """(F-1, H, W, 2) float32 flow (dx, dy) in pixels from each frame to the next (DIS medium, deterministic)."""
    frames = _frames(video)
    if frames.shape[0] < 2:
        raise InputError(f"optical_flow: need at least 2 frames, got {frames.shape[0]}")
    return _dis_flows(_grey(frames))


def _resize_flow(flow: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resample flow fields to another size, scaling the vectors with the image."""
    _, h, w, _ = flow.shape
    out = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR) for f in flow])
    return out * np.array([width / w, height / h], np.float32)


def _cos(a: np.ndarray, b: np.ndarray, still: float) -> float:
    """Cosine of two vectors; 1 when both are ~0, 0 when only one is (norms compared to `still`)."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na < still and nb < still:
        return 1.0
    if na < still or nb < still:
        return 0.0
    return float(np.clip(np.dot(a.ravel(), b.ravel()) / (na * nb), -1.0, 1.0))


def motion_agreement(flow_gen: np.ndarray, flow_ref: np.ndarray) -> dict[str, float]:
    """Agreement of a generated clip's flow with the ground-truth clip's flow (see the module docstring).

    Both are (F-1, H, W, 2) as from `optical_flow`; a generated flow of another size is resampled to the reference's.
    """
    flow_gen, flow_ref = np.asarray(flow_gen, np.float32), np.asarray(flow_ref, np.float32)
    for name, f in (("flow_gen", flow_gen), ("flow_ref", flow_ref)):
        if f.ndim != 4 or f.shape[-1] != 2:
            raise InputError(f"motion_agreement: {name} must be (F-1, H, W, 2), got {tuple(f.shape)}")
    if flow_gen.shape[0] != flow_ref.shape[0] or flow_ref.shape[0] == 0:
        raise InputError(f"motion_agreement: {flow_gen.shape[0]} vs {flow_ref.shape[0]} frame pairs")
    if flow_gen.shape[1:3] != flow_ref.shape[1:3]:
        flow_gen = _resize_flow(flow_gen, *flow_ref.shape[1:3])
    epe = float(np.linalg.norm(flow_gen - flow_ref, axis=-1).mean())
    pixels = math.sqrt(flow_ref.shape[1] * flow_ref.shape[2])
    dir_cos, dir_w, field_cos, field_w = [], [], [], []
    for g, r in zip(flow_gen, flow_ref):
        mg, mr = g.mean((0, 1)), r.mean((0, 1))
        dir_cos.append(_cos(mg, mr, _STILL))
        dir_w.append(max(float(np.linalg.norm(mg)), float(np.linalg.norm(mr)), _STILL))
        field_cos.append(_cos(g, r, _STILL * pixels))  # RMS flow below _STILL: still
        field_w.append(max(float(np.linalg.norm(g)), float(np.linalg.norm(r)), _STILL * pixels))
    return {
        "flow_epe": epe,
        "flow_dir_cos": float(np.average(dir_cos, weights=dir_w)),
        "flow_field_cos": float(np.average(field_cos, weights=field_w)),
    }


def _sample(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """image(x + flow(x)) by bilinear interpolation, and whether x + flow(x) lies inside the image."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx, my = gx + flow[..., 0], gy + flow[..., 1]
    warped = cv2.remap(image, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    return warped, inside


def smoothness(video: torch.Tensor) -> float:
    """Flow-warping error: mean |frame_t - warp(frame_t+1)| over non-occluded pixels (lower = smoother)."""
    frames = _frames(video)
    if frames.shape[0] < 2:
        raise InputError(f"smoothness: need at least 2 frames, got {frames.shape[0]}")
    grey = _grey(frames)
    fwd, bwd = _dis_flows(grey), _dis_flows(grey, backward=True)
    errors = []
    for t in range(len(fwd)):
        warped, inside = _sample(frames[t + 1], fwd[t])
        back, _ = _sample(bwd[t], fwd[t])  # backward flow at x + f(x)
        gap = ((fwd[t] + back) ** 2).sum(-1)
        scale = (fwd[t] ** 2).sum(-1) + (back**2).sum(-1)
        valid = inside & (gap < _FB_REL * scale + _FB_ABS)
        if valid.mean() < _MIN_VALID:
            valid = inside if inside.any() else np.ones_like(inside)
        errors.append(float(np.abs(frames[t] - warped).mean(-1)[valid].mean()))
    return float(np.mean(errors))


def dynamic_degree(video: torch.Tensor, normalize: bool = False) -> float:
    """Mean optical-flow magnitude in pixels per frame pair (0 for a still video or a single frame);
    `normalize=True` divides by the frame diagonal."""
    frames = _frames(video)
    if frames.shape[0] < 2:
        return 0.0
    mag = float(np.linalg.norm(_dis_flows(_grey(frames)), axis=-1).mean())
    return mag / math.hypot(*frames.shape[1:3]) if normalize else mag


def _pair(a: torch.Tensor, b: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    x, y = _frames(a, "psnr/ssim: first video"), _frames(b, "psnr/ssim: second video")
    if x.shape != y.shape:
        raise InputError(f"psnr/ssim: videos differ in shape, {tuple(a.shape)} vs {tuple(b.shape)}")
    if x.shape[0] == 0:
        raise InputError("psnr/ssim: empty videos")
    return np.clip(x, 0.0, 1.0).astype(np.float64), np.clip(y, 0.0, 1.0).astype(np.float64)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over frames of each frame's PSNR in dB (data range 1; capped at PSNR_CAP = 100 for exact copies)."""
    x, y = _pair(a, b)
    mse = np.maximum(((x - y) ** 2).mean(axis=(1, 2, 3)), 10.0 ** (-PSNR_CAP / 10.0))
    return float(np.mean(-10.0 * np.log10(mse)))


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over frames of skimage's SSIM (RGB via channel_axis, data_range 1, 7x7 windows or the largest odd fit)."""
    x, y = _pair(a, b)
    win = min(7, *(s if s % 2 else s - 1 for s in x.shape[1:3]))
    if win < 3:
        raise InputError(f"ssim: frames of {x.shape[1]}x{x.shape[2]} are too small (need at least 3x3)")
    values = [structural_similarity(p, q, channel_axis=-1, data_range=1.0, win_size=win) for p, q in zip(x, y)]
    return float(np.mean(values))
