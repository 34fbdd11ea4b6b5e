"""Draw a camera path as frusta from above and from the side, so a person can check it before spending GPU time.

Public API (stable; the CLI and the demo call it):

    path_figure(cam, title="", target=None) -> matplotlib.figure.Figure   the two views, for a page (e.g. gr.Plot)
    plot_path(cam, out_png, title="", target=None) -> Path                the same, written atomically as a .png
    top_view(cam, size=128) -> Tensor                                      a small top view for the preview sheet

`target` is an optional point to mark with a cross (e.g. the orbit target `(0, 0, target_distance)` of a
`fulldit.camera.moves.build_path` path), in the first camera's coordinates.

Everything is drawn in the first camera's frame (OpenCV axes: x right, y down, z forward), because a pose file has
no agreed world "up": the top view looks down on the x-z plane (x to the right, the first camera looking up the
page), the side view shows z to the right and up (-y) upwards, seen from the first camera's right. Each drawn
camera is a frustum of its own field of view (so a zoom shows as narrowing frusta), coloured by time; the first
camera is marked with a circle, the last with a square. Frusta are scaled to the path's extent (unit depth for a
camera that only rotates). The figure is built without pyplot, so it is safe to call from a web server's threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from fulldit.atomic import atomic_path
from fulldit.camera.path import CameraPath
from fulldit.errors import InputError

MAX_FRUSTA = 24  # more would hide each other; the path line still shows every frame
# (horizontal, vertical) coordinates of each view from frame-0 camera coordinates (x right, y down, z forward)
VIEWS = {
    "top view (from above)": (lambda p: p[..., 0], lambda p: p[..., 2], "x (right)", "z (forward)"),
    "side view (from the right)": (lambda p: p[..., 2], lambda p: -p[..., 1], "z (forward)", "-y (up)"),
}


def _frusta(cam: CameraPath) -> tuple[np.ndarray, np.ndarray, float]:
    """Camera centres (F, 3) and frustum corners (F, 4, 3) in frame 0's coordinates, and the frustum depth."""
    rel = cam.relative(normalize_scale=False)
    centres = rel.camera_centers()
    extent = float(np.ptp(centres, axis=0).max())
    depth = 0.25 * extent if extent > 1e-9 else 1.0
    fx, fy, cx, cy = rel.intrinsics.T
    corners_img = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])  # normalised image corners
    x = (corners_img[None, :, 0] - cx[:, None]) / fx[:, None] * depth  # (F, 4)
    y = (corners_img[None, :, 1] - cy[:, None]) / fy[:, None] * depth
    local = np.stack([x, y, np.full_like(x, depth)], axis=-1)  # (F, 4, 3) camera coordinates
    c2w_rot = np.swapaxes(rel.w2c[:, :3, :3], 1, 2)
    corners = centres[:, None, :] + np.einsum("fij,fkj->fki", c2w_rot, local)
    return centres, corners, depth


def path_figure(cam: CameraPath, title: str = "", target: Sequence[float] | None = None) -> Figure:
    """The top and side views of `cam` as a matplotlib Figure (see the module docstring)."""
    centres, corners, _ = _frusta(cam)
    mark = None if target is None else np.asarray(target, dtype=np.float64).reshape(1, 3)
    n = cam.num_frames
    shown = np.unique(np.linspace(0, n - 1, min(n, MAX_FRUSTA)).round().astype(int))
    cmap, norm = colormaps["viridis"], Normalize(0, max(n - 1, 1))
    fig = Figure(figsize=(9.0, 4.4), dpi=100, layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, (name, (h, v, hlabel, vlabel)) in zip(axes, VIEWS.items()):
        ax.plot(h(centres), v(centres), color="0.6", lw=1, zorder=1)
        for i in shown:
            col = cmap(norm(i))
            for k in range(4):  # four rays from the centre, and the far rectangle
                ray = np.stack([centres[i], corners[i, k]])
                ax.plot(h(ray), v(ray), color=col, lw=0.8, zorder=2)
            rect = corners[i, [0, 1, 2, 3, 0]]
            ax.plot(h(rect), v(rect), color=col, lw=1.2, zorder=2)
        ax.scatter(h(centres[:1]), v(centres[:1]), s=70, marker="o", color=cmap(norm(0)), ec="k", zorder=3)
        ax.scatter(h(centres[-1:]), v(centres[-1:]), s=70, marker="s", color=cmap(norm(n - 1)), ec="k", zorder=3)
        if mark is not None:  # dashed: from the first and last camera to the target
            for i in (0, n - 1):
                seg = np.concatenate([centres[i : i + 1], mark])
                ax.plot(h(seg), v(seg), color="tab:red", lw=0.7, ls="--", zorder=1)
            ax.scatter(h(mark), v(mark), s=60, marker="x", color="tab:red", zorder=3)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(hlabel)
        ax.set_ylabel(vlabel)
        ax.set_aspect("equal", adjustable="datalim")
        ax.grid(True, lw=0.3)
    axes[0].scatter([], [], marker="o", color="w", ec="k", label="first frame")
    axes[0].scatter([], [], marker="s", color="w", ec="k", label="last frame")
    if mark is not None:
        axes[0].scatter([], [], marker="x", color="tab:red", label="target")
    axes[0].legend(loc="best", fontsize=8)
    fig.colorbar(ScalarMappable(norm, cmap), ax=axes, label="frame", shrink=0.8)
    fig.suptitle(title or f"{n} cameras", fontsize=10)
    return fig


def plot_path(cam: CameraPath, out_png: str | Path, title: str = "", target: Sequence[float] | None = None) -> Path:
    """Write `path_figure(cam, title, target)` to `out_png` atomically and return the path."""
    out = Path(out_png)
    if out.suffix.lower() != ".png":
        raise InputError(f"{out}: the plot must be a .png file")
    fig = path_figure(cam, title, target)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    return out


def top_view(cam: CameraPath, size: int = 128) -> torch.Tensor:
    """A small (3, size, size) picture in [0, 1] for the preview sheet: the relative path seen from above (x right, z
    up the image), camera centres and viewing directions coloured by time."""
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
