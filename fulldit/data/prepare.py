"""`fulldit prepare`: a folder of real videos with captions and camera files -> a dataset folder (formats.py).

Input layout (SRC; every name is derived from the video's stem, here ``walk``)::

    SRC/walk.mp4               the video (.mp4 .mov .mkv .webm .avi); the stem names the clip
    SRC/walk.txt               its caption, UTF-8 text; or a line {"video": "walk.mp4", "caption": "..."} of
                               SRC/captions.jsonl (--captions FILE). The .txt wins when both exist.
    SRC/walk.cam.txt           optional RealEstate10K / CameraCtrl pose file (or .cam.json), one pose per video frame,
      or SRC/cameras/walk.txt  RealEstate10K's own layout, a folder of <clip>.txt (--cameras DIR)
    SRC/walk.ref_0.png ...     optional identity reference images: SRC/walk.ref*.{png,jpg,jpeg,webp}
    SRC/boxes.json             optional reference crops cut from the video (--boxes FILE):
                               {"walk": [[x0, y0, x1, y1], {"box": [x0, y0, x1, y1], "frame": 40}, ...]}
                               in pixels of the source video (x1, y1 exclusive); "frame" is a source frame (default 0)

Resampling. ``--fps F`` keeps source frame ``round(i * src_fps / F)`` as output frame i: the frame nearest in time,
never more frames than the source has. The camera keeps the poses of exactly the frames kept; poses are never
interpolated, so every pose is the one measured for its frame. ``--frames N`` cuts the resampled video into clips of
N frames (``--clips-per-video K``: up to K consecutive clips, ``walk-000``, ``walk-001``, ...); a video too short
for one clip is an error. ``--size WxH`` resizes to cover and centre-crops every frame, and moves the intrinsics
with it (`CameraPath.resized_cropped`). Box crops are cut from the source frame at full resolution.

Depth (``--depth-model DIR``: a transformers depth model saved with `save_pretrained`, e.g. Depth Anything; loaded
with local_files_only, nothing is downloaded). Depth Anything predicts *relative inverse depth*: disparity up to an
unknown scale and shift, not metres. The dataset format stores depth, and the model only ever sees depth as inverse
depth normalised by its min and max over the clip (`fulldit.conditions.depth.depth_video`), which no positive scale
and shift of the disparity changes. So a relative prediction d is stored as *pseudo-depth*: per clip, d is mapped
linearly onto [1/PSEUDO_FAR, 1/PSEUDO_NEAR] by its min and max over all frames, and depth = 1 / that, in
[PSEUDO_NEAR, PSEUDO_FAR] m, written as the usual millimetre PNGs. Training then sees the normalised prediction
exactly (up to 1 mm rounding), and nothing claims to be metric: the manifest entry says ``"depth_kind": "relative"``
and ``meta.depth`` names the model and this mapping. Depth Anything predicts each frame on its own, so its scale
may drift across the frames of a clip; the per-clip mapping keeps that drift rather than hiding it. A metric model
(config ``depth_estimation_type: "metric"``) is stored as metric depth. Without --depth-model there is no depth.

Checks. Everything cheap is checked for every video before anything is written: the caption, the video header, the
pose count against the source frame count, references, boxes, enough frames for a clip. A problem is one line
(InputError; the CLI exits 2 and writes nothing), or, with ``--skip-bad``, a line on stderr and the video skipped.
The dataset is built in ``.OUT.partial`` beside OUT and renamed to OUT when complete; an interrupted run continues
with ``--resume`` (clips already in the partial manifest are kept).
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
from tqdm import tqdm

from fulldit.atomic import atomic_path
from fulldit.camera import CameraPath, load_camera
from fulldit.data import Clip, contact_sheet
from fulldit.data.formats import ManifestWriter, read_manifest, write_clip
from fulldit.errors import InputError
from fulldit.video_io import error_reason, read_image, resize_center_crop

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
PSEUDO_NEAR, PSEUDO_FAR = 1.0, 50.0  # metres: the range relative depth is mapped onto (fits 16-bit millimetres)
PSEUDO_MAPPING = (
    f"depth = 1 / (1/{PSEUDO_FAR:g} + n (1/{PSEUDO_NEAR:g} - 1/{PSEUDO_FAR:g})) m, "
    "n = the prediction min-max normalised over the clip"
)


@dataclass(frozen=True)
class PrepareOptions:
    """What `prepare` does with each video (see the module docstring)."""

    frames: int | None = None  # frames per clip after resampling; None: every frame in one clip
    fps: float | None = None  # resample to this rate; None: keep the source's
    size: tuple[int, int] | None = None  # (height, width) to resize-to-cover and centre-crop to
    clips_per_video: int = 1
    captions: Path | None = None  # default SRC/captions.jsonl when it exists
    cameras: Path | None = None  # default SRC/cameras when it exists
    boxes: Path | None = None  # default SRC/boxes.json when it exists
    depth_model: Path | None = None
    device: str = "cpu"
    skip_bad: bool = False
    resume: bool = False

    def __post_init__(self) -> None:
        if self.frames is not None and self.frames < 1:
            raise InputError(f"--frames {self.frames}: must be at least 1")
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise InputError(f"--fps {self.fps}: must be a positive number")
        if self.clips_per_video < 1:
            raise InputError(f"--clips-per-video {self.clips_per_video}: must be at least 1")


@dataclass
class Source:
    """One source video with everything that belongs to it, checked; `windows` are the source frames of each clip."""

    name: str
    video: Path
    caption: str
    camera: CameraPath | None
    camera_file: Path | None
    references: list[Path]
    boxes: list[tuple[int, tuple[int, int, int, int]]]  # (source frame, (x0, y0, x1, y1))
    frames: int  # in the source video
    source_fps: float
    fps: float  # of the clips
    windows: list[np.ndarray]
    numbered: bool = False  # --clips-per-video > 1: ids are numbered, however many clips a video gives

    def clip_id(self, k: int) -> str:
        """Window k's clip id: the video's name, with -000, -001, ... under --clips-per-video."""
        return f"{self.name}-{k:03d}" if self.numbered else self.name


# ------------------------------------------------------------------------------------------------ finding the inputs


def probe(path: Path) -> tuple[int, float | None, int, int]:
    """(frames, fps or None, height, width) from the container, decoding nothing (packets counted if needed)."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            count = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
            return count, float(rate) if rate else None, stream.codec_context.height, stream.codec_context.width
    except (av.error.FFmpegError, OSError) as err:
        raise InputError(f"{path}: cannot open video ({error_reason(err)})") from err


