"""Conditions: each one a small module that turns its input into a `Segment` of tokens.

A condition module receives a `ConditionInput` — a batch-first tensor in the layout that condition
documents, and `present`, which says per sample (or per item, for several references) whether the
condition is given — and returns a `Segment` whose mask hides the tokens of absent ones. The model
never branches on condition names: it tokenizes what it is given and packs it (sequence.py).

Each module also owns the way from a sample's raw input to that tensor and how many tokens it adds: static
`prepare(cfg, given, encoding)` (raw `Given` inputs of a batch -> `ConditionInput`) and `num_tokens(cfg, input,
grid)`, which generation, training and the benchmarks all call through `prepare_conditions` / `condition_tokens`.

`CONDITIONS` is the only registry. Frame conditions (first/prefix/last/key frames) are not tokens:
they replace noisy latent frames with clean ones (frames.py, STIV), so they live in the sampler.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import torch
from torch import nn

from fulldit.conditions.base import ConditionInput, Encoding, Given, Grid
from fulldit.conditions.camera import CameraCondition
from fulldit.conditions.depth import DepthCondition
from fulldit.conditions.reference import ReferenceCondition
from fulldit.errors import InputError

if TYPE_CHECKING:
    from fulldit.config import ModelConfig

__all__ = [
    "CONDITIONS",
    "ConditionInput",
    "Encoding",
    "Given",
    "Grid",
    "build_conditions",
    "condition_tokens",
    "drop_conditions",
    "link_conditions",
    "prepare_conditions",
]


def drop_conditions(
    conditions: dict[str, ConditionInput], probs: dict[str, float], generator: torch.Generator | None = None
) -> dict[str, ConditionInput]:
    """Classifier-free-guidance dropout at training time: each sample loses each condition with its probability.

    Dropping only flips `present`, so a dropped condition is masked out of attention, never replaced
    by zeros that the model must learn to ignore.
    """
    out = {}
    for name, inp in conditions.items():
        p = probs.get(name, 0.0)
        b = inp.present.shape[0]
        keep = torch.rand(b, generator=generator) >= p
        keep = keep.to(inp.present.device).view(b, *([1] * (inp.present.ndim - 1)))
        out[name] = replace(inp, present=inp.present & keep)
    return out


def build_conditions(cfg: ModelConfig) -> nn.ModuleDict:
    """One module per condition named in cfg.conditions, from the registry."""
    unknown = [n for n in cfg.conditions if n not in CONDITIONS]
    if unknown:
        raise InputError(f"unknown condition(s) {unknown} in model.conditions (known: {sorted(CONDITIONS)})")
    return nn.ModuleDict({name: CONDITIONS[name](cfg) for name in cfg.conditions})


# The registry of token conditions. "frames" is not here: first/prefix/last/key frames replace latent frames
# (frames.py), they add no tokens.
CONDITIONS: dict[str, type[nn.Module]] = {
    "camera": CameraCondition,
    "reference": ReferenceCondition,
    "depth": DepthCondition,
}


def prepare_conditions(cfg: ModelConfig, given: Sequence[Given], enc: Encoding) -> dict[str, ConditionInput]:
    """Every condition of the model that some sample brings, from the samples' raw inputs (one per sample)."""
    prepared = {name: CONDITIONS[name].prepare(cfg, given, enc) for name in cfg.conditions}
    return {name: inp for name, inp in prepared.items() if inp is not None}


def link_conditions(conditions: dict[str, ConditionInput], known: torch.Tensor) -> dict[str, ConditionInput]:
    """Training, after the step's subset, dropout and known frames (B, T): a condition input derived from other
    inputs keeps that part only where they are given too, as in generation (each module's optional `link`)."""
    out = {}
    for name, inp in conditions.items():
        link = getattr(CONDITIONS[name], "link", None)
        out[name] = inp if link is None else link(inp, conditions, known)
    return out


def condition_tokens(cfg: ModelConfig, conditions: dict[str, ConditionInput], grid: Grid) -> list[int]:
    """Tokens each given condition adds per sample (for throughput and FLOPs)."""
    return [CONDITIONS[name].num_tokens(cfg, inp, grid) for name, inp in conditions.items()]
