"""Batched analytic ray caster for the synthetic world: a textured room, spheres, boxes and vertical cylinders.

Conventions follow `fulldit.camera.path` (OpenCV camera axes, normalised intrinsics, world-to-camera extrinsics). The
world is y-up with the floor at y = 0. Work is vectorised over views (every frame of every scene in a batch) x pixels
x primitives, in chunks that bound memory, so one call renders a whole training batch on the GPU; only the handful
of primitive *types* is a Python loop.

Per pixel the caster finds the nearest surface, its metric depth (camera z: rays are scaled so that their camera-z
component is 1, which makes the ray parameter the depth), normal, surface id and object-local texture coordinates, so
textures move and spin with their object. Shading is ambient + Lambert from one point or directional light with hard
shadows from a second pass of shadow rays against the solids (the room itself casts none).

Determinism: only elementwise ops, min/argmin, gathers and integer hashes (no atomics, no matmuls whose blocking
could depend on the batch), so the same scene and camera give bit-identical images on the same device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from fulldit.camera import CameraPath
from fulldit.errors import InputError

SHAPES = ("sphere", "box", "cylinder")
PATTERNS = ("solid", "stripes", "checks", "dots", "rings", "tiles", "planks", "bricks")
ROOM_FACES = ("wall -x", "wall +x", "floor", "ceiling", "wall -z", "wall +z")  # surface ids 0..5; solid j is 6 + j
RGB = tuple[float, float, float]
_EPS = 1e-4  # smallest accepted ray parameter (metres for camera rays, a fraction of the way for shadow rays)
_BUDGET = {"cpu": 1 << 20, "cuda": 1 << 24}  # elements of one (views, pixels, primitives) tensor in a chunk
_INF = float("inf")
_DTYPES = {"f": torch.float32, "i": torch.int64, "b": torch.bool}


@dataclass(frozen=True)
class Surface:
    """A procedural texture mixing a base colour `colors[0]` and a second colour `colors[-1]`."""

    pattern: str = "solid"
    colors: tuple[RGB, ...] = ((0.8, 0.8, 0.8),)
    scale: float = 1.0  # room faces: cell size in metres; solids: number of pattern cells around the object
    names: tuple[str, ...] = ()  # colour names, for captions

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise InputError(f"unknown pattern {self.pattern!r}; valid: {', '.join(PATTERNS)}")
        if not 1 <= len(self.colors) <= 2 or not self.scale > 0:
            raise InputError(f"a surface needs 1-2 colours and a positive scale, got {self.colors}, {self.scale}")


@dataclass(frozen=True)
class Solid:
    """A sphere, box (turned by `yaw` about the vertical) or capped vertical cylinder, optionally moving."""

    shape: str
    center: tuple[float, float, float]  # at time 0
    size: tuple[float, float, float]  # half extents: sphere (r, r, r), cylinder (r, half height, r)
    surface: Surface
    yaw: float = 0.0  # radians about +y; turns +z towards +x
    velocity: tuple[float, float, float] = (0.0, 0.0, 0.0)  # displacement over the clip (time 0 -> 1)
    spin: float = 0.0  # yaw change over the clip, radians
    object: int = -1  # index of a named object, -1 for clutter
    tag: str = ""  # what it stands for ("pillar", "cabinet", ...), for meta only

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise InputError(f"unknown shape {self.shape!r}; valid: {', '.join(SHAPES)}")
        if min(self.size) <= 0:
            raise InputError(f"a solid needs positive half extents, got {self.size}")


@dataclass
class Scene:
    """Everything the ray caster draws. `room_min`/`room_max` None means no room (objects alone)."""

    solids: list[Solid] = field(default_factory=list)
    room_min: tuple[float, float, float] | None = None
    room_max: tuple[float, float, float] | None = None
    room_surfaces: tuple[Surface, ...] = ()  # one per ROOM_FACES entry
    light: tuple[float, float, float, float] = (0.0, 2.5, 0.0, 1.0)  # (x, y, z, 1) point, or (dx, dy, dz, 0) travel
    ambient: float = 0.4

    def objects(self) -> list[Solid]:
        """The named objects, in object-index order."""
        return sorted((s for s in self.solids if s.object >= 0), key=lambda s: s.object)


def _pack(scenes: Sequence[Scene], device: torch.device) -> dict[str, torch.Tensor]:
    """Padded per-scene tensors: solids (S, N, ...), materials (S, 6 + N, ...) and per-shape index tables."""
    s_count, n = len(scenes), max(1, *(len(sc.solids) for sc in scenes))
    f64 = dict(dtype=np.float64)
    out = {
        "kind": np.full((s_count, n), -1, np.int64), "obj": np.full((s_count, n), -1, np.int64),
        "center": np.zeros((s_count, n, 3), **f64), "size": np.ones((s_count, n, 3), **f64),
        "vel": np.zeros((s_count, n, 3), **f64), "yaw": np.zeros((s_count, n), **f64),
        "spin": np.zeros((s_count, n), **f64), "pattern": np.zeros((s_count, 6 + n), np.int64),
        "c1": np.zeros((s_count, 6 + n, 3), **f64), "c2": np.zeros((s_count, 6 + n, 3), **f64),
        "scale": np.ones((s_count, 6 + n), **f64), "room": np.zeros((s_count, 6), **f64),
        "has_room": np.zeros(s_count, bool), "light": np.zeros((s_count, 4), **f64),
        "ambient": np.zeros(s_count, **f64),
    }  # fmt: skip

    def material(i: int, m: int, surf: Surface) -> None:
        out["pattern"][i, m] = PATTERNS.index(surf.pattern)
        out["c1"][i, m], out["c2"][i, m], out["scale"][i, m] = surf.colors[0], surf.colors[-1], surf.scale

    for i, sc in enumerate(scenes):
        if sc.room_min is not None and sc.room_max is not None:
            if len(sc.room_surfaces) != 6:
                raise InputError(f"a room needs 6 surfaces ({', '.join(ROOM_FACES)}), got {len(sc.room_surfaces)}")
            out["room"][i], out["has_room"][i] = [*sc.room_min, *sc.room_max], True
            for m, surf in enumerate(sc.room_surfaces):
                material(i, m, surf)
        out["light"][i], out["ambient"][i] = sc.light, sc.ambient
        for j, so in enumerate(sc.solids):
            out["kind"][i, j], out["obj"][i, j] = SHAPES.index(so.shape), so.object
            out["center"][i, j], out["size"][i, j], out["vel"][i, j] = so.center, so.size, so.velocity
            out["yaw"][i, j], out["spin"][i, j] = so.yaw, so.spin
            material(i, 6 + j, so.surface)
    for k in range(len(SHAPES)):  # which solids have shape k, padded per scene (valid marks the real ones)
        members = [np.flatnonzero(row == k) for row in out["kind"]]
        width = max(len(mm) for mm in members)
        table, valid = np.zeros((s_count, width), np.int64), np.zeros((s_count, width), bool)
        for i, mm in enumerate(members):
            table[i, : len(mm)], valid[i, : len(mm)] = mm, True
        out[f"group{k}"], out[f"valid{k}"] = table, valid
    return {key: torch.from_numpy(v).to(device=device, dtype=_DTYPES.get(v.dtype.kind)) for key, v in out.items()}


def _rot_y(x: torch.Tensor, z: torch.Tensor, c: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate (x, z) about +y by the angle with cosine c and sine s (pass -s for the inverse)."""
    return x * c + z * s, z * c - x * s


