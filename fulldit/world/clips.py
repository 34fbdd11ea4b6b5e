"""The procedural world: seeded rooms with named objects and clutter, captions, and rendered training clips.

World units are metres, y is up and the floor is y = 0; object sizes are half extents (see `render.Solid`).

A seed fixes everything (numpy's PCG64 stream, drawn in a fixed order): the room and its textures, 1-3 named objects
(shape, 1-2 colours from a palette of well-separated named colours, a pattern, size, place on the floor, optionally a
slide or a spin over the clip), unnamed clutter (pillars, furniture, wall paintings) that gives parallax near and far,
the light, the camera move, and the viewpoints of the identity references. `render_batch` renders the videos of many
seeds in one batched pass of the ray caster and their references in a second one.

    clip = render_clip(7)                         # Clip(video (16, 3, 128, 128), depth, camera, references, caption)
    clips = render_batch(range(32), device="cuda")
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from fulldit.camera.path import CameraPath, fov_intrinsics
from fulldit.data import Clip
from fulldit.errors import InputError
from fulldit.world.render import Scene, Solid, Surface, headlight, object_scene, render_many
from fulldit.world.trajectories import FOV_DEG, Move, look_at, pose, sample_camera_path

__all__ = ["Scene", "Solid", "Surface", "ClipPlan", "sample_scene", "caption", "plan_clip", "render_clip",
           "render_batch", "COLORS", "OBJECT_PATTERNS"]  # fmt: skip

COLORS = {
    "red": (0.86, 0.12, 0.10), "orange": (0.97, 0.52, 0.08), "yellow": (0.96, 0.86, 0.12),
    "green": (0.16, 0.64, 0.20), "teal": (0.03, 0.58, 0.58), "blue": (0.12, 0.26, 0.88),
    "purple": (0.50, 0.18, 0.72), "pink": (0.98, 0.52, 0.74), "white": (0.95, 0.95, 0.93), "black": (0.07, 0.07, 0.08),
}  # fmt: skip
OBJECT_PATTERNS = ("solid", "stripes", "checks", "dots", "rings")
PATTERN_WORDS = {"solid": "solid", "stripes": "striped", "checks": "checkered", "dots": "dotted", "rings": "ringed"}
CELLS = {"solid": 8, "stripes": 8, "checks": 8, "dots": 6, "rings": 8}  # pattern cells around an object
WALL_WORDS = {"bricks": "brick walls", "stripes": "striped walls", "tiles": "tiled walls", "planks": "wooden walls"}
FLOOR_WORDS = {"tiles": "a tiled floor", "planks": "a wooden floor", "checks": "a checkered floor"}
# muted room colours, so that the saturated object colours stand out
WALLS = [(0.85, 0.80, 0.70), (0.70, 0.76, 0.80), (0.82, 0.70, 0.62), (0.68, 0.76, 0.64), (0.82, 0.82, 0.80),
         (0.76, 0.68, 0.76), (0.86, 0.78, 0.58)]  # fmt: skip
BRICKS = [(0.66, 0.32, 0.24), (0.58, 0.42, 0.32), (0.74, 0.58, 0.44), (0.56, 0.56, 0.60)]
WOODS = [((0.58, 0.40, 0.24), (0.66, 0.48, 0.30)), ((0.42, 0.28, 0.18), (0.52, 0.36, 0.22)),
         ((0.72, 0.58, 0.40), (0.64, 0.50, 0.34))]  # fmt: skip
FLOOR_TILES = [((0.86, 0.85, 0.82), (0.36, 0.37, 0.42)), ((0.78, 0.72, 0.60), (0.55, 0.44, 0.34)),
               ((0.70, 0.78, 0.76), (0.40, 0.48, 0.50))]  # fmt: skip
MUTED = [(0.62, 0.58, 0.52), (0.45, 0.47, 0.52), (0.55, 0.62, 0.55), (0.70, 0.66, 0.60), (0.50, 0.42, 0.36),
         (0.60, 0.52, 0.62), (0.78, 0.76, 0.72), (0.40, 0.50, 0.58)]  # fmt: skip


def _pick(rng: np.random.Generator, items: Sequence):
    return items[int(rng.integers(len(items)))]


def _darker(c: tuple[float, float, float], f: float) -> tuple[float, float, float]:
    return (c[0] * f, c[1] * f, c[2] * f)


def _radius(s: Solid) -> float:
    """Radius of the solid's footprint circle on the floor."""
    return math.hypot(s.size[0], s.size[2]) if s.shape == "box" else s.size[0]


