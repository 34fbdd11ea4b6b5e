"""Video, image and depth IO: round trips, resizing geometry, atomic writes, one-line errors naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from fulldit.errors import InputError
from fulldit.video_io import (
    depth_is_inverse,
    make_preview,
    read_depth,
    read_image,
    read_video,
    resize_center_crop,
    resize_depth,
    write_image,
    write_preview,
    write_video,
)


def smooth_clip(frames: int = 8, h: int = 32, w: int = 48) -> torch.Tensor:
    """Gradients that move over time: what H.264 keeps well (noise it would not)."""
    t = torch.arange(frames, dtype=torch.float32)[:, None, None]
    y = torch.linspace(0, 1, h)[None, :, None]
    x = torch.linspace(0, 1, w)[None, None, :]
    r = (0.5 + 0.4 * torch.sin(6 * x + 0.3 * t)).expand(frames, h, w)
    g = (0.5 + 0.4 * torch.cos(4 * y - 0.2 * t)).expand(frames, h, w)
    b = (0.3 + 0.4 * x * y).expand(frames, h, w)
    return torch.stack([r, g, b], 1)


def test_video_round_trip(tmp_path: Path) -> None:
    clip = smooth_clip()
    write_video(tmp_path / "a.mp4", clip, fps=8)
    back = read_video(tmp_path / "a.mp4")
    assert back.shape == clip.shape
    assert (back - clip).abs().mean() < 0.03
    assert read_video(tmp_path / "a.mp4", max_frames=3).shape[0] == 3


def test_odd_sizes_are_padded_by_one(tmp_path: Path) -> None:
    write_video(tmp_path / "odd.mp4", smooth_clip(4, 33, 47), fps=8)
    assert read_video(tmp_path / "odd.mp4").shape == (4, 3, 34, 48)


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    bad = smooth_clip(4)
    bad[2, 0, 5, 5] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        write_video(tmp_path / "bad.mp4", bad)
    with pytest.raises(ValueError):
        write_image(tmp_path / "bad.png", torch.rand(4, 8, 8))
    assert list(tmp_path.iterdir()) == []


def test_read_image_modes(tmp_path: Path) -> None:
    rgba = np.zeros((6, 5, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 0  # fully transparent red -> white
    PIL.Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    PIL.Image.fromarray(np.full((6, 5), 128, np.uint8), "L").save(tmp_path / "l.png")
    PIL.Image.fromarray(np.full((6, 5), 65535, np.uint16)).save(tmp_path / "i16.png")
    for name, value in [("rgba.png", 1.0), ("l.png", 128 / 255), ("i16.png", 1.0)]:
        img = read_image(tmp_path / name)
        assert img.shape == (3, 6, 5) and torch.allclose(img, torch.full_like(img, value), atol=1e-3), name


def test_read_depth_formats(tmp_path: Path) -> None:
    depth = np.random.default_rng(0).uniform(0.5, 9.0, (3, 5, 7)).astype(np.float32)
    np.save(tmp_path / "d.npy", depth)
    np.savez(tmp_path / "keyed.npz", depth=depth, other=np.zeros(2))
    np.savez(tmp_path / "single.npz", depth[:, None])
    for name in ["d.npy", "keyed.npz", "single.npz"]:
        assert torch.equal(read_depth(tmp_path / name), torch.from_numpy(depth)), name
    folder = tmp_path / "pngs"
    folder.mkdir()
    mm = (depth * 1000).astype(np.uint16)
    for i, frame in enumerate(mm):
        PIL.Image.fromarray(frame).save(folder / f"{i:05d}.png")
    assert torch.equal(read_depth(folder), torch.from_numpy(mm.astype(np.float32)))  # values exactly as stored
    grey = smooth_clip(3, 16, 16)[:, :1].expand(3, 3, 16, 16).contiguous()
    write_video(tmp_path / "disp.mp4", grey, fps=8)
    disp = read_depth(tmp_path / "disp.mp4")
    assert disp.shape == (3, 16, 16) and depth_is_inverse(tmp_path / "disp.mp4")
    assert not depth_is_inverse(tmp_path / "d.npy")


def test_bad_depth_names_the_file(tmp_path: Path) -> None:
    nan = np.ones((2, 4, 4), np.float32)
    nan[1, 2, 2] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "neg.npy", -np.ones((2, 4, 4), np.float32))
    np.save(tmp_path / "flat.npy", np.ones(5, np.float32))
    (tmp_path / "d.xyz").write_text("?")
    for name in ["nan.npy", "neg.npy", "flat.npy", "d.xyz", "missing.npy"]:
        with pytest.raises(InputError, match=name.replace(".", r"\.")):
            read_depth(tmp_path / name)


def test_unreadable_files_name_the_path(tmp_path: Path) -> None:
    (tmp_path / "junk.mp4").write_bytes(b"\x00\x01" * 100)
    (tmp_path / "junk.png").write_bytes(b"not an image")
    for fn, name in [
        (read_video, "junk.mp4"),
        (read_image, "junk.png"),
        (read_video, "nope.mp4"),
        (read_image, "nope.png"),
    ]:
        with pytest.raises(InputError, match=name.replace(".", r"\.")) as err:
            fn(tmp_path / name)
        assert "\n" not in str(err.value)


def test_resize_center_crop_geometry() -> None:
    """A dot at a known source pixel lands where (x * scale - left, y * scale - top) says."""
    src = torch.zeros(1, 3, 40, 80)
    src[0, :, 10:12, 50:52] = 1.0  # centre at (x, y) = (51, 11) in pixel-edge coordinates
    out, scale, (top, left) = resize_center_crop(src, (32, 32))
    assert out.shape == (1, 3, 32, 32) and scale == pytest.approx(0.8) and top == 0 and left == 16
    ys, xs = torch.nonzero(out[0, 0] > 0.2, as_tuple=True)
    weights = out[0, 0][ys, xs]
    cx = float((xs.float() + 0.5).mul(weights).sum() / weights.sum())
    cy = float((ys.float() + 0.5).mul(weights).sum() / weights.sum())
    assert abs(cx - (51 * scale - left)) < 1.0 and abs(cy - (11 * scale - top)) < 1.0
    depth = torch.arange(40 * 80, dtype=torch.float32).reshape(1, 40, 80) + 1
    small = resize_depth(depth, (32, 32))
    assert small.shape == (1, 32, 32) and set(small.unique().tolist()) <= set(depth.unique().tolist())  # no new values


def test_preview_geometry(tmp_path: Path) -> None:
    video = smooth_clip(10, 16, 16)
    sheet = make_preview(video, [("reference", torch.rand(3, 30, 20)), ("depth", torch.rand(3, 16, 16))], columns=4)
    assert sheet.shape[0] == 3 and sheet.shape[2] == 4 * 16 + 5 * 4  # 4 columns of 16 px with 4-px gaps
    no_cond = make_preview(video, [], columns=4)
    assert sheet.shape[1] > no_cond.shape[1]  # the condition row adds height
    write_preview(tmp_path / "p.png", video, [])
    assert PIL.Image.open(tmp_path / "p.png").size[0] > 0
