"""The on-disk dataset format (``fulldit-dataset/1``) shared by the synthetic world and real data, and its loader.

Layout::

    DATASET/
      dataset.json               {"format": "fulldit-dataset/1"}: the format version (absent = version 1)
      manifest.jsonl             one JSON object per line, one line per clip; paths relative to DATASET/
      clips/000000/video.mp4     H.264 video (yuv420p; an odd height/width is padded by one row/column)
      clips/000000/camera.txt    RealEstate10K / CameraCtrl pose file, one pose per video frame (optional)
      clips/000000/depth/00000.png ...  metric depth, one 16-bit greyscale PNG per video frame (optional)
      clips/000000/ref_0.png ... identity reference images, 8-bit RGB PNG, any size (optional)

A manifest line (written on one line; wrapped here)::

    {"id": "000000", "video": "clips/000000/video.mp4", "caption": "a red chair, the camera orbits left",
     "camera": "clips/000000/camera.txt", "depth": "clips/000000/depth", "depth_scale": 0.001,
     "references": ["clips/000000/ref_0.png"], "frames": 16, "height": 128, "width": 128, "fps": 8.0,
     "meta": {"seed": 3}}

Keys:

* ``video`` (required): a video file PyAV decodes; `write_clip` writes H.264 ``.mp4``.
* ``caption`` (required): the text prompt (may be empty).
* ``id``: a unique name for reports (default: the ``video`` path); `write_clip` uses the clip's folder name.
* ``camera``: RealEstate10K / CameraCtrl ``.txt`` (or the JSON form, ``.json``; see `fulldit.camera.files`) with
  exactly one pose per video frame, intrinsics normalised for the full (uncropped) video frame.
* ``depth``: metric depth with one frame per video frame, of the video's size: a folder of single-channel PNG
  frames (16-bit, taken in natural name order; `write_clip` names them ``00000.png`` ...) or a ``.npz`` / ``.npy``
  array ``(F, H, W)`` (``.npz``: the array named ``depth`` or the only one). Never a video: lossy codecs and 8-bit
  luminance cannot hold metric depth.
* ``depth_scale``: metres per stored unit; depth in metres = stored value * ``depth_scale``. Default 0.001 (PNG
  integers are millimetres: 0-65.535 m at 1 mm steps) for PNG folders and 1.0 (float32 metres) for arrays.
  `write_clip` stores millimetres, rounding to the nearest one (error <= 0.5 mm); if the clip's farthest depth
  exceeds 65.535 m it picks the first of 0.002, 0.005, 0.01, 0.02, ... m that fits. 0 means "no measurement",
  and a positive depth is never rounded down to 0.
* ``depth_kind``: ``"metric"`` (the default) or ``"relative"``: the depth is pseudo-depth made from a relative
  estimate (`fulldit prepare` with Depth Anything: 1 / the per-clip normalised disparity; see `fulldit.data.prepare`).
  Its inverse is right up to scale and shift, which is all the depth condition uses (it normalises inverse depth
  per clip), so readers that ignore the key train the same; metric comparisons must align scale and shift first.
* ``references``: list of image files (any format PIL reads), each showing one identity of the clip.
* ``frames``, ``height``, ``width``: the video's frame count and true size (a padded odd-size video is cropped back
  to it); when given they are checked against the files. ``fps``: the video's frame rate.
* ``meta``: a JSON object describing the clip (source, seed, objects, camera move, ...), returned as `Clip.meta`.
  On loading the key ``"dataset"`` is set to ``{"root", "id", "line", "frames" (the frame indices taken), "fps"
  (of the returned frames: the file's fps / stride)}``; `write_clip` drops that key, so it is reserved.

Other keys are ignored, so later versions can add them; a change that old readers would misread gets a new
version in ``dataset.json``, which readers refuse when its major number is not theirs. Lines are appended
whole (one ``write`` + ``fsync``), so a crash never leaves a torn line; blank lines are ignored.

Loading (`ClipFolder`) takes ``frames`` frames every ``stride`` frames (from frame 0, or from a random start that
is a function of ``seed`` and the index), then resizes video, depth (nearest, so no invented depths) and each
reference to cover ``size`` and centre-crops them, and moves the camera intrinsics by the same scale and crop.
A broken entry is reported on one line naming the manifest line, e.g.
``data/manifest.jsonl:7 (clip 000006): clips/000006/camera.txt has 15 poses, video has 16 frames``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import av
import numpy as np
import PIL.Image
import torch
from torch.utils.data import Dataset

from fulldit.atomic import atomic_path
from fulldit.camera import CameraPath, load_camera, save_camera_re10k
from fulldit.data import Clip
from fulldit.errors import InputError
from fulldit.video_io import (
    VIDEO_SUFFIXES,
    depth_frame_files,
    read_depth,
    read_depth_frame,
    read_image,
    read_video,
    resize_center_crop,
    resize_depth,
    write_image,
    write_video,
)

FORMAT = "fulldit-dataset/1"
MANIFEST = "manifest.jsonl"
INFO = "dataset.json"
DEPTH_SCALE = 0.001  # metres per PNG unit: millimetres
PNG_MAX = 65535
RESERVED_META = "dataset"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# What a corrupt or unreadable file raises from the decoders; anything else is a bug and propagates.
_DECODE_ERRORS = (InputError, OSError, ValueError, RuntimeError, EOFError, zipfile.BadZipFile, av.error.FFmpegError)

# ----------------------------------------------------------------------------------------------------------- writing


def _depth_scale(depth: np.ndarray) -> float:
    """Millimetres, or the first 1-2-5 step that keeps the farthest depth within 16 bits."""
    far = float(depth.max(initial=0.0))
    for exponent in range(-3, 10):
        for mantissa in (1, 2, 5):
            scale = float(f"{mantissa}e{exponent}")
            if far / scale <= PNG_MAX:
                return scale
    raise ValueError(f"depth of {far:g} m is too far to store")


def _write_depth(folder: Path, depth: torch.Tensor, scale: float | None, clip_id: str) -> float:
    d = depth.detach().cpu().double().numpy()
    if not np.isfinite(d).all() or (d < 0).any():
        raise ValueError(f"clip {clip_id}: depth must be finite and >= 0 (0 = no measurement)")
    scale = _depth_scale(d) if scale is None else scale
    units = np.rint(d / scale)
    if units.max(initial=0.0) > PNG_MAX:
        raise ValueError(f"clip {clip_id}: depth up to {d.max():g} m does not fit 16 bits at depth_scale {scale:g}")
    units[(d > 0) & (units < 1)] = 1  # a measured depth must not turn into "no measurement"
    units = units.astype(np.uint16)
    folder.mkdir()
    for i, frame in enumerate(units):
        with atomic_path(folder / f"{i:05d}.png") as tmp:
            PIL.Image.fromarray(frame).save(tmp, format="PNG")  # uint16 -> mode I;16, a 16-bit greyscale PNG
    return scale


def _json_value(x: Any) -> Any:
    if isinstance(x, np.generic | np.ndarray | torch.Tensor):
        return x.tolist()
    raise TypeError(f"{type(x).__name__} is not JSON-serialisable")


def _replace_dir(src: Path, dst: Path) -> None:
    """Move the finished folder `src` onto `dst` (an old `dst` is moved aside first, then deleted)."""
    old = None
    if dst.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".old", dir=dst.parent))
        os.replace(dst, old / dst.name)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_clip(
    root: str | os.PathLike, clip: Clip, clip_id: str, fps: float = 8.0, depth_scale: float | None = None
) -> dict:
    """Write `clip` to ``root/clips/<clip_id>/`` and return its manifest entry (for `ManifestWriter.add`).

    The files are written into a hidden temporary folder which is renamed into place only once all of them are
    complete, so a crash leaves no partial clip (at most a hidden ``clips/.<id>.*`` folder after a hard kill).
    An existing clip of the same id is replaced. `depth_scale` None picks millimetres or, for depths beyond
    65.535 m, the next coarser step (see the module docstring).
    """
    root = Path(root)
    if not isinstance(clip_id, str) or not _ID.fullmatch(clip_id):
        raise ValueError(f"clip id must be letters, digits, '_', '-' or '.' (not first), got {clip_id!r}")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"clip {clip_id}: fps must be positive, got {fps}")
    if depth_scale is not None and not (math.isfinite(depth_scale) and depth_scale > 0):
        raise ValueError(f"clip {clip_id}: depth_scale must be positive, got {depth_scale}")
    clip.check(f"clip {clip_id}")
    meta = {k: v for k, v in clip.meta.items() if k != RESERVED_META}
    try:  # round trip now, so the entry holds plain JSON and a bad meta fails before any file is written
        meta = json.loads(json.dumps(meta, default=_json_value, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise ValueError(f"clip {clip_id}: meta is not JSON-serialisable ({err})") from err
    num, _, height, width = clip.video.shape
    base = f"clips/{clip_id}"
    entry: dict[str, Any] = {"id": clip_id, "video": f"{base}/video.mp4", "caption": str(clip.caption)}

    (root / "clips").mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{clip_id}.", suffix=".partial", dir=root / "clips"))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700
        write_video(tmp / "video.mp4", clip.video, fps=fps)
        if clip.camera is not None:
            stamps = [round(i * 1e6 / fps) for i in range(num)]
            save_camera_re10k(clip.camera, tmp / "camera.txt", url=f"fulldit:{clip_id}", timestamps_us=stamps)
            entry["camera"] = f"{base}/camera.txt"
        if clip.depth is not None:
            scale = _write_depth(tmp / "depth", clip.depth, depth_scale, clip_id)
            entry.update(depth=f"{base}/depth", depth_scale=scale)
        entry["references"] = []
        for i, ref in enumerate(clip.references):
            write_image(tmp / f"ref_{i}.png", ref)
            entry["references"].append(f"{base}/ref_{i}.png")
        _replace_dir(tmp, root / "clips" / clip_id)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    entry.update(frames=num, height=height, width=width, fps=float(fps), meta=meta)
    return entry


def _write_info(root: Path) -> None:
    path = root / INFO
    if path.exists():
        _check_info(root)
        return
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"format": FORMAT}) + "\n", encoding="utf-8")


class ManifestWriter:
    """Append entries to ``root/manifest.jsonl``, one whole line per `add`, flushed to disk before it returns.

    ``append=False`` starts a new, empty manifest (atomically replacing an old one); ``append=True`` keeps the
    existing lines, first cutting off a torn last line that a power loss during someone's write may have left.
    Also writes ``dataset.json``. Use as a context manager.
    """

    def __init__(self, root: str | os.PathLike, append: bool = False) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / MANIFEST
        _write_info(self.root)
        self._ids: set[str] = set()
        if append and self.path.exists():
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):
                keep = data.rfind(b"\n") + 1
                print(f"{self.path}: dropping a torn last line ({len(data) - keep} bytes)", file=sys.stderr)
                os.truncate(self.path, keep)
            problems: list[str] = []
            self._ids = {_clip_id(entry) for _, entry in read_manifest(self.root, problems)}
        else:
            with atomic_path(self.path) as tmp:
                tmp.write_bytes(b"")
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)

    def add(self, entry: dict) -> None:
        """Append `entry` (as returned by `write_clip`) as one line; ValueError if it is not a valid entry."""
        if self._fd is None:
            raise ValueError(f"{self.path}: the writer is closed")
        problem = _entry_problem(entry)
        if problem:
            raise ValueError(f"manifest entry: {problem}")
        clip_id = _clip_id(entry)
        if clip_id in self._ids:
            raise ValueError(f"{self.path}: duplicate clip id {clip_id!r}")
        try:
            data = (json.dumps(entry, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
        except (TypeError, ValueError) as err:
            raise ValueError(f"manifest entry {clip_id!r} is not JSON-serialisable ({err})") from err
        view = memoryview(data)
        while view:  # one write for any sane line; the loop only guards against a short write
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)
        self._ids.add(clip_id)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------------------- reading


def _check_info(root: Path) -> None:
    path = root / INFO
    if not path.exists():
        return  # a hand-made folder without dataset.json is version 1
    try:
        fmt = json.loads(path.read_text(encoding="utf-8")).get("format")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
        raise InputError(f'{path}: expected a JSON object {{"format": "{FORMAT}"}} ({err})') from None
    family, _, major = FORMAT.rpartition("/")
    if not (isinstance(fmt, str) and fmt.startswith(family + "/")):
        raise InputError(f"{path}: format {fmt!r} is not a fulldit dataset ({FORMAT})")
    if fmt.rpartition("/")[2].split(".")[0] != major:
        raise InputError(f"{path}: format {fmt!r} is not supported by this fulldit, which reads {FORMAT}")


def _is_count(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 1


def _is_positive(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def _is_path(x: object) -> bool:
    return isinstance(x, str) and x.strip() != ""


def _entry_problem(entry: object) -> str | None:
    """What is structurally wrong with a manifest entry, or None (the files are checked when loading)."""
    if not isinstance(entry, dict):
        return f"expected a JSON object, got {type(entry).__name__}"
    for key in ("video", "caption"):
        if key not in entry:
            return f'missing required key "{key}"'
    checks = [
        ("video", _is_path, "a non-empty path"),
        ("caption", lambda x: isinstance(x, str), "a string"),
        ("id", _is_path, "a non-empty string"),
        ("camera", lambda x: x is None or _is_path(x), "a path or null"),
        ("depth", lambda x: x is None or _is_path(x), "a path or null"),
        ("references", lambda x: isinstance(x, list) and all(map(_is_path, x)), "a list of paths"),
        ("frames", _is_count, "a positive integer"),
        ("height", _is_count, "a positive integer"),
        ("width", _is_count, "a positive integer"),
        ("fps", _is_positive, "a positive number"),
        ("depth_scale", _is_positive, "a positive number"),
        ("depth_kind", lambda x: x in ("metric", "relative"), '"metric" or "relative"'),
        ("meta", lambda x: isinstance(x, dict), "a JSON object"),
    ]
    for key, ok, what in checks:
        if key in entry and not ok(entry[key]):
            return f'"{key}" must be {what}, got {json.dumps(entry[key])[:60]}'
    return None


def _clip_id(entry: dict) -> str:
    return entry.get("id") or entry["video"]


def _where(root: Path, line: int, entry: object) -> str:
    clip_id = entry.get("id") if isinstance(entry, dict) else None
    return f"{root / MANIFEST}:{line}" + (f" (clip {clip_id})" if isinstance(clip_id, str) else "")


def read_manifest(root: str | os.PathLike, problems: list[str] | None = None) -> list[tuple[int, dict]]:
    """The entries of ``root/manifest.jsonl`` as (line number, entry), blank lines skipped.

    A line that is not a JSON object, lacks ``video`` or ``caption`` or has a key of the wrong type raises
    InputError naming ``manifest.jsonl:LINE``; when a `problems` list is given, the report goes there instead and
    the line is skipped. A missing manifest or an unsupported ``dataset.json`` format always raises.
    """
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise InputError(f"{path}: no such file (a {FORMAT} folder holds {MANIFEST})")
    _check_info(root)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror or err})") from None
    entries = []
    for line, raw in enumerate(text.split("\n"), start=1):  # not splitlines: U+2028 may sit inside a caption
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
        except json.JSONDecodeError as err:
            problem = f"{path}:{line}: invalid JSON ({err.msg} at column {err.colno})"
        else:
            reason = _entry_problem(entry)
            problem = f"{_where(root, line, entry)}: {reason}" if reason else None
        if problem is None:
            entries.append((line, entry))
        elif problems is None:
            raise InputError(problem)
        else:
            problems.append(problem)
    return entries


def _video_info(path: Path) -> tuple[int, int, int]:
    """(frames, coded height, coded width) from the container, decoding nothing (packets counted if needed)."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: no video stream")
            stream = container.streams.video[0]
            count = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
            return count, stream.codec_context.height, stream.codec_context.width
    except (av.error.FFmpegError, OSError) as err:
        raise InputError(f"{path}: cannot open video ({' '.join(str(err).split())})") from err


