"""`fulldit prepare`: real-video folders -> fulldit-dataset/1, read back with the dataset loader; bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fulldit.camera import load_camera, save_camera_re10k
from fulldit.cli import main
from fulldit.conditions.depth import depth_video
from fulldit.data.formats import ClipFolder, read_manifest, validate
from fulldit.data.prepare import PSEUDO_FAR, PSEUDO_NEAR, PrepareOptions, frame_windows, prepare, pseudo_depth
from fulldit.errors import InputError
from fulldit.video_io import read_image, read_video, resize_center_crop, write_image, write_video
from fulldit.world.clips import render_batch

FRAMES, H, W, FPS = 16, 32, 48, 8.0


def tiny_depth_anything(path: Path, metric: bool = False) -> Path:
    """A random Depth Anything (Dinov2 backbone of width 16) saved with its image processor, as users save theirs."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    backbone = Dinov2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                            patch_size=14, image_size=28, out_features=["stage1", "stage2"],
                            reshape_hidden_states=False)  # fmt: skip
    config = DepthAnythingConfig(backbone_config=backbone, neck_hidden_sizes=[8, 16], reassemble_hidden_size=16,
                                 fusion_hidden_size=8, head_hidden_size=8, reassemble_factors=[2, 1],
                                 depth_estimation_type="metric" if metric else "relative", max_depth=20)  # fmt: skip
    model = DepthAnythingForDepthEstimation(config)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # random weights large enough for a varied prediction
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    model.save_pretrained(path)
    DPTImageProcessor(size={"height": 28, "width": 28}, keep_aspect_ratio=True, ensure_multiple_of=14,
                      do_pad=False).save_pretrained(path)  # fmt: skip
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A source folder in every supported layout, made from two synthetic clips, and tiny depth models."""
    root = tmp_path_factory.mktemp("ingest")
    src = root / "src"
    src.mkdir()
    a, b = render_batch([1, 2], frames=FRAMES, height=H, width=W)
    write_video(src / "a.mp4", a.video, fps=FPS)
    (src / "a.txt").write_text(a.caption + "\n")  # caption beside the video, camera beside it, boxes in boxes.json
    save_camera_re10k(a.camera, src / "a.cam.txt")
    (src / "boxes.json").write_text(json.dumps({"a": [[4, 2, 20, 30], {"box": [0, 0, 48, 32], "frame": 5}]}))
    write_video(src / "b.mp4", b.video, fps=FPS)  # caption in captions.jsonl, camera in cameras/, a reference image
    (src / "captions.jsonl").write_text(json.dumps({"video": "b.mp4", "caption": b.caption}) + "\n")
    (src / "cameras").mkdir()
    save_camera_re10k(b.camera, src / "cameras" / "b.txt")
    write_image(src / "b.ref_0.png", b.references[0])
    torch.manual_seed(0)
    return {
        "root": root,
        "src": src,
        "clips": {"a": a, "b": b},
        "relative": tiny_depth_anything(root / "depth-anything"),
        "metric": tiny_depth_anything(root / "depth-anything-metric", metric=True),
    }


def test_prepared_dataset_loads_with_the_sources_frames_poses_depth_and_references(world: dict, tmp_path: Path) -> None:
    from fulldit.eval.depth_net import TransformersDepth

    out = tmp_path / "data"
    opts = PrepareOptions(frames=8, fps=4.0, size=(32, 32), depth_model=world["relative"])
    _, written, problems = prepare(world["src"], out, opts)
    assert written == 2 and problems == [] and validate(out, full=True) == []
    assert not list(tmp_path.glob(".*partial")) and (out / "contact_sheet.png").is_file()
    entries = {e["id"]: e for _, e in read_manifest(out)}
    assert entries["a"]["depth_kind"] == "relative" and entries["a"]["fps"] == 4.0
    ds = ClipFolder(out, on_error="raise")
    window = np.arange(0, 16, 2)  # 8 fps -> 4 fps: every second frame
    estimator = TransformersDepth(world["relative"])
    for clip in ds:
        name = clip.meta["dataset"]["id"]
        source = world["clips"][name]
        assert clip.meta["source"]["frames"] == window.tolist() and clip.caption == source.caption
        # frames: the source's frames (decoded, resized to cover 32x32, centre-cropped), within H.264 error
        decoded = read_video(world["src"] / f"{name}.mp4")
        frames, scale, top_left = resize_center_crop(decoded[window], (32, 32))
        assert clip.video.shape == (8, 3, 32, 32) and (clip.video - frames).abs().mean() < 0.02
        # camera: exactly the source's poses of the kept frames; intrinsics moved by the resize and crop
        want = source.camera.subsample(window).resized_cropped((H, W), scale, top_left, (32, 32))
        np.testing.assert_array_equal(clip.camera.w2c, source.camera.w2c[window])
        np.testing.assert_allclose(clip.camera.intrinsics, want.intrinsics, rtol=0, atol=1e-12)
        # depth: pseudo-depth in [1, 50] m whose normalised inverse is the model's normalised prediction
        assert clip.depth.shape == (8, 32, 32) and PSEUDO_NEAR <= clip.depth.min() < clip.depth.max() <= PSEUDO_FAR
        predicted = depth_video(estimator(frames), is_disparity=True)
        assert (depth_video(clip.depth) - predicted).abs().max() < 4e-3  # 1 mm rounding of the PNGs
    a, b = ds[0], ds[1]
    first = read_video(world["src"] / "a.mp4")  # box crops: cut from the decoded source frame, stored losslessly
    assert [r.shape for r in a.references] == [(3, 28, 16), (3, 32, 48)]
    assert torch.equal(a.references[0], first[0, :, 2:30, 4:20]) and torch.equal(a.references[1], first[5])
    assert len(b.references) == 1 and torch.equal(b.references[0], read_image(world["src"] / "b.ref_0.png"))


def test_metric_model_and_full_clips(world: dict, tmp_path: Path) -> None:
    """No resampling: every frame, the source size; a metric model's depth is stored as metres, unmarked."""
    from fulldit.eval.depth_net import TransformersDepth

    out = tmp_path / "data"
    assert main(["prepare", str(world["src"]), "--out", str(out), "--depth-model", str(world["metric"])]) == 0
    entry = next(e for _, e in read_manifest(out) if e["id"] == "a")
    assert "depth_kind" not in entry and entry["frames"] == FRAMES and (entry["height"], entry["width"]) == (H, W)
    clip = ClipFolder(out, on_error="raise")[0]
    np.testing.assert_array_equal(clip.camera.w2c, world["clips"]["a"].camera.w2c)
    np.testing.assert_array_equal(clip.camera.intrinsics, world["clips"]["a"].camera.intrinsics)
    metres = 1.0 / TransformersDepth(world["metric"])(read_video(world["src"] / "a.mp4"))
    assert (clip.depth - metres).abs().max() <= 5e-4 + 1e-5  # the nearest millimetre


