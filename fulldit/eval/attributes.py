"""Text adherence and realism on the synthetic world: a video classifier of what captions state, trained on the world.

No CLIP or I3D weights can be downloaded where fulldit is developed, so FullBench-Synth measures text adherence
and realism with a small classifier trained on ground-truth world clips (`bench/train_attribute_net.py`), shipped
with the evaluator as the depth net is:

- **caption-attribute accuracy**: what the caption states — the objects' shapes, colours and patterns, the walls,
  the floor and the camera move — read back from a video. Per clip, each attribute group scores 1 for a right
  single choice (walls, floor) or the Jaccard index of the predicted and stated sets (shapes, colours, patterns,
  camera moves; an empty set, a static camera, equals an empty set); the clip's accuracy is the mean over groups.
  The ground truth's own accuracy is the ceiling: report generated / ground truth.
- **Fréchet distance** between the classifier's features (the pooled layer before the heads) of generated clips
  and of ground-truth clips, as FVD does with I3D features. Two halves of the ground truth give its floor.

Targets come from a clip's `meta` (fulldit.world.clips.ClipPlan.meta), the description the caption is written from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fulldit.errors import InputError
from fulldit.eval.weights_file import load_matching, read_net, save_net
from fulldit.world.clips import COLORS, FLOOR_WORDS, OBJECT_PATTERNS, WALL_WORDS
from fulldit.world.render import SHAPES
from fulldit.world.trajectories import DIRECTIONS

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "synth_attributes.safetensors"
MOVE_LABELS = tuple(f"{kind}-{d}" for kind, dirs in DIRECTIONS.items() for d in dirs)  # pan-left ... zoom-out
# group name -> (labels, multi-label?)
GROUPS: dict[str, tuple[tuple[str, ...], bool]] = {
    "shapes": (SHAPES, True),
    "colors": (tuple(COLORS), True),
    "patterns": (OBJECT_PATTERNS, True),
    "walls": (tuple(WALL_WORDS), False),
    "floor": (tuple(FLOOR_WORDS), False),
    "camera": (MOVE_LABELS, True),
}
SIZE, FRAMES = 128, 8  # the classifier sees 8 frames at 128x128: objects are a few pixels wide at 64


def targets(meta: dict) -> dict[str, torch.Tensor]:
    """Per group: a multi-hot (multi-label groups) or one-hot vector of what the clip's caption states."""
    try:
        stated = {
            "shapes": {o["shape"] for o in meta["objects"]},
            "colors": {c for o in meta["objects"] for c in o["colors"]},
            "patterns": {o["pattern"] for o in meta["objects"]},
            "walls": {meta["room"]["walls"]},
            "floor": {meta["room"]["floor"]},
            "camera": {f"{p['kind']}-{p['direction']}" for p in meta["move"]["parts"]},
        }
    except (KeyError, TypeError) as err:
        raise InputError(
            f"clip meta lacks what the caption is written from ({err!r}); not a synthetic-world clip"
        ) from err
    out = {}
    for name, (labels, _) in GROUPS.items():
        unknown = stated[name] - set(labels)
        if unknown:
            raise InputError(f"clip meta: unknown {name} {sorted(unknown)} (known: {', '.join(labels)})")
        out[name] = torch.tensor([label in stated[name] for label in labels], dtype=torch.float32)
    return out


def prepare(video: torch.Tensor) -> torch.Tensor:
    """Video (F, 3, H, W) in [0, 1] -> the classifier's input (3, FRAMES, SIZE, SIZE) in [-1, 1]."""
    if not isinstance(video, torch.Tensor) or video.ndim != 4 or video.shape[1] != 3:
        shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise InputError(f"the attribute classifier takes a video (F, 3, H, W) in [0, 1], got {shape}")
    idx = torch.linspace(0, video.shape[0] - 1, FRAMES).round().long()
    frames = F.interpolate(video[idx].float(), size=(SIZE, SIZE), mode="area")  # (FRAMES, 3, SIZE, SIZE)
    return frames.permute(1, 0, 2, 3) * 2 - 1


