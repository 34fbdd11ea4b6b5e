"""Reading and writing videos, images and depth; resizing to the model's size; the preview sheet.

Conventions used across the project:

* a video is a float32 tensor ``(F, 3, H, W)`` in [0, 1];
* an image is a float32 tensor ``(3, H, W)`` in [0, 1];
* depth is a float32 tensor ``(F, H, W)``, > 0 where valid (0 marks "no measurement").

Everything a user hands us is read here, so every read function turns a library exception into a one-line
`InputError` that names the file: the CLI shows that line and exits 2 instead of printing a traceback.
Every write goes through `atomic_path`, so an interrupted run never leaves a half-written file behind.
"""

from __future__ import annotations

import math
import os
import re
import zipfile
from fractions import Fraction
from pathlib import Path
from typing import TypeAlias

import av
import cv2
import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont
import PIL.ImageOps
import torch
import torch.nn.functional as F

from fulldit.atomic import atomic_path
from fulldit.errors import InputError

PathLike: TypeAlias = "str | os.PathLike[str]"

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".webm", ".gif", ".mov"})
"""Suffixes that `read_depth` decodes as a video (luminance = relative inverse depth)."""

PREVIEW_GAP = 4
"""Pixels of background between tiles of the preview sheet (and around its border)."""

_BACKGROUND = (24, 24, 24)
_FRAME_LABEL = (235, 235, 235)
_CONDITION_LABEL = (255, 210, 80)  # a different colour so conditions never read as video frames
_GREY_TOLERANCE = 0.08  # mean per-pixel channel spread above which a depth video is "colourised"


def error_reason(err: BaseException) -> str:
    """The library's own explanation of `err` on one line, without the path it often repeats."""
    if isinstance(err, PIL.UnidentifiedImageError):
        return "not a recognised image format"
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return " ".join(str(text).split())


def _existing_file(path: PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    return path


# ----------------------------------------------------------------------------------------------------------- reading


def read_video(path: PathLike, max_frames: int | None = None) -> torch.Tensor:
    """Decode the first video stream of `path` to ``(F, 3, H, W)`` RGB in [0, 1].

    `max_frames` stops decoding early, so a long clip does not have to fit in memory when only its start is used.
    Frames whose size changes mid-stream (rare, but legal) are rescaled to the first frame's size.
    """
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    path = _existing_file(path)
    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                if frames:
                    height, width = frames[0].shape[:2]
                    frames.append(frame.to_ndarray(format="rgb24", width=width, height=height))
                else:
                    frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except (av.error.FFmpegError, OSError, ValueError) as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"{path}: cannot decode video ({error_reason(err)})") from err
    if not frames:
        raise InputError(f"{path}: video has no frames")
    video = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)
    return video.float().div_(255.0).contiguous()


def _pil_to_rgb_array(img: PIL.Image.Image) -> np.ndarray:
    """Any PIL mode -> ``(H, W, 3)`` float32 in [0, 1]; transparency is composited on white (how viewers show it)."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        gray = np.asarray(img).astype(np.float32)
        gray = np.clip(gray / 65535.0, 0.0, 1.0)  # 16-bit PNGs open as I;16 or I: scale the full 16-bit range
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode == "F":
        gray = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = PIL.Image.alpha_composite(white, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def read_image(path: PathLike) -> torch.Tensor:
    """Load an image as ``(3, H, W)`` RGB in [0, 1], honouring the EXIF orientation that phones write."""
    path = _existing_file(path)
    try:
        with PIL.Image.open(path) as img:
            img.load()
            img = PIL.ImageOps.exif_transpose(img)
            array = _pil_to_rgb_array(img)
    except (PIL.UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise InputError(f"{path}: cannot read image ({error_reason(err)})") from err
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()


def _natural_key(name: str) -> list[int | str]:
    """Sort ``frame_2.png`` before ``frame_10.png`` (same order as plain sorting for zero-padded names)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def depth_frame_files(path: Path) -> list[Path]:
    """The PNG frames of a depth folder in natural name order (frame_2 before frame_10); hidden files skipped."""
    files = sorted(
        (f for f in path.iterdir() if f.suffix.lower() == ".png" and not f.name.startswith(".")),
        key=lambda f: _natural_key(f.name),
    )
    if not files:
        raise InputError(f"{path}: directory has no PNG depth frames")
    return files