def _true_size(entry: dict, decoded: tuple[int, int]) -> tuple[int, int]:
    """The video's size: the manifest's, allowing the one padded row/column of an odd size in the file."""
    h, w = entry.get("height", decoded[0]), entry.get("width", decoded[1])
    if decoded[0] not in (h, h + h % 2) or decoded[1] not in (w, w + w % 2):
        raise InputError(f"{entry['video']}: video is {decoded[0]}x{decoded[1]}, manifest says {h}x{w}")
    return h, w


def _read_camera(root: Path, entry: dict, total: int) -> CameraPath | None:
    rel = entry.get("camera")
    if not rel:
        return None
    cam = load_camera(root / rel)
    if cam.num_frames != total:
        raise InputError(f"{rel} has {cam.num_frames} poses, video has {total} frames")
    return cam


def _depth_source(root: Path, entry: dict, total: int) -> list[Path] | np.ndarray | None:
    """The depth PNG frames (checked for count only), or the whole array of an array file, or None."""
    rel = entry.get("depth")
    if not rel:
        return None
    path = root / rel
    if path.suffix.lower() in VIDEO_SUFFIXES:
        raise InputError(f"{rel}: depth must be a folder of 16-bit PNGs or a .npz/.npy array, not a video")
    if path.is_dir():
        files = depth_frame_files(path)
    else:
        files = read_depth(path).numpy()  # raises InputError for a missing or bad file
    if len(files) != total:
        raise InputError(f"{rel} has {len(files)} depth frames, video has {total} frames")
    return files


