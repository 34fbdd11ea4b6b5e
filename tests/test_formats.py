"""Tests for fulldit.data.formats: the dataset folder format, its writer, and the ClipFolder loader."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fulldit.data.formats as formats
from fulldit.camera import CameraPath, build_path, save_camera_re10k
from fulldit.data import Clip
from fulldit.data.formats import FORMAT, ClipFolder, ManifestWriter, read_manifest, validate, write_clip
from fulldit.errors import InputError
from fulldit.video_io import resize_center_crop, resize_depth


def smooth_video(frames: int, height: int, width: int, seed: int) -> torch.Tensor:
    """Random but smooth content (upsampled noise), which H.264 keeps to within a few grey levels."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(frames, 3, 4, 6, generator=g)
    return F.interpolate(low, size=(height, width), mode="bilinear", align_corners=False).clamp(0, 1)


def make_clip(frames: int = 8, height: int = 32, width: int = 48, seed: int = 0) -> Clip:
    g = torch.Generator().manual_seed(seed + 1000)
    return Clip(
        video=smooth_video(frames, height, width, seed),
        depth=torch.rand(frames, height, width, generator=g) * 20 + 0.3,
        camera=build_path("orbit-left 0.5rad", frames, width, height),
        references=[torch.rand(3, 20, 30, generator=g), torch.rand(3, 16, 16, generator=g)],
        caption=f"clip {seed}: a chair \u2014 \u00abtest\u00bb\u2028second line",
        meta={"seed": seed, "move": "orbit-left", "scale": np.float64(0.5), "objects": [{"name": "chair"}]},
    )


def make_dataset(root: Path, clips: list[Clip]) -> list[dict]:
    with ManifestWriter(root) as writer:
        entries = [write_clip(root, clip, f"{i:06d}") for i, clip in enumerate(clips)]
        for entry in entries:
            writer.add(entry)
    return entries


def manifest_lines(root: Path) -> list[str]:
    return (root / "manifest.jsonl").read_text(encoding="utf-8").split("\n")


def set_line(root: Path, line: int, text: str) -> None:
    lines = manifest_lines(root)
    lines[line - 1] = text
    (root / "manifest.jsonl").write_text("\n".join(lines), encoding="utf-8")


# --- round trip ---------------------------------------------------------------------------------------------------


def test_round_trip(tmp_path: Path) -> None:
    clips = [make_clip(seed=0), make_clip(seed=1)]
    entries = make_dataset(tmp_path, clips)
    assert json.loads((tmp_path / "dataset.json").read_text()) == {"format": FORMAT}
    assert entries[0]["video"] == "clips/000000/video.mp4" and entries[0]["depth"] == "clips/000000/depth"
    assert entries[0]["depth_scale"] == 0.001 and entries[0]["frames"] == 8 and entries[0]["fps"] == 8.0
    assert len(list((tmp_path / "clips/000000/depth").glob("*.png"))) == 8
    assert [e for _, e in read_manifest(tmp_path)] == entries

    ds = ClipFolder(tmp_path, on_error="raise")
    assert len(ds) == 2
    for i, src in enumerate(clips):
        clip = ds[i]
        assert clip.video.shape == (8, 3, 32, 48) and clip.depth.shape == (8, 32, 48)
        assert clip.caption == src.caption
        assert clip.meta.pop("dataset") == {
            "root": str(tmp_path),
            "id": f"{i:06d}",
            "line": i + 1,
            "frames": list(range(8)),
            "fps": 8.0,
            "depth_kind": "metric",
        }
        assert clip.meta == {**src.meta, "scale": 0.5}
        np.testing.assert_allclose(clip.camera.intrinsics, src.camera.intrinsics, rtol=0, atol=1e-12)
        np.testing.assert_allclose(clip.camera.w2c, src.camera.w2c, rtol=0, atol=1e-12)
        assert (clip.depth - src.depth).abs().max() <= 0.0005 + 1e-6  # nearest millimetre
        assert len(clip.references) == 2
        for got, want in zip(clip.references, src.references):
            assert got.shape == want.shape and (got - want).abs().max() <= 0.5 / 255 + 1e-6
        assert (clip.video - src.video).abs().mean() < 0.03 and (clip.video - src.video).abs().max() < 0.3
    assert validate(tmp_path) == [] and validate(tmp_path, full=True) == []


