"""Camera paths: the pose convention, the two file formats, and the geometry the model needs.

Pose convention (used everywhere in fulldit):

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

File formats:

* RealEstate10K / CameraCtrl `.txt`: a first line with the video URL (any text, may be empty), then one line per
  frame of 19 numbers: `timestamp fx fy cx cy 0 0 r11 r12 r13 t1 r21 r22 r23 t2 r31 r32 r33 t3`, the last 12 being
  the 3x4 world-to-camera matrix row by row (the two zeros are distortion placeholders and are ignored).
* JSON `.json`: `{"intrinsics": [[fx, fy, cx, cy], ...], "w2c": [[4x4 or 3x4 rows], ...]}`; a single
  `[fx, fy, cx, cy]` row is shared by all frames.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fulldit.atomic import atomic_path
from fulldit.errors import InputError

RE10K_FORMAT = "timestamp fx fy cx cy 0 0 and a 3x4 matrix"
ROTATION_TOL = 1e-3  # RealEstate10K files carry ~6 significant digits, so exact orthonormality is not expected
STILL_EPS = 1e-6  # a path whose centres move less than this (relative to the scene scale) does not translate
MOVES = (
    "static", "pan-left", "pan-right", "tilt-up", "tilt-down", "dolly-in", "dolly-out",
    "truck-left", "truck-right", "orbit-left", "orbit-right", "zoom-in",
)  # fmt: skip


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


def _frame_problem(intrinsics: np.ndarray, w2c: np.ndarray) -> str | None:
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
        problem = _frame_problem(cam.intrinsics[i], cam.w2c[i])
        if problem:
            raise InputError(f"{source}: frame {i}: {problem}")


def _re10k_numbers(tokens: list[str], where: str) -> np.ndarray:
    if len(tokens) != 19:
        raise InputError(f"{where}: expected 19 numbers ({RE10K_FORMAT}), found {len(tokens)}")
    values = []
    for tok in tokens:
        try:
            values.append(float(tok))
        except ValueError:
            raise InputError(f"{where}: {tok!r} is not a number") from None
    return np.array(values)


def parse_re10k(text: str, source: str = "<string>") -> CameraPath:
    """Parse a RealEstate10K / CameraCtrl pose file (first line URL, then 19 numbers per frame)."""
    lines = text.splitlines()
    if lines and len(lines[0].split()) == 19:  # a file without its URL line: don't silently drop frame 0
        try:
            _re10k_numbers(lines[0].split(), "")
            lines = ["", *lines]
        except InputError:
            pass
    intrinsics, w2c = [], []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        where = f"{source}:{lineno}"
        row = _re10k_numbers(line.split(), where)
        mat = np.eye(4)
        mat[:3, :] = row[7:].reshape(3, 4)
        problem = _frame_problem(row[1:5], mat)
        if problem:
            raise InputError(f"{where}: {problem}")
        intrinsics.append(row[1:5])
        w2c.append(mat)
    if not w2c:
        raise InputError(f"{source}: no camera frames (expected a URL line, then one line of 19 numbers per frame)")
    return CameraPath(np.array(intrinsics), np.array(w2c))


def _json_rows(value: object, width: int, where: str) -> list[list[float]]:
    """A list of `width`-number rows, strictly (no strings, no bools), or InputError naming `where`."""
    if not isinstance(value, list) or not value:
        raise InputError(f"{where}: expected a non-empty list of rows of {width} numbers")
    for j, row in enumerate(value):
        ok = isinstance(row, list) and len(row) == width
        if not ok or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in row):
            raise InputError(f"{where}[{j}]: expected a row of {width} numbers, got {json.dumps(row)[:80]}")
    return value


def parse_camera_json(text: str, source: str = "<string>") -> CameraPath:
    """Parse the JSON form: {"intrinsics": [[fx, fy, cx, cy], ...] or [fx, fy, cx, cy], "w2c": [4x4 or 3x4, ...]}."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{source}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(data, dict):
        raise InputError(f'{source}: expected a JSON object with keys "intrinsics" and "w2c"')
    for key in ("intrinsics", "w2c"):
        if key not in data:
            raise InputError(f'{source}: missing key "{key}"')
    frames = data["w2c"]
    if not isinstance(frames, list) or not frames:
        raise InputError(f'{source}: "w2c" must be a non-empty list of 4x4 or 3x4 matrices')
    w2c = np.tile(np.eye(4), (len(frames), 1, 1))
    for i, frame in enumerate(frames):
        rows = _json_rows(frame, 4, f'{source}: "w2c"[{i}]')
        if len(rows) not in (3, 4):
            raise InputError(f'{source}: "w2c"[{i}]: expected 3 or 4 rows, got {len(rows)}')
        w2c[i, : len(rows)] = rows
    intr = data["intrinsics"]
    if isinstance(intr, list) and len(intr) == 4 and not any(isinstance(x, list) for x in intr):
        intr = [intr] * len(frames)
    intr = np.array(_json_rows(intr, 4, f'{source}: "intrinsics"'), dtype=np.float64)
    if len(intr) != len(frames):
        raise InputError(f'{source}: "intrinsics" has {len(intr)} rows but "w2c" has {len(frames)} frames')
    cam = CameraPath(intr, w2c)
    validate(cam, source)
    return cam


