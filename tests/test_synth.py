"""The synthetic stream: sharding across workers and ranks, determinism; the synth CLI and the benchmark split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from fulldit.cli import main
from fulldit.data import collate
from fulldit.data.formats import ClipFolder, read_manifest
from fulldit.world.dataset import BENCH_SEED_BASE, SyntheticStream
from fulldit.world.synth import COMBOS, bench_seed

TINY = dict(frames=2, height=32, width=32)


def test_shards_partition_the_stream() -> None:
    stream = SyntheticStream(start=5, limit=60, **TINY)
    seen = [i for shard in range(6) for i in stream.indices(shard, 6)]
    assert sorted(seen) == list(range(5, 60))  # every clip once, none twice


def test_dataloader_workers_render_distinct_clips(monkeypatch: pytest.MonkeyPatch) -> None:
    for rank in range(2):  # two ranks x two workers: four disjoint shards
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        loader = DataLoader(SyntheticStream(limit=12, render_batch_size=2, **TINY), batch_size=None, num_workers=2)
        indices = [clip.meta["index"] for clip in loader]
        assert sorted(indices) == [i for i in range(12) if (i % 4) // 2 == rank]


def test_stream_is_deterministic_and_collates() -> None:
    a = list(SyntheticStream(limit=3, **TINY))
    b = list(SyntheticStream(limit=3, **TINY))
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.video, y.video) and x.caption == y.caption
    batch = collate(a)
    assert batch.video.shape == (3, 2, 3, 32, 32) and batch.has_depth.all()
    assert batch.references is not None and batch.has_reference.any(1).all()


def test_training_seeds_never_reach_the_benchmark() -> None:
    with pytest.raises(ValueError, match="benchmark range"):
        next(iter(SyntheticStream(seed=BENCH_SEED_BASE - 1, start=1, **TINY)))
    assert min(bench_seed(c, 0) for c in COMBOS) >= BENCH_SEED_BASE


def test_synth_cli_writes_a_loadable_dataset(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    assert main(["synth", "--n", "3", "--out", str(out), "--frames", "2", "--size", "32x32", "--device", "cpu"]) == 0
    assert (out / "contact_sheet.png").is_file() and len(read_manifest(out)) == 3
    clip = ClipFolder(out, on_error="raise")[1]
    assert clip.video.shape == (2, 3, 32, 32) and clip.camera is not None and clip.depth is not None
    assert main(["synth", "--n", "3", "--out", str(out)]) == 2  # refuses to overwrite


def test_bench_split(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    args = [
        "synth",
        "--bench",
        "--cases",
        "2",
        "--combos",
        "camera+depth",
        "prefix",
        "--out",
        str(out),
        "--frames",
        "4",
        "--size",
        "32x32",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    info = json.loads((out / "bench.json").read_text())
    assert info["version"] == "fullbench-synth/1" and len(info["cases"]) == 4
    assert {c["combo"] for c in info["cases"]} == {"camera+depth", "prefix"}
    assert all(c["seed"] >= BENCH_SEED_BASE for c in info["cases"])
    assert [c for c in info["cases"] if c["combo"] == "prefix"][0]["prefix_frames"] == 1
    assert main(["synth", "--bench", "--combos", "nonsense", "--out", str(tmp_path / "x")]) == 2


def test_plans_only_then_render_equals_rendering_in_the_stream() -> None:
    from fulldit.world.clips import render_plans

    plans = list(SyntheticStream(limit=2, plans_only=True, **TINY))
    clips = list(SyntheticStream(limit=2, **TINY))
    for rendered, direct in zip(render_plans(plans, 32, 32), clips, strict=True):
        assert torch.equal(rendered.video, direct.video) and rendered.caption == direct.caption