def _safe(d: torch.Tensor) -> torch.Tensor:
    return torch.where(d == 0, torch.full_like(d, 1e-20), d)  # avoids 0 * inf = nan in slab tests


def _hit(kind: int, o: list[torch.Tensor], d: list[torch.Tensor], sol: dict[str, torch.Tensor]) -> torch.Tensor:
    """Ray parameter of the entry hit, (V, P, N), inf where missed. o, d: xyz lists of (V, P, 1); sol: (V, 1, N)."""
    c, h = sol["center"], sol["size"]
    px, py, pz = o[0] - c[..., 0], o[1] - c[..., 1], o[2] - c[..., 2]  # (V, P, N) ray origin relative to the centre
    dx, dy, dz = d
    if kind == 1:  # box: slab test in the box's own frame
        px, pz = _rot_y(px, pz, sol["cos"], -sol["sin"])
        dx, dz = _rot_y(dx, dz, sol["cos"], -sol["sin"])
        near, far = [], []
        for p_a, d_a, h_a in ((px, dx, h[..., 0]), (py, dy, h[..., 1]), (pz, dz, h[..., 2])):
            inv = 1.0 / _safe(d_a)
            t1, t2 = (-h_a - p_a) * inv, (h_a - p_a) * inv
            near.append(torch.minimum(t1, t2))
            far.append(torch.maximum(t1, t2))
        tn = torch.maximum(torch.maximum(near[0], near[1]), near[2])
        tf = torch.minimum(torch.minimum(far[0], far[1]), far[2])
        return torch.where((tn <= tf) & (tn > _EPS), tn, _INF)
    r = h[..., 0]
    if kind == 0:  # sphere: nearer root of |p + t d|^2 = r^2
        a = dx * dx + dy * dy + dz * dz
        b = px * dx + py * dy + pz * dz
        disc = b * b - a * (px * px + py * py + pz * pz - r * r)
        t = (-b - disc.clamp_min(0).sqrt()) / a
        return torch.where((disc >= 0) & (t > _EPS), t, _INF)
    a = _safe(dx * dx + dz * dz)  # cylinder: side wall within the height, then both caps within the radius
    b = px * dx + pz * dz
    disc = b * b - a * (px * px + pz * pz - r * r)
    t_side = (-b - disc.clamp_min(0).sqrt()) / a
    ok = (disc >= 0) & (t_side > _EPS) & ((py + t_side * dy).abs() <= h[..., 1])
    best = torch.where(ok, t_side, _INF)
    inv = 1.0 / _safe(dy)
    for cap in (h[..., 1], -h[..., 1]):
        t = (cap - py) * inv
        qx, qz = px + t * dx, pz + t * dz
        best = torch.where((t > _EPS) & (qx * qx + qz * qz <= r * r) & (t < best), t, best)
    return best