def read_depth_frame(file: Path) -> np.ndarray:
    """One single-channel 8/16-bit PNG depth frame as stored (uint16 millimetres stay millimetres), (H, W)."""
    try:
        with PIL.Image.open(file) as img:
            img.load()
            array = np.asarray(img)
    except (PIL.UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise InputError(f"{file}: cannot read depth frame ({error_reason(err)})") from err
    if array.ndim == 3:  # grey saved as RGB(A) is accepted; colourised depth is not
        if not (np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 0], array[..., 2])):
            raise InputError(f"{file}: depth frame is colour ({img.mode}); expected single-channel 8/16-bit PNG")
        array = array[..., 0]
    return array


def _read_depth_png_dir(path: Path) -> np.ndarray:
    files = depth_frame_files(path)
    frames: list[np.ndarray] = []
    for file in files:
        array = read_depth_frame(file)
        if frames and array.shape != frames[0].shape:
            raise InputError(f"{file}: frame size {array.shape} differs from {files[0].name} {frames[0].shape}")
        frames.append(array.astype(np.float32))
    return np.stack(frames)


def _read_depth_array(path: Path) -> np.ndarray:
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as data:
            keys = list(data.keys())
            if "depth" in keys:
                return data["depth"]
            if len(keys) == 1:
                return data[keys[0]]
            raise InputError(f"{path}: expected an array named 'depth' or exactly one array, found {keys or 'none'}")
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"{path}: cannot read depth array ({error_reason(err)})") from err


def _read_depth_video(path: Path) -> np.ndarray:
    video = read_video(path)
    spread = (video.amax(dim=1) - video.amin(dim=1)).mean().item()
    if spread > _GREY_TOLERANCE:
        raise InputError(f"{path}: depth video is in colour (mean channel spread {spread:.2f}); export it as greyscale")
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)  # BT.601 luma, the convention of the decoder
    return (video * weights).sum(dim=1).clamp_(0.0, 1.0).numpy()


def depth_is_inverse(path: PathLike) -> bool:
    """True when `read_depth(path)` returns relative inverse depth (bright = near) rather than depth."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def read_depth(path: PathLike) -> torch.Tensor:
    """Load per-frame depth as ``(F, H, W)`` float32.

    Accepted sources:

    * ``.npy`` / ``.npz`` (the array named ``depth``, or the only array) of shape ``(F, H, W)`` or ``(F, 1, H, W)``;
    * a directory of single-channel 16-bit (or 8-bit) PNG frames, in natural name order, values kept as stored;
    * a video (``.mp4 .avi .mkv .webm .gif .mov``) of a greyscale visualisation. Its luminance in [0, 1] is
      returned as **relative inverse depth** (bright = near, black = far/invalid), which is what Depth-Anything and
      similar tools render; it is *not* depth, so use `depth_is_inverse` to tell callers which one they got.

    Values must be finite and non-negative; 0 means "no measurement".
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    suffix = path.suffix.lower()
    if path.is_dir():
        array = _read_depth_png_dir(path)
    elif suffix in (".npy", ".npz"):
        array = _read_depth_array(path)
    elif suffix in VIDEO_SUFFIXES:
        array = _read_depth_video(path)
    else:
        raise InputError(
            f"{path}: unsupported depth format '{suffix}' (use .npy, .npz, a folder of PNG frames, or a video)"
        )

    if array.dtype.kind not in "iuf":
        raise InputError(f"{path}: depth must be numeric, got dtype {array.dtype}")
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3:
        raise InputError(f"{path}: depth must have shape (F, H, W) or (F, 1, H, W), got {tuple(array.shape)}")
    if array.size == 0:
        raise InputError(f"{path}: depth is empty, shape {tuple(array.shape)}")
    depth = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    bad = ~torch.isfinite(depth).flatten(1).all(dim=1)
    if bad.any():
        raise InputError(f"{path}: depth has non-finite values (first in frame {int(bad.nonzero()[0])})")
    negative = (depth < 0).flatten(1).any(dim=1)
    if negative.any():
        raise InputError(f"{path}: depth has negative values (first in frame {int(negative.nonzero()[0])})")
    return depth


