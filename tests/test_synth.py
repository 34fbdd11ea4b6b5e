"""The synthetic world as a dataset: sharding across ranks and workers, determinism; `fulldit synth`, the benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from fulldit.cli import main
from fulldit.data import collate
from fulldit.data.formats import ClipFolder, read_manifest
from fulldit.train.data import MicroBatches
from fulldit.world.clips import render_batch, render_plans
from fulldit.world.dataset import BENCH_SEED_BASE, WorldPlans
from fulldit.world.synth import COMBOS, bench_seed

TINY = dict(frames=2, height=32, width=32)


def test_micro_batches_partition_the_world_over_ranks() -> None:
    """The one way the world is sharded: by index, each rank its slots of every global batch, no index twice."""
    seen = [i for rank in range(3) for batch in MicroBatches(12, 2, 2, rank, start_group=1, groups=5) for i in batch]
    assert sorted(seen) == list(range(12, 60))  # every clip of batches 1..4 once, none twice


def test_dataloader_workers_plan_distinct_clips() -> None:
    for rank in range(2):  # two ranks x two workers: each rank its own indices, each worker whole micro-batches
        sampler = MicroBatches(4, 1, 2, rank, start_group=0, groups=3)
        loader = DataLoader(WorldPlans(**TINY), batch_sampler=sampler, num_workers=2, collate_fn=list)
        indices = [plan.seed for batch in loader for plan in batch]
        assert sorted(indices) == [i for i in range(12) if (i % 4) // 2 == rank]


def test_world_is_deterministic_and_collates() -> None:
    world = WorldPlans(**TINY)
    a = render_plans([world[i] for i in range(3)], 32, 32)
    b = render_plans([world[i] for i in range(3)], 32, 32)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.video, y.video) and x.caption == y.caption
    batch = collate(a)
    assert batch.video.shape == (3, 2, 3, 32, 32) and batch.has_depth.all()
    assert batch.references is not None and batch.has_reference.any(1).all()


def test_training_seeds_never_reach_the_benchmark() -> None:
    last = WorldPlans(seed=BENCH_SEED_BASE - 1, **TINY)
    assert len(last) == 1 and last[0].seed == BENCH_SEED_BASE - 1
    with pytest.raises(IndexError, match="benchmark"):
        last[1]
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


def test_planned_then_rendered_equals_rendering_directly() -> None:
    plans = [WorldPlans(seed=5, **TINY)[i] for i in range(2)]
    for rendered, direct in zip(render_plans(plans, 32, 32), render_batch([5, 6], **TINY), strict=True):
        assert torch.equal(rendered.video, direct.video) and rendered.caption == direct.caption
