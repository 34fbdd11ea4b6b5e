"""A stream of synthetic clips rendered on the fly, sharded across DataLoader workers and distributed ranks.

Clip i of the global stream is the world rendered with seed `seed + i`. Rank r of R, worker w of W takes the
indices i = start + (r * W + w) + k * R * W, so no clip is rendered twice and the union over all ranks and
workers is the whole stream. Two ways to run it:

- CPU workers render whole clips (`device="cpu"`, DataLoader num_workers > 0);
- on a GPU, workers only plan (`plans_only=True`: scene, camera path, reference views — numpy, the CPU part)
  and the training process renders each batch of plans on its GPU with `render_plans`, in one batched pass.

Training seeds stay below `BENCH_SEED_BASE`: FullBench-Synth cases use seeds above it, never seen in training.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
from torch.utils.data import IterableDataset, get_worker_info

from fulldit.data import Clip
from fulldit.world.clips import ClipPlan, plan_clip, render_plans

BENCH_SEED_BASE = 10**12  # seeds at or above this are reserved for benchmark cases


def shard_info() -> tuple[int, int]:
    """(this process's shard, number of shards) over distributed ranks x DataLoader workers."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    else:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    info = get_worker_info()
    worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
    return rank * workers + worker, world * workers


class SyntheticStream(IterableDataset):
    """Endless (or `limit`-long) stream of rendered `Clip`s, deterministic per seed and index."""

    def __init__(
        self,
        seed: int = 0,
        frames: int = 16,
        height: int = 128,
        width: int = 128,
        device: str | torch.device = "cpu",
        render_batch_size: int = 8,
        references_per_object: int = 2,
        start: int = 0,
        limit: int | None = None,
        plans_only: bool = False,
    ):
        super().__init__()
        self.seed, self.frames, self.height, self.width = seed, frames, height, width
        self.device, self.batch, self.refs = device, render_batch_size, references_per_object
        self.start, self.limit, self.plans_only = start, limit, plans_only

    def indices(self, shard: int, shards: int) -> Iterator[int]:
        """The global clip indices this shard renders, in order."""
        i = self.start + shard
        while self.limit is None or i < self.limit:
            yield i
            i += shards

    def __iter__(self) -> Iterator[Clip | ClipPlan]:
        shard, shards = shard_info()
        pending: list[int] = []
        for i in self.indices(shard, shards):
            pending.append(i)
            if len(pending) == self.batch:
                yield from self._render(pending)
                pending = []
        if pending:
            yield from self._render(pending)

    def _render(self, indices: list[int]) -> Iterator[Clip | ClipPlan]:
        seeds = [self.seed + i for i in indices]
        if max(seeds) >= BENCH_SEED_BASE:
            raise ValueError(f"training seed {max(seeds)} reaches the benchmark range (>= {BENCH_SEED_BASE})")
        plans = [plan_clip(s, self.frames, self.height, self.width, self.refs) for s in seeds]
        if self.plans_only:
            yield from plans
            return
        for i, clip in zip(indices, render_plans(plans, self.height, self.width, self.device)):
            clip.meta["index"] = i
            yield clip