def load_camera(path: str | Path) -> CameraPath:
    """Load a camera path by extension: `.txt` is RealEstate10K / CameraCtrl, `.json` the JSON form."""
    path = Path(path)
    parsers = {".txt": parse_re10k, ".json": parse_camera_json}
    ext = path.suffix.lower()
    if ext not in parsers:
        raise InputError(
            f"{path}: unknown camera file type {ext or '(none)'!r}; expected .txt (RealEstate10K) or .json"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    return parsers[ext](text, str(path))


def _num(x: float) -> str:
    return repr(float(x))  # shortest text that round-trips exactly


def save_camera_re10k(
    cam: CameraPath, path: str | Path, url: str = "", timestamps_us: Sequence[int] | None = None
) -> None:
    """Write a RealEstate10K / CameraCtrl pose file atomically; timestamps default to 30 fps."""
    if "\n" in url or "\r" in url:
        raise InputError("save_camera_re10k: the URL must be a single line")
    if timestamps_us is None:
        timestamps_us = [round(i * 1e6 / 30) for i in range(cam.num_frames)]
    if len(timestamps_us) != cam.num_frames:
        raise InputError(f"save_camera_re10k: {len(timestamps_us)} timestamps for {cam.num_frames} frames")
    lines = [url]
    for ts, intr, mat in zip(timestamps_us, cam.intrinsics, cam.w2c, strict=True):
        lines.append(" ".join([str(int(ts)), *map(_num, intr), "0", "0", *map(_num, mat[:3].reshape(-1))]))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def save_camera_json(cam: CameraPath, path: str | Path) -> None:
    """Write the JSON form atomically, one frame per line so diffs stay readable."""

    def rows(a: np.ndarray) -> str:
        return "[" + ", ".join("[" + ", ".join(map(_num, r)) + "]" for r in a) + "]"

    intr = ",\n    ".join("[" + ", ".join(map(_num, r)) + "]" for r in cam.intrinsics)
    w2c = ",\n    ".join(rows(m) for m in cam.w2c)
    with atomic_path(path) as tmp:
        tmp.write_text(f'{{\n  "intrinsics": [\n    {intr}\n  ],\n  "w2c": [\n    {w2c}\n  ]\n}}\n', encoding="utf-8")


def plucker_rays(cam: CameraPath, height: int, width: int) -> torch.Tensor:
    """(F, 6, H, W) float32 Plücker embedding (moment o x d, then unit direction d, in world coordinates).

    One ray per pixel centre, as in CameraCtrl. Pass `cam.relative()` to get the model's input.
    """
    k = torch.from_numpy(cam.intrinsics_px(height, width))
    w2c = torch.from_numpy(cam.w2c)
    rot_t = w2c[:, :3, :3].transpose(1, 2)  # camera-to-world rotation
    origin = -(rot_t @ w2c[:, :3, 3:])[..., 0]  # (F, 3)
    v, u = torch.meshgrid(
        torch.arange(height, dtype=torch.float64) + 0.5, torch.arange(width, dtype=torch.float64) + 0.5, indexing="ij"
    )
    x = (u[None] - k[:, 0, 2, None, None]) / k[:, 0, 0, None, None]  # K^-1 [u, v, 1], no skew
    y = (v[None] - k[:, 1, 2, None, None]) / k[:, 1, 1, None, None]
    d_cam = torch.stack([x, y, torch.ones_like(x)], dim=-1)  # (F, H, W, 3)
    d = torch.einsum("fij,fhwj->fhwi", rot_t, d_cam)
    d = d / d.norm(dim=-1, keepdim=True)
    moment = torch.cross(origin[:, None, None, :].expand_as(d), d, dim=-1)
    return torch.cat([moment, d], dim=-1).permute(0, 3, 1, 2).to(torch.float32).contiguous()


def camera_features(cam: CameraPath) -> torch.Tensor:
    """(F, 16) float32 per-frame tokens: the relative, scale-normalised 3x4 w2c (12) and the 4 intrinsics."""
    rel = cam.relative(normalize_scale=True)
    feats = np.concatenate([rel.w2c[:, :3, :].reshape(rel.num_frames, 12), rel.intrinsics], axis=1)
    return torch.from_numpy(feats).to(torch.float32)


def _rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def make_path(
    move: str, num_frames: int, amount: float = 1.0, fov_deg: float = 60.0, aspect: float = 1.0
) -> CameraPath:
    """A simple named camera move starting at the world origin looking down +z, for tests and examples.

    `amount` is the total motion over the path: radians for pan/tilt/orbit, world units for dolly/truck, and the
    relative focal increase for zoom (focal ends at `(1 + amount)` times the start, growing geometrically).
    Orbits circle a target 2 units ahead, the camera moving to its left/right while keeping the target centred.
    `fov_deg` is the horizontal field of view; `aspect` (width / height) makes pixels square for that frame shape.
    """
    if move not in MOVES:
        raise InputError(f"unknown camera move {move!r}; valid moves: {', '.join(MOVES)}")
    if not isinstance(num_frames, int) or num_frames < 1:
        raise InputError(f"camera move needs at least 1 frame, got {num_frames!r}")
    if not (math.isfinite(amount) and 0 < fov_deg < 180 and aspect > 0):
        raise InputError(f"camera move: bad amount {amount!r}, fov_deg {fov_deg!r} or aspect {aspect!r}")
    if move == "zoom-in" and amount <= -1:
        raise InputError(f"zoom-in: amount must be > -1 (focal ends at (1 + amount) x), got {amount!r}")
    fx = 0.5 / math.tan(math.radians(fov_deg) / 2)
    steps = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
    sign = -1.0 if move.endswith(("-left", "-down", "-out")) else 1.0
    intrinsics, w2c = [], []
    for s in steps:
        a = sign * amount * s
        rot, centre, zoom = np.eye(3), np.zeros(3), 1.0  # camera-to-world rotation and camera centre
        if move.startswith("pan"):
            rot = _rot_y(a)  # +: view turns towards +x (right)
        elif move.startswith("tilt"):
            rot = _rot_x(a)  # +: view turns towards -y (up)
        elif move.startswith("dolly"):
            centre = np.array([0.0, 0.0, a])
        elif move.startswith("truck"):
            centre = np.array([a, 0.0, 0.0])
        elif move.startswith("orbit"):
            rot = _rot_y(-a)  # orbit-left: the centre swings to -x and the view turns right to face the target
            centre = np.array([0.0, 0.0, 2.0]) + rot @ np.array([0.0, 0.0, -2.0])
        elif move == "zoom-in":
            zoom = (1.0 + amount) ** s
        mat = np.eye(4)
        mat[:3, :3], mat[:3, 3] = rot.T, -rot.T @ centre
        intrinsics.append([fx * zoom, fx * aspect * zoom, 0.5, 0.5])
        w2c.append(mat)
    return CameraPath(np.array(intrinsics), np.array(w2c))
