"""Thumbnails of the conditions of a request, shown beside the generated frames in the preview sheet."""

from __future__ import annotations

import torch

from fulldit.camera.plot import top_view
from fulldit.generate import Request
from fulldit.video_io import depth_to_rgb


def condition_thumbnails(req: Request) -> list[tuple[str, torch.Tensor]]:
    """(label, (3, h, w) image) for every condition of a request, in a fixed order."""
    thumbs: list[tuple[str, torch.Tensor]] = []
    if req.camera is not None:
        thumbs.append(("camera (top view)", top_view(req.camera)))
    for i, ref in enumerate(req.references):
        thumbs.append((f"reference {i + 1}", ref))
    if req.depth is not None:
        thumbs.append(("depth, frame 0", depth_to_rgb(req.depth[0], is_inverse=req.depth_is_disparity)))
    if req.prefix is not None:
        thumbs.append((f"prefix ({len(req.prefix)} frames)", req.prefix[-1]))
    if req.first_frame is not None:
        thumbs.append(("first frame", req.first_frame))
    if req.last_frame is not None:
        thumbs.append(("last frame", req.last_frame))
    return thumbs
