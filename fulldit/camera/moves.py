"""Camera paths from named moves: "orbit-left 30deg then dolly-in 0.5" -> a `CameraPath` (what `fulldit camera` writes).

fulldit's one vocabulary of camera moves: `fulldit camera`, the demo, the tests and the synthetic world's camera
sampling (`fulldit.world.trajectories`, which places the same moves around a scene's target) use these names and
directions; written as text, a kind's amount has the unit below. Public API (stable; the demo calls it):

    KINDS                                        kind -> (its directions, the unit of its amount)
    MOVE_NAMES                                   every move name, kind-direction, e.g. "orbit-left", for menus
    CameraMove(name, amount)                     one move; amount in the move's unit (below)
    make_move(name, amount=None) -> CameraMove   the same, with the default amount when `amount` is None
    parse_moves(text) -> list[CameraMove]        "orbit-left 30deg then dolly-in 0.5" -> moves
    describe(moves) -> str                       the inverse of parse_moves
    build_path(moves, frames=16, width=128, height=128, fov_deg=60.0, target_distance=2.0, ease="linear")
        -> CameraPath                            moves (or a string) -> one pose per frame, OpenCV w2c

Geometry. The world is the first camera's frame (OpenCV axes: x right, y down, z forward), so frame 0 is the
identity and "up" is -y. A target point sits `target_distance` scene units straight ahead of frame 0 and stays
fixed in the world. Each move starts from the pose the previous one ended at:

* pan-left/right: turn about the vertical (world -y) through the camera, like a tripod head, so the horizon stays
  level; tilt-up/down: turn about the camera's own x axis; roll-cw/ccw: turn about the camera's view axis
  (clockwise as seen from behind the camera, so the picture turns counter-clockwise). Degrees.
* dolly-in/out, truck-left/right, pedestal-up/down: slide along the camera's own z, x, -y axis. Scene units (read
  them as metres; the model only sees translations relative to the path's largest one, and orbits relative to
  `target_distance`).
* orbit-left/right/up/down: swing the camera rigidly about the target — about the vertical for left/right, about the
  camera's x axis for up/down — so its distance to the target never changes and the target keeps its place in the
  picture (centred, unless a pan, tilt, truck or pedestal moved it). Degrees.
* zoom-in/out: multiply / divide the focal length by the amount (a ratio >= 1, e.g. 2x); the pose does not change.
* static: hold still (no amount); a pause in a sequence.

Frames: a path of F frames has F - 1 steps; n moves get an equal share of them (the first F - 1 mod n moves one step
more), so each move needs at least one step. Within a move the progress is linear in time, or with `ease="smooth"`
a cosine ease-in-out (the camera starts and stops each move at rest). Zoom is geometric: equal ratios per step.
Intrinsics are square-pixel ones for `fov_deg` horizontal field of view at `width` x `height`.
"""

from __future__ import annotations

import difflib
import math
import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fulldit.camera.path import CameraPath, fov_intrinsics, validate
from fulldit.errors import InputError

# kind -> (directions, unit); units: "deg" rotations, "units" scene-unit translations, "x" focal ratio
KINDS: dict[str, tuple[tuple[str, ...], str]] = {
    "pan": (("left", "right"), "deg"), "tilt": (("up", "down"), "deg"), "roll": (("cw", "ccw"), "deg"),
    "dolly": (("in", "out"), "units"), "truck": (("left", "right"), "units"), "pedestal": (("up", "down"), "units"),
    "orbit": (("left", "right", "up", "down"), "deg"), "zoom": (("in", "out"), "x"), "static": ((), ""),
}  # fmt: skip
MOVE_NAMES: tuple[str, ...] = tuple(f"{k}-{d}" for k, (dirs, _) in KINDS.items() for d in dirs) + ("static",)
DEFAULT_AMOUNT = {"deg": 30.0, "units": 0.5, "x": 1.5, "": 0.0}
EASES = ("linear", "smooth")
UP = np.array([0.0, -1.0, 0.0])  # world up: frame 0 is level and OpenCV's y points down
_UNIT_WORDS = {"deg": "deg", "degree": "deg", "degrees": "deg", "°": "deg", "rad": "rad", "m": "units", "x": "x"}
_ITEM = re.compile(r"^([a-z]+(?:-[a-z]+)?)(?:\s+([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)\s*([a-z°]*))?$")


