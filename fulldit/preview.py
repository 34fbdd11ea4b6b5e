"""Thumbnails of the conditions of a request, shown beside the generated frames in the preview sheet."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from fulldit.camera.path import CameraPath
from fulldit.generate import Request
from fulldit.video_io import depth_to_rgb


def camera_plot(cam: CameraPath, size: int = 128) -> torch.Tensor:
    """Top-down view (x right, z up the image) of the relative camera path: centres and viewing directions."""
    rel = cam.relative()
    centres = rel.camera_centers()  # (F, 3)
    forward = np.stack([w[2, :3] for w in rel.w2c])  # camera +z axis in world coordinates (row 3 of R)
    pts = np.concatenate([centres[:, [0, 2]], centres[:, [0, 2]] + 0.25 * forward[:, [0, 2]]])
    lo, hi = pts.min(0), pts.max(0)
    span = float(max(hi[0] - lo[0], hi[1] - lo[1], 1e-3))
    margin = 0.15 * size

    def px(p: np.ndarray) -> tuple[int, int]:
        q = (p - (lo + hi) / 2) / span * (size - 2 * margin) + size / 2
        return int(round(q[0])), int(round(size - q[1]))  # z grows upwards in the image

    img = np.full((size, size, 3), 255, np.uint8)
    n = len(centres)
    for i in range(n):
        colour = tuple(
            int(c) for c in cv2.applyColorMap(np.uint8([[255 * i // max(n - 1, 1)]]), cv2.COLORMAP_VIRIDIS)[0, 0]
        )
        start = centres[i, [0, 2]]
        cv2.arrowedLine(img, px(start), px(start + 0.25 * forward[i, [0, 2]]), colour, 1, tipLength=0.3)
        cv2.circle(img, px(start), 2, colour, -1)
    return torch.from_numpy(img[:, :, ::-1].copy()).permute(2, 0, 1).float() / 255  # BGR -> RGB


def condition_thumbnails(req: Request) -> list[tuple[str, torch.Tensor]]:
    """(label, (3, h, w) image) for every condition of a request, in a fixed order."""
    thumbs: list[tuple[str, torch.Tensor]] = []
    if req.camera is not None:
        thumbs.append(("camera (top view)", camera_plot(req.camera)))
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
