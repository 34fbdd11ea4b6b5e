"""Write the example condition files the README's main command uses (deterministic; re-run to regenerate).

A tiny analytic scene — a striped sphere on a checkered floor before a wall — seen by an orbiting camera:
    orbit.txt        16-frame camera path, RealEstate10K format
    depth.npz        its metric depth, (16, 128, 128) float32 under key "depth"
    first_frame.png  frame 0 of the scene in colour
    reference.png    the sphere alone, seen from another side (the identity reference)

    python examples/make_examples.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fulldit.camera import CameraPath, build_path, save_camera_re10k
from fulldit.video_io import write_image

HERE = Path(__file__).resolve().parent
SIZE, FRAMES = 128, 16
SPHERE_C, SPHERE_R = torch.tensor([0.0, 0.35, 2.0], dtype=torch.float64), 0.55
FLOOR_Y, WALL_Z = 0.9, 4.5
LIGHT = torch.nn.functional.normalize(torch.tensor([-0.4, -1.0, -0.5], dtype=torch.float64), dim=0)


def rays(cam: CameraPath, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Origin (3,), unit world directions (H, W, 3) and the camera's forward axis (3,) of frame i."""
    k = torch.from_numpy(cam.intrinsics_px(SIZE, SIZE)[i])
    w2c = torch.from_numpy(cam.w2c[i])
    r, t = w2c[:3, :3], w2c[:3, 3]
    v, u = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")
    pix = torch.stack([u, v, torch.ones_like(u)], -1).double()
    d = pix @ torch.linalg.inv(k).T @ r  # camera ray -> world: R^T d
    return -r.T @ t, torch.nn.functional.normalize(d, dim=-1), r[2]


def trace(origin: torch.Tensor, d: torch.Tensor, sphere: bool = True, background: bool = True):
    """Nearest hit distance (H, W), surface colour (H, W, 3) and normal (H, W, 3) of the scene."""
    inf = torch.full(d.shape[:2], torch.inf, dtype=torch.float64)
    oc = origin - SPHERE_C
    b = d @ oc
    disc = b * b - (oc @ oc - SPHERE_R**2)
    t_s = torch.where(disc > 0, -b - disc.clamp_min(0).sqrt(), inf) if sphere else inf
    t_s = torch.where(t_s > 1e-6, t_s, inf)
    t_f = torch.where(d[..., 1] > 1e-6, (FLOOR_Y - origin[1]) / d[..., 1], inf) if background else inf
    t_w = torch.where(d[..., 2] > 1e-6, (WALL_Z - origin[2]) / d[..., 2], inf) if background else inf
    t = torch.stack([t_s, t_f, t_w]).min(0)
    p = origin + t.values[..., None] * d
    n_s = torch.nn.functional.normalize(p - SPHERE_C, dim=-1)
    stripes = ((torch.atan2(n_s[..., 0], n_s[..., 2]) * 6 / torch.pi).floor() % 2)[..., None]
    c_s = stripes * torch.tensor([0.9, 0.15, 0.1]) + (1 - stripes) * torch.tensor([0.95, 0.9, 0.8])
    checks = ((p[..., 0] * 2).floor() + (p[..., 2] * 2).floor()) % 2
    c_f = (0.35 + 0.35 * checks)[..., None].expand(*checks.shape, 3)
    bands = ((p[..., 1] * 4).floor() % 2)[..., None]
    c_w = bands * torch.tensor([0.25, 0.35, 0.7]) + (1 - bands) * torch.tensor([0.5, 0.6, 0.85])
    which = t.indices[..., None]
    colour = torch.where(which == 0, c_s, torch.where(which == 1, c_f, c_w))
    normal = torch.where(
        which == 0, n_s, torch.where(which == 1, torch.tensor([0.0, -1, 0]), torch.tensor([0.0, 0, -1]))
    )
    return t.values, colour, normal.double()


def shade(colour: torch.Tensor, normal: torch.Tensor, hit: torch.Tensor) -> torch.Tensor:
    light = (normal @ -LIGHT).clamp_min(0)[..., None]
    img = colour * (0.35 + 0.65 * light)
    return torch.where(hit[..., None], img, torch.ones_like(img)).float().permute(2, 0, 1).clamp(0, 1)


def main() -> None:
    cam = build_path("orbit-left 0.6rad", FRAMES, fov_deg=60.0)
    save_camera_re10k(cam, HERE / "orbit.txt", url="fulldit examples/make_examples.py: orbit-left 0.6 rad")
    depth = []
    for i in range(FRAMES):
        origin, d, forward = rays(cam, i)
        t, colour, normal = trace(origin, d)
        depth.append((t * (d @ forward)).float())  # distance along the optical axis = metric depth
        if i == 0:
            write_image(HERE / "first_frame.png", shade(colour, normal, torch.isfinite(t)))
    np.savez_compressed(HERE / "depth.npz", depth=torch.stack(depth).numpy())
    side = build_path("orbit-right 1.2rad", 2)  # the sphere from another side, alone on white
    origin, d, _ = rays(side, 1)
    t, colour, normal = trace(origin, d, background=False)
    write_image(HERE / "reference.png", shade(colour, normal, torch.isfinite(t)))
    print(f"wrote {HERE}/orbit.txt, depth.npz, first_frame.png, reference.png")


if __name__ == "__main__":
    main()