def test_resampling_windows_and_pseudo_depth() -> None:
    opts = PrepareOptions(frames=4, fps=10.0, clips_per_video=3)
    got = frame_windows(30, 30.0, opts, "v.mp4")
    assert [w.tolist() for w in got] == [[0, 3, 6, 9], [12, 15, 18, 21]]  # 10 frames at 10 fps: two clips
    assert [w.tolist() for w in frame_windows(5, 24.0, PrepareOptions(), "v.mp4")] == [[0, 1, 2, 3, 4]]
    assert frame_windows(25, 25.0, PrepareOptions(fps=12.5), "v.mp4")[0].tolist() == list(range(0, 25, 2))
    with pytest.raises(InputError, match="above the video's 30 fps"):
        frame_windows(30, 30.0, PrepareOptions(fps=60.0), "v.mp4")
    with pytest.raises(InputError, match="v.mp4: has 10 frames at 10 fps, a clip needs 12"):
        frame_windows(30, 30.0, PrepareOptions(frames=12, fps=10.0), "v.mp4")
    # pseudo-depth: any positive scale and shift of a disparity gives the same depth, and the model's input is the
    # disparity's own normalisation
    d = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    depth = pseudo_depth(d)
    torch.testing.assert_close(pseudo_depth(7.0 * d + 2.0), depth)
    torch.testing.assert_close(depth_video(depth), depth_video(d, is_disparity=True), atol=1e-5, rtol=0)
    assert depth.min() == pytest.approx(PSEUDO_NEAR) and depth.max() == pytest.approx(PSEUDO_FAR)


