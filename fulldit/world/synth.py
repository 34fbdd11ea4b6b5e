"""`fulldit synth`: write synthetic clips as a dataset folder, and the FullBench-Synth benchmark split.

FullBench-Synth (`BENCH_VERSION`) is a fixed, versioned test set: for each condition combination of FullBench
(camera; identity; depth; their pairs; all three) plus first-frame (image-to-video) and prefix (video
prediction), `cases` clips rendered from seeds at or above `BENCH_SEED_BASE`, which training never uses. The
folder is an ordinary dataset folder (formats.py) plus `bench.json`, which lists every case: its id, its
combination, the conditions it gives, and its seed. Text (the caption) is given in every case.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from fulldit.atomic import atomic_dir, atomic_path
from fulldit.data import Clip, contact_sheet
from fulldit.data.formats import ManifestWriter, write_clip
from fulldit.errors import InputError
from fulldit.world.clips import render_batch
from fulldit.world.dataset import BENCH_SEED_BASE

BENCH_VERSION = "fullbench-synth/1"
COMBOS: dict[str, tuple[str, ...]] = {
    "camera": ("camera",),
    "identity": ("reference",),
    "depth": ("depth",),
    "camera+identity": ("camera", "reference"),
    "camera+depth": ("camera", "depth"),
    "identity+depth": ("reference", "depth"),
    "camera+identity+depth": ("camera", "reference", "depth"),
    "first-frame": ("first_frame",),
    "prefix": ("prefix",),
}
SEEDS_PER_COMBO = 10**6


def bench_seed(combo: str, case: int) -> int:
    """The fixed seed of a benchmark case: above every training seed, stable across versions of the list."""
    return BENCH_SEED_BASE + list(COMBOS).index(combo) * SEEDS_PER_COMBO + case


def _check_fps(fps: float) -> None:
    if not (math.isfinite(fps) and fps > 0):
        raise InputError(f"--fps {fps}: must be a positive number")


def _save_sheet(clips: list[Clip], path: Path) -> None:
    with atomic_path(path) as tmp:
        contact_sheet(clips).save(tmp, format="PNG")


def write_dataset(
    out: str | Path,
    n: int,
    seed: int = 0,
    frames: int = 16,
    height: int = 128,
    width: int = 128,
    device: str = "cpu",
    references_per_object: int = 2,
    fps: float = 8.0,
    batch: int = 8,
) -> Path:
    """Render clips with seeds seed .. seed + n - 1 into a dataset folder, plus contact_sheet.png.

    The folder is built beside `out` and renamed when complete: a failure leaves nothing behind.
    """
    out = Path(out)
    if n < 1 or seed < 0 or seed + n > BENCH_SEED_BASE:
        raise InputError(f"--n {n} --seed {seed}: need n >= 1 and seeds in [0, {BENCH_SEED_BASE})")
    _check_fps(fps)
    sheet: list[Clip] = []
    with atomic_dir(out) as tmp, ManifestWriter(tmp) as manifest:
        for start in range(0, n, batch):
            seeds = list(range(seed + start, seed + min(n, start + batch)))
            clips = render_batch(
                seeds,
                frames=frames,
                height=height,
                width=width,
                device=device,
                references_per_object=references_per_object,
            )
            for s, clip in zip(seeds, clips):
                manifest.add(write_clip(tmp, clip, f"{s:09d}", fps=fps))
            sheet += clips[: max(0, 8 - len(sheet))]
        _save_sheet(sheet, tmp / "contact_sheet.png")
    return out


def write_bench(
    out: str | Path,
    cases: int = 32,
    frames: int = 16,
    height: int = 128,
    width: int = 128,
    device: str = "cpu",
    combos: list[str] | None = None,
    fps: float = 8.0,
    batch: int = 8,
) -> Path:
    """Write FullBench-Synth: `cases` clips for each condition combination, and bench.json (written last)."""
    out = Path(out)
    combos = list(COMBOS) if not combos else combos
    unknown = [c for c in combos if c not in COMBOS]
    if unknown:
        raise InputError(f"unknown combination(s) {unknown}; known: {', '.join(COMBOS)}")
    if not 1 <= cases <= SEEDS_PER_COMBO:
        raise InputError(f"--cases {cases}: must be between 1 and {SEEDS_PER_COMBO}")
    _check_fps(fps)
    listing, sheet = [], []
    with atomic_dir(out) as tmp, ManifestWriter(tmp) as manifest:
        for combo in combos:
            for start in range(0, cases, batch):
                ids = list(range(start, min(cases, start + batch)))
                seeds = [bench_seed(combo, i) for i in ids]
                clips = render_batch(seeds, frames=frames, height=height, width=width, device=device)
                for i, s, clip in zip(ids, seeds, clips):
                    case_id = f"{combo.replace('+', '_')}-{i:03d}"  # ids are file names: no "+"
                    case = {"id": case_id, "combo": combo, "conditions": list(COMBOS[combo]), "seed": s}
                    if combo == "prefix":
                        case["prefix_frames"] = max(1, frames // 4)
                    clip.meta["bench"] = case
                    manifest.add(write_clip(tmp, clip, case_id, fps=fps))
                    listing.append(case)
                if start == 0:
                    sheet.append(clips[0])
        _save_sheet(sheet, tmp / "contact_sheet.png")
        info = {
            "version": BENCH_VERSION,
            "frames": frames,
            "height": height,
            "width": width,
            "fps": fps,
            "cases_per_combo": cases,
            "combos": {c: list(COMBOS[c]) for c in combos},
            "cases": listing,
        }
        with atomic_path(tmp / "bench.json") as path:
            path.write_text(json.dumps(info, indent=1) + "\n")
    return out
