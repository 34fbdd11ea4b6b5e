"""Depth estimators for the depth-control metric: a small U-Net trained on the synthetic world, and transformers models.

Every estimator is a `DepthEstimator`: video (F, 3, H, W) in [0, 1] -> (F, H, W) relative INVERSE depth (larger =
nearer), defined up to an unknown scale and shift that `depth_metrics` removes per clip.

- `SynthDepthNet`: the estimator of FullBench-Synth. No pretrained weights can be downloaded here, and the synthetic
  world renders exact metric depth for unlimited clips, so a ~1.7M-parameter U-Net is trained on it alone
  (`bench/train_depth_net.py`, a few minutes on one GPU). Its output is approximately metric inverse depth (1/m) on
  that world, but treat it as relative. Its own error on held-out ground-truth renders is the floor of the metric:
  a generated video can score no better than the real render of the same depth does, so report it alongside.
- `TransformersDepth`: a Depth Anything / DPT model from a local directory, for real footage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from fulldit.errors import InputError
from fulldit.eval.weights_file import load_matching, read_net, save_net

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "synth_depth.safetensors"
_TRAIN_HINT = "python bench/train_depth_net.py --device cuda --minutes 5 --out {path}"


@runtime_checkable
class DepthEstimator(Protocol):
    """video (F, 3, H, W) float in [0, 1] -> (F, H, W) float relative inverse depth (larger = nearer)."""

    def __call__(self, video: torch.Tensor) -> torch.Tensor: ...


def _check_video(video: torch.Tensor) -> None:
    if not isinstance(video, torch.Tensor) or video.ndim != 4 or video.shape[1] != 3:
        shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise InputError(f"a depth estimator takes a video (F, 3, H, W) in [0, 1], got {shape}")


def _groups(c: int) -> int:
    return next(g for g in (8, 4, 2, 1) if c % g == 0)


class _Block(nn.Module):
    """Residual block: conv3x3 (stride s) - GN - SiLU - conv3x3 - GN, plus a 1x1 (pooled) skip, then SiLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm1 = nn.GroupNorm(_groups(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        skip: list[nn.Module] = [nn.AvgPool2d(stride)] if stride > 1 else []
        if cin != cout:
            skip.append(nn.Conv2d(cin, cout, 1, bias=False))
        self.skip = nn.Sequential(*skip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm1(self.conv1(x)))
        return F.silu(self.norm2(self.conv2(h)) + self.skip(x))


class SynthDepthNet(nn.Module):
    """A small U-Net: RGB (N, 3, H, W) in [0, 1] -> inverse depth (N, H, W); any H, W (padded internally).

    Encoder: a block per level, each halving the resolution after the first (widths (16, 32, 64, 128, 192):
    1/16 at the bottom), a global-context vector added at the bottom; decoder: bilinear upsampling, concatenation
    with the encoder's skip, a block; a 1x1 head. Trained on the synthetic world only (see the module docstring).
    """

    def __init__(self, widths: tuple[int, ...] | list[int] = (16, 32, 64, 128, 192)):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2 or min(widths) < 1:
            raise InputError(f"SynthDepthNet needs at least 2 positive widths, got {widths}")
        self.widths = widths
        self.down = nn.ModuleList(
            [_Block(3, widths[0])] + [_Block(widths[i - 1], widths[i], 2) for i in range(1, len(widths))]
        )
        self.context = nn.Linear(widths[-1], widths[-1])
        self.up = nn.ModuleList(
            [_Block(widths[i] + widths[i - 1], widths[i - 1]) for i in range(len(widths) - 1, 0, -1)]
        )
        self.head = nn.Conv2d(widths[0], 1, 1)

    @property
    def multiple(self) -> int:
        return 2 ** (len(self.widths) - 1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1], e.g. a video's frames -> (N, H, W) inverse depth, on the input's device."""
        _check_video(video)
        n, _, h, w = video.shape
        x = video.to(self.head.weight.device, torch.float32) * 2 - 1
        m = self.multiple
        ph, pw = -h % m, -w % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = x + self.context(x.mean((2, 3)))[:, :, None, None]
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return self.head(x)[:, 0, :h, :w].float().to(video.device)

    def save(self, path: str | Path, dtype: torch.dtype = torch.float32, info: dict | None = None) -> None:
        """Write the weights (cast to `dtype`) and the widths as one safetensors file, atomically.

        info: JSON-serialisable provenance (training settings, held-out scores), kept in the file's metadata.
        """
        save_net(path, self, "SynthDepthNet", {"widths": list(self.widths)}, info, dtype)

    @classmethod
    def from_file(cls, path: str | Path, device: str | torch.device = "cpu") -> SynthDepthNet:
        """Load weights written by `save` (float32, eval mode, on `device`); InputError for a missing or bad file."""
        path = Path(path)
        hint = f"; train them with `{_TRAIN_HINT.format(path=path)}`" if path == DEFAULT_WEIGHTS else ""
        state, config = read_net(path, "SynthDepthNet", hint)
        net = cls(**config)
        load_matching(net, state, path, f"SynthDepthNet(widths={net.widths})")
        return net.to(device).eval()


def _masked_min_max(y: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    big = torch.finfo(y.dtype).max
    lo = torch.where(m, y, torch.full_like(y, big)).amin((1, 2), keepdim=True)
    hi = torch.where(m, y, torch.full_like(y, -big)).amax((1, 2), keepdim=True)
    return lo, hi


def depth_loss(
    pred: torch.Tensor,
    depth: torch.Tensor,
    grad_weight: float = 0.5,
    abs_weight: float = 0.25,
    scales: int = 4,
    group: int = 1,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Training loss of SynthDepthNet on predictions (N, H, W) and metric depth (N, H, W) (0 = invalid).

    Per group of `group` consecutive images (frames of one clip; 1 = each image alone), the target inverse depth
    y = 1 / depth is normalised to [0, 1] (y_n, as the model's depth condition), the prediction p is aligned to it
    by least squares (a = s p + t, one s and t per group in closed form, differentiable: the MiDaS
    scale-and-shift-invariant loss; per group because the metric aligns per clip, so the net must keep one scale
    across a clip's frames), and with R = (a - y_n) on valid pixels

        loss = mean|R| + grad_weight * sum_k mean|grad R at 1/2^k| + abs_weight * mean|p - y|

    The gradient term (MiDaS gradient matching over `scales` scales) sharpens edges; the small absolute term on
    metric inverse depth (the synthetic world has one focal length and bounded room sizes) keeps the net's scale
    consistent from frame to frame, which the per-clip alignment of the metric rewards.
    Returns the loss and its detached parts {"ssi", "grad", "abs"} (tensors: no device sync).
    """
    n, h, w = pred.shape
    if group < 1 or n % group:
        raise InputError(f"depth_loss: {n} images do not split into groups of {group}")
    pred = pred.float().reshape(n // group, group * h, w)  # a group's frames stacked: one fit per group
    depth = depth.float().reshape(n // group, group * h, w)
    m = depth > 0
    mf = m.float()
    count = mf.sum((1, 2), keepdim=True).clamp_min(1)
    y = torch.where(m, 1.0 / depth.clamp_min(1e-6), torch.zeros_like(depth))
    lo, hi = _masked_min_max(y, m)
    yn = torch.where(m, (y - lo) / (hi - lo).clamp_min(1e-6), torch.zeros_like(y))
    pm = (pred * mf).sum((1, 2), keepdim=True) / count
    ym = (yn * mf).sum((1, 2), keepdim=True) / count
    pc = (pred - pm) * mf
    s = (pc * (yn - ym) * mf).sum((1, 2), keepdim=True) / (pc * pc).sum((1, 2), keepdim=True).clamp_min(1e-6)
    r = (s * (pred - pm) + ym - yn) * mf
    total = mf.sum().clamp_min(1)
    ssi = r.abs().sum() / total
    absolute = ((pred - y).abs() * mf).sum() / total
    r, mf = r.reshape(n, h, w), mf.reshape(n, h, w)  # gradients within each frame
    grad = pred.new_zeros(())
    for k in range(scales):
        rk, mk = r[:, :: 2**k, :: 2**k], mf[:, :: 2**k, :: 2**k]
        gx = (rk[:, :, 1:] - rk[:, :, :-1]).abs() * mk[:, :, 1:] * mk[:, :, :-1]
        gy = (rk[:, 1:] - rk[:, :-1]).abs() * mk[:, 1:] * mk[:, :-1]
        grad = grad + (gx.sum() + gy.sum()) / mk.sum().clamp_min(1)
    loss = ssi + grad_weight * grad + abs_weight * absolute
    return loss, {"ssi": ssi.detach(), "grad": grad.detach(), "abs": absolute.detach()}


class TransformersDepth:
    """A transformers depth model (Depth Anything, DPT, ...) from a local directory, as a `DepthEstimator`.

    The directory holds what `save_pretrained` writes for the model and its image processor (config.json, weights,
    preprocessor_config.json); nothing is downloaded. Frames go through the processor as uint8 images, the predicted
    depth is resized (bilinear) to the frame size. Relative models (Depth Anything, DPT) already predict inverse
    depth; a metric one (config `depth_estimation_type="metric"`, or output="metric") is inverted.
    """

    def __init__(
        self,
        path: str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 8,
        output: str | None = None,
    ):
        path = Path(path)
        if not path.is_dir() or not (path / "config.json").is_file():
            raise InputError(f"{path}: not a transformers depth-model directory (expected config.json and weights)")
        if output not in (None, "relative", "metric"):
            raise InputError(f"output must be 'relative' or 'metric', got {output!r}")
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        try:
            self.processor = AutoImageProcessor.from_pretrained(str(path), local_files_only=True)
            self.model = AutoModelForDepthEstimation.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputError(f"{path}: cannot load a depth model ({type(err).__name__}: {err})") from err
        self.device, self.dtype, self.batch_size = torch.device(device), dtype, int(batch_size)
        self.model.to(self.device, dtype).eval().requires_grad_(False)
        kind = output or getattr(self.model.config, "depth_estimation_type", None) or "relative"
        self.metric = kind == "metric" or self.model.config.model_type in ("zoedepth", "depth_pro")
        self.path = path

    @torch.inference_mode()
    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        _check_video(video)
        h, w = video.shape[-2:]
        frames = (video.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        out = []
        for i in range(0, len(frames), self.batch_size):
            inputs = self.processor(images=list(frames[i : i + self.batch_size]), return_tensors="pt")
            pixels = inputs["pixel_values"].to(self.device, self.dtype)
            pred = self.model(pixel_values=pixels).predicted_depth.float()
            if pred.ndim == 4:
                pred = pred[:, 0]
            pred = F.interpolate(pred[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
            if self.metric:
                pred = 1.0 / pred.clamp_min(1e-6)
            out.append(pred.cpu())
        return torch.cat(out).to(video.device)


def load_estimator(spec: str | Path | None = None, device: str | torch.device = "cpu") -> DepthEstimator:
    """None or "synth": SynthDepthNet with the default weights; a .safetensors file: SynthDepthNet weights;
    a directory: a transformers depth model (`TransformersDepth`)."""
    if spec is None or str(spec) == "synth":
        path = DEFAULT_WEIGHTS
        if not path.is_file():
            raise InputError(
                f"{path}: the default depth-estimator weights are missing; train them with "
                f"`{_TRAIN_HINT.format(path=path)}`, or pass a weights file or a transformers depth-model directory"
            )
    else:
        path = Path(spec)
    if path.is_dir():
        return TransformersDepth(path, device)
    if path.is_file() or path.suffix == ".safetensors":
        return SynthDepthNet.from_file(path, device).requires_grad_(False)
    raise InputError(f"{path}: no such depth estimator (give a SynthDepthNet .safetensors file or a model directory)")