def test_depth_range_and_npz(tmp_path: Path) -> None:
    clip = make_clip()
    depth = clip.depth.clone()
    depth[0, 0, :3] = torch.tensor([0.0, 0.0001, 100.0])  # no measurement, sub-millimetre, beyond 65.5 m
    entry = write_clip(tmp_path, Clip(clip.video, depth), "far")
    assert entry["depth_scale"] == 0.002  # millimetres would overflow 16 bits
    with ManifestWriter(tmp_path) as writer:
        writer.add(entry)
    got = ClipFolder(tmp_path, on_error="raise")[0].depth
    assert got[0, 0, 0] == 0 and got[0, 0, 1] > 0 and abs(got[0, 0, 2] - 100.0) < 1e-3
    assert (got - depth).abs()[:, :, 3:].max() <= 0.001 + 1e-6

    # a .npz of float32 metres is read as metres (depth_scale defaults to 1 for arrays)
    np.savez(tmp_path / "clips/far/depth.npz", depth=depth.numpy())
    fixed = {**entry, "depth": "clips/far/depth.npz"}
    del fixed["depth_scale"]
    set_line(tmp_path, 1, json.dumps(fixed))
    assert torch.equal(ClipFolder(tmp_path, on_error="raise")[0].depth, depth)


def test_odd_size_is_cropped_back(tmp_path: Path) -> None:
    make_dataset(tmp_path, [make_clip(height=31, width=47)])
    clip = ClipFolder(tmp_path, on_error="raise")[0]
    assert clip.video.shape == (8, 3, 31, 47) and clip.depth.shape == (8, 31, 47)
    assert validate(tmp_path) == []


# --- resize + crop ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(24, 24), (16, 40)])
def test_resize_crop_moves_pixels_and_intrinsics_together(tmp_path: Path, size: tuple[int, int]) -> None:
    h, w = 32, 48
    cam = build_path("static", 4, w, h, fov_deg=60.0)
    point = np.array([0.35, -0.1, 2.0])  # camera coordinates (the static camera's w2c is the identity)
    (u, v, _), k = cam.intrinsics_px(h, w)[0] @ point / point[2], cam.intrinsics_px(h, w)[0]
    assert k[0, 0] > 0
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    r2 = (xs - u) ** 2 + (ys - v) ** 2
    video = torch.exp(-r2 / (2 * 2.0**2)).expand(4, 3, h, w).contiguous()  # a bright blob on the point
    depth = torch.where(r2 < 9, 1.0, 5.0).expand(4, h, w).contiguous()  # a near disk on the point
    refs = [torch.rand(3, 20, 30)]
    make_dataset(tmp_path, [Clip(video, depth, cam, refs, "blob")])

    native = ClipFolder(tmp_path, on_error="raise")[0]
    clip = ClipFolder(tmp_path, size=size, on_error="raise")[0]
    assert clip.video.shape == (4, 3, *size) and clip.depth.shape == (4, *size) and clip.references[0].shape[1:] == size
    assert torch.equal(clip.video, resize_center_crop(native.video, size)[0])
    assert torch.equal(clip.depth, resize_depth(native.depth, size))

    _, scale, (top, left) = resize_center_crop(torch.zeros(3, h, w), size)
    expected = cam.resized_cropped((h, w), scale, (top, left), size)
    np.testing.assert_allclose(clip.camera.intrinsics, expected.intrinsics, rtol=0, atol=1e-12)
    # the point projects with the new intrinsics where resize + crop moved its pixel ...
    u2, v2, _ = clip.camera.intrinsics_px(*size)[0] @ point / point[2]
    assert math.isclose(u2, u * scale - left, abs_tol=1e-9) and math.isclose(v2, v * scale - top, abs_tol=1e-9)
    # ... and that is where the blob and the near disk are in the loaded frames
    ys, xs = torch.meshgrid(torch.arange(size[0]) + 0.5, torch.arange(size[1]) + 0.5, indexing="ij")
    wgt = (clip.video[0, 0] - 0.1).clamp(min=0)
    assert abs((wgt * xs).sum() / wgt.sum() - u2) < 0.35 and abs((wgt * ys).sum() / wgt.sum() - v2) < 0.35
    near = (clip.depth[0] < 3).float()
    assert abs((near * xs).sum() / near.sum() - u2) < 0.6 and abs((near * ys).sum() / near.sum() - v2) < 0.6


# --- frame sampling -----------------------------------------------------------------------------------------------


