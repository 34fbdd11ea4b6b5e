"""Training and evaluation data: one `Clip` structure, produced by the synthetic world and by dataset folders.

A clip carries everything every condition needs, with exact ground truth where the source has it:

    video        (F, 3, H, W) float32 in [0, 1]
    depth        (F, H, W) float32 metric depth (> 0; 0 = no measurement), or None
    camera       CameraPath of F frames (normalised intrinsics, world-to-camera, OpenCV axes), or None
    references   list of (3, h, w) images in [0, 1] showing the identities (objects) of the clip
    caption      text
    meta         JSON-serialisable description (seed, objects, camera move, source, ...)

`collate` batches clips for the training loop; references are padded per batch with a presence mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from fulldit.camera import CameraPath


@dataclass
class Clip:
    """One training or benchmark example (see the module docstring for shapes)."""

    video: torch.Tensor
    depth: torch.Tensor | None = None
    camera: CameraPath | None = None
    references: list[torch.Tensor] = field(default_factory=list)
    caption: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return self.video.shape[0]

    def check(self, source: str = "clip") -> None:
        """Raise ValueError when the parts disagree in frame count or size (a broken entry, not a crash later)."""
        f, c, h, w = self.video.shape
        if c != 3:
            raise ValueError(f"{source}: video has {c} channels, expected 3")
        if self.depth is not None and tuple(self.depth.shape) != (f, h, w):
            raise ValueError(f"{source}: depth is {tuple(self.depth.shape)}, video is {f} frames of {h}x{w}")
        if self.camera is not None and self.camera.num_frames != f:
            raise ValueError(f"{source}: {self.camera.num_frames} camera poses for {f} video frames")
        for i, ref in enumerate(self.references):
            if ref.ndim != 3 or ref.shape[0] != 3:
                raise ValueError(f"{source}: reference {i} has shape {tuple(ref.shape)}, expected (3, h, w)")


@dataclass
class Batch:
    """Clips stacked for the training loop. References are padded to the batch maximum with a presence mask."""

    video: torch.Tensor  # (B, F, 3, H, W)
    depth: torch.Tensor | None  # (B, F, H, W), zeros where a clip has none (see has_depth)
    has_depth: torch.Tensor  # (B,) bool
    cameras: list[CameraPath | None]
    references: torch.Tensor | None  # (B, N, 3, h, w)
    has_reference: torch.Tensor  # (B, N) bool
    captions: list[str]
    meta: list[dict[str, Any]]


def collate(clips: list[Clip]) -> Batch:
    """Stack clips of equal frame count and size into a Batch (a DataLoader collate_fn)."""
    video = torch.stack([c.video for c in clips])
    has_depth = torch.tensor([c.depth is not None for c in clips])
    depth = None
    if bool(has_depth.any()):
        blank = torch.zeros(video.shape[1:2] + video.shape[3:], device=video.device)
        depth = torch.stack([c.depth if c.depth is not None else blank for c in clips])
    n = max(len(c.references) for c in clips)
    has_reference = torch.zeros(len(clips), n, dtype=torch.bool)
    references = None
    if n:
        shape = next(r.shape for c in clips for r in c.references)
        references = torch.zeros(len(clips), n, *shape, device=video.device)  # where the clips are: no copies
        for b, c in enumerate(clips):
            for i, r in enumerate(c.references):
                references[b, i], has_reference[b, i] = r, True
    return Batch(
        video,
        depth,
        has_depth,
        [c.camera for c in clips],
        references,
        has_reference,
        [c.caption for c in clips],
        [c.meta for c in clips],
    )
