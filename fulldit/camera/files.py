"""Camera path files: the RealEstate10K / CameraCtrl text format and a JSON form, read and written exactly.

* RealEstate10K / CameraCtrl `.txt`: a first line with the video URL (any text, may be empty), then one line per
  frame of 19 numbers: `timestamp fx fy cx cy 0 0 r11 r12 r13 t1 r21 r22 r23 t2 r31 r32 r33 t3`, the last 12 being
  the 3x4 world-to-camera matrix row by row (the two zeros are distortion placeholders and are ignored).
* JSON `.json`: `{"intrinsics": [[fx, fy, cx, cy], ...], "w2c": [[4x4 or 3x4 rows], ...]}`; a single
  `[fx, fy, cx, cy]` row is shared by all frames.

Readers check every frame (`fulldit.camera.path.validate`) and name the file and line of a problem; writers replace
the file atomically and print numbers that read back bit for bit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fulldit.atomic import atomic_path
from fulldit.camera.path import CameraPath, frame_problem, validate
from fulldit.errors import InputError

RE10K_FORMAT = "timestamp fx fy cx cy 0 0 and a 3x4 matrix"


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
        problem = frame_problem(row[1:5], mat)
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
