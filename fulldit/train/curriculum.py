"""Which token conditions a step trains: FullDiT's staged curriculum over every allowed subset.

One subset per optimizer step, shared by every micro-batch and rank: all samples carry the same conditions, so
attention runs dense, without padded condition tokens or a key mask; a step without depth does not pay for
2,048 depth tokens; and every rank reduces the same gradients (FSDP2 requires it). Over many steps every
allowed subset is trained; `loss/<subset>` in the logs shows each. Within the subset, references still vary
per sample (a clip has 1-6), and frame conditions (first, prefix, last frame) are drawn per sample,
independently, because they add no tokens.
"""

from __future__ import annotations

import itertools

import torch

from fulldit.errors import InputError
from fulldit.train.config import CurriculumConfig, Stage


def stage_at(cfg: CurriculumConfig, step: int) -> Stage:
    """The stage in force at `step`."""
    return [s for s in cfg.stages if s.start <= step][-1]


def allowed_subsets(cfg: CurriculumConfig, conditions: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Non-empty subsets of `conditions` that contain no excluded set and respect max_conditions, in a fixed order."""
    limit = cfg.max_conditions or len(conditions)
    excluded = [set(e) for e in cfg.exclude]
    out = []
    for size in range(1, min(limit, len(conditions)) + 1):
        for subset in itertools.combinations(conditions, size):
            if not any(e <= set(subset) for e in excluded):
                out.append(subset)
    return out


def check_curriculum(cfg: CurriculumConfig, model_conditions: tuple[str, ...]) -> None:
    """Every stage names only conditions the model has, and leaves at least one subset to train."""
    for stage in cfg.stages:
        unknown = sorted(set(stage.conditions) - set(model_conditions))
        if unknown:
            raise InputError(
                f"train.curriculum: stage at step {stage.start} names {unknown}, "
                f"which the model does not have (model.conditions: {list(model_conditions)})"
            )
        if stage.conditions and not allowed_subsets(cfg, stage.conditions):
            raise InputError(f"train.curriculum: stage at step {stage.start} leaves no subset to train")


def draw_subset(cfg: CurriculumConfig, step: int, generator: torch.Generator) -> tuple[str, ...]:
    """The conditions of the step `step`: () with probability cfg.none, else a uniform allowed subset."""
    stage = stage_at(cfg, step)
    subsets = allowed_subsets(cfg, stage.conditions)
    u = float(torch.rand((), generator=generator))
    if not subsets or u < cfg.none:
        return ()
    return subsets[int(torch.randint(len(subsets), (), generator=generator))]


def subset_name(subset: tuple[str, ...]) -> str:
    """A log tag: 'text' for no token condition, else the names joined by '+'."""
    return "+".join(subset) if subset else "text"
