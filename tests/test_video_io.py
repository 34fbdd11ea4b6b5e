"""Tests for fulldit.video_io: round trips, atomic writes, error messages, resize geometry, preview layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from fulldit.errors import InputError
from fulldit.video_io import (
    PREVIEW_GAP,
    _label_font,
    depth_frame_files,
    depth_is_inverse,
    depth_to_rgb,
    make_preview,
    read_depth,
    read_depth_frame,
    read_image,
    read_video,
    resize_center_crop,
    resize_depth,
    write_image,
    write_preview,
    write_video,
)


def smooth_clip(frames: int = 16, height: int = 32, width: int = 48) -> torch.Tensor:
    """Gradients drifting over time: what a codec handles well, unlike noise."""
    t = torch.linspace(0, 1, frames).view(frames, 1, 1)
    y = torch.linspace(0, 1, height).view(1, height, 1)
    x = torch.linspace(0, 1, width).view(1, 1, width)
    red = 0.5 + 0.4 * torch.sin(6 * x + 3 * t)
    green = 0.5 + 0.4 * torch.cos(5 * y - 2 * t)
    blue = (0.2 + 0.3 * (x + y)).expand(frames, height, width)
    return torch.stack([red.expand_as(blue), green.expand_as(blue), blue], dim=1).contiguous()


def only_file(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --------------------------------------------------------------------------------------------------------- video


def test_video_round_trip(tmp_path: Path) -> None:
    video = smooth_clip()
    write_video(tmp_path / "clip.mp4", video, fps=16.0)
    back = read_video(tmp_path / "clip.mp4")
    assert back.shape == video.shape
    assert back.dtype == torch.float32
    assert 0.0 <= back.min() and back.max() <= 1.0
    assert (back - video).abs().mean() < 0.03
    assert only_file(tmp_path) == ["clip.mp4"]


def test_video_max_frames(tmp_path: Path) -> None:
    write_video(tmp_path / "clip.mp4", smooth_clip())
    assert read_video(tmp_path / "clip.mp4", max_frames=5).shape == (5, 3, 32, 48)


def test_odd_size_padded_by_edge_replication(tmp_path: Path) -> None:
    video = smooth_clip(4, 33, 47)
    write_video(tmp_path / "odd.mp4", video)
    back = read_video(tmp_path / "odd.mp4")
    assert back.shape == (4, 3, 34, 48)
    assert (back[..., :33, :47] - video).abs().mean() < 0.03
    # the padding repeats the last row/column, it is not black
    assert (back[..., 33, :47] - video[..., 32, :]).abs().mean() < 0.05
    assert (back[..., :33, 47] - video[..., :, 46]).abs().mean() < 0.05


@pytest.mark.parametrize("where", ["first", "last"])
def test_write_video_failure_leaves_nothing(tmp_path: Path, where: str) -> None:
    video = smooth_clip(8)
    video[0 if where == "first" else -1, 1, 3, 4] = float("nan")  # "last": fails after 7 frames were encoded
    with pytest.raises(ValueError, match="non-finite"):
        write_video(tmp_path / "out.mp4", video)
    assert only_file(tmp_path) == []


def test_write_video_wrong_shape_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shape"):
        write_video(tmp_path / "out.mp4", torch.rand(4, 32, 48))
    assert only_file(tmp_path) == []


def test_write_image_failure_leaves_nothing(tmp_path: Path) -> None:
    image = torch.rand(3, 8, 8)
    image[0, 0, 0] = float("inf")
    with pytest.raises(ValueError):
        write_image(tmp_path / "x.png", image)
    assert only_file(tmp_path) == []


def test_write_does_not_clobber_existing_on_failure(tmp_path: Path) -> None:
    write_video(tmp_path / "out.mp4", smooth_clip(4))
    before = (tmp_path / "out.mp4").read_bytes()
    bad = smooth_clip(4)
    bad[-1] = float("nan")
    with pytest.raises(ValueError):
        write_video(tmp_path / "out.mp4", bad)
    assert (tmp_path / "out.mp4").read_bytes() == before
    assert only_file(tmp_path) == ["out.mp4"]


# --------------------------------------------------------------------------------------------------------- images


def test_read_image_modes(tmp_path: Path) -> None:
    rgba = np.zeros((6, 10, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[:, :5, 3] = 255  # left half opaque red, right half fully transparent -> white
    PIL.Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    PIL.Image.fromarray(np.full((6, 10), 128, dtype=np.uint8), "L").save(tmp_path / "l.png")
    PIL.Image.fromarray(np.full((6, 10), 65535, dtype=np.uint16)).save(tmp_path / "i16.png")
    PIL.Image.fromarray(np.full((6, 10), 16384, dtype=np.uint16)).save(tmp_path / "i16q.png")

    for name in ["rgba.png", "l.png", "i16.png", "i16q.png"]:
        image = read_image(tmp_path / name)
        assert image.shape == (3, 6, 10), name
        assert image.dtype == torch.float32
        assert 0.0 <= image.min() and image.max() <= 1.0, name

    image = read_image(tmp_path / "rgba.png")
    assert torch.allclose(image[:, :, :5], torch.tensor([1.0, 0, 0]).view(3, 1, 1).expand(3, 6, 5))
    assert torch.allclose(image[:, :, 5:], torch.ones(3, 6, 5))
    assert torch.allclose(read_image(tmp_path / "l.png"), torch.full((3, 6, 10), 128 / 255))
    assert torch.allclose(read_image(tmp_path / "i16.png"), torch.ones(3, 6, 10))
    assert torch.allclose(read_image(tmp_path / "i16q.png"), torch.full((3, 6, 10), 16384 / 65535))


def test_write_image_round_trip(tmp_path: Path) -> None:
    image = torch.rand(3, 7, 9)
    write_image(tmp_path / "x.png", image)
    assert (read_image(tmp_path / "x.png") - image).abs().max() <= 0.5 / 255 + 1e-6


# --------------------------------------------------------------------------------------------------------- depth


def test_read_depth_npy_and_npz(tmp_path: Path) -> None:
    depth = np.random.default_rng(0).uniform(0.5, 20.0, size=(3, 5, 7)).astype(np.float32)
    np.save(tmp_path / "d.npy", depth)
    np.save(tmp_path / "d4.npy", depth[:, None].astype(np.float64))
    np.savez(tmp_path / "keyed.npz", mask=np.zeros(3), depth=depth)
    np.savez(tmp_path / "single.npz", whatever=depth)
    for name in ["d.npy", "d4.npy", "keyed.npz", "single.npz"]:
        got = read_depth(tmp_path / name)
        assert got.shape == (3, 5, 7), name
        assert got.dtype == torch.float32
        assert torch.equal(got, torch.from_numpy(depth)), name
    assert not depth_is_inverse(tmp_path / "d.npy")


def test_read_depth_npz_ambiguous(tmp_path: Path) -> None:
    np.savez(tmp_path / "two.npz", a=np.ones((1, 2, 2)), b=np.ones((1, 2, 2)))
    with pytest.raises(InputError, match=r"two\.npz.*'depth'"):
        read_depth(tmp_path / "two.npz")


def test_read_depth_png_folder_exact(tmp_path: Path) -> None:
    folder = tmp_path / "depth"
    folder.mkdir()
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 65536, size=(11, 6, 8), dtype=np.uint16)
    frames[0, 0, 0], frames[0, 0, 1] = 65535, 0
    for i, frame in enumerate(frames):
        PIL.Image.fromarray(frame).save(folder / f"frame_{i}.png")  # unpadded: 10 must come after 9
    got = read_depth(folder)
    assert got.shape == (11, 6, 8)
    assert torch.equal(got, torch.from_numpy(frames.astype(np.float32)))


def test_read_depth_png_folder_8bit(tmp_path: Path) -> None:
    folder = tmp_path / "depth8"
    folder.mkdir()
    for i in range(2):
        PIL.Image.fromarray(np.full((4, 4), 10 * (i + 1), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    assert read_depth(folder)[:, 0, 0].tolist() == [10.0, 20.0]


def test_depth_frame_files_order_and_filter(tmp_path: Path) -> None:
    for name in ["frame_10.png", "frame_2.PNG", "frame_1.png", ".hidden.png", "notes.txt", "frame_3.jpg"]:
        (tmp_path / name).write_bytes(b"")
    assert [f.name for f in depth_frame_files(tmp_path)] == ["frame_1.png", "frame_2.PNG", "frame_10.png"]


def test_read_depth_frame_grey_rgb_accepted_colour_rejected(tmp_path: Path) -> None:
    grey = np.random.default_rng(2).integers(0, 256, size=(5, 6), dtype=np.uint8)
    PIL.Image.fromarray(np.repeat(grey[..., None], 3, axis=2), "RGB").save(tmp_path / "grey.png")
    got = read_depth_frame(tmp_path / "grey.png")
    assert got.shape == (5, 6) and np.array_equal(got, grey)
    colour = np.zeros((5, 6, 3), dtype=np.uint8)
    colour[..., 0] = 200
    PIL.Image.fromarray(colour, "RGB").save(tmp_path / "colour.png")
    with pytest.raises(InputError, match=r"colour\.png: depth frame is colour"):
        read_depth_frame(tmp_path / "colour.png")


def test_read_depth_video_is_inverse_luminance(tmp_path: Path) -> None:
    grey = torch.linspace(0.1, 0.9, 48).view(1, 1, 1, 48).expand(4, 3, 32, 48).contiguous()
    write_video(tmp_path / "depth.mp4", grey)
    got = read_depth(tmp_path / "depth.mp4")
    assert got.shape == (4, 32, 48)
    assert (got - grey[:, 0]).abs().mean() < 0.03
    assert depth_is_inverse(tmp_path / "depth.mp4")


def test_read_depth_colour_video_rejected(tmp_path: Path) -> None:
    write_video(tmp_path / "colour.mp4", smooth_clip(4))
    with pytest.raises(InputError, match=r"colour\.mp4.*colour"):
        read_depth(tmp_path / "colour.mp4")


@pytest.mark.parametrize(
    ("array", "pattern"),
    [
        (np.stack([np.ones((4, 4)), np.ones((4, 4)), np.full((4, 4), np.nan)]), "non-finite.*frame 2"),
        (np.stack([np.ones((4, 4)), np.full((4, 4), np.inf)]), "non-finite.*frame 1"),
        (np.stack([np.ones((4, 4)), -np.ones((4, 4))]), "negative.*frame 1"),
        (np.ones((4, 4)), "shape"),
        (np.ones((2, 3, 4, 4)), "shape"),
        (np.ones((0, 4, 4)), "empty"),
        (np.ones((2, 4, 4), dtype=bool), "numeric"),
    ],
)
def test_read_depth_rejects_bad_arrays(tmp_path: Path, array: np.ndarray, pattern: str) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(InputError, match=pattern) as info:
        read_depth(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_read_depth_unsupported_suffix(tmp_path: Path) -> None:
    (tmp_path / "d.txt").write_text("1 2 3")
    with pytest.raises(InputError, match=r"d\.txt.*unsupported"):
        read_depth(tmp_path / "d.txt")


# --------------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("reader", [read_video, read_image, read_depth])
def test_missing_file(tmp_path: Path, reader) -> None:
    path = tmp_path / "nope.mp4"
    with pytest.raises(InputError, match="no such file") as info:
        reader(path)
    assert str(path) in str(info.value)


def test_garbage_files(tmp_path: Path) -> None:
    cases = [
        (read_video, "junk.mp4", "cannot decode video"),
        (read_image, "junk.png", "cannot read image"),
        (read_depth, "junk.mp4", "cannot decode video"),
        (read_depth, "junk.npy", "cannot read depth"),
        (read_depth, "junk.npz", "cannot read depth"),
    ]
    for reader, name, pattern in cases:
        path = tmp_path / name
        path.write_bytes(b"this is not a media file " * 40)
        with pytest.raises(InputError, match=pattern) as info:
            reader(path)
        message = str(info.value)
        assert message.startswith(f"{path}: "), message
        assert "\n" not in message
        assert isinstance(info.value.__cause__, Exception)  # the library error is kept for debugging


def test_truncated_png(tmp_path: Path) -> None:
    write_image(tmp_path / "ok.png", torch.rand(3, 32, 32))
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.png: cannot read image"):
        read_image(tmp_path / "cut.png")


def test_bad_png_in_depth_folder_named(tmp_path: Path) -> None:
    folder = tmp_path / "depth"
    folder.mkdir()
    PIL.Image.fromarray(np.ones((4, 4), dtype=np.uint16)).save(folder / "0.png")
    (folder / "1.png").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"1\.png: cannot read depth frame"):
        read_depth(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no PNG"):
        read_depth(tmp_path / "empty")


def test_empty_video_file(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.mp4"):
        read_video(tmp_path / "empty.mp4")


# --------------------------------------------------------------------------------------------------------- resizing


@pytest.mark.parametrize(
    ("src", "dot", "size"),
    [((40, 80), (13, 52), (32, 32)), ((80, 40), (50, 9), (32, 32)), ((40, 80), (20, 30), (24, 40))],
)
def test_resize_center_crop_geometry(src: tuple[int, int], dot: tuple[int, int], size: tuple[int, int]) -> None:
    image = torch.zeros(3, *src)
    image[:, dot[0], dot[1]] = 1.0
    out, scale, (top, left) = resize_center_crop(image, size)
    assert out.shape == (3, *size)
    assert scale == pytest.approx(max(size[0] / src[0], size[1] / src[1]))
    # a pixel centre (i + 0.5) maps to (i + 0.5) * scale - offset in the output's pixel-edge coordinates
    expect_y, expect_x = (dot[0] + 0.5) * scale - top - 0.5, (dot[1] + 0.5) * scale - left - 0.5
    weights = out[0]
    ys, xs = torch.meshgrid(torch.arange(size[0]).float(), torch.arange(size[1]).float(), indexing="ij")
    got_y, got_x = (weights * ys).sum() / weights.sum(), (weights * xs).sum() / weights.sum()
    assert abs(got_y - expect_y) <= 1.0 and abs(got_x - expect_x) <= 1.0


def test_resize_center_crop_video_and_upscale() -> None:
    video = torch.rand(5, 3, 10, 20)
    out, scale, offset = resize_center_crop(video, (30, 30))
    assert out.shape == (5, 3, 30, 30)
    assert scale == pytest.approx(3.0)
    assert offset == (0, 15)
    same, scale, offset = resize_center_crop(video, (10, 20))
    assert torch.equal(same, video) and scale == 1.0 and offset == (0, 0)


def test_resize_depth_uses_only_existing_values() -> None:
    depth = torch.ones(2, 40, 80)
    depth[:, :, 40:] = 10.0  # a sharp edge: averaging would invent depths in between
    depth[:, 0:4, 0:4] = 0.0  # invalid region stays exactly 0
    out = resize_depth(depth, (32, 32))
    assert out.shape == (2, 32, 32)
    assert set(out.unique().tolist()) <= {0.0, 1.0, 10.0}
    assert resize_depth(depth[0], (16, 16)).shape == (16, 16)


def test_resize_depth_matches_image_geometry() -> None:
    depth = torch.full((1, 40, 80), 1.0)
    depth[0, 12:15, 51:54] = 5.0  # a 3x3 blob: nearest downscaling may legitimately skip a single pixel
    image = (depth == 5.0).float().expand(3, 40, 80)
    out_depth = resize_depth(depth, (32, 32))[0] == 5.0
    out_image = resize_center_crop(image, (32, 32))[0][0]
    ys, xs = torch.meshgrid(torch.arange(32).float(), torch.arange(32).float(), indexing="ij")
    for weights in (out_depth.float(), out_image):
        assert weights.sum() > 0
        got = ((weights * ys).sum() / weights.sum(), (weights * xs).sum() / weights.sum())
        expect = (13.5 * 0.8 - 0 - 0.5, 52.5 * 0.8 - 16 - 0.5)  # scale 0.8, 40x80 -> 32x64, left offset 16
        assert abs(got[0] - expect[0]) <= 1 and abs(got[1] - expect[1]) <= 1


# --------------------------------------------------------------------------------------------------------- preview


def test_depth_to_rgb() -> None:
    depth = torch.linspace(1.0, 10.0, 48).expand(32, 48).clone()
    depth[:4] = 0.0
    rgb = depth_to_rgb(depth)
    assert rgb.shape == (3, 32, 48) and rgb.dtype == torch.float32
    assert 0.0 <= rgb.min() and rgb.max() <= 1.0
    assert torch.equal(rgb[:, :4], torch.zeros(3, 4, 48))
    # turbo: near (small depth) is red, far is dark blue
    near, far = rgb[:, 16, 0], rgb[:, 16, -1]
    assert near[0] > near[2] and far[2] > far[0]
    assert torch.allclose(depth_to_rgb(1.0 / depth.clamp(min=1.0), is_inverse=True)[:, 16:], rgb[:, 16:])


def test_make_preview_geometry() -> None:
    frames, height, width = 20, 32, 48
    # every frame a distinct flat grey so a tile's content says which frame it shows
    video = torch.linspace(0.0, 1.0, frames).view(frames, 1, 1, 1).expand(frames, 3, height, width).contiguous()
    _, label_h = _label_font(width)
    gap, cell_h = PREVIEW_GAP, label_h + height

    sheet = make_preview(video, [], max_frames=16, columns=8)
    assert sheet.shape == (3, 2 * cell_h + 3 * gap, 8 * width + 9 * gap)
    assert sheet.dtype == torch.float32 and 0.0 <= sheet.min() and sheet.max() <= 1.0
    expected = [round(i * 19 / 15) for i in range(16)]  # evenly spaced, first and last included
    for n, index in enumerate(expected):
        row, col = divmod(n, 8)
        y = gap + row * (cell_h + gap) + label_h + height // 2
        x = gap + col * (width + gap) + width // 2
        assert abs(sheet[0, y, x] - index / (frames - 1)) <= 1 / 255 + 1e-6, (n, index)

    red = torch.zeros(3, 10, 10)
    red[0] = 1.0
    conditions = [("reference 1", red), ("depth", depth_to_rgb(torch.rand(16, 24) + 0.1)), ("first frame", red)]
    with_conditions = make_preview(video, conditions, max_frames=16, columns=8)
    assert with_conditions.shape == (3, 3 * cell_h + 4 * gap, 8 * width + 9 * gap)
    y = gap + 2 * (cell_h + gap) + label_h + height // 2
    assert with_conditions[:, y, gap + width // 2].tolist() == [1.0, 0.0, 0.0]
    assert torch.equal(with_conditions[:, : sheet.shape[1] - gap], sheet[:, : sheet.shape[1] - gap])

    few = make_preview(video[:3], conditions, columns=8)  # 3 frames -> 3 columns, conditions wrap to them
    assert few.shape == (3, 2 * cell_h + 3 * gap, 3 * width + 4 * gap)
    # labels are drawn: the label strip above the first tile is not plain background
    assert few[:, gap : gap + label_h, gap : gap + width].std() > 0


def test_write_preview(tmp_path: Path) -> None:
    video = smooth_clip(6)
    write_preview(tmp_path / "preview.png", video, [("first frame", video[0])], columns=4)
    with PIL.Image.open(tmp_path / "preview.png") as img:
        assert img.format == "PNG" and img.mode == "RGB"
        expected = make_preview(video, [("first frame", video[0])], columns=4)
        assert img.size == (expected.shape[2], expected.shape[1])
    assert only_file(tmp_path) == ["preview.png"]
