"""Bad input to every `fulldit` command, as a table: exit code 2, one line on stderr, no traceback, nothing written.

Each case runs `fulldit.cli.main` in-process on malformed numbers, paths, configs, checkpoints, datasets, benchmark
folders, videos, images and camera files made once by the `world` fixture; two cases run the installed command in
a real process to show it behaves the same. Outputs point into the test's own empty folder, which must stay empty,
and the fixture's inputs must be left exactly as they were (an output that is an input must not overwrite it).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from fulldit.camera import build_path, save_camera_re10k
from fulldit.cli import main
from fulldit.generate import Pipeline
from fulldit.video_io import write_image, write_video
from tests.conftest import tiny_config

TRAIN_YAML = """\
model: {in_channels: 12, patch: [1, 2, 2], dim: 32, layers: 1, heads: 2, ffn_dim: 64, text_dim: 16,
        camera: {frames_per_token: 1}}
codec: {kind: pixel, stride: [1, 2, 2]}
text: {kind: byte, dim: 16, layers: 1, heads: 2, max_length: 32}
flow: {prediction: velocity}
sample: {frames: 4, height: 16, width: 16, fps: 4, steps: 1}
train: {steps: 1, batch_size: 1, precision: fp32, data: {frames: 4, height: 16, width: 16, workers: 0}}
"""


def _edit_json(path: Path, edit: object) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _truncate(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Valid inputs for every command and, beside each, broken variants."""
    root = tmp_path_factory.mktemp("bad_input")
    torch.manual_seed(0)
    pipe = Pipeline.from_config(tiny_config(attention="isolated"))
    pipe.save_pretrained(root / "ckpt")
    pipe.save_pretrained(root / "sharded", max_shard_bytes=20_000)
    Pipeline.from_config(tiny_config(conditions=("camera",))).save_pretrained(root / "ckpt_camera_only")
    Pipeline.from_config(tiny_config(patch=(1, 2, 3))).save_pretrained(root / "ckpt_patch3")
    shards = sorted((root / "sharded").glob("model-*.safetensors"))
    for name, damage in {
        "shard_truncated": lambda d: _truncate(d / shards[1].name, 100),
        "shard_swapped": lambda d: shutil.copy(d / shards[2].name, d / shards[1].name),
        "shard_missing": lambda d: (d / shards[1].name).unlink(),
        "index_list": lambda d: (d / "model.safetensors.index.json").write_text("[]"),
        "index_escape": lambda d: _edit_json(
            d / "model.safetensors.index.json", lambda j: j["weight_map"].update({"blocks.0.norm3.weight": "../x"})
        ),
        "config_nan": lambda d: _edit_json(d / "config.json", lambda j: j["sample"].update(guidance=float("nan"))),
        "config_binary": lambda d: (d / "config.json").write_bytes(b"\xff\xfe\x00"),
        "config_shape": lambda d: _edit_json(d / "config.json", lambda j: j["model"].update(dim=64)),
        "config_bool": lambda d: _edit_json(d / "config.json", lambda j: j["model"].update(layers=True)),
        "text_truncated": lambda d: _truncate(d / "text_encoder.safetensors", 50),
    }.items():
        shutil.copytree(root / "sharded", root / name)
        damage(root / name)

    save_camera_re10k(build_path("orbit-left 0.4rad", 4), root / "cam.txt")
    (root / "cam_bad.txt").write_text("url\n0 0.8 0.8 0.5 0.5 0 0 1 0 0 x\n")
    (root / "cam_bad.json").write_text('{"intrinsics": [0.8, 0.8, 0.5], "w2c": []}')
    write_image(root / "ref.png", torch.rand(3, 16, 16))
    (root / "garbage.png").write_bytes(b"not a png at all")
    np.savez(root / "depth.npz", depth=np.ones((4, 16, 16), np.float32))
    np.save(root / "nan_depth.npy", np.full((4, 16, 16), np.nan, np.float32))
    write_video(root / "prefix.mp4", torch.rand(2, 3, 16, 16), fps=4)
    (root / "truncated.mp4").write_bytes((root / "prefix.mp4").read_bytes()[:200])
    (root / "afile").write_text("just text\n")
    (root / "emptydir").mkdir()
    (root / "train.yaml").write_text(TRAIN_YAML)

    assert main(["synth", "--out", str(root / "data"), "--n", "1", "--frames", "4", "--size", "16x16"]) == 0
    shutil.copytree(root / "data", root / "data_badline")
    (root / "data_badline" / "manifest.jsonl").write_text("{not json\n")
    shutil.copytree(root / "data", root / "data_format")
    (root / "data_format" / "dataset.json").write_text('{"format": "fulldit-dataset/9"}')

    bench = ["synth", "--bench", "--cases", "2", "--combos", "camera", "identity", "--frames", "4", "--size", "16x16"]
    assert main([*bench, "--out", str(root / "bench")]) == 0
    for name, damage in {
        "bench_nocombo": lambda d: _edit_json(d / "bench.json", lambda j: j["cases"][0].pop("combo")),
        "bench_seed": lambda d: _edit_json(d / "bench.json", lambda j: j["cases"][0].update(seed="x")),
        "bench_condition": lambda d: _edit_json(d / "bench.json", lambda j: j["cases"][0].update(conditions=["warp"])),
        "bench_prefix": lambda d: _edit_json(d / "bench.json", lambda j: j["cases"][0].update(prefix_frames=9)),
        "bench_fps": lambda d: _edit_json(d / "bench.json", lambda j: j.update(fps=0)),
        "bench_video": lambda d: _truncate(d / "clips" / "camera-000" / "video.mp4", 300),
    }.items():
        shutil.copytree(root / "bench", root / name)
        damage(root / name)

    for name in ("src", "src_nocaption", "src_video"):
        (root / name).mkdir()
        shutil.copy(root / "prefix.mp4", root / name / "a.mp4")
        if name != "src_nocaption":
            (root / name / "a.txt").write_text("a caption\n")
    _truncate(root / "src_video" / "a.mp4", 200)

    with socket.socket() as busy:  # a port some other program serves on
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        (root / "busy_port").write_text(str(busy.getsockname()[1]))
        yield root