def test_sampling_is_deterministic_and_poses_follow(tmp_path: Path) -> None:
    n = 16
    video = ((torch.arange(n) + 1) / (n + 1)).view(n, 1, 1, 1).expand(n, 3, 16, 16).contiguous()  # frame k: grey
    cam = build_path("dolly-in 1.5", n)  # frame k: camera at z = 0.1 k
    make_dataset(tmp_path, [Clip(video, camera=cam), Clip(video, camera=cam)])

    def indices(clip: Clip) -> list[int]:
        by_grey = [round(float(f.mean()) * (n + 1)) - 1 for f in clip.video]
        by_pose = [int(np.argmin(np.abs(cam.w2c[:, 2, 3] - m[2, 3]))) for m in clip.camera.w2c]
        assert by_grey == by_pose == clip.meta["dataset"]["frames"]
        np.testing.assert_allclose(clip.camera.w2c, cam.w2c[by_pose], rtol=0, atol=1e-12)
        return by_grey

    starts = {}
    for seed in range(8):
        ds = ClipFolder(tmp_path, frames=4, stride=3, random_start=True, seed=seed, on_error="raise")
        got = indices(ds[0])
        assert got == indices(ds[0]) == indices(ClipFolder(tmp_path, 4, None, 3, True, "raise", seed)[0])
        assert np.all(np.diff(got) == 3) and 0 <= got[0] <= n - 10
        assert ds[0].meta["dataset"]["fps"] == 8.0 / 3
        starts[seed] = (got[0], indices(ds[1])[0])
    assert len({s for s, _ in starts.values()}) > 1  # the start does depend on the seed ...
    assert any(a != b for a, b in starts.values())  # ... and on the index
    assert indices(ClipFolder(tmp_path, frames=4, stride=3, on_error="raise")[0]) == [0, 3, 6, 9]
    assert indices(ClipFolder(tmp_path, stride=3, on_error="raise")[0]) == [0, 3, 6, 9, 12, 15]


# --- broken entries -----------------------------------------------------------------------------------------------


def _rewrite_camera(root: Path, cam: CameraPath) -> None:
    save_camera_re10k(cam, root / "clips/000001/camera.txt")


def _bad_pose_line(root: Path) -> None:
    path = root / "clips/000001/camera.txt"
    lines = path.read_text().split("\n")
    lines[3] = "1 2 3"
    path.write_text("\n".join(lines))


def _drop_key(root: Path, key: str) -> None:
    entry = json.loads(manifest_lines(root)[1])
    del entry[key]
    set_line(root, 2, json.dumps(entry))


BREAKS = {  # how to break clip 000001 (manifest line 2), and what the report must say
    "missing video": (lambda r: (r / "clips/000001/video.mp4").unlink(), "clips/000001/video.mp4: no such file"),
    "too few frames": (None, "video has 5 frames, need 7"),
    "pose count": (lambda r: _rewrite_camera(r, build_path("static", 7)), "camera.txt has 7 poses, video has 8"),
    "bad pose line": (_bad_pose_line, "camera.txt:4: expected 19 numbers"),
    "depth count": (lambda r: (r / "clips/000001/depth/00007.png").unlink(), "has 7 depth frames, video has 8"),
    "depth size": (
        lambda r: formats.PIL.Image.new("I;16", (5, 5)).save(r / "clips/000001/depth/00000.png"),
        "depth is 5x5, video is 32x48",
    ),
    "garbage reference": (
        lambda r: (r / "clips/000001/ref_0.png").write_bytes(b"not a png at all"),
        "ref_0.png: cannot read image",
    ),
    "malformed json": (lambda r: set_line(r, 2, '{"id": "000001", "video": '), "invalid JSON"),
    "missing video key": (lambda r: _drop_key(r, "video"), 'missing required key "video"'),
}
MANIFEST_LEVEL = {"malformed json", "missing video key"}  # reported when the manifest is read


