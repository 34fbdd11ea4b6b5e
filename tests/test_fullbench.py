"""FullBench end to end on a tiny benchmark: generation, scoring, report, resumption, scoring external videos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from fulldit.cli import main
from fulldit.eval.depth_metrics import SynthDepthNet
from fulldit.eval.fullbench import partners
from fulldit.generate import Pipeline
from fulldit.video_io import read_video
from tests.conftest import randomize, tiny_config


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("fullbench")
    args = ["synth", "--bench", "--cases", "2", "--combos", "camera", "identity", "--out", str(d / "bench"),
            "--frames", "4", "--size", "32x32", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    torch.manual_seed(0)
    cfg = tiny_config(attention="isolated")
    pipe = Pipeline.from_config(cfg)
    randomize(pipe.model)
    pipe.save_pretrained(d / "ckpt")
    torch.manual_seed(0)
    SynthDepthNet().save(d / "depth.safetensors")
    return {"dir": d, "bench": d / "bench", "ckpt": d / "ckpt", "depth": d / "depth.safetensors"}


def run_eval(setup: dict[str, Path], out: Path, *extra: str) -> int:
    return main(["eval", "--bench", str(setup["bench"]), "--out", str(out), "--steps", "2", "--device", "cpu",
                 "--depth-estimator", str(setup["depth"]), *extra])  # fmt: skip


def test_generate_score_report_and_resume(setup: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert run_eval(setup, out, "--checkpoint", str(setup["ckpt"])) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["combos"]) == {"camera", "identity"}
    assert set(metrics["combos"]["camera"]) == {"given", "withheld", "other-path"}
    assert {r["condition"] for r in metrics["effect"]} >= {"camera", "identity"}
    assert "flow_epe" in metrics["combos"]["camera"]["given"] and "identity" in metrics["combos"]["identity"]["given"]
    report = (out / "report.md").read_text()
    assert "Condition effect" in report and "## camera" in report and "RotErr" in report
    assert (out / "effects.png").is_file() and (out / "grids" / "camera.mp4").is_file()
    # interrupted run: lose some scores and a video, run again -> the same numbers: identical where the video was
    # kept (scores are read from the .mp4), within float noise where it is generated again (CI once saw a CPU whose
    # kernels were not bit-reproducible between two generations of one video)
    shutil.rmtree(out / "scores" / "camera-001")
    (out / "videos" / "identity-000" / "withheld.mp4").unlink()
    (out / "scores" / "identity-000" / "withheld.json").unlink()
    assert run_eval(setup, out, "--checkpoint", str(setup["ckpt"])) == 0
    again = json.loads((out / "metrics.json").read_text())
    regenerated = again["cases"]["identity-000"].pop("withheld"), metrics["cases"]["identity-000"].pop("withheld")
    assert again["cases"] == metrics["cases"]
    assert_close(*regenerated)


def assert_close(a: object, b: object, where: str = "scores") -> None:
    """Nested dicts/lists of numbers equal in structure and within 1e-3 relative (2e-3 absolute) in value."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{where}[{i}]")
    else:
        assert b == pytest.approx(a, rel=1e-3, abs=2e-3), where


def test_generate_only_then_score_the_videos_without_the_checkpoint(setup: dict[str, Path], tmp_path: Path) -> None:
    """A GPU machine without SfM generates (--generate-only); another scores the report's videos with --videos
    OUT/videos (every variant, no checkpoint): the same metrics as generating and scoring in one run."""
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert run_eval(setup, whole, "--checkpoint", str(setup["ckpt"]), "--combos", "camera") == 0
    assert run_eval(setup, split, "--checkpoint", str(setup["ckpt"]), "--combos", "camera", "--generate-only") == 0
    assert not (split / "metrics.json").exists()
    assert run_eval(setup, split, "--videos", str(split / "videos"), "--combos", "camera") == 0
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (whole, split))
    assert set(b["combos"]["camera"]) == {"given", "withheld", "other-path"}
    assert b["combos"] == a["combos"] and b["effect"] == a["effect"]
    (split / "videos" / "camera-001" / "given.mp4").unlink()  # a report folder without the case's own video
    assert run_eval(setup, tmp_path / "o", "--videos", str(split / "videos"), "--combos", "camera") == 2