def _nearest_solid(
    o: list[torch.Tensor], d: list[torch.Tensor], sol: dict[str, torch.Tensor], packed: dict, si: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest solid hit per ray: parameter (V, P) (inf if none) and solid index (V, P)."""
    t_best = torch.full(d[0].shape[:2], _INF, device=d[0].device)
    idx = torch.zeros(d[0].shape[:2], dtype=torch.long, device=d[0].device)
    for k in range(len(SHAPES)):
        table, valid = packed[f"group{k}"][si], packed[f"valid{k}"][si]  # (V, Nk)
        if table.shape[1] == 0 or not bool(valid.any()):
            continue
        params = {key: torch.gather(sol[key], 1, table[..., None].expand(-1, -1, 3)) for key in ("center", "size")}
        for key in ("cos", "sin"):
            params[key] = torch.gather(sol[key], 1, table)
        params = {key: v[:, None] for key, v in params.items()}  # (V, 1, Nk, ...)
        t = torch.where(valid[:, None], _hit(k, o, d, params), _INF)  # (V, P, Nk)
        t_k, j = t.min(dim=2)
        better = t_k < t_best
        t_best = torch.where(better, t_k, t_best)
        idx = torch.where(better, torch.gather(table, 1, j), idx)
    return t_best, idx


def _room_hit(o: list[torch.Tensor], d: list[torch.Tensor], room: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exit parameter (V, P) of rays from inside the room box, and the face id (0..5, see ROOM_FACES)."""
    ts, faces = [], []
    for a in range(3):
        pos = d[a] > 0
        bound = torch.where(pos, room[:, 3 + a, None], room[:, a, None])
        ts.append(torch.where(d[a] != 0, (bound - o[a]) / d[a], _INF))
        faces.append(2 * a + pos.long())
    t = torch.minimum(torch.minimum(ts[0], ts[1]), ts[2])
    face = torch.where(ts[0] == t, faces[0], torch.where(ts[1] == t, faces[1], faces[2]))
    return t, face


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]  # fixed order: batch-invariant