def _one_video(world: dict, tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(world["src"] / "a.mp4", src / "a.mp4")
    (src / "a.txt").write_text("a caption")
    return src


def _fails(capsys: pytest.CaptureFixture, args: list[str], message: str) -> None:
    assert main(["prepare", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_bad_inputs_are_one_line_errors_and_write_nothing(
    world: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    src, out = _one_video(world, tmp_path), tmp_path / "out"
    args = [str(src), "--out", str(out)]
    cam = world["clips"]["a"].camera
    save_camera_re10k(cam.subsample(range(15)), src / "a.cam.txt")
    _fails(capsys, args, "a.cam.txt: has 15 poses, a.mp4 has 16 frames")
    save_camera_re10k(cam, src / "a.cam.txt")
    (src / "a.txt").unlink()
    _fails(capsys, args, "a.mp4: missing caption (write a.txt or a line in captions.jsonl)")
    (src / "a.txt").write_text("a caption")
    (src / "z.mp4").write_bytes(b"not a video at all")
    (src / "z.txt").write_text("broken")
    _fails(capsys, args, "z.mp4: cannot open video")
    (src / "z.mp4").unlink()
    (src / "boxes.json").write_text(json.dumps({"a": [[0, 0, 60, 10]]}))
    _fails(capsys, args, "a.mp4: box [0, 0, 60, 10] is not inside the 48x32 frame")
    (src / "boxes.json").write_text(json.dumps({"typo": [[0, 0, 4, 4]]}))
    _fails(capsys, args, "boxes.json: no video named typo")
    (src / "boxes.json").unlink()
    _fails(capsys, [*args, "--frames", "20"], "a.mp4: has 16 frames, a clip needs 20")
    _fails(
        capsys,
        [*args, "--depth-model", str(tmp_path / "none")],
        "--depth-model " + str(tmp_path / "none") + ": no such directory",
    )
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    # --skip-bad: the broken video is reported and skipped, the rest is written
    (src / "z.mp4").write_bytes(b"not a video at all")
    (src / "z.txt").write_text("broken")
    assert main(["prepare", *args, "--skip-bad"]) == 0
    assert "1 problems skipped" in capsys.readouterr().out
    assert [e["id"] for _, e in read_manifest(out)] == ["a"]
    _fails(capsys, args, "exists and is not empty")


def test_interrupted_run_resumes(world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fulldit.data import prepare as module

    out = tmp_path / "data"
    real, calls = module.make_clips, []

    def dying(source: object, opts: object, depth: object) -> list:
        calls.append(source.name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while working on the second video
        return real(source, opts, depth)

    monkeypatch.setattr(module, "make_clips", dying)
    with pytest.raises(KeyboardInterrupt):
        prepare(world["src"], out, PrepareOptions(frames=8))
    partial = tmp_path / ".data.partial"
    assert not out.exists() and [e["id"] for _, e in read_manifest(partial)] == ["a"]
    with pytest.raises(InputError, match="--resume"):
        prepare(world["src"], out, PrepareOptions(frames=8))
    calls.clear()
    _, written, _ = prepare(world["src"], out, PrepareOptions(frames=8, resume=True))
    assert calls == ["b"] and written == 2 and not partial.exists()
    assert [e["id"] for _, e in read_manifest(out)] == ["a", "b"] and validate(out) == []
    assert load_camera(out / "clips" / "b" / "camera.txt").num_frames == 8


def test_prepare_help(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert all(opt in help_text for opt in ["--frames", "--fps", "--size", "--depth-model", "--skip-bad", "--resume"])
