"""Draw the README's camera pictures (deterministic; re-run with `python docs/make_camera_figures.py`):

    camera-orbit.png        `fulldit camera --move orbit-left --degrees 30 --frames 16`, plotted
    camera-sequence.png     `--path "orbit-left 30deg then dolly-in 0.5 then zoom-in 2x" --frames 24`, plotted
    camera-conventions.png  one camera, its axes and the 3x4 matrix a file stores for it, in each convention

Palette PNGs of 128 colours keep each picture near 20 KB.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from fulldit.atomic import atomic_path
from fulldit.camera import CONVENTIONS, build_path
from fulldit.camera.conventions import from_opencv
from fulldit.camera.plot import path_figure

HERE = Path(__file__).resolve().parent
TARGET = (0.0, 0.0, 2.0)  # build_path's default target_distance
CAPTIONS = {
    "opencv": ("opencv (native): world-to-camera", "x right, y down, z forward", "X_cam = R X_world + t"),
    "c2w": ("c2w: camera-to-world", "x right, y down, z forward", "last column = camera centre"),
    "opengl": ("opengl: camera-to-world (Blender)", "x right, y up, looks down -z", "= c2w · diag(1, -1, -1, 1)"),
}


def save_small(fig: Figure, path: Path) -> None:
    """Save as a 128-colour palette PNG: the plots are flat colours, and the README pictures should stay small."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    img = Image.open(buf).convert("RGB").quantize(colors=128)
    with atomic_path(path) as tmp:
        img.save(tmp, format="png", optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


def to_plot(p: np.ndarray) -> np.ndarray:
    """World (OpenCV: y down) -> plot axes (x, z, up), so that up is up in the 3D view."""
    return np.stack([p[..., 0], p[..., 2], -p[..., 1]], axis=-1)


def conventions_figure() -> Figure:
    """One camera at (2, 0, 0) looking along -x, drawn three times with its axes named as each convention names them."""
    centre, rot = np.array([2.0, 0.0, 0.0]), np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = rot.T, -rot.T @ centre  # rot: camera-to-world, columns = OpenCV camera axes
    fig = Figure(figsize=(12.0, 4.2), layout="constrained")
    for k, conv in enumerate(CONVENTIONS):
        ax = fig.add_subplot(1, 3, k + 1, projection="3d")
        corners = np.array([[-0.3, -0.22, 0.55], [0.3, -0.22, 0.55], [0.3, 0.22, 0.55], [-0.3, 0.22, 0.55]])
        corners = corners @ rot.T + centre
        for c in corners:
            ax.plot(*to_plot(np.stack([centre, c])).T, color="0.5", lw=0.8)
        ax.plot(*to_plot(corners[[0, 1, 2, 3, 0]]).T, color="0.5", lw=0.8)
        flip = np.diag([1.0, -1.0, -1.0]) if conv == "opengl" else np.eye(3)
        for axis, name, col in zip((rot @ flip).T, "xyz", ("tab:red", "tab:green", "tab:blue")):
            tip = to_plot(centre + 1.0 * axis)
            ax.quiver(*to_plot(centre), *(tip - to_plot(centre)), color=col, lw=2, arrow_length_ratio=0.2)
            ax.text(*to_plot(centre + 1.15 * axis), name, color=col, fontsize=11, weight="bold", zorder=10)
        for axis, name in zip(np.eye(3), ("world x", "world z", "world up (-y)")):
            ax.quiver(0, 0, 0, *axis * 0.6, color="k", lw=0.8, arrow_length_ratio=0.15)
            ax.text(*axis * 0.65, name, fontsize=7, ha="right" if name == "world x" else "left")
        ax.scatter(*to_plot(np.zeros(3)), color="k", marker="x")
        ax.set(xlim=(-0.2, 3.4), ylim=(-1.0, 1.0), zlim=(-1.0, 1.0))
        ax.set_box_aspect((3.6, 2.0, 2.0), zoom=1.3)
        ax.set_axis_off()
        ax.view_init(elev=22, azim=-60)
        m = from_opencv(w2c[None], conv)[0, :3] + 0.0  # + 0.0: print 0, not -0
        rows = "\n".join("[" + " ".join(f"{v:3g}" for v in r) + "]" for r in m)
        title, axes_text, note = CAPTIONS[conv]
        ax.set_title(f"{title}\ncamera axes: {axes_text}", fontsize=9)
        ax.text2D(0.5, 0.02, f"file matrix ({note}):\n{rows}", transform=ax.transAxes, ha="center", va="top",
                  fontsize=8, family="monospace")  # fmt: skip
    fig.suptitle("one camera at world (2, 0, 0) looking at the origin (x): what each --convention stores", fontsize=10)
    return fig


def main() -> None:
    orbit = build_path("orbit-left 30deg", frames=16)
    save_small(path_figure(orbit, "fulldit camera --move orbit-left --degrees 30 --frames 16", TARGET),
               HERE / "camera-orbit.png")  # fmt: skip
    text = "orbit-left 30deg then dolly-in 0.5 then zoom-in 2x"
    save_small(path_figure(build_path(text, frames=24), f'--path "{text}" --frames 24', TARGET),
               HERE / "camera-sequence.png")  # fmt: skip
    save_small(conventions_figure(), HERE / "camera-conventions.png")


if __name__ == "__main__":
    main()
