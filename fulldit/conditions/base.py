"""What every condition module shares: the video's token grid and the batched input a condition receives."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Grid:
    """The video's token grid after patchify: t latent-frame groups x h x w, and the patch size."""

    t: int
    h: int
    w: int
    patch: tuple[int, int, int]

    @property
    def tokens(self) -> int:
        return self.t * self.h * self.w


@dataclass
class ConditionInput:
    """A condition's tensor for a batch and which samples (B,) or items (B, N) have it."""

    value: torch.Tensor
    present: torch.Tensor

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> ConditionInput:
        value = self.value.to(device) if dtype is None else self.value.to(device, dtype)
        return ConditionInput(value, self.present.to(device))
