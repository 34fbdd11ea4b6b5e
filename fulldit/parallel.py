"""One generation across the processes of a torchrun job: guidance branches on different ranks, the sequence split
over the ranks of each branch, the same video as one process.

    torchrun --standalone --nproc_per_node 2 -m fulldit.cli generate ... [--parallel auto|cfg|sequence]

The world of W ranks is a device mesh G x P (`torch.distributed.device_mesh`, dimensions "cfg" and "sequence";
the P ranks of a guidance group are consecutive, so on one host they share NVLink):

- **guidance-parallel** (G groups): the guidance batch (2 or 3 branches, `generate.guidance_branches`) is split
  into G contiguous parts; each group runs the transformer on its rows only and weights their velocities, and one
  all_reduce over the "cfg" dimension per step sums the weighted velocities of all groups. Every rank then holds
  the guided velocity and takes the same Euler step (the noise comes from the seed on the CPU, identical on all).
- **sequence-parallel** (P ranks per group), DeepSpeed-Ulysses: each rank keeps a band of rows of every video frame
  (T x H/P x W tokens) and a contiguous share of the condition tokens through the whole block (modulation,
  projections, text cross-attention, FFN: all per token). Around the self-attention one all_to_all turns this
  rank's tokens x all heads into all tokens x this rank's heads, the model's own attention runs unchanged on those
  heads, and one all_to_all turns the output back. After the last block the bands are all-gathered into the full
  prediction. In the isolated layout the condition cache is computed the same way and kept as each rank's heads
  of every condition token, so a denoising step moves no condition tensor at all and each rank holds 1/P of it.
- `auto`: the G x P with the least transformer work per rank (ceil(branches / G) / P) among those whose P divides
  the heads; ties go to more guidance groups (one all_reduce per step is cheaper than all_to_alls per block). So
  guidance-parallel when the branches divide the ranks (2 branches on 2 or 4 GPUs: G = 2), sequence-parallel
  within each group, and sequence-parallel alone when they do not (3 branches on 2 GPUs: G = 1, P = 2).

Why Ulysses and not ring attention (`torch.distributed.tensor.experimental.context_parallel`): the attention is
fulldit's own (`full`, `isolated` and gated layouts, several SDPA calls over different key sets, key masks of
guidance branches split into dense calls), and over a subset of heads all of it runs as it is; a ring needs every
call rewritten as blockwise attention merged by log-sum-exp, and context_parallel only takes unmasked or causal
SDPA. Per block a rank sends about 4·N·D/P values (q, k, v out, the output back) where a ring passes on 2·N·D (the
keys and values of every other rank): the same at P = 2, less beyond. Ulysses' limit, P must divide the heads
(12 for Wan2.1-1.3B, 40 for 14B), is no limit on one host. The all_to_all is `torch.distributed.all_to_all_single`
with split sizes (bands are uneven when P does not divide the rows) in two small functions; a DTensor
redistribution Shard(tokens) -> Shard(heads) is the same collective, but a band is not a slice of one dimension of
the token tensor.

Weights are replicated; `shard_weights=True` (`--shard-weights`) applies FSDP2 `fully_shard` per block over all
ranks for models that do not fit on one device. FSDP gathers a block's weights collectively, so every rank must run
the same blocks: weight sharding uses sequence-parallelism alone (G = 1).
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from fulldit.attention import attend
from fulldit.errors import InputError

if TYPE_CHECKING:
    from fulldit.conditions import Grid
    from fulldit.model import Block, FullDiT, StepInputs

MODES = ("auto", "cfg", "sequence")


def init_distributed(device: str | torch.device | None = None) -> torch.device:
    """Join the process group torchrun describes (NCCL on GPUs, gloo on CPU) and return this rank's device.

    The group is left at exit (a process that joined it need not remember to).
    """
    cuda = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")
    local = int(os.environ.get("LOCAL_RANK", 0))
    if cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
        atexit.register(_leave)
    return torch.device("cuda", local) if cuda else torch.device("cpu")


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def layout(mode: str, world: int, branches: int, heads: int, shard_weights: bool = False) -> tuple[int, int]:
    """(G guidance groups, P sequence ranks per group), G * P = world, for `branches` guidance rows."""
    if mode not in MODES:
        raise InputError(f"parallel mode {mode!r}: expected one of {', '.join(MODES)}")
    if mode == "cfg":
        if shard_weights:
            raise InputError("weight sharding needs every rank to run the same rows: use --parallel sequence")
        return world, 1
    if mode == "sequence" or shard_weights:
        if heads % world:
            raise InputError(
                f"sequence-parallel splits the model's {heads} attention heads over the ranks: {world} processes "
                "do not divide them"
            )
        return 1, world
    options = [(g, world // g) for g in range(1, world + 1) if world % g == 0 and heads % (world // g) == 0]
    return min(options, key=lambda o: (-(-branches // o[0]) / o[1], o[0] > branches, -o[0]))


def _splits(n: int, parts: int) -> list[int]:
    """Sizes of `parts` near-equal contiguous chunks of n (torch.tensor_split's: the first ones one larger)."""
    return [n // parts + (i < n % parts) for i in range(parts)]


@dataclass(frozen=True)
class Plan:
    """This rank's part of one generation: its guidance rows, and the groups it exchanges results with."""

    rows: list[int]  # indices into the guidance branches
    cfg_group: dist.ProcessGroup | None  # ranks holding the other guidance rows (None: G = 1)
    sequence: SequenceParallel | None  # the ranks sharing these rows' tokens (None: P = 1)

    def combine(self, v: torch.Tensor) -> torch.Tensor:
        """Sum this group's weighted velocities with the other groups' (in place)."""
        if self.cfg_group is not None:
            dist.all_reduce(v, group=self.cfg_group)
        return v


class Parallel:
    """How a Pipeline splits each generation over the ranks of the default process group (`pipe.parallel`)."""

    def __init__(self, mode: str = "auto", shard_weights: bool = False):
        if not dist.is_initialized():
            raise InputError("parallel generation runs under torchrun: call fulldit.parallel.init_distributed() first")
        layout(mode, 1, 1, 1, shard_weights)  # an unknown mode, or cfg with sharded weights, fails before loading
        self.mode, self.shard_weights = mode, shard_weights
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.device_type = "cuda" if "nccl" in dist.get_backend() else "cpu"
        self._meshes: dict[tuple[int, int], DeviceMesh] = {}

    def plan(self, branches: int, heads: int) -> Plan:
        """Split `branches` guidance rows of a model with `heads` heads over the ranks (collective on first use)."""
        g, p = layout(self.mode, self.world, branches, heads, self.shard_weights)
        if (g, p) not in self._meshes:
            self._meshes[g, p] = init_device_mesh(self.device_type, (g, p), mesh_dim_names=("cfg", "sequence"))
        mesh = self._meshes[g, p]
        group = mesh.get_coordinate()[0]
        return Plan(
            rows=torch.arange(branches).tensor_split(g)[group].tolist(),
            cfg_group=mesh.get_group("cfg") if g > 1 else None,
            sequence=SequenceParallel(mesh.get_group("sequence")) if p > 1 else None,
        )

    def shard(self, model: FullDiT) -> FullDiT:
        """FSDP2: each block's weights (then the rest) sharded over all ranks, gathered block by block when used."""
        from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

        mesh = init_device_mesh(self.device_type, (self.world,))
        for block in model.blocks:
            fully_shard(block, mesh=mesh)
            register_fsdp_forward_method(block, "condition_kv")  # the condition cache calls it outside forward
        fully_shard(model, mesh=mesh)
        register_fsdp_forward_method(model, "condition_cache")
        return model


class SequenceParallel:
    """The ranks of one guidance group, which split its tokens (Ulysses); `shard` starts a forward pass."""

    def __init__(self, group: dist.ProcessGroup):
        self.group, self.rank, self.size = group, dist.get_rank(group), dist.get_world_size(group)

    def shard(
        self, xv: torch.Tensor | None, xc: torch.Tensor | None, s: StepInputs, grid: Grid, cached: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, StepInputs]:
        """This rank's band of video rows (B, T*h_r*W, D) and share of condition tokens, with their step inputs."""
        if grid.h < self.size:
            raise InputError(f"the video is {grid.h} token rows high: at most {grid.h} sequence-parallel ranks")
        rows = _splits(grid.h, self.size)
        h0 = sum(rows[: self.rank])

        def band(x: torch.Tensor) -> torch.Tensor:  # (B, T*H*W, ...) -> this rank's rows of every frame
            return x.unflatten(1, (grid.t, grid.h, grid.w))[:, :, h0 : h0 + rows[self.rank]].flatten(1, 3).contiguous()

        n_cond = 0 if xc is None else xc.shape[1]
        cond = _splits(n_cond, self.size)
        c0 = sum(cond[: self.rank])
        shard = SequenceShard(self, [grid.t * r * grid.w for r in rows], cond, rows, grid, cached)
        rope_cond = s.rope_cond
        if rope_cond is not None and xc is not None:
            rope_cond = tuple(r[:, c0 : c0 + cond[self.rank]] for r in rope_cond)
        s = replace(s, rope_video=tuple(band(r) for r in s.rope_video), rope_cond=rope_cond, parallel=shard)
        xc = None if xc is None else xc[:, c0 : c0 + cond[self.rank]].contiguous()
        return None if xv is None else band(xv), xc, s


@dataclass(frozen=True)
class SequenceShard:
    """One forward pass split over a SequenceParallel group: token counts per rank, what the attention hook needs."""

    sp: SequenceParallel
    video: list[int]  # video tokens held by each rank
    cond: list[int]  # condition tokens held by each rank (uncached)
    rows: list[int]  # video token rows per rank
    grid: Grid
    cached: bool  # condition keys/values come from a cache already split by heads

    def to_heads(self, sizes: list[int], *xs: torch.Tensor | None) -> list[torch.Tensor | None]:
        """all_to_all: tensors (B, L_r, H, d) of this rank's tokens -> (B, sum L, H/P, d) of this rank's heads."""
        live = [x for x in xs if x is not None]
        b, _, h, d = live[0].shape
        k, p, hp = len(live), self.sp.size, h // self.sp.size
        # (P, k, B, L_r, H/P, d) in one copy: q, k, v of this rank's tokens, grouped by the rank that gets the heads
        send = torch.stack([x.unflatten(2, (p, hp)).permute(2, 0, 1, 3, 4) for x in live], 1)
        per = [k * b * m * hp * d for m in sizes]
        recv = send.new_empty(sum(per))
        dist.all_to_all_single(recv, send.flatten(), per, [send[0].numel()] * p, group=self.sp.group)
        parts = [c.view(k, b, m, hp, d) for c, m in zip(recv.split(per), sizes)]
        out = iter(torch.cat(parts, 2).unbind(0))  # (B, sum L, H/P, d) each; bands in rank order
        return [None if x is None else next(out) for x in xs]

    def to_sequence(self, sizes: list[int], y: torch.Tensor) -> torch.Tensor:
        """all_to_all back: (B, sum L, H/P*d) of this rank's heads -> (B, L_r, H*d) of this rank's tokens."""
        b, _, f = y.shape
        p = self.sp.size
        send = torch.cat([c.reshape(-1) for c in y.split(sizes, 1)])
        recv = y.new_empty(p * b * sizes[self.sp.rank] * f)
        dist.all_to_all_single(recv, send, [recv.numel() // p] * p, [b * m * f for m in sizes], group=self.sp.group)
        return recv.view(p, b, sizes[self.sp.rank], f).permute(1, 2, 0, 3).flatten(2)  # heads in rank order

    def heads(self, total: int) -> slice:
        hp = total // self.sp.size
        return slice(self.sp.rank * hp, (self.sp.rank + 1) * hp)

    def attention(
        self,
        block: Block,
        qv: torch.Tensor,
        kv: torch.Tensor,
        vv: torch.Tensor,
        qc: torch.Tensor | None,
        kc: torch.Tensor | None,
        vc: torch.Tensor | None,
        s: StepInputs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`Block.attention` (or video-only attention when kc is None) on this rank's heads of every token."""
        heads = self.heads(qv.shape[2])
        qv, kv, vv = self.to_heads(self.video, qv, kv, vv)
        if kc is not None and not self.cached:
            qc, kc, vc = self.to_heads(self.cond, qc, kc, vc)
        with _gate_heads(block, heads):
            if kc is None:
                out_v, out_c = attend(qv, kv, vv, None).flatten(-2), None
            else:
                out_v, out_c = block.attention(qv, kv, vv, qc, kc, vc, s)
        out_v = self.to_sequence(self.video, out_v)
        return out_v, None if out_c is None else self.to_sequence(self.cond, out_c)

    def gather(self, out: torch.Tensor) -> torch.Tensor:
        """All ranks' bands (B, T*h_r*W, C) -> the whole prediction (B, T*H*W, C) on every rank of the group."""
        g, top = self.grid, max(self.rows)
        x = out.unflatten(1, (g.t, self.rows[self.sp.rank], g.w))
        x = torch.nn.functional.pad(x, (0, 0, 0, 0, 0, top - x.shape[2]))  # equal shapes for all_gather
        bands = [torch.empty_like(x) for _ in range(self.sp.size)]
        dist.all_gather(bands, x.contiguous(), group=self.sp.group)
        return torch.cat([b[:, :, :r] for b, r in zip(bands, self.rows)], 2).flatten(1, 3)


@contextlib.contextmanager
def _gate_heads(block: Block, heads: slice) -> Iterator[None]:
    """The per-head condition gate cut to this rank's heads while its attention runs (the only per-head weight).

    Swapped in `_parameters`, as torch.func.functional_call does, so the model's attention code stays unchanged
    (under FSDP2 the entry is the gathered weight during the block's forward).
    """
    gate = block._parameters.get("cond_gate")
    if gate is None:
        yield
        return
    block._parameters["cond_gate"] = gate[heads]
    try:
        yield
    finally:
        block._parameters["cond_gate"] = gate
