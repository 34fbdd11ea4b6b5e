"""The `fulldit` command: the installed entry point, generation end to end, and every bad input -> exit 2."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fulldit.camera import build_path, save_camera_re10k
from fulldit.cli import main
from fulldit.generate import Pipeline
from fulldit.video_io import read_image, read_video, write_image, write_video
from tests.conftest import randomize, tiny_config

F, S = 4, 16


def fulldit_exe() -> list[str]:
    exe = shutil.which("fulldit")
    return [exe] if exe else [sys.executable, "-m", "fulldit.cli"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny random checkpoint and one valid file for every condition."""
    d = tmp_path_factory.mktemp("inputs")
    torch.manual_seed(0)
    pipe = Pipeline.from_config(tiny_config(attention="isolated"))
    randomize(pipe.model)
    pipe.save_pretrained(d / "ckpt")
    g = torch.Generator().manual_seed(0)
    save_camera_re10k(build_path("orbit-left 0.4rad", F), d / "cam.txt")
    write_image(d / "ref.png", torch.rand(3, 17, 31, generator=g))  # an odd size: resized and cropped
    ramp = torch.linspace(0.1, 0.9, S)
    write_image(
        d / "first.png", torch.stack([ramp[None].expand(S, S), ramp[:, None].expand(S, S), 0.5 * torch.ones(S, S)])
    )
    np.savez(d / "depth.npz", depth=np.random.default_rng(0).uniform(1, 3, (F, S, S)).astype(np.float32))
    write_video(d / "prefix.mp4", torch.rand(2, 3, S, S, generator=g), fps=4)
    return {
        "ckpt": d / "ckpt",
        "cam": d / "cam.txt",
        "ref": d / "ref.png",
        "first": d / "first.png",
        "depth": d / "depth.npz",
        "prefix": d / "prefix.mp4",
        "dir": d,
    }


def generate_args(inputs: dict[str, Path], out: Path, **override: str) -> list[str]:
    opts = {
        "--checkpoint": str(inputs["ckpt"]),
        "--prompt": "a red sphere",
        "--camera": str(inputs["cam"]),
        "--reference": str(inputs["ref"]),
        "--depth": str(inputs["depth"]),
        "--first-frame": str(inputs["first"]),
        "--frames": str(F),
        "--steps": "2",
        "--device": "cpu",
        "-o": str(out),
    }
    opts.update(override)
    return ["generate"] + [x for k, v in opts.items() if v is not None for x in (k, v)]