def _pick_depth(
    source: list[Path] | np.ndarray, entry: dict, indices: np.ndarray, size: tuple[int, int]
) -> torch.Tensor:
    """Frames `indices` of the depth in metres, checked to be `size` (the video's)."""

    def check(shape: tuple[int, ...], name: str) -> None:
        if shape[-2:] != tuple(size):
            raise InputError(f"{name}: depth is {shape[-2]}x{shape[-1]}, video is {size[0]}x{size[1]}")

    if isinstance(source, list):
        stored, scale = [], entry.get("depth_scale", DEPTH_SCALE)
        for i in indices:
            stored.append(read_depth_frame(source[i]))
            check(stored[-1].shape, str(source[i]))
        stored = np.stack(stored)
    else:
        stored, scale = source[indices], entry.get("depth_scale", 1.0)
        check(stored.shape, entry["depth"])
    return torch.from_numpy((stored.astype(np.float64) * scale).astype(np.float32))


def _relative(message: str, root: Path) -> str:
    """Strip the dataset folder from the front of a reader's message: the report already names it."""
    prefix = f"{root}{os.sep}"
    return message[len(prefix) :] if message.startswith(prefix) else message


def _checked(root: Path, line: int, entry: dict, work: Any) -> Any:
    """Run `work()`, turning any decode problem into an InputError that names the manifest line."""
    try:
        return work()
    except _DECODE_ERRORS as err:
        reason = str(err) if isinstance(err, InputError) else f"{type(err).__name__}: {err}"
        raise InputError(f"{_where(root, line, entry)}: {_relative(' '.join(reason.split()), root)}") from err