def _room_surfaces(rng: np.random.Generator) -> tuple[Surface, ...]:
    wall = _pick(rng, list(WALL_WORDS))
    colours = rng.permutation(len(WALLS))[:4]
    walls = []
    for i in colours:
        base = WALLS[int(i)]
        if wall == "bricks":
            walls.append(Surface("bricks", (_pick(rng, BRICKS), (0.82, 0.80, 0.76)), rng.uniform(0.10, 0.16)))
        else:
            scale = {"stripes": (0.15, 0.4), "tiles": (0.25, 0.45), "planks": (0.15, 0.25)}[wall]
            walls.append(Surface(wall, (base, _darker(base, 0.78)), rng.uniform(*scale)))
    floor = _pick(rng, list(FLOOR_WORDS))
    if floor == "planks":
        floor_s = Surface("planks", _pick(rng, WOODS), rng.uniform(0.15, 0.25))
    else:
        floor_s = Surface(floor, _pick(rng, FLOOR_TILES), rng.uniform(0.35, 0.6))
    ceiling = Surface("tiles", ((0.90, 0.90, 0.88), (0.84, 0.84, 0.82)), 0.6)
    return (walls[0], walls[1], floor_s, ceiling, walls[2], walls[3])


def _free(pos: np.ndarray, radius: float, taken: list[tuple[float, float, float]], gap: float) -> bool:
    return all(math.hypot(pos[0] - x, pos[1] - z) >= radius + r + gap for x, z, r in taken)


def _objects(rng: np.random.Generator, count: int, centre: np.ndarray, motion: bool) -> list[Solid]:
    names = rng.permutation(len(COLORS))[:count]
    palette = list(COLORS)
    solids: list[Solid] = []
    taken: list[tuple[float, float, float]] = []  # (x, z, radius) at start and end of any slide
    for i in range(count):
        shape = _pick(rng, ("sphere", "box", "cylinder"))
        if shape == "sphere":
            r = rng.uniform(0.25, 0.42)
            size = (r, r, r)
        elif shape == "box":
            size = (rng.uniform(0.2, 0.38), rng.uniform(0.18, 0.4), rng.uniform(0.2, 0.38))
        else:
            r = rng.uniform(0.18, 0.32)
            size = (r, rng.uniform(0.22, 0.45), r)
        pattern = _pick(rng, OBJECT_PATTERNS)
        first = palette[int(names[i])]
        colour_names = (first,) if pattern == "solid" else (first, _pick(rng, [c for c in palette if c != first]))
        surface = Surface(pattern, tuple(COLORS[c] for c in colour_names), CELLS[pattern], colour_names)
        solid = Solid(shape, (0.0, size[1], 0.0), size, surface, yaw=rng.uniform(0, 2 * math.pi), object=i)
        radius = _radius(solid)
        for _ in range(100):
            pos = centre + rng.uniform(-1.0, 1.0, 2)
            if _free(pos, radius, taken, 0.15):
                break
        solid = replace(solid, center=(float(pos[0]), size[1], float(pos[1])))
        spin_visible = shape == "box" or pattern in ("stripes", "checks", "dots")
        if motion and rng.random() < 0.4:
            if spin_visible and rng.random() < 0.5:
                solid = replace(solid, spin=float(rng.choice([-1, 1]) * rng.uniform(math.pi / 3, math.pi * 0.8)))
            else:
                for _ in range(20):
                    step = rng.uniform(0.35, 0.7) * np.array(_unit(rng.uniform(0, 2 * math.pi)))
                    mids = [pos + step * f for f in (0.25, 0.5, 0.75, 1.0)]
                    if all(_free(m, radius, taken, 0.05) for m in mids) and np.hypot(*(mids[-1] - centre)) < 1.4:
                        solid = replace(solid, velocity=(float(step[0]), 0.0, float(step[1])))
                        taken.extend((float(m[0]), float(m[1]), radius) for m in mids)
                        break
        taken.append((float(pos[0]), float(pos[1]), radius))
        solids.append(solid)
    return solids


