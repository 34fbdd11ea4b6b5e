"""Depth control: does a generated video have the depth it was asked for?

An estimator (`DepthEstimator`: `SynthDepthNet` for FullBench-Synth, `TransformersDepth` for real footage) turns
the generated frames into relative inverse depth; that is compared with the condition's depth after removing
the scale and shift a monocular estimate cannot know. Everything works per clip: a clip is (F, H, W); leading
dimensions, when given, are a batch of clips.

Notation, for one clip with valid pixels V (target depth D > 0, prediction finite), target inverse depth
y = 1 / D and predicted inverse depth p:

    alignment   (s, t) = argmin_{s,t} sum_V (s p + t - y)^2          least squares, one s, t for the whole clip
                s = cov_V(p, y) / var_V(p),  t = mean_V(y) - s mean_V(p)
                (method="median": s = MAD(y) / MAD(p), t = med(y) - s med(p), MAD = mean |x - med(x)|)
                a = s p + t                                           aligned inverse depth (1/m when D is metric)
    abs_rel     mean_V |D_hat - D| / D,  D_hat = 1 / max(a, 1 / max_V D)
                (aligned depth, capped at the clip's farthest target depth, as MiDaS caps at the dataset's)
    inv_mae     mean_V |a_n - y_n|,  y_n = (y - min_V y) / (max_V y - min_V y),  a_n the same map applied to a
                (error in the units of the condition the model receives: per-clip normalised inverse depth)

Both are 0 for a perfect prediction and for any affine function of it (s > 0 or not: the fit absorbs the sign).
`depth_rank_check` asks whether the prediction is closer to its own condition than to other clips' depth, the
sanity check that the metric measures control rather than "looks like a room".
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from fulldit.errors import InputError
from fulldit.eval.depth_net import (
    DEFAULT_WEIGHTS,
    DepthEstimator,
    SynthDepthNet,
    TransformersDepth,
    load_estimator,
)

__all__ = ["DepthEstimator", "SynthDepthNet", "TransformersDepth", "load_estimator", "DEFAULT_WEIGHTS", "estimate",
           "align_inverse_depth", "clip_depth_errors", "depth_errors", "depth_rank_check",
           "depth_control_scores"]  # fmt: skip

_EPS = 1e-8


def _as_clips(x: torch.Tensor, name: str) -> torch.Tensor:
    """(F, H, W) or (B, F, H, W) or (..., F, H, W) -> (B, F, H, W) float."""
    if x.ndim < 3:
        raise InputError(f"{name}: expected (F, H, W) or (B, F, H, W), got shape {tuple(x.shape)}")
    return x.reshape(-1, *x.shape[-3:]).float()


def _target_inverse(target: torch.Tensor, valid: torch.Tensor | None, is_disparity: bool):
    """Target inverse depth y and its valid mask (depth > 0, finite, and `valid` where given)."""
    ok = torch.isfinite(target) & (target > 0)
    if valid is not None:
        ok = ok & valid.reshape(target.shape).bool()
    y = target if is_disparity else 1.0 / torch.where(ok, target, torch.ones_like(target))
    return torch.where(ok, y, torch.zeros_like(y)), ok


def _masked_mean(x: torch.Tensor, m: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return (x * m).sum(dims, keepdim=True) / m.sum(dims, keepdim=True).clamp_min(1)


def _masked_median(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Median over the last three dims of x where m, per leading index, shape (B, 1, 1, 1)."""
    flat = torch.where(m, x, torch.full_like(x, float("nan"))).flatten(1)
    return flat.nanmedian(dim=1).values.nan_to_num(0.0)[:, None, None, None]


