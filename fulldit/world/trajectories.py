"""Camera paths inside the synthetic room: a start pose looking at the objects, then one named move or two at once.

World axes are y-up (floor at y = 0); cameras use fulldit's OpenCV convention (x right, y down, z forward) and
world-to-camera extrinsics. The moves are those of `fulldit.camera.moves`, by the same names and with the same
directions (tested against its `build_path`): pan-left turns the view left, tilt-up turns it up, dolly-in moves
forward, truck-left moves the camera to its left, orbit-left moves it to its left around the target while turning to
keep the target centred, zoom-in narrows the field of view. What the world adds is where a move happens: from a
start pose looking at the scene's objects, orbits about the vertical through them, dolly and truck level with the
floor, and up to two moves played at once (`JOINT_MOVES`, e.g. "orbit+tilt"). Amounts are kept in radians (rotations),
metres and focal ratios, as the clips' metadata records them (`Move.to_dict`).

Magnitudes are drawn large enough that a camera metric can tell the moves apart: rotations of 15-40 degrees and
translations of 30-60% of the camera-to-target distance. Every path is checked to stay inside the room (with a
margin) and clear of the objects; a start pose that fails is redrawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fulldit.camera.moves import KINDS, MOVE_NAMES
from fulldit.camera.path import CameraPath, fov_intrinsics
from fulldit.errors import InputError

WORLD_KINDS = ("pan", "tilt", "dolly", "truck", "orbit", "zoom")  # the kinds the world samples, in label order
# each kind's directions as `fulldit.camera.moves` names them; the world orbits about the vertical only
DIRECTIONS = {"static": (), **{k: KINDS[k][0][:2] for k in WORLD_KINDS}}
MOVES = ("static", *(f"{k}-{d}" for k in WORLD_KINDS for d in DIRECTIONS[k]))  # pan-left ... zoom-out
assert set(MOVES) <= set(MOVE_NAMES)
JOINT_MOVES = ("orbit+tilt", "dolly+pan", "truck+tilt", "orbit+dolly", "zoom+pan", "truck+pan")  # played at once
# (low, high, unit): rotations in radians, translations as a fraction of the distance to the target, zoom as a ratio
AMOUNTS = {
    "pan": (math.radians(15), math.radians(40), "rad"), "tilt": (math.radians(12), math.radians(25), "rad"),
    "orbit": (math.radians(20), math.radians(45), "rad"), "dolly": (0.3, 0.5, "m"), "truck": (0.35, 0.6, "m"),
    "zoom": (1.4, 2.0, "ratio"),
}  # fmt: skip
VERBS = {"pan": "pans", "tilt": "tilts", "dolly": "dollies", "truck": "trucks", "orbit": "orbits", "zoom": "zooms"}
FOV_DEG = 60.0  # horizontal field of view before zoom
MARGIN = 0.35  # closest a camera centre comes to a wall, floor or ceiling (metres)
CLEARANCE = 0.45  # closest a camera centre comes to an object's bounding circle (metres, horizontal)


@dataclass(frozen=True)
class Move:
    """A camera move: one or two (kind, direction, amount) parts played together with one speed profile."""

    parts: tuple[tuple[str, str, float], ...]  # amount: radians, metres or zoom ratio (see AMOUNTS)
    profile: str = "linear"  # "linear" or "eased" (cosine ease-in-out)

    @property
    def name(self) -> str:
        return "+".join(f"{k}-{d}" for k, d, _ in self.parts) or "static"

    def phrase(self) -> str:
        """Caption words, e.g. "orbits left and tilts up"."""
        if not self.parts:
            return "is static"
        return " and ".join(f"{VERBS[k]} {d}" for k, d, _ in self.parts)

    def to_dict(self) -> dict:
        parts = [{"kind": k, "direction": d, "amount": float(a), "unit": AMOUNTS[k][2]} for k, d, a in self.parts]
        return {"name": self.name, "parts": parts, "profile": self.profile}


def move_specs(moves: Sequence[str] | None) -> list[list[tuple[str, str | None]]]:
    """Allowed moves as lists of (kind, direction or None = random). Accepts "orbit", "orbit-left", "orbit+tilt-up"."""
    if moves is None:
        moves = [*MOVES[1:], "static", "static", *JOINT_MOVES]  # every single move, static twice, the joint moves
    if isinstance(moves, str) or not moves:
        raise InputError(
            f"moves must be a non-empty list of names like {MOVES[1]!r} or {JOINT_MOVES[0]!r}, got {moves!r}"
        )
    out = []
    for name in moves:
        spec = []
        for part in str(name).split("+"):
            kind, _, direction = part.partition("-")
            if (
                kind not in DIRECTIONS
                or (direction and direction not in DIRECTIONS[kind])
                or (kind == "static") != (part == "static")
            ):
                raise InputError(f"unknown camera move {name!r}; valid: {', '.join(MOVES)} or two joined by '+'")
            if kind != "static":
                spec.append((kind, direction or None))
        if len({k for k, _ in spec}) != len(spec) or len(spec) > 2:
            raise InputError(f"camera move {name!r}: combine at most two different moves")
        out.append(spec)
    return out


def forward_vector(yaw: float, pitch: float) -> np.ndarray:
    """Unit viewing direction; yaw turns +z towards +x, pitch > 0 looks up."""
    return np.array([math.cos(pitch) * math.sin(yaw), math.sin(pitch), math.cos(pitch) * math.cos(yaw)])


def pose(centre: np.ndarray, yaw: float, pitch: float) -> np.ndarray:
    """4x4 world-to-camera matrix of a camera at `centre` with the given yaw and pitch (no roll)."""
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    w2c = np.eye(4)
    # rows: right (horizontal, = world down x forward), down (= forward x right), forward
    w2c[:3, :3] = [[-cy, 0.0, sy], [sp * sy, -cp, sp * cy], [cp * sy, sp, cp * cy]]
    w2c[:3, 3] = -w2c[:3, :3] @ np.asarray(centre, dtype=np.float64)
    return w2c


def look_at(centre: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Yaw and pitch of a camera at `centre` looking at `target`."""
    v = np.asarray(target, float) - np.asarray(centre, float)
    return math.atan2(v[0], v[2]), math.atan2(v[1], math.hypot(v[0], v[2]))