def test_scoring_the_ground_truth(setup: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "gt"
    assert run_eval(setup, out, "--videos", str(setup["bench"])) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    given = metrics["combos"]["camera"]["given"]
    assert given["psnr"]["mean"] > 30  # the GT video against itself (H.264 round trip only)
    assert given["flow_epe"]["mean"] < 0.5


def test_bad_inputs(setup: dict[str, Path], tmp_path: Path) -> None:
    assert main(["eval", "--bench", str(tmp_path), "--out", str(tmp_path / "o"), "--videos", str(tmp_path)]) == 2
    assert run_eval(setup, tmp_path / "o2", "--videos", str(tmp_path)) == 2  # no video for the cases
    assert run_eval(setup, tmp_path / "o3", "--checkpoint", str(tmp_path)) == 2  # not a checkpoint
    assert run_eval(setup, tmp_path / "o4", "--checkpoint", str(setup["ckpt"]), "--combos", "nope") == 2


def test_other_path_and_wrong_reference_never_the_case_itself(setup: dict[str, Path], tmp_path: Path) -> None:
    """With --cases 1 a camera case is compared with another case's path and an identity case with another case's
    references, the same ones a full run uses (they come from the whole benchmark, not from the chosen cases)."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert run_eval(setup, one, "--checkpoint", str(setup["ckpt"]), "--cases", "1", "--combos", "camera",
                    "--generate-only") == 0  # fmt: skip
    assert run_eval(setup, two, "--checkpoint", str(setup["ckpt"]), "--combos", "camera", "--generate-only") == 0
    given, other = (read_video(one / "videos" / "camera-000" / f"{v}.mp4") for v in ("given", "other-path"))
    assert (given - other).abs().mean() > 1e-3  # another path moves the camera elsewhere: another video
    assert torch.equal(other, read_video(two / "videos" / "camera-000" / "other-path.mp4"))  # whatever --cases is
    identity = tmp_path / "identity"
    assert run_eval(setup, identity, "--checkpoint", str(setup["ckpt"]), "--cases", "1", "--combos", "identity") == 0
    scores = json.loads((identity / "scores" / "identity-000" / "given.json").read_text())
    assert scores["identity_margin"] != 0  # the wrong references are another case's, not its own


def test_partners_come_from_the_whole_benchmark_in_order() -> None:
    listing = [
        {"id": "c0", "combo": "camera", "seed": 5},
        {"id": "c1", "combo": "camera", "seed": 6},
        {"id": "c2", "combo": "camera", "seed": 7},
        {"id": "lone", "combo": "camera+depth", "seed": 5},
    ]
    entries = {k: {"camera": "cam.txt", "references": [] if k == "c0" else ["ref.png"]} for k in ("c0", "c1", "c2")}
    entries["lone"] = {"camera": "cam.txt", "references": ["ref.png"]}
    assert partners(listing, entries, listing[0]) == ("c1", "c1")
    assert partners(listing, entries, listing[2]) == ("c0", "c1")  # cyclic; the first case with references
    assert partners(listing, entries, listing[1]) == ("c2", "c2")  # never itself
    assert partners(listing, entries, listing[3]) == (None, "c1")  # alone in its combination; c1 has another seed


def test_effect_rows_carry_paired_differences_and_win_counts():
    """The effect table pairs each case with itself: given − withheld per case, its spread and the win count."""
    from types import SimpleNamespace

    from fulldit.eval.fullbench import aggregate

    depth = {"a": (0.05, 0.10), "b": (0.09, 0.08), "c": (0.04, 0.10)}  # given, withheld: b gets worse
    results = {k: {"given": {"depth_inv_mae": g}, "withheld": {"depth_inv_mae": w}} for k, (g, w) in depth.items()}
    results["d"] = {"given": {"depth_inv_mae": 0.01}}  # no withheld variant: not a pair
    by_combo = {"depth": [SimpleNamespace(id=k) for k in "abcd"]}
    row = next(r for r in aggregate(results, by_combo, {})["effect"] if r["metric"] == "depth_inv_mae")
    assert row["pairs_withheld"] == 3 and row["wins_withheld"] == 2
    assert row["diff_withheld"]["mean"] == pytest.approx((-0.05 + 0.01 - 0.06) / 3)
    assert row["diff_withheld"]["std"] > 0.02
    assert "diff_other_path" not in row