def _unit(angle: float) -> tuple[float, float]:
    return math.sin(angle), math.cos(angle)


def _clutter(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, taken: list, light: np.ndarray) -> list[Solid]:
    """Pillars, furniture and wall paintings: unnamed, they give texture and parallax at several depths."""
    out: list[Solid] = []
    height = hi[1]
    kinds = ["pillar"] * int(rng.integers(0, 3)) + ["furniture"] * int(rng.integers(2, 6))
    for kind in kinds:
        for _ in range(30):
            if kind == "pillar":
                r = rng.uniform(0.12, 0.22)
                size, shape, yaw = (r, height / 2, r), "cylinder", 0.0
                surf = Surface(_pick(rng, ("stripes", "bricks", "rings", "solid")), (c := _pick(rng, MUTED),
                               _darker(c, 0.75)), float(rng.integers(6, 13)))  # fmt: skip
            else:
                size = (rng.uniform(0.2, 0.55), rng.uniform(0.2, 0.55), rng.uniform(0.2, 0.5))
                turn = rng.uniform(-0.6, 0.6) if rng.random() < 0.4 else 0.0  # most furniture is square to the walls
                shape, yaw = "box", float(rng.integers(4)) * math.pi / 2 + turn
                pat = _pick(rng, ("planks", "solid", "checks", "stripes"))
                colours = _pick(rng, WOODS) if pat == "planks" else ((c := _pick(rng, MUTED)), _darker(c, 0.72))
                surf = Surface(pat, colours, float(rng.integers(8, 17)))
            solid = Solid(shape, (0.0, size[1], 0.0), size, surf, yaw=yaw, tag=kind)
            radius = _radius(solid)
            pos = rng.uniform(lo[[0, 2]] + radius + 0.05, hi[[0, 2]] - radius - 0.05)
            if rng.random() < 0.5:  # against a wall
                axis = int(rng.integers(2))
                low_side = rng.random() < 0.5
                gap = radius + 0.05
                pos[axis] = lo[2 * axis] + gap if low_side else hi[2 * axis] - gap
            clear_light = kind != "pillar" or math.hypot(pos[0] - light[0], pos[1] - light[2]) > radius + 0.3
            if _free(pos, radius, taken, 0.3) and clear_light:
                taken.append((float(pos[0]), float(pos[1]), radius))
                out.append(replace(solid, center=(float(pos[0]), size[1], float(pos[1]))))
                break
    for _ in range(int(rng.integers(1, 4))):  # paintings: thin boxes flat on a wall
        wall = int(rng.integers(4))
        axis = 0 if wall < 2 else 2  # wall normal axis
        size_w, size_h = rng.uniform(0.25, 0.6), rng.uniform(0.2, 0.4)
        size = (0.02, size_h, size_w) if axis == 0 else (size_w, size_h, 0.02)
        pos = np.zeros(3)
        other = 2 - axis
        pos[other] = rng.uniform(lo[other] + size_w + 0.1, hi[other] - size_w - 0.1)
        pos[axis] = lo[axis] + 0.021 if wall % 2 == 0 else hi[axis] - 0.021
        pos[1] = rng.uniform(1.2, min(1.9, height - size_h - 0.15))
        c1 = _pick(rng, MUTED)
        surf = Surface(_pick(rng, ("checks", "stripes", "dots", "rings")), (c1, _pick(rng, WALLS)),
                       float(rng.integers(6, 13)))  # fmt: skip
        out.append(Solid("box", tuple(float(v) for v in pos), size, surf, tag="painting"))
    return out