def _fit(p: torch.Tensor, y: torch.Tensor, m: torch.Tensor, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and shift (B, 1, 1, 1) mapping p onto y over the mask m, per clip (over dims 1-3)."""
    mf = m.to(p.dtype)
    dims = (1, 2, 3)
    if method == "lstsq":
        pm, ym = _masked_mean(p, mf, dims), _masked_mean(y, mf, dims)
        pc, yc = (p - pm) * mf, (y - ym) * mf  # centred first: the two-pass form is accurate in float32
        var = (pc * pc).sum(dims, keepdim=True)
        s = (pc * yc).sum(dims, keepdim=True) / var.clamp_min(_EPS)
        s = torch.where(var > _EPS, s, torch.zeros_like(s))  # a constant prediction explains nothing: s = 0
        return s, ym - s * pm
    if method == "median":
        pmed, ymed = _masked_median(p, m), _masked_median(y, m)
        pmad = _masked_mean((p - pmed).abs(), mf, dims)
        ymad = _masked_mean((y - ymed).abs(), mf, dims)
        s = torch.where(pmad > _EPS, ymad / pmad.clamp_min(_EPS), torch.zeros_like(pmad))
        return s, ymed - s * pmed
    raise InputError(f"unknown alignment method {method!r}; valid: lstsq, median")


def _prepare(pred_inv, target_depth, valid, per_frame, is_disparity):
    if pred_inv.shape[-3:] != target_depth.shape[-3:]:
        raise InputError(
            f"depth prediction is {tuple(pred_inv.shape)}, target is {tuple(target_depth.shape)}: resize first"
        )
    p = _as_clips(pred_inv, "prediction")
    target = _as_clips(target_depth, "target depth")
    if p.shape[0] != target.shape[0]:
        raise InputError(f"{p.shape[0]} predicted clips for {target.shape[0]} target clips")
    y, m = _target_inverse(target, None if valid is None else _as_clips(valid, "valid") > 0, is_disparity)
    m = m & torch.isfinite(p)
    p = torch.where(m, p, torch.zeros_like(p))
    if per_frame:  # every frame its own clip
        p, y, m, target = (v.reshape(-1, 1, *v.shape[-2:]) for v in (p, y, m, target))
    return p, y, m, target


def align_inverse_depth(
    pred_inv: torch.Tensor,
    target_depth: torch.Tensor,
    valid: torch.Tensor | None = None,
    method: str = "lstsq",
    per_frame: bool = False,
    is_disparity: bool = False,
) -> torch.Tensor:
    """The prediction mapped affinely onto the target's inverse depth, one scale and shift per clip.

    pred_inv: relative inverse depth (F, H, W) or (B, F, H, W). target_depth: metric depth of the same shape
    (0 = invalid), or inverse depth when `is_disparity` (0 = invalid). valid: optional extra mask. per_frame: fit
    each frame on its own (more forgiving of an estimator whose scale drifts between frames). Differentiable in
    pred_inv. Returns inverse depth in the target's units, the shape of pred_inv; invalid pixels are fitted too.
    """
    p, y, m, _ = _prepare(pred_inv, target_depth, valid, per_frame, is_disparity)
    s, t = _fit(p, y, m, method)
    return (s * p + t).reshape(pred_inv.shape)


def clip_depth_errors(
    pred_inv: torch.Tensor,
    target_depth: torch.Tensor,
    valid: torch.Tensor | None = None,
    method: str = "lstsq",
    per_frame: bool = False,
    is_disparity: bool = False,
) -> dict[str, torch.Tensor]:
    """Per-clip errors {"abs_rel": (B,), "inv_mae": (B,)} (formulas in the module docstring).

    A clip with fewer than 2 valid pixels or a constant target gets NaN. With `per_frame`, values are per frame
    (B * F,).
    """
    p, y, m, target = _prepare(pred_inv, target_depth, valid, per_frame, is_disparity)
    s, t = _fit(p, y, m, method)
    a = s * p + t
    mf = m.float()
    count = mf.sum((1, 2, 3))
    big = torch.finfo(y.dtype).max
    y_lo = torch.where(m, y, torch.full_like(y, big)).amin((1, 2, 3), keepdim=True)
    y_hi = torch.where(m, y, torch.full_like(y, -big)).amax((1, 2, 3), keepdim=True)
    span = y_hi - y_lo
    inv_mae = (((a - y) / span.clamp_min(_EPS)).abs() * mf).sum((1, 2, 3)) / count.clamp_min(1)
    depth = torch.where(m, 1.0 / y.clamp_min(_EPS), torch.ones_like(y)) if is_disparity else target
    d_hat = 1.0 / torch.maximum(a, y_lo.clamp_min(_EPS))
    abs_rel = (((d_hat - depth).abs() / depth.clamp_min(_EPS)) * mf).sum((1, 2, 3)) / count.clamp_min(1)
    bad = (count < 2) | (span.flatten() <= _EPS)
    nan = torch.full_like(abs_rel, float("nan"))
    return {"abs_rel": torch.where(bad, nan, abs_rel), "inv_mae": torch.where(bad, nan, inv_mae)}


def depth_errors(
    pred_inv: torch.Tensor,
    target_depth: torch.Tensor,
    valid: torch.Tensor | None = None,
    method: str = "lstsq",
    per_frame: bool = False,
    is_disparity: bool = False,
) -> dict[str, float]:
    """{"abs_rel": .., "inv_mae": ..}: the per-clip errors of `clip_depth_errors`, averaged over clips (NaN skipped).

    pred_inv: the estimator's relative inverse depth (F, H, W) or (B, F, H, W); target_depth: the condition's
    metric depth of the same shape, 0 = invalid.
    """
    errs = clip_depth_errors(pred_inv, target_depth, valid, method, per_frame, is_disparity)
    return {k: float(v.nanmean()) for k, v in errs.items()}


def depth_rank_check(
    pred_inv: torch.Tensor,
    target_depth: torch.Tensor,
    metric: str = "inv_mae",
    others: int = 8,
    method: str = "lstsq",
    per_frame: bool = False,
) -> dict[str, float]:
    """Is each prediction closer to its own target than to other clips' targets?

    pred_inv, target_depth: (B, F, H, W), B >= 2. Clip i is compared with the targets of clips i + 1 .. i + k
    (mod B, k = min(others, B - 1)). Returns {"right": mean error against the own target, "shuffled": mean error
    against the others, "rank_rate": fraction of (i, other) pairs where the own target has the smaller error
    (ties count half; 1 = every clip's depth is recognisably its own, 0.5 = chance)}.
    """
    p = _as_clips(pred_inv, "prediction")
    target = _as_clips(target_depth, "target depth")
    b = p.shape[0]
    if b < 2 or target.shape != p.shape:
        raise InputError(
            f"depth_rank_check needs >= 2 clips of equal shape, got {tuple(p.shape)} and {tuple(target.shape)}"
        )
    if metric not in ("inv_mae", "abs_rel"):
        raise InputError(f"unknown depth metric {metric!r}; valid: inv_mae, abs_rel")
    right = clip_depth_errors(p, target, method=method, per_frame=per_frame)[metric]
    if per_frame:
        right = right.reshape(b, -1).nanmean(1)
    wins, wrong = [], []
    for k in range(1, min(others, b - 1) + 1):
        err = clip_depth_errors(p, target.roll(k, 0), method=method, per_frame=per_frame)[metric]
        if per_frame:
            err = err.reshape(b, -1).nanmean(1)
        wins.append((right < err).float() + 0.5 * (right == err).float())
        wrong.append(err)
    return {
        "right": float(right.nanmean()),
        "shuffled": float(torch.stack(wrong).nanmean()),
        "rank_rate": float(torch.stack(wins).mean()),
    }


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(F, h, w) -> (F, H, W), bilinear."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x[:, None].float(), size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


@torch.inference_mode()
def estimate(estimator: DepthEstimator, videos: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """Run the estimator on clips (B, F, 3, H, W) or a list of (F, 3, H, W) -> inverse depth (B, F, H, W), CPU."""
    out = []
    for video in videos:
        inv = estimator(video)
        out.append(_resize(inv.float().cpu(), video.shape[-2:]))
    return torch.stack(out)


def depth_control_scores(
    estimator: DepthEstimator,
    videos: torch.Tensor | Sequence[torch.Tensor],
    target_depth: torch.Tensor,
    others: int = 8,
) -> dict[str, float]:
    """Everything at once for a set of clips: abs_rel, inv_mae (means over clips) and the rank check.

    videos: (B, F, 3, H, W) in [0, 1]; target_depth: (B, F, H, W) metric depth (0 = invalid) at the same size.
    """
    inv = estimate(estimator, videos)
    target = target_depth.float().cpu()
    scores = depth_errors(inv, target)
    if inv.shape[0] >= 2:
        rank = depth_rank_check(inv, target, others=others)
        scores.update({"rank_rate": rank["rank_rate"], "shuffled_inv_mae": rank["shuffled"]})
    return scores