def test_help_of_the_installed_command() -> None:
    for sub in [[], ["generate"], ["info"], ["init"]]:
        res = subprocess.run(fulldit_exe() + sub + ["--help"], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        assert "usage: fulldit" in res.stdout
    res = subprocess.run(fulldit_exe() + ["generate", "--help"], capture_output=True, text=True, timeout=120)
    for option in [
        "--prompt",
        "--camera",
        "--reference",
        "--depth",
        "--first-frame",
        "--prefix",
        "--last-frame",
        "--frames",
        "--size",
        "--steps",
        "--guidance",
        "--text-guidance",
        "--seed",
        "--checkpoint",
        "--compile",
        "-o",
    ]:
        assert option in res.stdout


def test_generate_end_to_end(inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "video.mp4"
    assert main(generate_args(inputs, out)) == 0
    video = read_video(out)
    assert video.shape == (F, 3, S, S)
    first = read_image(inputs["first"])
    assert (video[0] - first).abs().mean() < 0.05  # the first frame is kept (H.264 loses a little)
    preview = read_image(out.with_suffix(".png"))
    assert preview.shape[1] > S and preview.shape[2] > 4 * S  # frames plus condition thumbnails
    assert (
        main(generate_args(inputs, tmp_path / "p.mp4", **{"--prefix": str(inputs["prefix"]), "--first-frame": None}))
        == 0
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.mp4", "p.png", "video.mp4", "video.png"]


def test_generate_compiled_matches_eager(
    inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--compile (torch.compile of the blocks, inductor on CPU here) generates the same frames as eager.

    Compared before H.264: on 16x16 clips tiny float differences can flip the encoder's choices.
    """
    from fulldit.model import FullDiT

    frames, compiled = [], []
    generate, compile_blocks = Pipeline.generate, FullDiT.compile_blocks

    def spy_generate(self: Pipeline, *args, **kwargs) -> torch.Tensor:
        frames.append(generate(self, *args, **kwargs))
        return frames[-1]

    def spy_compile(self: FullDiT, **kwargs) -> FullDiT:
        compiled.append(True)
        return compile_blocks(self, **kwargs)

    monkeypatch.setattr(Pipeline, "generate", spy_generate)
    monkeypatch.setattr(FullDiT, "compile_blocks", spy_compile)
    assert main(generate_args(inputs, tmp_path / "eager.mp4")) == 0 and not compiled
    assert main(generate_args(inputs, tmp_path / "compiled.mp4") + ["--compile"]) == 0 and compiled
    assert (tmp_path / "compiled.mp4").is_file()
    torch.testing.assert_close(frames[1], frames[0], atol=1e-4, rtol=0)


def test_info(inputs: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    assert main(["info", str(inputs["ckpt"])]) == 0
    text = capsys.readouterr().out
    assert "parameters" in text and "isolated" in text and "camera" in text


def test_init_writes_a_loadable_checkpoint(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    args = ["init", "--config", str(root / "configs" / "tiny.yaml"), "--out", str(tmp_path / "c"), "model.layers=1"]
    assert main(args) == 0
    assert Pipeline.from_pretrained(tmp_path / "c", device="cpu").model.cfg.layers == 1


def write(d: Path, name: str, content: str | bytes) -> str:
    p = d / name
    p.write_bytes(content) if isinstance(content, bytes) else p.write_text(content)
    return str(p)


def bad_cases(inputs: dict[str, Path]) -> dict[str, tuple[dict[str, str], str]]:
    """Name -> (overridden options, text the error must contain)."""
    d = inputs["dir"]
    good_line = "0 0.8 0.8 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1 0"
    nan_depth = np.ones((F, S, S), np.float32)
    nan_depth[2, 3, 3] = np.nan
    np.save(d / "nan_depth.npy", nan_depth)
    np.save(d / "short_depth.npy", np.ones((F - 1, S, S), np.float32))
    save_camera_re10k(build_path("pan-left 1rad", F + 1), d / "cam5.txt")
    return {
        "missing camera": ({"--camera": str(d / "nope.txt")}, "nope.txt"),
        "short pose line": ({"--camera": write(d, "short.txt", "url\n0 0.8 0.8 0.5 0.5 0 0 1 0 0\n")}, "short.txt:2"),
        "nan pose": (
            {"--camera": write(d, "nan.txt", "url\n" + good_line.replace("0.8 0.8", "nan 0.8") + "\n")},
            "nan.txt",
        ),
        "camera frame count": ({"--camera": str(d / "cam5.txt")}, "5 camera poses"),
        "depth frame count": ({"--depth": str(d / "short_depth.npy")}, "3 depth frames"),
        "nan depth": ({"--depth": str(d / "nan_depth.npy")}, "nan_depth.npy"),
        "garbage image": ({"--reference": write(d, "garbage.png", b"not a png at all")}, "garbage.png"),
        "missing image": ({"--first-frame": str(d / "nope.png")}, "nope.png"),
        "garbage prefix": ({"--prefix": write(d, "garbage.mp4", b"\x00" * 64)}, "garbage.mp4"),
        "not a checkpoint": ({"--checkpoint": str(d)}, "not a fulldit checkpoint"),
        "missing checkpoint": ({"--checkpoint": str(d / "nowhere")}, "nowhere"),
        "bad size": ({"--size": "abc"}, "WIDTHxHEIGHT"),
        "indivisible size": ({"--size": "16x18", "--depth": None, "--first-frame": None}, "size 18x16"),
        "wrong frame count for codec": ({"--frames": "0", "--camera": None, "--depth": None}, "frames"),
        "output not mp4": ({"-o": str(d / "out.avi")}, "out.avi"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing camera",
        "short pose line",
        "nan pose",
        "camera frame count",
        "depth frame count",
        "nan depth",
        "garbage image",
        "missing image",
        "garbage prefix",
        "not a checkpoint",
        "missing checkpoint",
        "bad size",
        "indivisible size",
        "wrong frame count for codec",
        "output not mp4",
    ],
)
def test_bad_input_is_one_line_exit_2_no_output(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, case: str
) -> None:
    override, message = bad_cases(inputs)[case]
    out = tmp_path / "video.mp4"
    try:
        code = main(generate_args(inputs, out, **override))
    except SystemExit as exc:  # argparse rejects a malformed option value before the command runs
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("fulldit: error:") and "\n" not in err and "Traceback" not in err
    assert message in err, err
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a partial file


def test_unknown_option_in_a_real_process(tmp_path: Path) -> None:
    res = subprocess.run(
        fulldit_exe() + ["generate", "--bogus", "1"], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--bogus" in lines[0] and "Traceback" not in res.stderr


def test_missing_file_in_a_real_process(tmp_path: Path) -> None:
    res = subprocess.run(
        fulldit_exe() + ["generate", "--camera", "missing.txt", "-o", "x.mp4"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert res.returncode == 2
    assert res.stderr.strip() == "fulldit: error: missing.txt: no such file"
    assert list(tmp_path.iterdir()) == []
