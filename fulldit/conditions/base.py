"""What every condition module shares: the video's token grid, the raw inputs a sample brings, and the batched
input a condition module embeds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from fulldit.camera import CameraPath
    from fulldit.codecs import Codec


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
    # (B,) bool: which samples' value holds the condition's optional second input (depth: the first frame
    # reprojected through it, `model.depth.reproject`); None: the condition has none
    aux: torch.Tensor | None = None

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> ConditionInput:
        value = self.value.to(device) if dtype is None else self.value.to(device, dtype)
        return ConditionInput(value, self.present.to(device), None if self.aux is None else self.aux.to(device))

    def rows(self, index: torch.Tensor) -> ConditionInput:
        """The samples `index` (a (n,) index tensor)."""
        return ConditionInput(self.value[index], self.present[index], None if self.aux is None else self.aux[index])


@dataclass
class Given:
    """One sample's raw token-condition inputs, before any encoding: what a generation request or a training clip
    brings. Each condition module reads its own field (`prepare`); `sources` names the files they came from."""

    camera: CameraPath | None = None
    references: Sequence[torch.Tensor] = ()  # (3, H, W) in [0, 1], any size
    depth: torch.Tensor | None = None  # (F, H, W) metric depth, 0 = no measurement (or disparity, see below)
    depth_is_disparity: bool = False
    sources: dict[str, str] = field(default_factory=dict)
    first_frame: torch.Tensor | None = None  # (3, H, W) in [0, 1]: only reprojected (`model.depth.reproject`)

    def names(self) -> list[str]:
        """The token conditions this sample brings."""
        given = {"camera": self.camera is not None, "reference": bool(self.references), "depth": self.depth is not None}
        return [name for name, ok in given.items() if ok]


@dataclass(frozen=True)
class Encoding:
    """What turning raw inputs into a condition's tensor needs: the video's shape, its token grid and the codec.

    training: raw data is trimmed to what the model takes (the first `max_images` references) instead of refused.
    """

    frames: int
    size: tuple[int, int]  # (H, W) of the video
    grid: Grid
    codec: Codec
    device: torch.device
    training: bool = False
