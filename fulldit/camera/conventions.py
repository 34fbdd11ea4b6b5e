"""The pose conventions users bring, converted to and from fulldit's own (OpenCV world-to-camera).

Public API (stable; the CLI and the demo call it):

    CONVENTIONS                                          ("opencv", "c2w", "opengl")
    to_opencv(matrices, convention) -> (F, 4, 4)         a file's matrices -> OpenCV world-to-camera
    from_opencv(w2c, convention) -> (F, 4, 4)            OpenCV world-to-camera -> the convention's matrices
    load_camera_as(path, convention="opencv") -> CameraPath   read a .txt/.json pose file written in `convention`
    save_camera_as(cam, path, convention="opencv", url="")  write `cam` (.txt RealEstate10K or .json) in `convention`

The conventions, all 4x4 rigid matrices in the same files (only the 3x4 pose is reinterpreted; the intrinsics
columns are always RealEstate10K's normalised `fx fy cx cy`, measured from the top-left corner):

* `opencv`: world-to-camera, camera axes x right, y down, z forward. OpenCV, COLMAP, RealEstate10K, CameraCtrl;
  fulldit's native convention (`fulldit.camera.path`).
* `c2w`: camera-to-world with the same OpenCV axes (the inverse matrix): its last column is the camera centre.
  Many NeRF / 3D Gaussian Splatting codebases after COLMAP conversion store this.
* `opengl`: camera-to-world with OpenGL / Blender camera axes: x right, y up, the camera looking down -z (Blender's
  `camera.matrix_world`, NeRF's `transforms.json`). The world axes stay whatever the file uses (Blender's z-up
  world is fine: the model only sees poses relative to frame 0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fulldit.camera.files import load_camera, save_camera_json, save_camera_re10k
from fulldit.camera.path import CameraPath, validate
from fulldit.errors import InputError

CONVENTIONS = ("opencv", "c2w", "opengl")
FLIP_YZ = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenGL camera axes <-> OpenCV camera axes (its own inverse)


def _check(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise InputError(f"unknown pose convention {convention!r}; expected one of {', '.join(CONVENTIONS)}")


def rigid_inverse(m: np.ndarray) -> np.ndarray:
    """Inverse of (..., 4, 4) rigid transforms, exact in form: `[R^T, -R^T t]` with a bottom row of exactly 0 0 0 1."""
    rot_t = np.swapaxes(m[..., :3, :3], -1, -2)
    out = np.zeros_like(m)
    out[..., :3, :3] = rot_t
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", rot_t, m[..., :3, 3])
    out[..., 3, 3] = 1.0
    return out


def to_opencv(matrices: np.ndarray, convention: str) -> np.ndarray:
    """(F, 4, 4) matrices of `convention` -> OpenCV world-to-camera."""
    _check(convention)
    m = np.asarray(matrices, dtype=np.float64)
    if convention == "opencv":
        return m.copy()
    return rigid_inverse(m if convention == "c2w" else m @ FLIP_YZ)


def from_opencv(w2c: np.ndarray, convention: str) -> np.ndarray:
    """(F, 4, 4) OpenCV world-to-camera -> matrices of `convention` (the inverse of `to_opencv`)."""
    _check(convention)
    m = np.asarray(w2c, dtype=np.float64)
    if convention == "opencv":
        return m.copy()
    c2w = rigid_inverse(m)
    return c2w if convention == "c2w" else c2w @ FLIP_YZ


def load_camera_as(path: str | Path, convention: str = "opencv") -> CameraPath:
    """Read a RealEstate10K `.txt` or `.json` pose file whose matrices are in `convention`, as a native path."""
    _check(convention)
    raw = load_camera(path)  # checks the format and that every matrix is rigid, whatever it means
    cam = CameraPath(raw.intrinsics, to_opencv(raw.w2c, convention))
    validate(cam, str(path))
    return cam


def save_camera_as(cam: CameraPath, path: str | Path, convention: str = "opencv", url: str = "") -> None:
    """Write `cam` atomically with its matrices in `convention`: `.txt` as RealEstate10K, `.json` as JSON."""
    _check(convention)
    ext = Path(path).suffix.lower()
    if ext not in (".txt", ".json"):
        raise InputError(f"{path}: a pose file must end in .txt (RealEstate10K) or .json, not {ext or '(none)'!r}")
    out = CameraPath(cam.intrinsics, from_opencv(cam.w2c, convention))  # the "w2c" field now holds `convention`
    if ext == ".json":
        save_camera_json(out, path)
    else:
        save_camera_re10k(out, path, url=url)
