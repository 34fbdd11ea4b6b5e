"""Segments: how every condition becomes tokens in one sequence, and where those tokens sit.

Each condition's tokenizer returns a `Segment`: tokens of the model width, a 3-axis position per
token, and a mask of which tokens are real. `pack` lays the segments of a batch side by side after
the video tokens. Position ids (t, h, w) drive one 3D rotary embedding for all segments:

- video tokens: (t, h, w) = their index on the patchified latent grid, t in [0, T), h in [0, H), w in [0, W);
- depth and Plücker-camera tokens: the same grid as the video, so a depth token and the video token
  it describes share a position (relative offset 0) — the alignment is given, not learned;
- camera tokens (temporal mode): t = the latent frame they describe, (h, w) = the grid centre;
- reference image i (0-based): (t, h, w) = (-1 - i, h, w), i.e. apart from the video on the time
  axis (as Flux Kontext offsets its condition image on axis 0), on its own spatial grid;
- text has no position: it enters by cross-attention.

Positions are floats (grid centres can be half-integers); the rotary embedding is computed from them
on the fly, so any layout a new condition needs is one tensor away.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Segment:
    """The tokens of one condition for a batch: tokens (B, L, D), pos (B, L, 3) float, mask (B, L) bool."""

    name: str
    tokens: torch.Tensor
    pos: torch.Tensor
    mask: torch.Tensor

    def __post_init__(self) -> None:
        b, n, _ = self.tokens.shape
        assert self.pos.shape == (b, n, 3), (self.name, self.pos.shape)
        assert self.mask.shape == (b, n) and self.mask.dtype == torch.bool, (self.name, self.mask.shape)


@dataclass
class Packed:
    """All condition segments of a batch, concatenated in a fixed order after the video tokens.

    `bounds[i]` is the (start, end) slice of segment i inside `tokens`; the isolated attention layout
    uses it to let each condition attend only to itself. `mask` is None when every token is real,
    which lets attention take the dense fast path.
    """

    tokens: torch.Tensor  # (B, Lc, D)
    pos: torch.Tensor  # (B, Lc, 3)
    mask: torch.Tensor | None  # (B, Lc) bool, or None when all True
    names: list[str]
    bounds: list[tuple[int, int]]

    @property
    def length(self) -> int:
        return self.tokens.shape[1]

    def rows(self, index: torch.Tensor) -> Packed:
        """The samples `index` (a 1-D index tensor) of the batch, in that order; the segments stay as they are."""
        mask = None if self.mask is None else self.mask[index]
        return Packed(self.tokens[index], self.pos[index], mask, self.names, self.bounds)


def grid_positions(t: int, h: int, w: int, device: torch.device | None = None, t0: float = 0.0) -> torch.Tensor:
    """Positions (t*h*w, 3) of a (t, h, w) token grid in row-major (t, h, w) order, time offset by t0."""
    tt, hh, ww = torch.meshgrid(
        torch.arange(t, device=device, dtype=torch.float32) + t0,
        torch.arange(h, device=device, dtype=torch.float32),
        torch.arange(w, device=device, dtype=torch.float32),
        indexing="ij",
    )
    return torch.stack([tt, hh, ww], dim=-1).reshape(-1, 3)


def pack(segments: list[Segment]) -> Packed | None:
    """Concatenate segments along the sequence; drop segments with no real token anywhere in the batch.

    A condition absent from the whole batch is absent from the sequence (no cost, nothing to ignore);
    one absent for some samples only is masked out of attention for those samples.
    """
    segments = [s for s in segments if bool(s.mask.any())]
    if not segments:
        return None
    bounds, start = [], 0
    for s in segments:
        bounds.append((start, start + s.tokens.shape[1]))
        start += s.tokens.shape[1]
    mask = torch.cat([s.mask for s in segments], dim=1)
    return Packed(
        tokens=torch.cat([s.tokens for s in segments], dim=1),
        pos=torch.cat([s.pos for s in segments], dim=1),
        mask=None if bool(mask.all()) else mask,
        names=[s.name for s in segments],
        bounds=bounds,
    )
