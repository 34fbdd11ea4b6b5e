"""The first frame reprojected through the depth video and the camera path: what geometry alone says of each frame.

With metric depth, a camera path in the same units and the first frame, every pixel of frame t whose surface frame 0
saw can be looked up in frame 0: unproject it with frame t's depth, move it into frame 0's camera, project, sample.
A pixel is valid when it lands inside frame 0, in front of its camera, and frame 0's depth there agrees (else
something nearer hid it: a disocclusion). On the synthetic world this lookup alone scores 20.5 dB PSNR against the
truth on frames 1-15 (the 60 worlds with motion of 64 unseen ones; pixels it cannot fill take frame 0's mean colour;
`bench/reprojection_baseline.py`), where the default model given depth, camera, references and first frame scored
18.5 over all 64: the network had to learn this warp from tokens and did not. The depth condition can carry it
(`model.depth.reproject`), so that the model only inpaints what frame 0 did not see and what moved.

Conventions are fulldit.camera.path's: OpenCV axes, world-to-camera extrinsics, intrinsics normalised by the image
size, depth as camera z (0: no measurement). Moving objects are reprojected as if they stood still.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fulldit.camera import CameraPath
from fulldit.camera.path import pixel_rays

OCCLUSION_TOL = 0.05  # relative depth disagreement above which frame 0 saw something else at that pixel


def reproject_first_frame(
    first: torch.Tensor, depth: torch.Tensor, camera: CameraPath
) -> tuple[torch.Tensor, torch.Tensor]:
    """first (3, H, W) in [0, 1], depth (F, H, W) metric, camera of F frames -> (video (3, F, H, W) in [0, 1],
    valid (F, H, W) bool). Invalid pixels are 0. Frame 0 is the first frame itself where its depth is measured."""
    f, h, w = depth.shape
    if camera.num_frames != f:
        raise ValueError(f"reprojection: {camera.num_frames} camera poses for {f} depth frames")
    device = depth.device
    depth = depth.double()
    intr = torch.as_tensor(camera.intrinsics, dtype=torch.float64, device=device)
    w2c = torch.as_tensor(camera.w2c, dtype=torch.float64, device=device)
    points = pixel_rays(camera, h, w).to(device) * depth[..., None]  # (F, H, W, 3) in each frame's camera
    to_first = w2c[0] @ torch.linalg.inv(w2c)  # (F, 4, 4): camera t -> world -> camera 0
    p0 = torch.einsum("fij,fhwj->fhwi", to_first[:, :3, :3], points) + to_first[:, None, None, :3, 3]
    z0 = p0[..., 2]
    fx, fy, cx, cy = intr[0]
    safe_z = torch.where(z0 > 0, z0, torch.ones_like(z0))
    u = (p0[..., 0] / safe_z * fx + cx) * 2 - 1  # grid_sample's [-1, 1] over the image (align_corners=False)
    v = (p0[..., 1] / safe_z * fy + cy) * 2 - 1
    grid = torch.stack([u, v], -1).float()  # (F, H, W, 2)
    colour = F.grid_sample(
        first.float()[None].expand(f, -1, -1, -1).to(device), grid, mode="bilinear", align_corners=False
    )  # (F, 3, H, W)
    seen = F.grid_sample(depth[:1, None].float().expand(f, -1, -1, -1), grid, mode="nearest", align_corners=False)[
        :, 0
    ].double()  # frame 0's depth where each pixel lands
    valid = (depth > 0) & (z0 > 0) & (u.abs() <= 1) & (v.abs() <= 1) & ((seen - z0).abs() <= OCCLUSION_TOL * z0)
    video = torch.where(valid[:, None], colour, torch.zeros_like(colour)).permute(1, 0, 2, 3)  # (3, F, H, W)
    return video.contiguous(), valid