# ---------------------------------------------------------------------------------------------------------- resizing


def _cover_geometry(src: tuple[int, int], size: tuple[int, int]) -> tuple[float, tuple[int, int], tuple[int, int]]:
    """Scale, resized size and crop offset that make `src` cover `size` and centre-crop it."""
    (src_h, src_w), (h, w) = src, size
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {size}")
    scale = max(h / src_h, w / src_w)
    new_h, new_w = max(h, round(src_h * scale)), max(w, round(src_w * scale))
    return scale, (new_h, new_w), ((new_h - h) // 2, (new_w - w) // 2)


def resize_center_crop(video: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, float, tuple[int, int]]:
    """Scale ``(F, C, H, W)`` or ``(C, H, W)`` so it covers ``size = (h, w)``, then centre-crop to exactly that.

    Downscaling is antialiased (bilinear with a widened kernel), so fine texture does not alias into moire.
    Returns ``(out, scale, (top, left))``: a source point ``(x, y)`` (pixel-edge coordinates) lands at
    ``(x * scale - left, y * scale - top)``, so intrinsics become ``f' = f * scale``, ``c' = c * scale - offset``.
    The scale is exact on the axis that fits; on the cropped axis rounding to whole pixels shifts points by at
    most half a pixel.
    """
    if video.ndim not in (3, 4):
        raise ValueError(f"expected (F, C, H, W) or (C, H, W), got shape {tuple(video.shape)}")
    batch = video if video.ndim == 4 else video.unsqueeze(0)
    if not batch.is_floating_point():
        batch = batch.float()
    scale, (new_h, new_w), (top, left) = _cover_geometry(tuple(batch.shape[-2:]), size)
    if (new_h, new_w) != tuple(batch.shape[-2:]):
        batch = F.interpolate(batch, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    out = batch[..., top : top + size[0], left : left + size[1]].contiguous()
    return (out if video.ndim == 4 else out[0]), scale, (top, left)


def resize_depth(depth: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``(F, H, W)`` (or ``(H, W)``) depth with the same geometry as `resize_center_crop`.

    Uses ``nearest-exact``: every output value is a value that was measured. Bilinear or area averaging would
    blend foreground and background at object edges into "flying pixels" at depths where nothing exists, and
    would smear the 0 of invalid pixels into valid ones; nearest keeps edges sharp and the invalid mask binary.
    """
    if depth.ndim not in (2, 3):
        raise ValueError(f"expected (F, H, W) or (H, W), got shape {tuple(depth.shape)}")
    batch = (depth if depth.ndim == 3 else depth.unsqueeze(0)).unsqueeze(1).float()
    _, (new_h, new_w), (top, left) = _cover_geometry(tuple(batch.shape[-2:]), size)
    if (new_h, new_w) != tuple(batch.shape[-2:]):
        batch = F.interpolate(batch, size=(new_h, new_w), mode="nearest-exact")
    out = batch[:, 0, top : top + size[0], left : left + size[1]].contiguous()
    return out if depth.ndim == 3 else out[0]


# ----------------------------------------------------------------------------------------------------------- writing


def _to_uint8_hwc(image: torch.Tensor, what: str) -> np.ndarray:
    """``(C, H, W)`` float in [0, 1] -> ``(H, W, C)`` uint8; NaN/inf mean an upstream bug, so refuse them."""
    if not torch.isfinite(image).all():
        raise ValueError(f"{what} has non-finite values")
    array = image.detach().float().clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8).permute(1, 2, 0)
    return array.cpu().numpy()


def write_video(path: PathLike, video: torch.Tensor, fps: float = 16.0) -> None:
    """Write ``(F, 3, H, W)`` in [0, 1] as H.264 (libx264, yuv420p, crf 17) so every player opens it.

    4:2:0 chroma needs even sizes, so an odd height/width is padded by one replicated edge row/column: the file
    (and `read_video` of it) is then up to one pixel larger than `video`. Frames are converted as they are
    encoded; a bad one (NaN) aborts the write and, thanks to `atomic_path`, leaves no file behind.
    """
    if video.ndim != 4 or video.shape[1] != 3 or video.shape[0] < 1:
        raise ValueError(f"expected a video of shape (F, 3, H, W) with F >= 1, got {tuple(video.shape)}")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be positive, got {fps}")
    height, width = video.shape[-2:]
    pad_h, pad_w = height % 2, width % 2
    rate = Fraction(fps).limit_denominator(1001)
    with atomic_path(path) as tmp, av.open(str(tmp), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = width + pad_w, height + pad_h
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "17", "preset": "medium"}
        for index, frame in enumerate(video):
            array = _to_uint8_hwc(frame, f"video frame {index}")
            if pad_h or pad_w:
                array = np.pad(array, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
            av_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            av_frame.pts = index
            av_frame.time_base = 1 / rate
            container.mux(stream.encode(av_frame))
        container.mux(stream.encode(None))


def write_image(path: PathLike, image: torch.Tensor) -> None:
    """Write ``(3, H, W)`` (or ``(1, H, W)`` grey) in [0, 1] as an 8-bit PNG, atomically."""
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected an image of shape (3, H, W) or (1, H, W), got {tuple(image.shape)}")
    array = _to_uint8_hwc(image, "image")
    pil = PIL.Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
    with atomic_path(path) as tmp:
        pil.save(tmp, format="PNG")


# ----------------------------------------------------------------------------------------------------------- preview


def depth_to_rgb(depth_frame: torch.Tensor, is_inverse: bool = False) -> torch.Tensor:
    """Colourise one ``(H, W)`` depth frame as ``(3, H, W)`` turbo-mapped inverse depth (red = near) for previews.

    Inverse depth spreads near structure over the colour range, as depth visualisations usually do; pass
    ``is_inverse=True`` for data that already is (e.g. from a depth video). The range is the 1st-99th percentile of
    valid pixels of this frame, so one stray near point does not wash the rest out; invalid pixels (<= 0) are black.
    """
    if depth_frame.ndim != 2:
        raise ValueError(f"expected an (H, W) depth frame, got shape {tuple(depth_frame.shape)}")
    depth = depth_frame.detach().float().cpu()
    valid = torch.isfinite(depth) & (depth > 0)
    inverse = torch.zeros_like(depth)
    inverse[valid] = depth[valid] if is_inverse else 1.0 / depth[valid]
    norm = torch.zeros_like(depth)
    if valid.any():
        values = inverse[valid]
        if values.numel() > 1 << 20:  # torch.quantile has an input size limit; a strided sample is plenty
            values = values[:: values.numel() // (1 << 20) + 1]
        low, high = torch.quantile(values, torch.tensor([0.01, 0.99])).tolist()
        norm = ((inverse - low) / max(high - low, 1e-12)).clamp_(0.0, 1.0)
    gray = (norm * 255.0).round().to(torch.uint8).numpy()
    rgb = cv2.cvtColor(cv2.applyColorMap(gray, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)
    rgb[~valid.numpy()] = 0
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0)


def _label_font(tile_width: int) -> tuple[PIL.ImageFont.ImageFont | PIL.ImageFont.FreeTypeFont, int]:
    """PIL's default font, sized to the tiles, and the height of the label strip it needs."""
    size = min(24, max(10, tile_width // 32))
    try:
        font = PIL.ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: the fixed bitmap font
        font = PIL.ImageFont.load_default()
    top, bottom = font.getbbox("Ag|")[1::2]
    return font, int(bottom) + max(2, int(top)) + 2


def _fit(image: torch.Tensor, height: int, width: int, label: str) -> np.ndarray:
    """Scale a condition image to fit ``height x width`` (aspect kept, centred on the background)."""
    if image.ndim == 2:
        image = image.unsqueeze(0)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"condition '{label}' must be a (3, h, w) image, got shape {tuple(image.shape)}")
    image = image.detach().float().cpu().expand(3, -1, -1)
    scale = min(height / image.shape[1], width / image.shape[2])
    h, w = max(1, round(image.shape[1] * scale)), max(1, round(image.shape[2] * scale))
    if (h, w) != tuple(image.shape[1:]):
        image = F.interpolate(image[None], size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0]
    tile = np.empty((height, width, 3), dtype=np.uint8)
    tile[:] = _BACKGROUND
    top, left = (height - h) // 2, (width - w) // 2
    tile[top : top + h, left : left + w] = _to_uint8_hwc(image, f"condition '{label}'")
    return tile


def make_preview(
    video: torch.Tensor,
    conditions: list[tuple[str, torch.Tensor]],
    max_frames: int = 16,
    columns: int = 8,
) -> torch.Tensor:
    """A ``(3, H', W')`` contact sheet to eyeball a result next to what it was conditioned on.

    The frames (an evenly spaced subset, first and last included, when there are more than `max_frames`) fill a
    grid of ``c = min(columns, n)`` columns, each tile labelled with its frame index. The conditions follow
    *below* in the same column grid, labelled in a different colour and scaled to the frame size: below keeps the
    sheet as wide as the grid, whereas a side column would grow taller than a short grid. Every tile is
    ``label_height + H`` by ``W``, with `PREVIEW_GAP` pixels between tiles and around the border, so
    ``W' = c * W + (c + 1) * gap`` and ``H' = rows * (label_height + H) + (rows + 1) * gap``, counting the
    condition rows too.
    """
    if video.ndim != 4 or video.shape[1] != 3 or video.shape[0] < 1:
        raise ValueError(f"expected a video of shape (F, 3, H, W) with F >= 1, got {tuple(video.shape)}")
    if max_frames < 1 or columns < 1:
        raise ValueError(f"max_frames and columns must be >= 1, got {max_frames} and {columns}")
    num, height, width = video.shape[0], video.shape[2], video.shape[3]
    count = min(num, max_frames)
    indices = [math.floor(i * (num - 1) / max(count - 1, 1) + 0.5) for i in range(count)]
    tiles = [(f"frame {i}", _to_uint8_hwc(video[i], f"video frame {i}"), _FRAME_LABEL) for i in indices]
    cols = min(columns, count)
    frame_rows = math.ceil(count / cols)
    tiles += [(label, _fit(image, height, width, label), _CONDITION_LABEL) for label, image in conditions]
    rows = frame_rows + math.ceil(len(conditions) / cols)

    font, label_h = _label_font(width)
    gap, cell_h = PREVIEW_GAP, label_h + height
    sheet = PIL.Image.new("RGB", (cols * width + (cols + 1) * gap, rows * cell_h + (rows + 1) * gap), _BACKGROUND)
    for n, (label, tile, colour) in enumerate(tiles):
        row, col = divmod(n if n < count else n - count + frame_rows * cols, cols)
        x, y = gap + col * (width + gap), gap + row * (cell_h + gap)
        strip = PIL.Image.new("RGB", (width, label_h), _BACKGROUND)  # drawing on a strip clips long labels
        PIL.ImageDraw.Draw(strip).text((2, 1), label, fill=colour, font=font)
        sheet.paste(strip, (x, y))
        sheet.paste(PIL.Image.fromarray(tile), (x, y + label_h))
    return torch.from_numpy(np.asarray(sheet).copy()).permute(2, 0, 1).float().div_(255.0)


def write_preview(
    path: PathLike,
    video: torch.Tensor,
    conditions: list[tuple[str, torch.Tensor]],
    **kw: int,
) -> None:
    """Write `make_preview` of `video` and `conditions` as a PNG, atomically; `kw` goes to `make_preview`."""
    write_image(path, make_preview(video, conditions, **kw))
