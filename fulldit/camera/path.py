"""Camera paths: the pose convention (used everywhere in fulldit) and the geometry the model needs.

* Camera axes are OpenCV's: x points right, y points down, z points forward (the viewing direction).
* Extrinsics are world-to-camera 4x4 matrices `w2c = [[R, t], [0, 0, 0, 1]]`, so a world point `X` has
  camera coordinates `R @ X + t`. The camera centre in world coordinates is `-R.T @ t`.
* Intrinsics are `fx fy cx cy` normalised per axis by the image size (the RealEstate10K / CameraCtrl
  convention): `fx_px = fx * W`, `cx_px = cx * W`, `fy_px = fy * H`, `cy_px = cy * H`. Pixel coordinates are
  continuous, with the image spanning `[0, W] x [0, H]`, so pixel `(u, v)` has its centre at `(u + 0.5, v + 0.5)`
  and `cx = cy = 0.5` is the image centre. Because of the per-axis normalisation, the same numbers describe a
  camera at any resolution of the same aspect ratio; `fx == fy` means square pixels only for a square image.
* Model input is the path made relative to frame 0: `w2c_i @ inv(w2c_0)`, so frame 0 becomes the identity and
  the result does not depend on where the world origin was. The translation scale is then normalised: all
  translations are divided by the largest distance of a camera centre from frame 0's centre, so that distance
  becomes 1. A path that does not translate (that distance is below 1e-6 of the scene's scale) keeps its
  translations unchanged, so pure rotations are never blown up by dividing noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fulldit.errors import InputError

ROTATION_TOL = 1e-3  # RealEstate10K files carry ~6 significant digits, so exact orthonormality is not expected
STILL_EPS = 1e-6  # a path whose centres move less than this (relative to the scene scale) does not translate


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no truth value, so the generated __eq__ would raise
class CameraPath:
    """One camera per frame: normalised intrinsics and world-to-camera extrinsics (see the module docstring)."""

    intrinsics: np.ndarray  # (F, 4) float64: fx, fy, cx, cy normalised by width/height
    w2c: np.ndarray  # (F, 4, 4) float64 world-to-camera, OpenCV axes

    def __post_init__(self) -> None:
        intr = np.array(self.intrinsics, dtype=np.float64)
        w2c = np.array(self.w2c, dtype=np.float64)
        if intr.ndim != 2 or intr.shape[1] != 4:
            raise InputError(f"CameraPath: intrinsics must have shape (F, 4), got {intr.shape}")
        if w2c.ndim != 3 or w2c.shape[1:] != (4, 4):
            raise InputError(f"CameraPath: w2c must have shape (F, 4, 4), got {w2c.shape}")
        if len(intr) != len(w2c) or len(w2c) == 0:
            raise InputError(
                f"CameraPath: need the same, non-zero number of intrinsics and w2c ({intr.shape}, {w2c.shape})"
            )
        object.__setattr__(self, "intrinsics", intr)
        object.__setattr__(self, "w2c", w2c)

    @property
    def num_frames(self) -> int:
        return len(self.w2c)

    def camera_centers(self) -> np.ndarray:
        """(F, 3) camera positions in world coordinates, `-R^T t`."""
        return -np.einsum("fji,fj->fi", self.w2c[:, :3, :3], self.w2c[:, :3, 3])

    def relative(self, normalize_scale: bool = True) -> CameraPath:
        """Poses relative to frame 0 (which becomes the identity), optionally with translation scale normalised.

        This removes the arbitrary world origin and unit of the source (SfM reconstructions have neither),
        so the model sees only the motion.
        """
        rel = self.w2c @ np.linalg.inv(self.w2c[0])
        rel[0] = np.eye(4)
        if normalize_scale:
            dist = np.linalg.norm(CameraPath(self.intrinsics, rel).camera_centers(), axis=1).max()
            scene = max(1.0, float(np.abs(self.camera_centers()).max()))  # noise in `rel` grows with this
            if dist > STILL_EPS * scene:
                rel[:, :3, 3] /= dist
        return CameraPath(self.intrinsics, rel)

    def intrinsics_px(self, height: int, width: int) -> np.ndarray:
        """(F, 3, 3) pixel K matrices for frames of `height` x `width`."""
        fx, fy, cx, cy = self.intrinsics.T
        k = np.zeros((self.num_frames, 3, 3))
        k[:, 0, 0], k[:, 0, 2] = fx * width, cx * width
        k[:, 1, 1], k[:, 1, 2] = fy * height, cy * height
        k[:, 2, 2] = 1.0
        return k

    def resized_cropped(
        self, src_hw: tuple[int, int], scale: float, crop_top_left: tuple[int, int], dst_hw: tuple[int, int]
    ) -> CameraPath:
        """Intrinsics after resizing the `src_hw` frame by `scale` and cropping `dst_hw` at (top, left).

        Normalised intrinsics survive a resize but not a crop or an aspect change, so the data pipeline must
        call this whenever it reframes a video. The resize maps continuous pixel coordinates `u -> u * scale`;
        the crop shifts them by the offset (negative offsets mean padding).
        """
        (src_h, src_w), (top, left), (dst_h, dst_w) = src_hw, crop_top_left, dst_hw
        if not scale > 0 or min(src_h, src_w, dst_h, dst_w) <= 0:
            raise InputError(f"resized_cropped: need positive sizes and scale, got {src_hw}, {scale}, {dst_hw}")
        fx, fy, cx, cy = self.intrinsics.T
        intr = np.stack(
            [
                fx * src_w * scale / dst_w,
                fy * src_h * scale / dst_h,
                (cx * src_w * scale - left) / dst_w,
                (cy * src_h * scale - top) / dst_h,
            ],
            axis=1,
        )
        return CameraPath(intr, self.w2c)

    def subsample(self, indices: Sequence[int]) -> CameraPath:
        """The cameras of the given frames, in the given order (e.g. to match a frame stride)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0 or idx.min() < 0 or idx.max() >= self.num_frames:
            raise InputError(f"camera path has {self.num_frames} frames; cannot take frames {idx.tolist()}")
        return CameraPath(self.intrinsics[idx], self.w2c[idx])