GEN = ["generate", "--checkpoint", "{w}/ckpt", "--steps", "1", "--device", "cpu", "-o", "{out}/v.mp4"]
INIT = ["init", "--config", "{w}/train.yaml", "--out", "{out}/c"]
SYNTH = ["synth", "--n", "1", "--frames", "4", "--size", "16x16", "--device", "cpu", "--out", "{out}/d"]
EVAL = ["eval", "--bench", "{w}/bench", "--checkpoint", "{w}/ckpt", "--steps", "1", "--device", "cpu"]
TRAIN = ["train", "--config", "{w}/train.yaml", "--device", "cpu", "--out", "{out}/run"]
PREP = ["prepare", "{w}/src"]
CAM = ["camera", "--move", "pan-left"]
FOLDER = ["train.data.source=folder"]

# id -> (arguments; {w} is the fixture folder, {out} the test's own empty folder), text the error must contain
CASES: dict[str, tuple[list[str], str]] = {
    # generate: numbers
    "generate guidance nan": ([*GEN, "--guidance", "nan"], "argument --guidance: 'nan' is not a finite number"),
    "generate text-guidance inf": ([*GEN, "--text-guidance", "inf"], "argument --text-guidance"),
    "generate guidance huge": ([*GEN, "--guidance", "1e400"], "argument --guidance"),
    "generate shift 0": ([*GEN, "--shift", "0"], "argument --shift: 0: must be greater than 0"),
    "generate fps 0": ([*GEN, "--fps", "0"], "argument --fps"),
    "generate seed -1": ([*GEN, "--seed", "-1"], "argument --seed"),
    "generate seed too big": ([*GEN, "--seed", str(2**64)], "argument --seed"),
    "generate steps 0": ([*GEN, "--steps", "0"], "argument --steps: 0: must be at least 1"),
    "generate frames text": ([*GEN, "--frames", "four"], "argument --frames: 'four' is not an integer"),
    "generate size": ([*GEN, "--size", "0x16"], "argument --size"),
    "generate device": ([*GEN, "--device", "gpu7"], "--device gpu7"),
    "generate parallel without torchrun": ([*GEN, "--parallel", "cfg"], "split a generation over torchrun"),
    # generate: paths and files
    "generate output is a folder": ([*GEN[:-1], "{out}/dir.mp4", "--prompt", "x"], "is a directory"),
    "generate output is the prefix": ([*GEN[:-1], "{w}/prefix.mp4", "--prefix", "{w}/prefix.mp4"], "input of"),
    "generate preview is the reference": ([*GEN[:-1], "{w}/ref.mp4", "--reference", "{w}/ref.png"], "input of"),
    "generate output under a file": ([*GEN[:-1], "{w}/afile/v.mp4"], "is a file, not a directory"),
    "generate camera garbage": ([*GEN, "--camera", "{w}/cam_bad.txt"], "cam_bad.txt:2"),
    "generate camera json": ([*GEN, "--camera", "{w}/cam_bad.json"], "cam_bad.json"),
    "generate reference garbage": ([*GEN, "--reference", "{w}/garbage.png"], "garbage.png: cannot read image"),
    "generate depth nan": ([*GEN, "--depth", "{w}/nan_depth.npy"], "non-finite"),
    "generate prefix truncated": ([*GEN, "--prefix", "{w}/truncated.mp4"], "truncated.mp4"),
    # checkpoints
    "checkpoint shard truncated": ([*GEN[:2], "{w}/shard_truncated", *GEN[3:]], "cannot read the weights"),
    "checkpoint shard swapped": ([*GEN[:2], "{w}/shard_swapped", *GEN[3:]], "holds other tensors than"),
    "checkpoint shard missing": ([*GEN[:2], "{w}/shard_missing", *GEN[3:]], "No such file"),
    "checkpoint index not a mapping": (["info", "{w}/index_list"], "weight_map"),
    "checkpoint index leaves the folder": (["info", "{w}/index_escape"], "not a .safetensors file of this"),
    "checkpoint config nan": (["info", "{w}/config_nan"], "sample.guidance: expected a finite number"),
    "checkpoint config not utf-8": (["info", "{w}/config_binary"], "not valid JSON"),
    "checkpoint config shape": (["info", "{w}/config_shape"], "has shape"),
    "checkpoint config bool for int": (["info", "{w}/config_bool"], "model.layers: expected int"),
    "checkpoint text encoder truncated": ([*GEN[:2], "{w}/text_truncated", *GEN[3:]], "text_encoder.safetensors"),
    "info of a file": (["info", "{w}/afile"], "no such checkpoint directory"),
    # init: configs
    "init out is a file": ([*INIT[:-1], "{w}/afile"], "is a file, not a directory"),
    "init out not empty": ([*INIT[:-1], "{w}/src"], "not empty"),
    "init heads 0": ([*INIT, "model.heads=0"], "model.heads=0: must be at least 1"),
    "init eps nan": ([*INIT, "model.eps=.nan"], "model.eps: expected a finite number"),
    "init odd freq_dim": ([*INIT, "model.freq_dim=7"], "model.freq_dim=7"),
    "init patch 0": ([*INIT, "model.patch=[0,2,2]"], "model.patch"),
    "init channels vs codec": ([*INIT, "model.in_channels=7"], "model.in_channels=7"),
    "init sample steps 0": ([*INIT, "sample.steps=0"], "sample.steps=0"),
    "init frames probabilities": ([*INIT, "frames.first=0.9", "frames.last=0.9"], "must be at most 1"),
    "init seed": ([*INIT, "--seed", "-3"], "argument --seed"),
    "init config is a folder": (["init", "--config", "{w}/src", "--out", "{out}/c"], "no such config file"),
    # synth
    "synth out is a file": ([*SYNTH[:-1], "{w}/afile"], "is a file, not a directory"),
    "synth fps nan": ([*SYNTH, "--fps", "nan"], "argument --fps"),
    "synth frames 0": ([*SYNTH, "--frames", "0"], "argument --frames"),
    "synth size too small": ([*SYNTH, "--size", "4x4"], "8..4096"),
    "synth device": ([*SYNTH, "--device", "gpu"], "--device gpu"),
    "synth bench cases 0": ([*SYNTH, "--bench", "--cases", "0"], "argument --cases"),
    # eval: numbers, paths, benchmark folders
    "eval cases 0": ([*EVAL, "--out", "{out}/r", "--cases", "0"], "argument --cases"),
    "eval steps 0": ([*EVAL[:-4], "--steps", "0", "--out", "{out}/r"], "argument --steps"),
    "eval out is the bench": ([*EVAL, "--out", "{w}/bench"], "input of --bench"),
    "eval out is a file": ([*EVAL, "--out", "{w}/afile"], "is a file, not a directory"),
    "eval bench case without combo": ([*EVAL[:2], "{w}/bench_nocombo", *EVAL[3:], "--out", "{out}/r"], "cases[0]"),
    "eval bench seed": ([*EVAL[:2], "{w}/bench_seed", *EVAL[3:], "--out", "{out}/r"], '"seed"'),
    "eval bench condition": ([*EVAL[:2], "{w}/bench_condition", *EVAL[3:], "--out", "{out}/r"], "warp"),
    "eval bench prefix": ([*EVAL[:2], "{w}/bench_prefix", *EVAL[3:], "--out", "{out}/r"], "prefix_frames 9"),
    "eval bench fps": ([*EVAL[:2], "{w}/bench_fps", *EVAL[3:], "--out", "{out}/r"], '"fps"'),
    "eval bench video": ([*EVAL[:2], "{w}/bench_video", *EVAL[3:], "--out", "{out}/r"], "cannot decode video"),
    "eval bench is a dataset": ([*EVAL[:2], "{w}/data", *EVAL[3:], "--out", "{out}/r"], "not a benchmark"),
    "eval videos missing": (
        ["eval", "--bench", "{w}/bench", "--videos", "{w}/emptydir", "--out", "{out}/r"],
        "no video for case",
    ),
    "eval checkpoint lacks a condition": (
        [*EVAL[:3], "--checkpoint", "{w}/ckpt_camera_only", *EVAL[5:], "--out", "{out}/r"],
        "no reference condition",
    ),  # fmt: skip
    "eval checkpoint cannot take the size": (
        [*EVAL[:3], "--checkpoint", "{w}/ckpt_patch3", *EVAL[5:], "--out", "{out}/r"],
        "width of 6",
    ),  # fmt: skip
    "eval device": ([*EVAL[:-2], "--device", "tpu", "--out", "{out}/r"], "--device tpu"),
    # train: training configs, datasets
    "train lr -1": ([*TRAIN, "train.lr=-1"], "train.lr=-1.0: must be positive"),
    "train lr nan": ([*TRAIN, "train.lr=nan"], "train.lr: expected a finite number"),
    "train ema 2": ([*TRAIN, "train.ema=2"], "train.ema=2.0"),
    "train betas": ([*TRAIN, "train.betas=[2,0.9]"], "train.betas"),
    "train weight decay": ([*TRAIN, "train.weight_decay=-1"], "train.weight_decay"),
    "train grad clip": ([*TRAIN, "train.grad_clip=0"], "train.grad_clip"),
    "train warmup": ([*TRAIN, "train.warmup=-1"], "train.warmup"),
    "train workers": ([*TRAIN, "train.data.workers=-1"], "train.data.workers"),
    "train data size": ([*TRAIN, "train.data.height=5"], "train.data.height=5"),
    "train text dropout": ([*TRAIN, "flow.text_dropout=2"], "flow.text_dropout=2.0"),
    "train lr text": ([*TRAIN, "train.lr=fast"], "train.lr: expected float"),
    "train new module lr scale": ([*TRAIN, "train.new_module_lr_scale=0"], "train.new_module_lr_scale"),
    "train validate every": ([*TRAIN, "train.validate_every=-1"], "train.validate_every"),
    "train out is a file": ([*TRAIN[:-1], "{w}/afile"], "is a file, not a directory"),
    "train out is the data": ([*TRAIN[:-1], "{w}/data", *FOLDER, "train.data.path={w}/data"], "input of"),
    "train data is a file": ([*TRAIN, *FOLDER, "train.data.path={w}/afile"], "is a file, not a directory"),
    "train data without manifest": ([*TRAIN, *FOLDER, "train.data.path={w}/emptydir"], "manifest.jsonl"),
    "train data bad lines": ([*TRAIN, *FOLDER, "train.data.path={w}/data_badline"], "no usable clips"),
    "train data format": ([*TRAIN, *FOLDER, "train.data.path={w}/data_format"], "fulldit-dataset/9"),
    "train init truncated": ([*TRAIN, "--init", "{w}/shard_truncated"], "cannot read the weights"),
    # prepare: videos, captions, paths
    "prepare cameras is a file": ([*PREP, "--out", "{out}/p", "--cameras", "{w}/afile"], "--cameras"),
    "prepare captions is a folder": ([*PREP, "--out", "{out}/p", "--captions", "{w}/src"], "--captions"),
    "prepare fps inf": ([*PREP, "--out", "{out}/p", "--fps", "inf"], "argument --fps"),
    "prepare out under a file": ([*PREP, "--out", "{w}/afile/p"], "is a file, not a directory"),
    "prepare out is the source": ([*PREP, "--out", "{w}/src"], "input of SRC"),
    "prepare missing caption": (["prepare", "{w}/src_nocaption", "--out", "{out}/p"], "missing caption"),
    "prepare truncated video": (["prepare", "{w}/src_video", "--out", "{out}/p"], "cannot open video"),
    "prepare device": ([*PREP, "--out", "{out}/p", "--device", "gpu"], "--device gpu"),
    # convert
    "convert shard-mb nan": (
        ["convert", "{w}/src", "--from", "wan2.1", "--out", "{out}/c", "--shard-mb", "nan"],
        "argument --shard-mb",
    ),  # fmt: skip
    "convert out is the source": (["convert", "{w}/src", "--from", "wan2.1", "--out", "{w}/src"], "input of"),
    "convert open gates without gates": (
        ["convert", "{w}/ckpt", "--from", "open-gates", "--out", "{out}/c"],
        "has no condition gates",
    ),  # fmt: skip
    "convert source is a file": (["convert", "{w}/afile", "--from", "wan2.1", "--out", "{out}/c"], "not a directory"),
    # camera files and numbers
    "camera convert onto itself": (["camera", "--convert", "{w}/cam.txt", "-o", "{w}/cam.txt"], "input of"),
    "camera output under a file": ([*CAM, "-o", "{w}/afile/c.txt"], "is a file, not a directory"),
    "camera fov 180": ([*CAM, "--fov", "180", "-o", "{out}/c.txt"], "argument --fov: 180: must be in (0, 180)"),
    "camera frames 1": ([*CAM, "--frames", "1", "-o", "{out}/c.txt"], "argument --frames"),
    "camera degrees inf": ([*CAM, "--degrees", "1e400", "-o", "{out}/c.txt"], "argument --degrees"),
    "camera zoom nan": (["camera", "--move", "zoom-in", "--zoom", "nan", "-o", "{out}/c.txt"], "argument --zoom"),
    "camera plot a folder": (["camera", "--plot", "{w}/src", "-o", "{out}/p.png"], "is a directory"),
    "camera plot garbage": (["camera", "--plot", "{w}/cam_bad.txt", "-o", "{out}/p.png"], "cam_bad.txt:2"),
    # demo (checked before Gradio starts or the model loads)
    "demo port": (["demo", "--checkpoint", "{w}/ckpt", "--port", "70000"], "argument --port"),
    "demo port in use": (["demo", "--checkpoint", "{w}/ckpt", "--port", "{port}"], "cannot serve there"),
    "demo device": (["demo", "--checkpoint", "{w}/ckpt", "--device", "meta"], "--device meta"),
}


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def _argv(args: list[str], world: Path, out: Path) -> list[str]:
    port = (world / "busy_port").read_text()
    return [a.format(w=world, out=out, port=port) for a in args]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(world: Path, tmp_path: Path, capsys: pytest.CaptureFixture, case: str) -> None:
    args, message = CASES[case]
    (tmp_path / "dir.mp4").mkdir()  # an output path that is a folder (the only thing allowed in tmp_path)
    before = _snapshot(world)
    try:
        code = main(_argv(args, world, tmp_path))
    except SystemExit as exc:  # argparse rejects a malformed value before the command runs
        code = exc.code
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fulldit: error: "), captured.err
    assert "Traceback" not in captured.err
    assert message in lines[0], lines[0]
    assert [p.name for p in tmp_path.iterdir()] == ["dir.mp4"] and not any((tmp_path / "dir.mp4").iterdir())
    assert _snapshot(world) == before  # no input changed, nothing written beside them


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "--guidance", "nan", "-o", "{out}/v.mp4"], "argument --guidance"),
        ([*TRAIN, "train.lr=-1"], "train.lr=-1.0: must be positive"),
    ],
)
def test_bad_input_in_a_real_process(world: Path, tmp_path: Path, args: list[str], message: str) -> None:
    exe = shutil.which("fulldit")
    cmd = [exe] if exe else [sys.executable, "-m", "fulldit.cli"]
    res = subprocess.run(cmd + _argv(args, world, tmp_path), capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in res.stderr, res.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_table_covers_every_command() -> None:
    commands = {args[0] for args, _ in CASES.values()}
    assert commands == {"generate", "info", "init", "synth", "eval", "train", "prepare", "convert", "camera", "demo"}
    assert len(CASES) >= 40