@dataclass(frozen=True)
class CameraMove:
    """One named move and its amount: degrees (pan, tilt, roll, orbit), scene units (dolly, truck, pedestal) or a
    focal ratio >= 1 (zoom); 0 for static. Validated on construction, so a bad move never reaches the geometry."""

    name: str
    amount: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in MOVE_NAMES:
            close = difflib.get_close_matches(str(self.name), MOVE_NAMES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputError(f"unknown camera move {self.name!r}{hint}; valid moves: {', '.join(MOVE_NAMES)}")
        amount = self.amount
        if isinstance(amount, bool) or not isinstance(amount, numbers.Real) or not math.isfinite(amount):
            raise InputError(f"{self.name}: the amount must be a finite number, got {amount!r}")
        if self.unit == "x" and amount < 1:
            raise InputError(f"{self.name}: the amount is a focal ratio >= 1 (e.g. 2x), got {amount:g}")
        if amount < 0:
            raise InputError(f"{self.name}: the amount must be >= 0 (the name gives the direction), got {amount:g}")
        if self.kind == "static" and amount != 0:
            raise InputError(f"static takes no amount, got {amount:g}")
        object.__setattr__(self, "amount", float(amount))

    @property
    def kind(self) -> str:
        return self.name.split("-")[0]

    @property
    def direction(self) -> str:
        return self.name.partition("-")[2]

    @property
    def unit(self) -> str:
        """The amount's unit: "deg", "units" (scene units), "x" (focal ratio) or "" (static)."""
        return KINDS[self.kind][1]

    def __str__(self) -> str:
        if self.kind == "static":
            return "static"
        suffix = {"deg": "deg", "units": "", "x": "x"}[self.unit]
        short = f"{self.amount:g}"
        return f"{self.name} {short if float(short) == self.amount else repr(self.amount)}{suffix}"  # exact


def make_move(name: str, amount: float | None = None) -> CameraMove:
    """A move with `amount` in its unit, or the default amount (30 deg, 0.5 units, 1.5x) when None."""
    name = str(name).strip().lower()
    if amount is None and name in MOVE_NAMES:
        amount = DEFAULT_AMOUNT[KINDS[name.split("-")[0]][1]]
    return CameraMove(name, 0.0 if amount is None else amount)


def parse_moves(text: str) -> list[CameraMove]:
    """Moves from "orbit-left 30deg then dolly-in 0.5 then zoom-in 2x" ("then" or "," between moves).

    Amount units: deg/degrees/° or rad for rotations, m or none for translations (scene units), x or none for zoom;
    a move without an amount gets the default one.
    """
    items = [s.strip() for s in re.split(r"\bthen\b|,", str(text).strip().lower())]
    if not any(items):
        raise InputError("empty camera path; expected moves like 'orbit-left 30deg then dolly-in 0.5'")
    moves = []
    for item in items:
        m = _ITEM.match(item)
        if not m:
            raise InputError(f"camera path: cannot read {item!r}; expected a move and an amount, e.g. 'pan-left 20deg'")
        name, number, word = m.groups()
        if number is None:
            moves.append(make_move(name))
            continue
        amount = float(number)
        unit = _UNIT_WORDS.get(word, "?") if word else None
        if name in MOVE_NAMES and unit is not None:
            expected = KINDS[name.split("-")[0]][1]
            if unit == "rad" and expected == "deg":
                amount = math.degrees(amount)
            elif unit != expected:
                want = {"deg": "deg or rad", "units": "m or nothing (scene units)", "x": "x or nothing (ratio)"}
                raise InputError(f"camera path: {item!r}: {name} takes {want.get(expected, 'no amount')}, not {word!r}")
        moves.append(make_move(name, amount))
    return moves


def describe(moves: Sequence[CameraMove]) -> str:
    """The text form of `moves`, which `parse_moves` reads back."""
    return " then ".join(str(m) for m in moves)


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """3x3 right-handed rotation by `angle` radians about the unit `axis` (Rodrigues)."""
    x, y, z = axis / np.linalg.norm(axis)
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)