def sample_scene(rng: np.random.Generator, num_objects: int | None = None, motion: bool = True) -> Scene:
    """A random room (6-9 m square-ish, 2.6-3.2 m high) with 1-3 named objects near its middle and clutter."""
    if num_objects is not None and not 1 <= num_objects <= 3:
        raise InputError(f"num_objects must be 1-3, got {num_objects}")
    w, d, h = rng.uniform(6.0, 9.0), rng.uniform(6.0, 9.0), rng.uniform(2.6, 3.2)
    lo, hi = np.array([-w / 2, 0.0, -d / 2]), np.array([w / 2, h, d / 2])
    surfaces = _room_surfaces(rng)
    count = int(num_objects or rng.integers(1, 4))
    centre = rng.uniform(-1, 1, 2) * np.array([w / 2 - 2.6, d / 2 - 2.6])
    objects = _objects(rng, count, centre, motion)
    light = np.array([rng.uniform(-w / 2 + 1, w / 2 - 1), h - 0.25, rng.uniform(-d / 2 + 1, d / 2 - 1), 1.0])
    taken = [(s.center[0] + s.velocity[0] * f, s.center[2] + s.velocity[2] * f, _radius(s)) for s in objects
             for f in (0.0, 1.0)]  # fmt: skip
    clutter = _clutter(rng, lo, hi, taken, light)
    return Scene(
        solids=objects + clutter,
        room_min=tuple(float(v) for v in lo),
        room_max=tuple(float(v) for v in hi),
        room_surfaces=surfaces,
        light=tuple(float(v) for v in light),
        ambient=0.42,
    )


def _segment_distance(p: Sequence[float], a: Sequence[float], b: Sequence[float]) -> float:
    """Distance from 2D point p to the segment a-b."""
    abx, abz = b[0] - a[0], b[1] - a[1]
    f = min(max(((p[0] - a[0]) * abx + (p[1] - a[1]) * abz) / max(abx * abx + abz * abz, 1e-12), 0.0), 1.0)
    return math.hypot(p[0] - a[0] - f * abx, p[1] - a[1] - f * abz)