def load_entry(
    root: str | os.PathLike,
    line: int,
    entry: dict,
    frames: int | None = None,
    size: tuple[int, int] | None = None,
    stride: int = 1,
    start: int | np.random.Generator = 0,
) -> Clip:
    """Load one manifest entry as a `Clip` (see `ClipFolder`); `start` is the first frame or a generator to draw it.

    Raises InputError ``manifest.jsonl:LINE (clip ID): problem`` for any broken file.
    """
    root = Path(root)
    return _checked(root, line, entry, lambda: _load(root, line, entry, frames, size, stride, start))


def _load(
    root: Path, line: int, entry: dict, frames: int | None, size: tuple[int, int] | None, stride: int, start: Any
) -> Clip:
    rel = entry["video"]
    path = root / rel
    if not path.is_file():
        raise InputError(f"{rel}: no such file")
    total = entry["frames"] if "frames" in entry else _video_info(path)[0]
    # 1. frame indices
    if frames is None:
        indices = np.arange(0, total, stride)
    else:
        need = (frames - 1) * stride + 1
        if total < need:
            raise InputError(f"video has {total} frames, need {need} ({frames} frames at stride {stride})")
        if isinstance(start, np.random.Generator):
            start = int(start.integers(0, total - need + 1))
        if not 0 <= start <= total - need:
            raise InputError(f"start frame {start} leaves fewer than {need} of the video's {total} frames")
        indices = start + stride * np.arange(frames)
    # 2. cheap checks first (pose and depth counts), then decode
    camera = _read_camera(root, entry, total)
    depth_src = _depth_source(root, entry, total)
    video = read_video(path, max_frames=int(indices[-1]) + 1)
    if len(video) <= indices[-1] or (frames is None and len(video) != total):
        raise InputError(f"{rel}: video decodes to {len(video)} frames, expected {total}")
    height, width = _true_size(entry, tuple(video.shape[-2:]))
    video = video[torch.from_numpy(indices), :, :height, :width]
    depth = None if depth_src is None else _pick_depth(depth_src, entry, indices, (height, width))
    references = [read_image(root / r) for r in entry.get("references", [])]
    camera = None if camera is None else camera.subsample(indices)
    # 3. one resize + centre crop for everything; intrinsics follow the video's geometry
    if size is not None:
        video, scale, top_left = resize_center_crop(video, size)
        depth = None if depth is None else resize_depth(depth, size)
        references = [resize_center_crop(r, size)[0] for r in references]
        if camera is not None:
            camera = camera.resized_cropped((height, width), scale, top_left, size)
    fps = entry.get("fps")
    meta = dict(entry.get("meta", {}))
    meta[RESERVED_META] = {
        "root": str(root),
        "id": _clip_id(entry),
        "line": line,
        "frames": indices.tolist(),
        "fps": None if fps is None else fps / stride,
        "depth_kind": entry.get("depth_kind", "metric"),  # relative pseudo-depth is never reprojected
    }
    clip = Clip(video, depth, camera, references, entry["caption"], meta)
    clip.check(_clip_id(entry))
    return clip


