"""Training batches addressed by (step, micro-batch): the same step always sees the same clips.

Sample j of step s is global index g * batch_size + j with g = s // reuse (`train.data.reuse` consecutive steps
train on one batch, each with fresh noise, timesteps and frame conditions). Rank r of R with A micro-batches of
size M per step takes indices g*B + (r*A + m)*M ... + M for its m-th micro-batch, so one process with A = 2 and
two processes with A = 1 see the same samples in the same micro-batch slots. Resuming at step s needs only s.

- synthetic: global index i is the world of seed `data.seed + i` (`fulldit.world.dataset.WorldPlans`); DataLoader
  workers plan clips (numpy, CPU) and the training process renders each micro-batch on its own device in one batched
  pass (`fulldit.world.clips.render_plans`);
- folder: a fulldit-dataset/1 folder, reshuffled every epoch with (seed, epoch); index i is position i % N of
  epoch i // N's permutation, and a clip's random start frame is drawn from (seed, i).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from itertools import count
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fulldit.data import Batch, Clip, collate
from fulldit.data.formats import ClipFolder
from fulldit.train.config import DataConfig
from fulldit.world.clips import ClipPlan, render_plans
from fulldit.world.dataset import WorldPlans


class ShuffledFolder(Dataset):
    """A dataset folder seen as an endless sequence of epochs, each in its own seeded order."""

    def __init__(self, cfg: DataConfig):
        self.folder = ClipFolder(cfg.path, cfg.frames, (cfg.height, cfg.width), random_start=True, seed=cfg.seed)
        self.seed = cfg.seed

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, index: int) -> Clip:
        n = len(self.folder)
        epoch, pos = divmod(index, n)
        order = np.random.default_rng([self.seed, epoch]).permutation(n)
        return self.folder.get(int(order[pos]), index)


class MicroBatches:
    """Lists of global indices, one per micro-batch of this rank, for each batch group from `start_group` on.

    Group g holds the batch of steps g * reuse ... (g + 1) * reuse - 1. A batch sampler for DataLoader, and the one
    way the training data (the synthetic world or a folder) is split over ranks; workers get whole micro-batches.
    """

    def __init__(self, batch_size: int, micro: int, accumulation: int, rank: int, start_group: int, groups: int):
        self.batch_size, self.micro, self.accumulation = batch_size, micro, accumulation
        self.rank, self.start, self.groups = rank, start_group, groups

    def __iter__(self) -> Iterator[list[int]]:
        for group in range(self.start, self.groups) if self.groups else count(self.start):
            for m in range(self.accumulation):
                first = group * self.batch_size + (self.rank * self.accumulation + m) * self.micro
                yield list(range(first, first + self.micro))

    def __len__(self) -> int:
        return (self.groups - self.start) * self.accumulation


def _keep(items: list) -> list:
    return items


def make_loader(cfg: DataConfig, sampler: MicroBatches) -> DataLoader:
    """A DataLoader yielding lists of ClipPlan (synthetic) or Clip (folder) per micro-batch."""
    if cfg.source == "synthetic":
        dataset = WorldPlans(cfg.seed, cfg.frames, cfg.height, cfg.width, cfg.references_per_object)
    else:
        dataset = ShuffledFolder(cfg)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=_keep,
        num_workers=cfg.workers,
        persistent_workers=cfg.workers > 0,
        prefetch_factor=4 if cfg.workers > 0 else None,
    )


def to_batch(items: list[ClipPlan] | list[Clip], cfg: DataConfig, device: torch.device) -> Batch:
    """Render planned clips on `device` (synthetic) or stack loaded ones: a Batch ready for prepare_batch."""
    if items and isinstance(items[0], ClipPlan):
        items = render_plans(items, cfg.height, cfg.width, device)
    return collate(items)


T = TypeVar("T")


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Every tensor inside obj (dataclasses, lists, tuples, dicts)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from _tensors(getattr(obj, f.name))
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _tensors(x)
    elif isinstance(obj, dict):
        for x in obj.values():
            yield from _tensors(x)


class Prefetcher(Generic[T]):
    """Produces the next item (e.g. a rendered and encoded batch group) while the current one trains.

    `produce` runs in one background thread; on a GPU under its own CUDA stream, so the world's ray caster and the
    codec overlap the training step instead of preceding it. `get` hands an item to the caller's stream (which
    waits for it; the tensors are marked as used there, so the caching allocator cannot recycle them early) and
    starts producing the next. Items come in the order `produce` makes them: the data of a step never changes.
    """

    def __init__(self, produce: Callable[[], T], device: torch.device):
        self.produce, self.device = produce, device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="fulldit-data")
        self.pending = self.pool.submit(self._make)

    def _make(self) -> tuple[T, torch.cuda.Event | None]:
        if self.stream is None:
            return self.produce(), None
        with ExitStack() as stack:
            stack.enter_context(torch.cuda.device(self.device))
            stack.enter_context(torch.cuda.stream(self.stream))
            item = self.produce()
            done = torch.cuda.Event()
            done.record(self.stream)
        return item, done

    def get(self) -> T:
        item, done = self.pending.result()
        if done is not None:
            stream = torch.cuda.current_stream(self.device)
            stream.wait_event(done)
            for t in _tensors(item):
                if t.is_cuda:
                    t.record_stream(stream)
        self.pending = self.pool.submit(self._make)
        return item

    def close(self) -> None:
        """Stop after the item in production (if any); nothing more is produced."""
        self.pending.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)