class AttributeNet(nn.Module):
    """A small 3D CNN: (B, 3, 8, 128, 128) -> a feature vector -> one linear head per attribute group.

    Conv-GN-SiLU layers (space halved by each, time by the last two), mean and max pooling, a linear embedding:
    the features of the Fréchet distance, 64 wide so that a few dozen clips estimate their covariance."""

    def __init__(self, widths: tuple[int, ...] | list[int] = (32, 64, 96, 128, 192), features: int = 64):
        super().__init__()
        self.widths, self.features = tuple(int(w) for w in widths), int(features)
        layers, cin = [], 3
        for i, w in enumerate(self.widths):
            stride = (1, 2, 2) if i < len(self.widths) - 2 else (2, 2, 2)  # space first, then time (8 frames -> 2)
            layers += [nn.Conv3d(cin, w, 3, stride, 1, bias=False), nn.GroupNorm(8, w), nn.SiLU()]
            cin = w
        self.body = nn.Sequential(*layers)
        self.embed = nn.Sequential(nn.Linear(2 * cin, self.features), nn.SiLU())  # mean and max pooled
        self.heads = nn.ModuleDict(
            {name: nn.Linear(self.features, len(labels)) for name, (labels, _) in GROUPS.items()}
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """x (B, 3, FRAMES, SIZE, SIZE) -> features (B, features), logits per group (B, labels)."""
        y = self.body(x).flatten(2)  # (B, C, T*H*W)
        h = self.embed(torch.cat([y.mean(2), y.amax(2)], 1))  # max: small objects are a few cells of the grid
        return h, {name: head(h) for name, head in self.heads.items()}

    @torch.no_grad()
    def read(self, video: torch.Tensor) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
        """One video (F, 3, H, W) in [0, 1] -> its feature vector and its predicted labels per group (0/1)."""
        device = next(self.parameters()).device
        h, logits = self(prepare(video)[None].to(device))
        preds = {}
        for name, (_, multi) in GROUPS.items():
            z = logits[name][0].float().cpu()
            preds[name] = (z > 0).float() if multi else F.one_hot(z.argmax(), len(z)).float()
        return h[0].float().cpu().numpy(), preds

    def caption_scores(self, video: torch.Tensor, meta: dict) -> tuple[np.ndarray, dict[str, float]]:
        """One video's feature vector and its accuracy per attribute group (`GROUPS`) and their mean."""
        features, preds = self.read(video)
        return features, attribute_accuracy(preds, targets(meta))

    def save(self, path: str | Path, info: dict | None = None, dtype: torch.dtype = torch.float16) -> None:
        """The weights (cast to `dtype`), the architecture and provenance `info` in one safetensors file, atomically."""
        groups = {k: list(v[0]) for k, v in GROUPS.items()}
        config = {"widths": list(self.widths), "features": self.features, "groups": groups, "input": [FRAMES, SIZE]}
        save_net(path, self, "AttributeNet", config, info, dtype)

    @classmethod
    def from_file(cls, path: str | Path = DEFAULT_WEIGHTS, device: str | torch.device = "cpu") -> AttributeNet:
        """Weights written by `save` (float32, eval mode); InputError for a missing, foreign or mismatched file."""
        state, config = read_net(path, "AttributeNet", " (train one with bench/train_attribute_net.py)")
        if config.get("groups") != {k: list(v[0]) for k, v in GROUPS.items()}:
            raise InputError(f"{path}: trained for other attribute labels than this version of fulldit names")
        if config.get("input") != [FRAMES, SIZE]:
            raise InputError(
                f"{path}: trained on inputs {config.get('input')} (frames, size), this version reads {[FRAMES, SIZE]}"
            )
        net = cls(config["widths"], config["features"])
        load_matching(net, state, path, f"AttributeNet({net.widths}, {net.features})")
        return net.to(device).eval()


def attribute_accuracy(pred: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per group: right choice (single) or Jaccard index of the label sets (multi, both empty = 1); and the mean."""
    scores = {}
    for name, (_, multi) in GROUPS.items():
        p, t = pred[name].bool(), target[name].bool()
        if multi:
            union = int((p | t).sum())
            scores[name] = 1.0 if union == 0 else int((p & t).sum()) / union
        else:
            scores[name] = float(bool((p == t).all()))
    scores["mean"] = float(np.mean([scores[name] for name in GROUPS]))
    return scores


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a (N, D) and b (M, D), as FID/FVD compute it."""
    from scipy import linalg

    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise InputError(
            f"Fréchet distance needs two sets of >= 2 feature vectors of one width, got {a.shape}, {b.shape}"
        )
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)  # SciPy >= 1.18 has no disp (and warned before)
    root = root.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))