def _probe(root: Path, entry: dict) -> None:
    """The cheap checks of `validate`: files exist, counts and sizes agree; decodes headers, not frames."""
    rel = entry["video"]
    path = root / rel
    if not path.is_file():
        raise InputError(f"{rel}: no such file")
    count, coded_h, coded_w = _video_info(path)
    total = entry.get("frames", count)
    if count != total:
        raise InputError(f"{rel}: video has {count} frames, manifest says {total}")
    height, width = _true_size(entry, (coded_h, coded_w))
    _read_camera(root, entry, total)
    depth_src = _depth_source(root, entry, total)
    if depth_src is not None:
        _pick_depth(depth_src, entry, np.zeros(1, dtype=np.int64), (height, width))
    for ref in entry.get("references", []):
        read_image(root / ref)


def validate(root: str | os.PathLike, full: bool = False) -> list[str]:
    """One-line reports of every broken line and entry of the dataset at `root` ([] when all are fine).

    Checks file existence, frame counts and sizes (from container headers), pose counts, depth frame counts and
    the first depth frame's size, references, and duplicate ids; `full=True` also decodes every video and depth
    frame as the loader would.
    """
    root = Path(root)
    problems: list[str] = []
    try:
        entries = read_manifest(root, problems)
    except InputError as err:
        return [str(err)]
    if not entries and not problems:
        problems.append(f"{root / MANIFEST}: no clips")
    first: dict[str, int] = {}
    for line, entry in entries:
        clip_id = _clip_id(entry)
        if clip_id in first:
            problems.append(f"{_where(root, line, entry)}: duplicate id (first on line {first[clip_id]})")
        first.setdefault(clip_id, line)
        try:
            if full:
                load_entry(root, line, entry)
            else:
                _checked(root, line, entry, lambda entry=entry: _probe(root, entry))
        except InputError as err:
            problems.append(str(err))
    line_of = re.compile(re.escape(MANIFEST) + r":(\d+)")
    return sorted(problems, key=lambda p: int(m.group(1)) if (m := line_of.search(p)) else 0)


