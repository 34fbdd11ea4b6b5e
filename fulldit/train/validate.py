"""Validation during training: PSNR of generated clips against unseen worlds' ground truth.

A training loss says little about samples: these are full generations (the checkpoint's sampler, guidance and
steps) from the EMA weights, scored against the ground-truth render of the same world. Two tasks:

- `all`: caption + camera + references + depth + first frame, scored on the frames after the first (the
  default model's main bar: with this much given, the clip is nearly determined);
- `text`: the caption alone, scored on every frame (how much of the world the text alone brings back).

The worlds have seeds from VALIDATION_SEED_BASE on: far above any training index, below the benchmark's seeds,
so choosing a recipe by these numbers never looks at FullBench.
"""

from __future__ import annotations

import torch

from fulldit.data import Clip
from fulldit.eval.video_metrics import psnr
from fulldit.generate import Pipeline
from fulldit.world.clips import render_batch
from fulldit.world.dataset import BENCH_SEED_BASE

VALIDATION_SEED_BASE = BENCH_SEED_BASE // 2


def validation_clips(n: int, frames: int, height: int, width: int, device: torch.device | str = "cpu") -> list[Clip]:
    """The first n validation worlds, rendered (deterministic: the same clips in every run)."""
    clips = render_batch(range(VALIDATION_SEED_BASE, VALIDATION_SEED_BASE + n), frames, height, width, device)
    return [Clip(c.video.cpu(), c.depth.cpu(), c.camera, [r.cpu() for r in c.references], c.caption, c.meta)
            for c in clips]  # fmt: skip


@torch.no_grad()
def validate(pipe: Pipeline, clips: list[Clip], seed: int = 0, **sampling: float) -> dict[str, float]:
    """Mean PSNR (dB) of each task over the clips: {"psnr_all": ..., "psnr_text": ...}.

    sampling: Request fields that override the checkpoint's sampler (steps, guidance, text_guidance, shift).
    """
    names = pipe.config.model.conditions
    max_refs = pipe.config.model.reference.max_images if "reference" in names else 0
    scores: dict[str, list[float]] = {"psnr_all": [], "psnr_text": []}
    for clip in clips:
        frames = clip.video.shape[0]
        full = pipe.generate(
            prompt=clip.caption,
            camera=clip.camera if "camera" in names else None,
            references=clip.references[:max_refs],
            depth=clip.depth if "depth" in names else None,
            first_frame=clip.video[0],
            frames=frames,
            seed=seed,
            **sampling,
        ).cpu()
        scores["psnr_all"].append(psnr(full[1:], clip.video[1:]))
        text = pipe.generate(prompt=clip.caption, frames=frames, seed=seed, **sampling).cpu()
        scores["psnr_text"].append(psnr(text, clip.video))
    return {k: sum(v) / len(v) for k, v in scores.items()}