def _hash(i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """Deterministic integer hash of cell coordinates to [0, 1)."""
    h = (i * 73856093) ^ (j * 19349663) ^ ((i ^ j) * 83492791)
    return (h & 1023).float() / 1024.0


def _texture(pattern: torch.Tensor, s: torch.Tensor, t: torch.Tensor, ring: torch.Tensor) -> tuple:
    """Mix weight of the second colour and a brightness factor, from cell coordinates (s, t) and a ring coordinate."""
    fs, ft = torch.floor(s), torch.floor(t)
    i, j = fs.long(), ft.long()
    us, ut = s - fs, t - ft
    checks = ((i + j) & 1).float()
    dots = (((us - 0.5) ** 2 + (ut - 0.5) ** 2) < 0.1).float()
    shade = torch.ones_like(s)
    mix = torch.zeros_like(s)
    mix = torch.where(pattern == 1, (i & 1).float(), mix)
    mix = torch.where(pattern == 2, checks, mix)
    mix = torch.where(pattern == 3, dots, mix)
    mix = torch.where(pattern == 4, (torch.floor(ring).long() & 1).float(), mix)
    grout = (us < 0.06) | (ut < 0.06)  # tiles: two-colour checks with dark grout and a slight per-tile variation
    mix = torch.where(pattern == 5, checks, mix)
    shade = torch.where(pattern == 5, torch.where(grout, 0.55, 0.94 + 0.12 * _hash(i, j)), shade)
    along = s * 0.25 + _hash(j, j + 7)  # planks: rows of boards 4 cells long, staggered seams, two woods
    board = torch.floor(along)
    plank_line = (ut < 0.07) | (along - board < 0.02)
    mix = torch.where(pattern == 6, (_hash(board.long(), j) > 0.5).float(), mix)
    shade = torch.where(pattern == 6, torch.where(plank_line, 0.6, 0.9 + 0.15 * _hash(j, board.long() + 3)), shade)
    sb = s * 0.5 + 0.5 * (j & 1).float()  # bricks: rows of 2:1 bricks, offset every other row; mortar = colour 2
    ib = torch.floor(sb)
    mortar = (ut < 0.14) | (sb - ib < 0.05)
    mix = torch.where(pattern == 7, mortar.float(), mix)
    shade = torch.where((pattern == 7) & ~mortar, 0.88 + 0.24 * _hash(ib.long(), j), shade)
    return mix, shade


def _surface_frame(p: torch.Tensor, surf: torch.Tensor, sol: dict[str, torch.Tensor], scale: torch.Tensor) -> tuple:
    """Normal (V, P, 3) in world space and texture coordinates (s, t, ring) of the hit points p (V, P, 3)."""
    j = (surf - 6).clamp_min(0)  # (V, P) solid index of solid hits
    g3 = j[..., None].expand(-1, -1, 3)
    c, h = torch.gather(sol["center"], 1, g3), torch.gather(sol["size"], 1, g3)
    cs, sn = torch.gather(sol["cos"], 1, j), torch.gather(sol["sin"], 1, j)
    kind = torch.gather(sol["kind"], 1, j)
    qx, qz = _rot_y(p[..., 0] - c[..., 0], p[..., 2] - c[..., 2], cs, -sn)  # object-local hit point
    qy = p[..., 1] - c[..., 1]
    hx, hy, hz = h.unbind(-1)
    n_cells = scale
    # sphere: longitude/latitude; stripes run along meridians, rings are latitude bands
    az = torch.atan2(qx, qz) / (2 * math.pi) + 0.5
    polar = torch.acos((qy / hx).clamp(-1, 1)) / math.pi
    sph = (az * n_cells, polar * n_cells / 2, polar * n_cells * 0.6)
    # cylinder: side unrolled (cells as wide as tall), caps planar with concentric rings
    cell = 2 * math.pi * hx / n_cells
    cap = qy.abs() >= hy * (1 - 1e-4)
    rad = (qx * qx + qz * qz).sqrt()
    cyl = (
        torch.where(cap, qx / cell, az * n_cells),
        torch.where(cap, qz / cell, (qy + hy) / cell),
        torch.where(cap, rad / hx * 2.5, (qy + hy) / cell),
    )
    # box: the face is the axis where the hit point is closest to the half extent; rings are concentric squares
    ax, ay, az_ = qx.abs() / hx, qy.abs() / hy, qz.abs() / hz
    on_x, on_y = (ax >= ay) & (ax >= az_), (ay > ax) & (ay >= az_)
    cell_b = 4 * (hx + hz) / n_cells
    u = torch.where(on_x, qz, qx)
    w = torch.where(on_y, qz, qy)
    hu, hw = torch.where(on_x, hz, hx), torch.where(on_y, hz, hy)
    box = ((u + hu) / cell_b, (w + hw) / cell_b, torch.maximum(u.abs() / hu, w.abs() / hw) * 2.5)
    # room: planar coordinates of the face, in cells of `scale` metres
    face = surf.clamp(0, 5) // 2
    ru = torch.where(face == 0, p[..., 2], p[..., 0])
    rv = torch.where(face == 1, p[..., 2], p[..., 1])
    room = (ru / scale, rv / scale, rv / scale)
    coords = []
    for a in range(3):
        v = torch.where(kind == 0, sph[a], torch.where(kind == 1, box[a], cyl[a]))
        coords.append(torch.where(surf < 6, room[a], v))
    # normals: object-local, then turned back by the yaw
    nx = torch.where(kind == 0, qx / hx, torch.where(kind == 1, on_x.float() * qx.sign(), (~cap).float() * qx / hx))
    ny = torch.where(kind == 0, qy / hx, torch.where(kind == 1, on_y.float() * qy.sign(), cap.float() * qy.sign()))
    on_z = ~(on_x | on_y)
    nz = torch.where(kind == 0, qz / hx, torch.where(kind == 1, on_z.float() * qz.sign(), (~cap).float() * qz / hx))
    nx, nz = _rot_y(nx, nz, cs, sn)
    sign = 1.0 - 2.0 * (surf.clamp(0, 5) & 1).float()  # room normals point inwards
    room_n = [torch.where(face == a, sign, 0.0) for a in range(3)]
    normal = torch.stack([torch.where(surf < 6, rn, on) for rn, on in zip(room_n, (nx, ny, nz))], -1)
    return normal, coords


def _render_chunk(packed: dict, si: torch.Tensor, time: torch.Tensor, w2c: torch.Tensor, intr: torch.Tensor,
                  height: int, width: int, background: torch.Tensor) -> tuple[torch.Tensor, ...]:  # fmt: skip
    """Render V views (scene index si, time, camera) -> rgb (V, P, 3), depth (V, P), object id (V, P)."""
    dev = w2c.device
    # 1. camera rays; the direction's camera-z component is 1, so the ray parameter is the metric depth
    v, u = torch.meshgrid(
        torch.arange(height, dtype=torch.float64, device=dev) + 0.5,
        torch.arange(width, dtype=torch.float64, device=dev) + 0.5,
        indexing="ij",
    )
    x = (u.reshape(1, -1) - intr[:, 2:3] * width) / (intr[:, 0:1] * width)  # (V, P)
    y = (v.reshape(1, -1) - intr[:, 3:4] * height) / (intr[:, 1:2] * height)
    rot, tr = w2c[:, :3, :3], w2c[:, :3, 3]
    d = [(x * rot[:, 0, a, None] + y * rot[:, 1, a, None] + rot[:, 2, a, None]).float()[..., None] for a in range(3)]
    centre = -(rot[:, 0] * tr[:, 0, None] + rot[:, 1] * tr[:, 1, None] + rot[:, 2] * tr[:, 2, None])  # (V, 3)
    o = [centre[:, a, None, None].float() for a in range(3)]  # (V, 1, 1)
    # 2. solids at this view's time
    yaw = packed["yaw"][si] + time[:, None] * packed["spin"][si]
    sol = {
        "center": packed["center"][si] + time[:, None, None] * packed["vel"][si], "size": packed["size"][si],
        "cos": torch.cos(yaw), "sin": torch.sin(yaw), "kind": packed["kind"][si],
    }  # fmt: skip
    # 3. nearest surface: room (ids 0..5) or solid (6 + index)
    t_sol, j = _nearest_solid(o, d, sol, packed, si)
    has_room = packed["has_room"][si][:, None]
    t_room, face = _room_hit([a[..., 0] for a in o], [a[..., 0] for a in d], packed["room"][si])
    t_room = torch.where(has_room, t_room, _INF)
    use_solid = t_sol < t_room
    t = torch.where(use_solid, t_sol, t_room)
    hit = torch.isfinite(t)
    surf = torch.where(use_solid, j + 6, face)
    # 4. texture and normal
    p = torch.stack([o[a][..., 0] + t.where(hit, 0.0) * d[a][..., 0] for a in range(3)], -1)  # (V, P, 3)
    scale = torch.gather(packed["scale"][si], 1, surf)
    normal, (s_c, t_c, ring) = _surface_frame(p, surf, sol, scale)
    mix, shade = _texture(torch.gather(packed["pattern"][si], 1, surf), s_c, t_c, ring)
    g3 = surf[..., None].expand(-1, -1, 3)
    c1, c2 = torch.gather(packed["c1"][si], 1, g3), torch.gather(packed["c2"][si], 1, g3)
    albedo = (c1 + (c2 - c1) * mix[..., None]) * shade[..., None]
    # 5. light: Lambert with distance falloff for a point light, hard shadows from the solids
    light = packed["light"][si]  # (V, 4)
    is_point = light[:, 3:4, None] > 0
    to_light = torch.where(is_point, light[:, None, :3] - p, -light[:, None, :3] * 50.0)  # (V, P, 3)
    dist2 = _dot(to_light, to_light)
    lambert = (_dot(normal, to_light) / dist2.sqrt()).clamp_min(0)
    falloff = torch.where(is_point[..., 0], 12.0 / (8.0 + dist2), 1.0)
    origin = p + normal * 2e-3
    t_shadow, _ = _nearest_solid(
        [origin[..., a, None] for a in range(3)], [to_light[..., a, None] for a in range(3)], sol, packed, si
    )
    lit = (t_shadow >= 1.0) & hit & (lambert > 0)
    ambient = packed["ambient"][si][:, None] * (0.9 + 0.1 * normal[..., 1])
    rgb = albedo * (ambient + lit.float() * lambert * falloff)[..., None]
    rgb = torch.where(hit[..., None], rgb.clamp(0, 1), background)
    obj = torch.gather(packed["obj"][si], 1, j)
    obj = torch.where(hit & use_solid, obj, -1)
    return rgb, torch.where(hit, t, 0.0), obj


def render_many(
    scenes: Sequence[Scene],
    cameras: Sequence[CameraPath],
    height: int,
    width: int,
    times: Sequence[torch.Tensor | None] | None = None,
    device: str | torch.device = "cpu",
    background: RGB = (1.0, 1.0, 1.0),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render B scenes, each through its own F-frame camera path, in one batched pass.

    Returns rgb (B, F, 3, H, W) in [0, 1], depth (B, F, H, W) float32 (camera z; 0 where nothing is hit) and
    object id (B, F, H, W) int64 (-1 for room, clutter and background). `times[b]` (F,) in [0, 1] places moving
    solids; by default time runs linearly from 0 to 1 over the path (0 for a single frame).
    """
    if len(scenes) != len(cameras) or not scenes:
        raise InputError(f"render: need one camera path per scene, got {len(scenes)} scenes, {len(cameras)} paths")
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in (height, width)):
        raise InputError(f"render: height and width must be positive integers, got {height}x{width}")
    height, width = int(height), int(width)
    frames = cameras[0].num_frames
    if any(c.num_frames != frames for c in cameras):
        raise InputError("render: all camera paths of a batch must have the same number of frames")
    dev = torch.device(device)
    packed = _pack(scenes, dev)
    b, pixels = len(scenes), height * width
    time = []
    for i in range(b):
        tm = None if times is None else times[i]
        if tm is None:
            tm = torch.linspace(0, 1, frames, dtype=torch.float64) if frames > 1 else torch.zeros(1)
        if tuple(tm.shape) != (frames,):
            raise InputError(f"render: time must have shape ({frames},), got {tuple(tm.shape)}")
        time.append(tm.to(dev, torch.float32))
    time = torch.cat(time)
    si = torch.arange(b, device=dev).repeat_interleave(frames)
    w2c = torch.from_numpy(np.concatenate([c.w2c for c in cameras])).to(dev)
    intr = torch.from_numpy(np.concatenate([c.intrinsics for c in cameras])).to(dev)
    bg = torch.tensor(background, dtype=torch.float32, device=dev)
    widest = max(int(packed[f"group{k}"].shape[1]) for k in range(len(SHAPES)))
    step = max(1, _BUDGET.get(dev.type, 1 << 22) // (pixels * max(widest, 3)))
    parts = [
        _render_chunk(
            packed, si[a : a + step], time[a : a + step], w2c[a : a + step], intr[a : a + step], height, width, bg
        )  # fmt: skip
        for a in range(0, b * frames, step)
    ]
    rgb, depth, obj = (torch.cat(x) for x in zip(*parts))
    rgb = rgb.reshape(b, frames, height, width, 3).permute(0, 1, 4, 2, 3).contiguous()
    return rgb, depth.reshape(b, frames, height, width), obj.reshape(b, frames, height, width)


def render(
    scene: Scene,
    camera: CameraPath,
    height: int,
    width: int,
    time: torch.Tensor | None = None,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render one scene: rgb (F, 3, H, W) in [0, 1], depth (F, H, W) float32, object id (F, H, W) int64."""
    rgb, depth, obj = render_many([scene], [camera], height, width, [time], device)
    return rgb[0], depth[0], obj[0]


def headlight(w2c: np.ndarray) -> tuple[float, float, float, float]:
    """A directional light from above-left behind the camera of `w2c` (4x4): every visible side gets some light."""
    right, down, forward = np.asarray(w2c, dtype=np.float64)[:3, :3]
    travel = 0.8 * forward + 0.6 * down + 0.35 * right
    return (*(float(v) for v in travel / np.linalg.norm(travel)), 0.0)


def object_scene(scene: Scene, index: int, light: tuple[float, float, float, float] = (0.35, -1.0, 0.45, 0.0)) -> Scene:
    """Object `index` alone (no room, no clutter) under one directional `light`, for identity references."""
    solids = [s for s in scene.solids if s.object == index]
    if not solids:
        raise InputError(f"the scene has no object {index} (objects: {[s.object for s in scene.objects()]})")
    return Scene(solids=solids, light=light, ambient=0.45)


def render_object(
    scene: Scene,
    index: int,
    camera: CameraPath,
    height: int,
    width: int,
    background: RGB = (1.0, 1.0, 1.0),
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Object `index` alone on a plain background at its time-0 pose, lit from behind frame 0's camera.

    Returns (F, 3, H, W) in [0, 1].
    """
    frames = camera.num_frames
    alone = object_scene(scene, index, headlight(camera.w2c[0]))
    rgb, _, _ = render_many([alone], [camera], height, width, [torch.zeros(frames)], device, background)
    return rgb[0]