def _apply(move: CameraMove, rot: np.ndarray, centre: np.ndarray, zoom: float, target: np.ndarray, s: float):
    """The pose (c2w rotation, centre, zoom) after fraction `s` of `move`, starting from (rot, centre, zoom)."""
    a = math.radians(move.amount) * s  # rotations
    d = move.amount * s  # translations
    kind, dirn = move.kind, move.direction
    sign = 1.0 if dirn in ("right", "up", "in", "cw") else -1.0
    x_axis, y_axis, z_axis = rot[:, 0], rot[:, 1], rot[:, 2]
    if kind == "pan":  # about the world vertical through the camera; +: view turns right
        rot = _rotation(-UP, sign * a) @ rot
    elif kind == "tilt":  # about the camera's x; +: view turns up (towards -y)
        rot = _rotation(x_axis, sign * a) @ rot
    elif kind == "roll":  # about the view axis; cw as seen from behind: x turns towards y (down)
        rot = _rotation(z_axis, sign * a) @ rot
    elif kind == "dolly":
        centre = centre + sign * d * z_axis
    elif kind == "truck":
        centre = centre + sign * d * x_axis
    elif kind == "pedestal":
        centre = centre - sign * d * y_axis
    elif kind == "orbit":  # rigid turn about the target: left/right about the vertical, up/down about the camera's x
        turn = _rotation(-UP, -sign * a) if dirn in ("left", "right") else _rotation(x_axis, -sign * a)
        rot, centre = turn @ rot, target + turn @ (centre - target)
    elif kind == "zoom":
        zoom = zoom * move.amount ** (sign * s)
    return rot, centre, zoom


def _progress(n: int, ease: str) -> np.ndarray:
    """Fractions 1/n .. 1 of a move after each of its `n` steps (linear, or cosine ease-in-out)."""
    tau = np.arange(1, n + 1) / n
    return tau if ease == "linear" else 0.5 - 0.5 * np.cos(math.pi * tau)


def build_path(
    moves: Sequence[CameraMove] | str,
    frames: int = 16,
    width: int = 128,
    height: int = 128,
    fov_deg: float = 60.0,
    target_distance: float = 2.0,
    ease: str = "linear",
) -> CameraPath:
    """The camera path of `moves` (or a `parse_moves` string) over `frames` frames; see the module docstring."""
    if isinstance(moves, str):
        moves = parse_moves(moves)
    moves = list(moves)
    if not moves or not all(isinstance(m, CameraMove) for m in moves):
        raise InputError("build_path: need a non-empty list of CameraMove (or a string like 'orbit-left 30deg')")
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 2:
        raise InputError(f"a camera path needs at least 2 frames, got {frames!r}")
    if frames - 1 < len(moves):
        raise InputError(f"{len(moves)} moves need at least {len(moves) + 1} frames (one step each), got {frames}")
    for label, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise InputError(f"{label} must be a positive integer, got {value!r}")
    if not (isinstance(fov_deg, (int, float)) and 0 < fov_deg < 180):
        raise InputError(f"the field of view must be between 0 and 180 degrees (exclusive), got {fov_deg!r}")
    if not (isinstance(target_distance, (int, float)) and math.isfinite(target_distance) and target_distance > 0):
        raise InputError(f"the target distance must be a positive number, got {target_distance!r}")
    if ease not in EASES:
        raise InputError(f"unknown easing {ease!r}; expected one of {', '.join(EASES)}")

    rot, centre, zoom = np.eye(3), np.zeros(3), 1.0  # frame 0: camera-to-world rotation, centre, focal factor
    target = np.array([0.0, 0.0, float(target_distance)])
    poses = [(rot, centre, zoom)]
    base, extra = divmod(frames - 1, len(moves))
    for i, move in enumerate(moves):
        start = poses[-1]
        poses += [_apply(move, *start, target, float(s)) for s in _progress(base + (i < extra), ease)]
    w2c = np.tile(np.eye(4), (frames, 1, 1))
    intr = np.zeros((frames, 4))
    for f, (r, c, z) in enumerate(poses):
        w2c[f, :3, :3], w2c[f, :3, 3] = r.T, -r.T @ c
        intr[f] = fov_intrinsics(width / height, z, float(fov_deg))
    cam = CameraPath(intr, w2c)
    validate(cam, "camera path")  # e.g. a zoom ratio so large that the focal length overflows
    return cam