class ClipFolder(Dataset):
    """A `fulldit-dataset/1` folder as a map-style dataset of `Clip`s (format: see the module docstring).

    Args:
        root: the dataset folder (holding ``manifest.jsonl``).
        frames: frames per clip (None: all of them, every `stride`-th).
        size: (height, width) to resize-to-cover and centre-crop to (None: the stored size).
        stride: take every `stride`-th frame.
        random_start: start at a random frame drawn from (`seed`, index), so the same index gives the same sample;
            change `.seed` between epochs for fresh starts.
        on_error: "skip" reports a broken entry once (in `.bad` and on stderr) and returns the next loadable
            clip instead; "raise" raises its InputError. With DataLoader workers, each worker has its own `.bad`.
        seed: see `random_start`.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        frames: int | None = None,
        size: tuple[int, int] | None = None,
        stride: int = 1,
        random_start: bool = False,
        on_error: str = "skip",
        seed: int = 0,
    ) -> None:
        if on_error not in ("skip", "raise"):
            raise ValueError(f'on_error must be "skip" or "raise", got {on_error!r}')
        if frames is not None and not _is_count(frames):
            raise ValueError(f"frames must be a positive integer or None, got {frames!r}")
        if not _is_count(stride):
            raise ValueError(f"stride must be a positive integer, got {stride!r}")
        if size is not None and not (len(size) == 2 and all(map(_is_count, size))):
            raise ValueError(f"size must be (height, width) of positive integers, got {size!r}")
        if not (isinstance(seed, int) and seed >= 0):
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.root = Path(root)
        self.frames, self.stride, self.random_start, self.on_error = frames, stride, random_start, on_error
        self.seed = seed  # change it between epochs for fresh random starts
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.bad: list[str] = []
        self._broken: set[int] = set()
        problems: list[str] | None = [] if on_error == "skip" else None
        self.entries = read_manifest(self.root, problems)
        for problem in problems or []:
            self._report(problem)
        if not self.entries:
            raise InputError(f"{self.root / MANIFEST}: no usable clips" + (f" ({self.bad[0]})" if self.bad else ""))

    def _report(self, problem: str) -> None:
        if problem not in self.bad:
            self.bad.append(problem)
            print(problem, file=sys.stderr, flush=True)

    def __len__(self) -> int:
        return len(self.entries)

    def load(self, j: int, index: int | None = None) -> Clip:
        """Load entry `j` (raising InputError if broken); the random start is drawn for `index` (default `j`)."""
        line, entry = self.entries[j]
        start = np.random.default_rng([self.seed, j if index is None else index]) if self.random_start else 0
        return load_entry(self.root, line, entry, self.frames, self.size, self.stride, start)

    def __getitem__(self, i: int) -> Clip:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} clips")
        return self.get(i % n)

    def get(self, i: int, index: int | None = None) -> Clip:
        """Entry i, or the next loadable one when it is broken (on_error="skip"); random start drawn for `index`."""
        n = len(self)
        for j in [(i + k) % n for k in range(n)]:
            if j in self._broken:
                continue
            try:
                return self.load(j, i if index is None else index)
            except InputError as err:
                if self.on_error == "raise":
                    raise
                self._broken.add(j)
                self._report(str(err))
        raise InputError(f"{self.root}: none of the {n} clips in {MANIFEST} can be loaded; first: {self.bad[0]}")
