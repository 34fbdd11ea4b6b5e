"""The synthetic world as an index-addressed dataset: index i is the world of seed `seed + i`.

This is the one way the world is split over processes: by index. A sampler hands each process (rank, DataLoader
worker) its own indices — in training `fulldit.train.data.MicroBatches`, which gives rank r of R its slots of every
global batch, while the DataLoader gives each worker whole micro-batches — so no clip is made twice, the union over
all processes is the whole stream, and a resumed run needs only its step. The dataset returns plans (`ClipPlan`:
scene, camera path, reference views — numpy, the CPU part), which DataLoader workers make; the process that trains
renders a batch of plans on its own device in one pass (`render_plans`).

Training seeds stay below `BENCH_SEED_BASE`: FullBench-Synth cases use seeds above it, never seen in training.
"""

from __future__ import annotations

from torch.utils.data import Dataset

from fulldit.world.clips import ClipPlan, plan_clip

BENCH_SEED_BASE = 10**12  # seeds at or above this are reserved for benchmark cases


class WorldPlans(Dataset):
    """Index i -> the plan of the world with seed `seed + i`, for every index whose seed is a training seed."""

    def __init__(
        self, seed: int = 0, frames: int = 16, height: int = 128, width: int = 128, references_per_object: int = 2
    ):
        self.seed, self.frames, self.height, self.width = seed, frames, height, width
        self.references_per_object = references_per_object

    def __len__(self) -> int:
        return BENCH_SEED_BASE - self.seed  # every training seed from `seed` on

    def __getitem__(self, index: int) -> ClipPlan:
        if not 0 <= index < len(self):
            raise IndexError(
                f"world index {index}: seed {self.seed + index} leaves the training seeds [0, {BENCH_SEED_BASE}) "
                "(seeds from there on are the benchmark's)"
            )
        return plan_clip(self.seed + index, self.frames, self.height, self.width, self.references_per_object)
