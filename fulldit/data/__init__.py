"""Training and evaluation data: one `Clip` structure, produced by the synthetic world and by dataset folders.

A clip carries everything every condition needs, with exact ground truth where the source has it:

    video        (F, 3, H, W) float32 in [0, 1]
    depth        (F, H, W) float32 metric depth (> 0; 0 = no measurement), or None
    camera       CameraPath of F frames (normalised intrinsics, world-to-camera, OpenCV axes), or None
    references   list of (3, h, w) images in [0, 1] showing the identities (objects) of the clip
    caption      text
    meta         JSON-serialisable description (seed, objects, camera move, source, ...)

`collate` batches clips for the training loop; references are padded per batch with a presence mask. `contact_sheet`
draws a few clips on one image (what `fulldit synth` and `fulldit prepare` write beside a dataset).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch

from fulldit.camera import CameraPath
from fulldit.video_io import depth_to_rgb


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


def _thumb(image: torch.Tensor, size: int) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (size, size * W / H, 3) uint8."""
    h, w = image.shape[1:]
    img = (image.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return np.asarray(PIL.Image.fromarray(img).resize((max(1, round(size * w / h)), size), PIL.Image.BILINEAR))


def contact_sheet(clips: list[Clip], frames_per_clip: int = 5, size: int = 96) -> PIL.Image.Image:
    """One row per clip: evenly spaced frames, the depth of frame 0, the references, and the caption."""
    rows = []
    for clip in clips:
        idx = np.linspace(0, clip.num_frames - 1, min(frames_per_clip, clip.num_frames)).round().astype(int)
        tiles = [_thumb(clip.video[i], size) for i in idx]
        if clip.depth is not None:
            tiles.append(_thumb(depth_to_rgb(clip.depth[0].cpu()), size))
        tiles += [_thumb(r, size) for r in clip.references]
        row = np.concatenate([np.pad(t, ((0, 0), (0, 4), (0, 0)), constant_values=255) for t in tiles], axis=1)
        rows.append((row, clip.caption))
    width = max(r.shape[1] for r, _ in rows)
    sheet = PIL.Image.new("RGB", (width, len(rows) * (size + 18)), "white")
    draw = PIL.ImageDraw.Draw(sheet)
    for k, (row, caption) in enumerate(rows):
        y = k * (size + 18)
        sheet.paste(PIL.Image.fromarray(row), (0, y))
        draw.text((2, y + size + 3), caption[: width // 6], fill=(0, 0, 0))
    return sheet