def world_path(move: Move, frames: int, centre: np.ndarray, target: np.ndarray, aspect: float = 1.0) -> CameraPath:
    """The camera path of `move` starting at `centre` looking at `target` (amounts as in `Move.parts`)."""
    yaw0, pitch0 = look_at(centre, target)
    tau = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    prog = tau if move.profile == "linear" else 0.5 - 0.5 * np.cos(math.pi * tau)
    offset = np.asarray(centre, float) - np.asarray(target, float)
    w2c, intr = [], []
    for s in prog:
        yaw, pitch, zoom, c = yaw0, pitch0, 1.0, np.asarray(centre, float).copy()
        for kind, direction, amount in move.parts:
            if kind == "orbit":  # turn the offset from the target about the vertical, and the view with it
                delta = (-1.0 if direction == "left" else 1.0) * amount * s
                cs, sn = math.cos(delta), math.sin(delta)
                c = c + np.array([offset[0] * cs + offset[2] * sn, 0, offset[2] * cs - offset[0] * sn]) - offset
                c[1] = centre[1]
                yaw += delta
        heading = yaw  # dolly and truck follow the heading before any pan
        for kind, direction, amount in move.parts:
            sign = 1.0 if direction in ("left", "up", "in") else -1.0
            if kind == "pan":
                yaw += sign * amount * s
            elif kind == "tilt":
                pitch += sign * amount * s
            elif kind == "dolly":
                c = c + sign * amount * s * np.array([math.sin(heading), 0.0, math.cos(heading)])
            elif kind == "truck":
                c = c - sign * amount * s * np.array([-math.cos(heading), 0.0, math.sin(heading)])
            elif kind == "zoom":
                zoom = (amount if sign > 0 else 1.0 / amount) ** s
        w2c.append(pose(c, yaw, pitch))
        intr.append(fov_intrinsics(aspect, zoom, FOV_DEG))
    return CameraPath(np.array(intr), np.array(w2c))


def path_ok(
    cam: CameraPath, room_min: Sequence[float], room_max: Sequence[float], obstacles: Sequence[Sequence[float]]
) -> bool:
    """Whether every camera centre is inside the room (with MARGIN) and clear of the (x, z, radius) obstacles."""
    c = cam.camera_centers()
    lo, hi = np.asarray(room_min) + MARGIN, np.asarray(room_max) - MARGIN
    if not ((c >= lo).all() and (c <= hi).all()):
        return False
    for x, z, r in obstacles:
        if (np.hypot(c[:, 0] - x, c[:, 2] - z) < r + CLEARANCE).any():
            return False
    return True


def sample_camera_path(
    rng: np.random.Generator,
    room_min: Sequence[float],
    room_max: Sequence[float],
    target: Sequence[float],
    obstacles: Sequence[Sequence[float]] = (),
    frames: int = 16,
    aspect: float = 1.0,
    moves: Sequence[str] | None = None,
) -> tuple[CameraPath, Move]:
    """A random move from `moves` (see `move_specs`) with a start pose 2.2-3.4 m from `target`, at eye heights
    1.0-1.7 m, looking at it; redrawn until the whole path stays inside the room and clear of the obstacles."""
    if not isinstance(frames, (int, np.integer)) or frames < 1:
        raise InputError(f"a camera path needs at least 1 frame, got {frames!r}")
    specs = move_specs(moves)
    spec = specs[int(rng.integers(len(specs)))]
    profile = "linear" if rng.random() < 0.5 else "eased"
    target = np.asarray(target, float)
    for attempt in range(400):
        shrink = 0.85 ** (attempt // 40)  # a cramped room: try smaller moves after a while
        dist = rng.uniform(2.2, 3.4) * (0.8 if attempt >= 200 else 1.0)
        height = rng.uniform(1.0, 1.7)
        angle = rng.uniform(0, 2 * math.pi)
        horiz = math.sqrt(max(dist**2 - (height - target[1]) ** 2, 0.5))
        centre = np.array([target[0] + horiz * math.sin(angle), height, target[2] + horiz * math.cos(angle)])
        parts = []
        for kind, direction in spec:
            lo, hi, unit = AMOUNTS[kind]
            direction = direction or DIRECTIONS[kind][int(rng.integers(2))]
            amount = rng.uniform(lo, hi)
            amount = amount * dist * shrink if unit == "m" else (amount**shrink if unit == "ratio" else amount * shrink)
            if kind == "dolly" and direction == "in":
                amount = min(amount, horiz - 1.2)  # stop well short of the objects
            parts.append((kind, direction, float(amount)))
        move = Move(tuple(parts), profile)
        cam = world_path(move, frames, centre, target, aspect)
        if path_ok(cam, room_min, room_max, obstacles):
            return cam, move
    raise InputError("could not place a camera path inside the room; the room is too small for its objects")