@pytest.mark.parametrize("kind", list(BREAKS))
def test_broken_entries(tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    clips = [make_clip(seed=0), make_clip(seed=1, frames=5 if kind == "too few frames" else 8), make_clip(seed=2)]
    make_dataset(tmp_path, clips)
    breaker, message = BREAKS[kind]
    if breaker is not None:
        breaker(tmp_path)
    kw = dict(frames=4, stride=2)  # needs 7 frames
    expected = "manifest.jsonl:2"

    if kind in MANIFEST_LEVEL:
        with pytest.raises(InputError, match=expected) as err:
            ClipFolder(tmp_path, on_error="raise", **kw)
    else:
        ds = ClipFolder(tmp_path, on_error="raise", **kw)
        assert ds[0].meta["dataset"]["id"] == "000000"
        with pytest.raises(InputError, match=expected) as err:
            ds[1]
        assert "(clip 000001)" in str(err.value)
    assert message in str(err.value) and "\n" not in str(err.value)

    capsys.readouterr()
    ds = ClipFolder(tmp_path, on_error="skip", **kw)
    got = [ds[i] for i in range(len(ds))] + [ds[i] for i in range(len(ds))]
    ids = [c.meta["dataset"]["id"] for c in got]
    assert ids == (["000000", "000002"] * 2 if kind in MANIFEST_LEVEL else ["000000", "000002", "000002"] * 2)
    assert all(c.video.shape == (4, 3, 32, 48) for c in got)
    assert len(ds.bad) == 1 and expected in ds.bad[0] and message in ds.bad[0]
    assert capsys.readouterr().err.count(expected) == 1  # printed once, however often the entry is hit

    if kind != "too few frames":  # that one depends on the request, not on the files
        problems = validate(tmp_path)
        assert len(problems) == 1 and expected in problems[0] and message in problems[0]


def test_all_broken_raises(tmp_path: Path) -> None:
    make_dataset(tmp_path, [make_clip()])
    (tmp_path / "clips/000000/video.mp4").unlink()
    ds = ClipFolder(tmp_path)
    with pytest.raises(InputError, match="none of the 1 clips"):
        ds[0]
    set_line(tmp_path, 1, "not json")
    with pytest.raises(InputError, match="no usable clips"):
        ClipFolder(tmp_path)


def test_format_version_and_arguments(tmp_path: Path) -> None:
    make_dataset(tmp_path, [make_clip()])
    (tmp_path / "dataset.json").write_text(json.dumps({"format": "fulldit-dataset/2"}))
    with pytest.raises(InputError, match="not supported"):
        read_manifest(tmp_path)
    (tmp_path / "dataset.json").unlink()  # a hand-made folder without it is version 1
    assert len(read_manifest(tmp_path)) == 1
    with pytest.raises(InputError, match="no such file"):
        ClipFolder(tmp_path / "nowhere")
    for bad in (dict(on_error="ignore"), dict(frames=0), dict(stride=0), dict(size=(0, 4))):
        with pytest.raises(ValueError):
            ClipFolder(tmp_path, **bad)


# --- crashes ------------------------------------------------------------------------------------------------------


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_crash_in_writer_leaves_whole_lines(tmp_path: Path) -> None:
    clips = [make_clip(seed=0), make_clip(seed=1)]
    with pytest.raises(RuntimeError, match="crash"), ManifestWriter(tmp_path) as writer:
        writer.add(write_clip(tmp_path, clips[0], "000000"))
        writer.add(write_clip(tmp_path, clips[1], "000001"))
        raise RuntimeError("crash")
    assert [e["id"] for _, e in read_manifest(tmp_path)] == ["000000", "000001"]
    assert (tmp_path / "manifest.jsonl").read_bytes().endswith(b"\n")

    # a bad entry is refused before anything is written
    before = (tmp_path / "manifest.jsonl").read_bytes()
    with ManifestWriter(tmp_path, append=True) as writer:
        with pytest.raises(ValueError, match="caption"):
            writer.add({"video": "x.mp4"})
        with pytest.raises(ValueError):
            writer.add({"video": "x.mp4", "caption": "", "meta": {"x": float("nan")}})
        with pytest.raises(ValueError, match="duplicate"):
            writer.add({"id": "000001", "video": "x.mp4", "caption": ""})
    assert (tmp_path / "manifest.jsonl").read_bytes() == before


def test_crash_in_write_clip_leaves_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_dataset(tmp_path, [make_clip(seed=0)])
    before = _files(tmp_path)

    def explode(*args: object, **kw: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(formats, "write_image", explode)  # after the video, camera and depth are written
    with pytest.raises(RuntimeError, match="disk on fire"), ManifestWriter(tmp_path, append=True) as writer:
        writer.add(write_clip(tmp_path, make_clip(seed=1), "000001"))
    assert _files(tmp_path) == before  # no clip folder, no hidden temporaries, no manifest line
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        write_clip(tmp_path, Clip(make_clip().video, meta={"bad": object()}), "000002")
    assert _files(tmp_path) == before

    # replacing a clip swaps the whole folder
    monkeypatch.undo()
    small = Clip(make_clip(seed=3).video[:3], caption="replaced")
    entry = write_clip(tmp_path, small, "000000")
    assert sorted(p.name for p in (tmp_path / "clips/000000").iterdir()) == ["video.mp4"]
    assert entry["references"] == [] and "camera" not in entry and "depth" not in entry


def test_torn_last_line_is_skipped_then_repaired(tmp_path: Path) -> None:
    make_dataset(tmp_path, [make_clip(seed=0), make_clip(seed=1)])
    with open(tmp_path / "manifest.jsonl", "ab") as f:
        f.write(b'{"id": "000002", "vid')  # what a power loss in the middle of a write could leave
    problems: list[str] = []
    assert len(read_manifest(tmp_path, problems)) == 2 and "manifest.jsonl:3: invalid JSON" in problems[0]
    assert len(ClipFolder(tmp_path)) == 2
    with ManifestWriter(tmp_path, append=True) as writer:
        writer.add(write_clip(tmp_path, make_clip(seed=2), "000002"))
    problems = []
    assert [e["id"] for _, e in read_manifest(tmp_path, problems)] == ["000000", "000001", "000002"]
    assert problems == []