def _clear_view(scene: Scene, cam: CameraPath) -> Scene:
    """Drop clutter that the camera would pass through or that would hide the objects from it."""
    centres = cam.camera_centers()[:, [0, 2]]
    key_centres = [tuple(centres[k].tolist()) for k in sorted({0, cam.num_frames // 2, cam.num_frames - 1})]
    targets = [(s.center[0] + s.velocity[0] * f, s.center[2] + s.velocity[2] * f)
               for s in scene.objects() for f in (0.0, 1.0)]  # fmt: skip
    kept = []
    for s in scene.solids:
        if s.object < 0 and s.tag != "painting":
            p, r = (s.center[0], s.center[2]), _radius(s)
            near = np.hypot(centres[:, 0] - p[0], centres[:, 1] - p[1]).min() < r + 0.45
            blocks = any(_segment_distance(p, c, t) < r + 0.12 for c in key_centres for t in targets)
            if near or blocks:
                continue
        kept.append(s)
    return replace(scene, solids=kept)


def caption(scene: Scene, move: Move | None = None) -> str:
    """E.g. "a red and white striped sphere and a solid blue box in a room with brick walls and a wooden floor;
    the camera orbits left"."""
    names = []
    for s in scene.objects():
        words = [*s.surface.names[:1], "and", *s.surface.names[1:2], PATTERN_WORDS[s.surface.pattern], s.shape]
        if s.surface.pattern == "solid" or len(s.surface.names) == 1:  # "a solid red box", "a red and white ..."
            words = [PATTERN_WORDS[s.surface.pattern], s.surface.names[0], s.shape]
        text = " ".join(words)
        text += " that spins" if s.spin else (" that slides" if any(s.velocity) else "")
        names.append(f"{'an' if text[0] in 'aeiou' else 'a'} {text}")
    if len(names) > 1:
        names = [", ".join(names[:-1]), names[-1]]
    room = ""
    if scene.room_surfaces:
        walls, floor = scene.room_surfaces[0].pattern, scene.room_surfaces[2].pattern
        room = f" in a room with {WALL_WORDS.get(walls, walls + ' walls')} and {FLOOR_WORDS.get(floor, 'a floor')}"
    text = " and ".join(names) + room
    return text if move is None else f"{text}; the camera {move.phrase()}"


@dataclass
class ClipPlan:
    """Everything a seed decides before rendering: scene, camera path, move, and the references' viewpoints."""

    seed: int
    scene: Scene
    camera: CameraPath
    move: Move
    reference_objects: list[int]
    reference_cameras: list[CameraPath]
    reference_views: list[dict]

    def meta(self, height: int, width: int) -> dict:
        """JSON-serialisable description of the clip."""
        objects = []
        for s in self.scene.objects():
            motion = None
            if s.spin:
                motion = {"type": "spin", "angle": s.spin}
            elif any(s.velocity):
                motion = {"type": "slide", "displacement": list(s.velocity)}
            objects.append({
                "index": s.object, "shape": s.shape, "colors": list(s.surface.names), "pattern": s.surface.pattern,
                "position": list(s.center), "size": list(s.size), "yaw": s.yaw, "motion": motion,
            })  # fmt: skip
        sc = self.scene
        return {  # "source" names the module as it was when datasets were first written, so they stay identical
            "source": "fulldit.data.world", "seed": self.seed, "frames": self.camera.num_frames,
            "size": [height, width], "caption_version": 1, "objects": objects,
            "room": {"min": list(sc.room_min), "max": list(sc.room_max), "walls": sc.room_surfaces[0].pattern,
                     "floor": sc.room_surfaces[2].pattern},
            "clutter": [{"tag": s.tag, "shape": s.shape, "position": list(s.center), "size": list(s.size)}
                        for s in sc.solids if s.object < 0],
            "light": list(sc.light), "move": self.move.to_dict(),
            "reference_objects": list(self.reference_objects), "reference_views": list(self.reference_views),
        }  # fmt: skip


def _reference_views(
    rng: np.random.Generator, scene: Scene, per_object: int, aspect: float, eye: np.ndarray
) -> tuple[list[int], list[CameraPath], list[dict]]:
    """Cameras that frame each object alone (1 frame each) from a random elevation and an azimuth at least 45
    degrees away from the clip's first camera at `eye`, so references show other sides than the video does."""
    half_fov = min(math.radians(30), math.atan(math.tan(math.radians(30)) / aspect))
    objects, cameras, views = [], [], []
    for s in scene.objects():
        radius = float(np.linalg.norm(s.size)) if s.shape != "sphere" else s.size[0]
        dist = radius / math.sin(0.75 * half_fov)
        seen_from = math.atan2(eye[0] - s.center[0], eye[2] - s.center[2])
        for _ in range(per_object):
            az = seen_from + rng.uniform(math.pi / 4, 7 * math.pi / 4)
            el = rng.uniform(math.radians(10), math.radians(40))
            centre = np.array(s.center) + dist * np.array(
                [math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)]
            )
            yaw, pitch = look_at(centre, s.center)
            cameras.append(CameraPath(np.array([fov_intrinsics(aspect, 1.0, FOV_DEG)]), pose(centre, yaw, pitch)[None]))
            objects.append(s.object)
            views.append({"object": s.object, "azimuth": az, "elevation": el, "distance": dist})
    return objects, cameras, views


def plan_clip(
    seed: int,
    frames: int = 16,
    height: int = 128,
    width: int = 128,
    references_per_object: int = 2,
    moves: Sequence[str] | None = None,
    motion: bool = True,
) -> ClipPlan:
    """Sample the scene, camera path and reference viewpoints of `seed` (no rendering)."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"a world seed must be a non-negative integer, got {seed!r}")
    if not isinstance(frames, (int, np.integer)) or frames < 1:
        raise InputError(f"a clip needs at least 1 frame, got {frames!r}")
    if not all(isinstance(v, (int, np.integer)) and 8 <= v <= 4096 for v in (height, width)):
        raise InputError(f"clip height and width must be integers in 8..4096, got {height}x{width}")
    if not isinstance(references_per_object, (int, np.integer)) or not 0 <= references_per_object <= 8:
        raise InputError(f"references_per_object must be 0-8, got {references_per_object!r}")
    rng = np.random.default_rng(int(seed))
    scene = sample_scene(rng, motion=motion)
    obstacles = [(s.center[0] + s.velocity[0] * f, s.center[2] + s.velocity[2] * f, _radius(s))
                 for s in scene.objects() for f in (0.0, 0.5, 1.0)]  # fmt: skip
    objs = scene.objects()
    target = np.mean([s.center for s in objs], axis=0)
    target[1] = 0.35
    cam, move = sample_camera_path(
        rng, scene.room_min, scene.room_max, target, obstacles, int(frames), width / height, moves
    )
    scene = _clear_view(scene, cam)
    ref_objects, ref_cams, ref_views = _reference_views(
        rng, scene, int(references_per_object), width / height, cam.camera_centers()[0]
    )
    return ClipPlan(int(seed), scene, cam, move, ref_objects, ref_cams, ref_views)


def render_batch(
    seeds: Sequence[int],
    frames: int = 16,
    height: int = 128,
    width: int = 128,
    device: str | torch.device = "cpu",
    references_per_object: int = 2,
    moves: Sequence[str] | None = None,
    motion: bool = True,
) -> list[Clip]:
    """Clips of several seeds: all videos in one batched pass of the ray caster, all references in a second.

    Tensors stay on `device`. `moves` restricts the camera moves (names as in `trajectories.parse_moves`);
    `motion=False` keeps every object still.
    """
    seeds = list(seeds)
    if not seeds:
        raise InputError("render_batch: need at least one seed")
    plans = [plan_clip(s, frames, height, width, references_per_object, moves, motion) for s in seeds]
    return render_plans(plans, height, width, device)


def render_plans(plans: Sequence[ClipPlan], height: int, width: int, device: str | torch.device = "cpu") -> list[Clip]:
    """Render planned clips: all videos in one batched pass of the ray caster, all references in a second.

    Planning (`plan_clip`: numpy, CPU) and rendering (torch, any device) are separate so that DataLoader workers
    can plan while the training GPU renders.
    """
    video, depth, _ = render_many([p.scene for p in plans], [p.camera for p in plans], height, width, None, device)
    ref_cams = [c for p in plans for c in p.reference_cameras]
    ref_scenes = [
        object_scene(p.scene, i, headlight(c.w2c[0]))
        for p in plans
        for i, c in zip(p.reference_objects, p.reference_cameras)
    ]
    refs = None
    if ref_scenes:
        zero = [torch.zeros(1)] * len(ref_scenes)
        refs = render_many(ref_scenes, ref_cams, height, width, zero, device)[0][:, 0]  # (R, 3, H, W)
    clips, r = [], 0
    for b, p in enumerate(plans):
        n = len(p.reference_objects)
        references = [] if refs is None else list(refs[r : r + n].unbind(0))
        r += n
        clips.append(Clip(video[b], depth[b], p.camera, references, caption(p.scene, p.move), p.meta(height, width)))
    return clips


def render_clip(
    seed: int,
    frames: int = 16,
    height: int = 128,
    width: int = 128,
    device: str | torch.device = "cpu",
    references_per_object: int = 2,
    moves: Sequence[str] | None = None,
    motion: bool = True,
) -> Clip:
    """One clip of the world: video, metric depth, camera path, identity references, caption and meta."""
    return render_batch([seed], frames, height, width, device, references_per_object, moves, motion)[0]