def frame_problem(intrinsics: np.ndarray, w2c: np.ndarray) -> str | None:
    """What is wrong with one frame's camera, or None. Shared by the parsers and `validate`."""
    if not (np.isfinite(intrinsics).all() and np.isfinite(w2c).all()):
        return "non-finite value (nan or inf)"
    if not (intrinsics[0] > 0 and intrinsics[1] > 0):
        return f"focal lengths must be positive, got fx={intrinsics[0]:g} fy={intrinsics[1]:g}"
    rot = w2c[:3, :3]
    err = np.abs(rot @ rot.T - np.eye(3)).max()
    if err > ROTATION_TOL:
        return f"rotation part is not orthonormal (max |R R^T - I| = {err:.3g})"
    det = np.linalg.det(rot)
    if abs(det - 1.0) > ROTATION_TOL:
        return f"rotation part has determinant {det:.3g}, expected +1 (a reflection is not a rotation)"
    if not np.array_equal(w2c[3], [0.0, 0.0, 0.0, 1.0]):
        return f"bottom row must be 0 0 0 1, got {' '.join(f'{x:g}' for x in w2c[3])}"
    return None


def validate(cam: CameraPath, source: str) -> None:
    """Raise InputError naming `source` and the frame if any camera is not a finite, rigid, forward-facing one."""
    for i in range(cam.num_frames):
        problem = frame_problem(cam.intrinsics[i], cam.w2c[i])
        if problem:
            raise InputError(f"{source}: frame {i}: {problem}")


def pixel_rays(cam: CameraPath, height: int, width: int) -> torch.Tensor:
    """(F, H, W, 3) float64 camera-space ray through each pixel centre, K^-1 [u, v, 1]: its z is 1, so a ray times a
    pixel's depth (camera z) is the point it sees."""
    k = torch.from_numpy(cam.intrinsics_px(height, width))
    v, u = torch.meshgrid(
        torch.arange(height, dtype=torch.float64) + 0.5, torch.arange(width, dtype=torch.float64) + 0.5, indexing="ij"
    )
    x = (u[None] - k[:, 0, 2, None, None]) / k[:, 0, 0, None, None]  # no skew
    y = (v[None] - k[:, 1, 2, None, None]) / k[:, 1, 1, None, None]
    return torch.stack([x, y, torch.ones_like(x)], dim=-1)


def plucker_rays(cam: CameraPath, height: int, width: int) -> torch.Tensor:
    """(F, 6, H, W) float32 Plücker embedding (moment o x d, then unit direction d, in world coordinates).

    One ray per pixel centre, as in CameraCtrl. Pass `cam.relative()` to get the model's input.
    """
    w2c = torch.from_numpy(cam.w2c)
    rot_t = w2c[:, :3, :3].transpose(1, 2)  # camera-to-world rotation
    origin = -(rot_t @ w2c[:, :3, 3:])[..., 0]  # (F, 3)
    d = torch.einsum("fij,fhwj->fhwi", rot_t, pixel_rays(cam, height, width))
    d = d / d.norm(dim=-1, keepdim=True)
    moment = torch.cross(origin[:, None, None, :].expand_as(d), d, dim=-1)
    return torch.cat([moment, d], dim=-1).permute(0, 3, 1, 2).to(torch.float32).contiguous()


def camera_features(cam: CameraPath) -> torch.Tensor:
    """(F, 16) float32 per-frame tokens: the relative, scale-normalised 3x4 w2c (12) and the 4 intrinsics."""
    rel = cam.relative(normalize_scale=True)
    feats = np.concatenate([rel.w2c[:, :3, :].reshape(rel.num_frames, 12), rel.intrinsics], axis=1)
    return torch.from_numpy(feats).to(torch.float32)


def fov_intrinsics(aspect: float, zoom: float = 1.0, fov_deg: float = 60.0) -> list[float]:
    """Normalised [fx, fy, cx, cy] of a centred camera with `fov_deg` horizontal field of view, its focal length then
    multiplied by `zoom`, and square pixels in a frame of width / height `aspect`."""
    fx = 0.5 / math.tan(math.radians(fov_deg) / 2) * zoom
    return [fx, fx * aspect, 0.5, 0.5]
