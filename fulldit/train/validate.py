"""Validation during training: PSNR of generated clips against unseen worlds' ground truth, and a sample video.

A training loss says little about samples: these are full generations (the checkpoint's sampler, guidance and
steps) from the EMA weights, scored against the ground-truth render of the same world. Two tasks:

- `all`: caption + camera + references + depth + first frame, scored on the frames after the first (the
  default model's main bar: with this much given, the clip is nearly determined);
- `text`: the caption alone, scored on every frame (how much of the world the text alone brings back);
- `identity`: the caption + the references, scored by FullBench's identity score (how much of each reference's
  palette the clip shows, `fulldit.eval.identity`) minus the same score of the caption-only clip: the paired gain
  that FullBench's identity bar reads, tracked during training because first frames can teach a model to ignore
  its references (phase 7 of the default lost identity while every other condition improved);
- `attr_text`: text adherence of the caption-only clips, as FullBench's text bar reads it: the shipped
  caption-attribute classifier's accuracy on them over its accuracy on the ground truth of the same worlds
  (`fulldit.eval.attributes`; 1 = as legible as the truth). PSNR rewards blur, this does not;
- `room_cond`: the caption + camera + references + depth without the first frame, read by the same classifier: its
  walls and floor accuracy over the truth's: whether the text still acts once the conditions are given, which
  `all`'s first frame hides (the default renders the caption's room in about a quarter of clips, conditions given
  or not: BENCHMARKS.md, "caption attributes per group");
- `x0_psnr_all_t1`: one forward per clip: the network's clean-clip estimate from pure noise with everything `all`
  gives, against the truth (frames after the first). Where sampling starts and the conditions decide the clip
  (bench/x0_error.py: the default's samples stay ~0.6 dB below it), and free of the sampler's noise.

The worlds have seeds from VALIDATION_SEED_BASE on: far above any training index, below the benchmark's seeds,
so choosing a recipe by these numbers never looks at FullBench.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from fulldit.conditions.frames import frame_timesteps, known_latents, replace_frames
from fulldit.data import Clip
from fulldit.eval.attributes import DEFAULT_WEIGHTS, AttributeNet
from fulldit.eval.identity import identity_score
from fulldit.eval.video_metrics import psnr
from fulldit.flow import interpolate
from fulldit.generate import Pipeline, Request, branch_inputs
from fulldit.model import FullDiT
from fulldit.text_encoders import build_text_encoder
from fulldit.train.state import split_state
from fulldit.video_io import write_video
from fulldit.world.clips import render_batch, render_clip
from fulldit.world.dataset import BENCH_SEED_BASE

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

VALIDATION_SEED_BASE = BENCH_SEED_BASE // 2


def validation_clips(
    n: int, frames: int, height: int, width: int, device: torch.device | str = "cpu", first: int = 0
) -> list[Clip]:
    """n validation worlds from the `first`-th on, rendered (deterministic: the same clips in every run). Training
    validates on the first 16-32; a sampler sweep takes worlds further on, so no setting is tuned to those."""
    base = VALIDATION_SEED_BASE + first
    clips = render_batch(range(base, base + n), frames, height, width, device)
    return [Clip(c.video.cpu(), c.depth.cpu(), c.camera, [r.cpu() for r in c.references], c.caption, c.meta)
            for c in clips]  # fmt: skip


def all_request(pipe: Pipeline, clip: Clip, seed: int = 0) -> Request:
    """The `all` task of a world: its caption with every condition the model reads and its first frame."""
    names = pipe.config.model.conditions
    return Request(
        prompt=clip.caption,
        camera=clip.camera if "camera" in names else None,
        references=clip.references[: pipe.config.model.reference.max_images] if "reference" in names else [],
        depth=clip.depth if "depth" in names else None,
        first_frame=clip.video[0],
        frames=clip.video.shape[0],
        seed=seed,
    )


@torch.no_grad()
def x0_estimate(pipe: Pipeline, clip: Clip, t: float, task: str, seed: int = 0) -> torch.Tensor:
    """The network's one-step clean-clip estimate (F, 3, H, W) in [0, 1] from the truth noised to time t, for `task`
    ("all": every condition + the first frame; else the caption alone); conditional branch, no guidance."""
    frames = clip.video.shape[0]
    req = all_request(pipe, clip, seed) if task == "all" else Request(prompt=clip.caption, frames=frames, seed=seed)
    req = pipe._resolve(req)
    cond = pipe.condition_inputs(req)
    inputs = branch_inputs(cond, torch.ones(1, dtype=torch.bool, device=pipe.device)) if cond else {}
    context, mask = pipe.text_encoder.encode([req.prompt])
    video = clip.video.permute(1, 0, 2, 3)[None].to(pipe.device) * 2 - 1  # (1, 3, F, H, W) in [-1, 1]
    x0 = pipe.codec.encode(video).float()
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed)).to(pipe.device)
    known = torch.zeros(1, x0.shape[2], dtype=torch.bool, device=pipe.device)
    clean = x0
    if req.first_frame is not None:
        clean, known = known_latents({0: req.first_frame.to(pipe.device)}, frames, pipe.codec)
        clean, known = clean[None].to(pipe.device), known[None].to(pipe.device)
    tt = frame_timesteps(torch.full((1,), t, device=pipe.device), known)  # (1, T)
    x_t = replace_frames(interpolate(x0, noise, tt), clean, known)
    out = pipe.model(x_t, tt, context.to(pipe.device), mask.to(pipe.device), inputs).float()
    estimate = out if pipe.config.flow.prediction == "x0" else x_t - tt[:, None, :, None, None] * out
    decoded = pipe.codec.decode(replace_frames(estimate, clean, known))[0]  # (3, F, H, W)
    return ((decoded.permute(1, 0, 2, 3) + 1) / 2).clamp(0, 1).cpu()


@torch.no_grad()
def validate(pipe: Pipeline, clips: list[Clip], seed: int = 0, **sampling: float) -> dict[str, float]:
    """Mean score of each task over the clips: {"psnr_all": dB, "psnr_text": dB[, "identity_gain": score],
    "x0_psnr_all_t1": dB[, "attr_text": ratio][, "room_cond": ratio]}.

    identity_gain only where the model reads references; attr_text where the classifier's weights are installed
    and the truth's accuracy is above 0; room_cond as attr_text, where the model reads conditions. sampling: Request
    fields that override the checkpoint's sampler (steps, guidance, text_guidance, shift).
    """
    names = pipe.config.model.conditions
    max_refs = pipe.config.model.reference.max_images if "reference" in names else 0
    scores: dict[str, list[float]] = {"psnr_all": [], "psnr_text": []}
    reader = AttributeNet.from_file(DEFAULT_WEIGHTS, pipe.device) if DEFAULT_WEIGHTS.exists() else None
    accuracy: dict[str, list[float]] = {"text": [], "truth": [], "room_cond": [], "room_truth": []}  # per clip
    for clip in clips:
        frames = clip.video.shape[0]
        full = pipe.generate(all_request(pipe, clip, seed), **sampling).cpu()
        scores["psnr_all"].append(psnr(full[1:], clip.video[1:]))
        text = pipe.generate(prompt=clip.caption, frames=frames, seed=seed, **sampling).cpu()
        scores["psnr_text"].append(psnr(text, clip.video))
        if reader is not None:
            truth = reader.caption_scores(clip.video, clip.meta)[1]
            accuracy["truth"].append(truth["mean"])
            accuracy["text"].append(reader.caption_scores(text, clip.meta)[1]["mean"])
            if names:  # the conditions without the first frame: does the caption's room survive them?
                cond = pipe.generate(dataclasses.replace(all_request(pipe, clip, seed), first_frame=None), **sampling)
                room = reader.caption_scores(cond.cpu(), clip.meta)[1]
                accuracy["room_cond"].append((room["walls"] + room["floor"]) / 2)
                accuracy["room_truth"].append((truth["walls"] + truth["floor"]) / 2)
        refs = clip.references[:max_refs]
        if refs:
            given = pipe.generate(prompt=clip.caption, references=refs, frames=frames, seed=seed, **sampling).cpu()
            gain = [identity_score(given, r) - identity_score(text, r) for r in refs]
            scores.setdefault("identity_gain", []).append(sum(gain) / len(gain))
        estimate = x0_estimate(pipe, clip, 1.0, "all", seed)
        scores.setdefault("x0_psnr_all_t1", []).append(psnr(estimate[1:], clip.video[1:]))
    means = {k: sum(v) / len(v) for k, v in scores.items()}
    if sum(accuracy["truth"]) > 0:  # a ratio of means over the clips, as FullBench's generated / ground truth
        means["attr_text"] = sum(accuracy["text"]) / sum(accuracy["truth"])
    if sum(accuracy["room_truth"]) > 0:
        means["room_cond"] = sum(accuracy["room_cond"]) / sum(accuracy["room_truth"])
    return means


def ema_pipeline(pipe: Pipeline, state: dict[str, torch.Tensor]) -> Pipeline:
    """A Pipeline on the training device with the EMA weights (fresh modules: the training ones may be sharded)."""
    model = FullDiT(pipe.config.model).to(pipe.device)
    model.load_state_dict(split_state(state, "model."))
    model.eval()
    text = pipe.text_encoder
    if isinstance(text, nn.Module):
        text = build_text_encoder(pipe.config.text, pipe.device)
        text.load_state_dict(split_state(state, "text_encoder."))
        text.eval()
    return Pipeline(pipe.config, model, pipe.codec, text, pipe.device)


def write_sample(pipe: Pipeline, out: Path, step: int, writer: SummaryWriter | None) -> None:
    """Rank 0: generate the validation clip with the EMA weights; write an .mp4 and a preview to tensorboard."""
    s = pipe.config.sample
    clip = render_clip(BENCH_SEED_BASE - 1, s.frames, s.height, s.width)  # never a training seed in practice
    video = pipe.generate(all_request(pipe, clip))
    write_video(out / "samples" / f"step_{step:08d}.mp4", video, fps=s.fps)
    if writer is not None:
        strip = torch.cat([clip.video[:: max(1, s.frames // 4)], video[:: max(1, s.frames // 4)].cpu()], dim=3)
        writer.add_images("sample/ground_truth_vs_generated", strip.clamp(0, 1), step)


def write_validation(pipe: Pipeline, clips: list[Clip], out: Path, step: int, writer: SummaryWriter) -> None:
    """Rank 0: score the EMA weights on the validation worlds; tensorboard and OUT/validation.jsonl, with the seconds
    it took (the training waits for it: phase 10's validations took 3-4 minutes with three runs on one GPU)."""
    start = time.perf_counter()
    scores = validate(pipe, clips)
    scores["seconds"] = time.perf_counter() - start
    for name, value in scores.items():
        writer.add_scalar(f"validation/{name}", value, step)
    with open(out / "validation.jsonl", "a") as f:
        f.write(json.dumps({"step": step, **scores}) + "\n")
    shown = ", ".join(_shown(k, v) for k, v in scores.items())
    print(f"step {step}: validation {shown}", flush=True)


def _shown(name: str, value: float) -> str:
    """One validation score as the training log prints it."""
    if "psnr" in name:
        return f"{name} {value:.2f} dB"
    if name in ("attr_text", "room_cond"):
        return f"{name} {value:.2f}x the truth's"
    if name == "seconds":
        return f"in {value:.0f} s"
    return f"{name} {value:+.3f}"