def frame_windows(total: int, src_fps: float | None, opts: PrepareOptions, name: str) -> list[np.ndarray]:
    """Source frame indices of each output clip: resample to opts.fps (nearest frame), cut clips of opts.frames."""
    if opts.fps is None:
        kept = np.arange(total)
    else:
        if src_fps is None:
            raise InputError(f"{name}: the container does not say its frame rate, so --fps cannot resample it")
        if opts.fps > src_fps * 1.01:
            raise InputError(f"{name}: --fps {opts.fps:g} is above the video's {src_fps:g} fps (frames would repeat)")
        step = max(1.0, src_fps / opts.fps)  # 29.97 fps asked for 30: every frame, none twice
        kept = np.round(np.arange(int(total / step) + 1) * step).astype(np.int64)
        kept = kept[kept < total]
    n = len(kept) if opts.frames is None else opts.frames
    if len(kept) < n or n == 0:
        rate = f" at {opts.fps:g} fps" if opts.fps else ""
        raise InputError(f"{name}: has {len(kept)} frames{rate}, a clip needs {n} (--frames)")
    return [kept[k * n : (k + 1) * n] for k in range(min(opts.clips_per_video, len(kept) // n))]


def _clip_name(stem: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", stem).lstrip("._-")
    return name or "clip"


def _captions_file(path: Path | None) -> dict[str, str]:
    """captions.jsonl as {video file name or stem: caption}."""
    if path is None:
        return {}
    out: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read captions ({err})") from err
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}:{i}: invalid JSON ({err.msg})") from None
        if not (isinstance(item, dict) and isinstance(item.get("video"), str) and isinstance(item.get("caption"), str)):
            raise InputError(f'{path}:{i}: expected {{"video": "NAME.mp4", "caption": "..."}}')
        out[item["video"]] = item["caption"]
    return out


def _boxes_file(path: Path | None) -> dict[str, list[tuple[int, tuple[int, int, int, int]]]]:
    """boxes.json as {stem: [(source frame, (x0, y0, x1, y1)), ...]}, shapes checked (bounds later, per video)."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: cannot read boxes ({err})") from err
    if not isinstance(data, dict):
        raise InputError(f'{path}: expected {{"VIDEO_STEM": [[x0, y0, x1, y1], ...], ...}}')
    out = {}
    for stem, items in data.items():
        boxes = []
        for i, item in enumerate(items if isinstance(items, list) else [None]):
            box, frame = (item.get("box"), item.get("frame", 0)) if isinstance(item, dict) else (item, 0)
            ok = isinstance(box, list) and len(box) == 4 and all(isinstance(v, int | float) for v in box)
            if not ok or not isinstance(frame, int) or frame < 0:
                raise InputError(f'{path}: {stem}[{i}]: expected [x0, y0, x1, y1] or {{"box": [...], "frame": N}}')
            boxes.append((frame, tuple(round(v) for v in box)))
        out[stem] = boxes
    return out


def _default(option: Path | None, fallback: Path) -> Path | None:
    if option is not None and not option.exists():
        raise InputError(f"{option}: no such file or directory")
    return option if option is not None else (fallback if fallback.exists() else None)


def _camera_file(src: Path, stem: str, cameras: Path | None) -> Path | None:
    candidates = [src / f"{stem}.cam.txt", src / f"{stem}.cam.json"]
    if cameras is not None:
        candidates += [cameras / f"{stem}.txt", cameras / f"{stem}.json"]
    found = [c for c in candidates if c.is_file()]
    if len(found) > 1:
        raise InputError(f"{stem}: {len(found)} camera files ({', '.join(map(str, found))}); keep one")
    return found[0] if found else None


def _check_source(
    video: Path, src: Path, opts: PrepareOptions, captions: dict[str, str], boxes: dict, cameras: Path | None
) -> Source:
    """Everything about one video that can be checked without decoding it; InputError names the file."""
    stem = video.stem
    text_file = src / f"{stem}.txt"
    if text_file.is_file():
        try:
            caption = text_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(f"{text_file}: cannot read caption ({err})") from err
    elif video.name in captions or stem in captions:
        caption = captions.get(video.name, captions.get(stem, "")).strip()
    else:
        raise InputError(f"{video}: missing caption (write {text_file.name} or a line in captions.jsonl)")
    if not caption:
        raise InputError(f"{video}: the caption is empty")
    total, fps, height, width = probe(video)
    if fps is None:
        raise InputError(f"{video}: the container does not say its frame rate")
    camera_file = _camera_file(src, stem, cameras)
    camera = load_camera(camera_file) if camera_file else None
    if camera is not None and camera.num_frames != total:
        raise InputError(f"{camera_file}: has {camera.num_frames} poses, {video.name} has {total} frames")
    references = sorted(p for p in src.glob(f"{glob.escape(stem)}.ref*") if p.suffix.lower() in IMAGE_SUFFIXES)
    for ref in references:
        read_image(ref)  # a broken image fails now, not after an hour of depth estimation
    for frame, (x0, y0, x1, y1) in boxes.get(stem, []):
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise InputError(f"{video.name}: box {[x0, y0, x1, y1]} is not inside the {width}x{height} frame")
        if frame >= total:
            raise InputError(f"{video.name}: box frame {frame} is beyond its {total} frames")
    windows = frame_windows(total, fps, opts, video.name)
    return Source(
        name=_clip_name(stem),
        video=video,
        caption=caption,
        camera=camera,
        camera_file=camera_file,
        references=references,
        boxes=boxes.get(stem, []),
        frames=total,
        source_fps=fps,
        fps=opts.fps or fps,
        windows=windows,
        numbered=opts.clips_per_video > 1,
    )


def find_sources(src: Path, opts: PrepareOptions) -> tuple[list[Source], list[str]]:
    """Every video of SRC, checked: (usable sources, one-line problems). Without --skip-bad a problem raises."""
    if not src.is_dir():
        raise InputError(f"{src}: no such directory")
    videos = sorted(p for p in src.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith("."))
    if not videos:
        raise InputError(f"{src}: no videos ({', '.join(VIDEO_SUFFIXES)})")
    captions = _captions_file(_default(opts.captions, src / "captions.jsonl"))
    boxes_path = _default(opts.boxes, src / "boxes.json")
    boxes = _boxes_file(boxes_path)
    cameras = _default(opts.cameras, src / "cameras")
    problems = [f"{boxes_path}: no video named {s}" for s in sorted(set(boxes) - {v.stem for v in videos})]
    sources, names = [], {}
    for video in videos:
        try:
            source = _check_source(video, src, opts, captions, boxes, cameras)
            if source.name in names:
                raise InputError(f"{video}: clip name {source.name!r} is taken by {names[source.name]}")
            names[source.name] = video.name
            sources.append(source)
        except InputError as err:
            problems.append(str(err))
    if problems and not opts.skip_bad:
        more = f" (and {len(problems) - 1} more problems; --skip-bad skips broken videos)" if len(problems) > 1 else ""
        raise InputError(problems[0] + more)
    return sources, problems


# ------------------------------------------------------------------------------------------------------ making clips


def decode_frames(path: Path, wanted: set[int], total: int, to_end: bool) -> dict[int, np.ndarray]:
    """The wanted frames (H, W, 3) uint8 by index; decodes to the end when `to_end` to confirm the frame count."""
    frames: dict[int, np.ndarray] = {}
    last = max(wanted)
    count = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for count, frame in enumerate(container.decode(stream), start=1):
                if count - 1 in wanted:
                    frames[count - 1] = frame.to_ndarray(format="rgb24")
                if count > last and not to_end:
                    break
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise InputError(f"{path}: cannot decode video ({error_reason(err)})") from err
    if len(frames) < len(wanted) or (to_end and count != total):
        raise InputError(f"{path}: decodes to {count} frames, its header says {total}")
    return frames


def pseudo_depth(disparity: torch.Tensor) -> torch.Tensor:
    """Relative inverse depth (F, H, W) -> pseudo-depth in [PSEUDO_NEAR, PSEUDO_FAR] m (see the module docstring)."""
    lo, hi = disparity.min(), disparity.max()
    n = (disparity - lo) / (hi - lo).clamp_min(1e-12)  # a constant prediction: every pixel at PSEUDO_FAR
    return 1.0 / (1.0 / PSEUDO_FAR + n * (1.0 / PSEUDO_NEAR - 1.0 / PSEUDO_FAR))


class DepthModel:
    """A transformers depth model from a local directory (fulldit.eval.depth_net.TransformersDepth) for prepare."""

    def __init__(self, path: Path, device: str) -> None:
        from fulldit.eval.depth_net import TransformersDepth

        self.estimator = TransformersDepth(path, device)
        self.metric = self.estimator.metric
        self.path = path

    def __call__(self, video: torch.Tensor, name: str) -> tuple[torch.Tensor, dict]:
        """(depth (F, H, W) in metres or pseudo-metres, meta describing it)."""
        inverse = self.estimator(video).float()  # relative models: disparity; metric ones: 1 / depth
        if not torch.isfinite(inverse).all():
            raise InputError(f"{self.path}: predicted non-finite depth for {name}")
        if self.metric:
            return 1.0 / inverse.clamp_min(1e-6), {"model": self.path.name, "kind": "metric"}
        return pseudo_depth(inverse), {"model": self.path.name, "kind": "relative", "pseudo_depth": PSEUDO_MAPPING}


def _image(array: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float() / 255.0


def make_clips(source: Source, opts: PrepareOptions, depth: DepthModel | None) -> list[tuple[str, Clip, bool]]:
    """The clips of one source video: (clip id, Clip, depth is relative)."""
    wanted = {int(i) for w in source.windows for i in w} | {f for f, _ in source.boxes}
    frames = decode_frames(source.video, wanted, source.frames, to_end=source.camera is not None)
    references = [read_image(p) for p in source.references]
    references += [_image(frames[f][y0:y1, x0:x1]) for f, (x0, y0, x1, y1) in source.boxes]
    ref_meta = [{"image": p.name} for p in source.references] + [{"frame": f, "box": list(b)} for f, b in source.boxes]
    out = []
    for k, window in enumerate(source.windows):
        camera = None if source.camera is None else source.camera.subsample(window)
        if opts.size is None:
            video = torch.stack([_image(frames[int(i)]) for i in window])
        else:  # frame by frame: a long clip never exists as floats at the source resolution
            resized = [resize_center_crop(_image(frames[int(i)]), opts.size) for i in window]
            video, scale, top_left = torch.stack([r[0] for r in resized]), resized[0][1], resized[0][2]
            src_hw = frames[int(window[0])].shape[:2]
            camera = None if camera is None else camera.resized_cropped(src_hw, scale, top_left, opts.size)
        clip_id = source.clip_id(k)
        meta = {
            "source": {
                "video": source.video.name,
                "camera": source.camera_file.name if source.camera_file else None,
                "fps": source.source_fps,
                "frames": window.tolist(),
            },
            "references": ref_meta,
        }
        depth_map, relative = None, False
        if depth is not None:
            depth_map, meta["depth"] = depth(video, clip_id)
            relative = meta["depth"]["kind"] == "relative"
        out.append((clip_id, Clip(video, depth_map, camera, list(references), source.caption, meta), relative))
    return out


# ----------------------------------------------------------------------------------------------------------- writing


def _partial(out: Path, resume: bool) -> tuple[Path, set[str]]:
    """The hidden folder the dataset is built in, and the ids it already holds (--resume)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: exists and is not empty; choose a new --out")
    tmp = out.parent / f".{out.name}.partial"
    if tmp.exists() and not resume:
        raise InputError(f"{tmp}: left by an interrupted prepare; pass --resume to continue it, or delete it")
    done = {entry.get("id") for _, entry in read_manifest(tmp, [])} if (tmp / "manifest.jsonl").is_file() else set()
    return tmp, done


def prepare(src: str | os.PathLike, out: str | os.PathLike, opts: PrepareOptions) -> tuple[Path, int, list[str]]:
    """Build the dataset; returns (OUT, clips written, one-line problems of skipped videos)."""
    src, out = Path(src), Path(out)
    tmp, done = _partial(out, opts.resume)
    sources, problems = find_sources(src, opts)
    if not sources:
        raise InputError(f"{src}: no usable videos; first problem: {problems[0]}")
    depth = DepthModel(opts.depth_model, opts.device) if opts.depth_model is not None else None
    sheet: list[Clip] = []
    written = len(done)
    with ManifestWriter(tmp, append=opts.resume) as manifest:
        for source in tqdm(sources, desc="prepare", unit="video", dynamic_ncols=True):
            if all(source.clip_id(k) in done for k in range(len(source.windows))):
                continue
            try:
                clips = make_clips(source, opts, depth)
            except InputError as err:
                if not opts.skip_bad:
                    raise
                problems.append(str(err))
                print(err, file=sys.stderr, flush=True)
                continue
            for clip_id, clip, relative in clips:
                if clip_id in done:
                    continue
                entry = write_clip(tmp, clip, clip_id, fps=source.fps)
                if relative:
                    entry["depth_kind"] = "relative"
                manifest.add(entry)
                written += 1
                sheet += [clip][: max(0, 8 - len(sheet))]
    if sheet:
        with atomic_path(tmp / "contact_sheet.png") as path:
            contact_sheet(sheet).save(path, format="PNG")
    settings = {
        "source": str(src),
        "frames": opts.frames,
        "fps": opts.fps,
        "size": opts.size,
        "clips_per_video": opts.clips_per_video,
        "depth_model": None if opts.depth_model is None else str(opts.depth_model),
    }
    with atomic_path(tmp / "prepare.json") as path:
        path.write_text(json.dumps(settings, indent=1) + "\n", encoding="utf-8")
    if out.is_dir():
        out.rmdir()  # empty (checked): rename onto it
    os.replace(tmp, out)
    return out, written, problems
