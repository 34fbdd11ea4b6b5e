"""The training loop: one file, nanoGPT-shaped. Same code on CPU, one GPU, and `torchrun` (DDP or FSDP2).

    fulldit train --config configs/synth-s.yaml --out runs/synth-s [--resume] [train.lr=1e-4 ...]
    torchrun --nproc_per_node 8 -m fulldit.cli train --config ... --out ...

`train` reads top-down: `setup` builds a `Run` (configs, processes, model, optimizer, EMA, data, log); each step is
`train_step` (micro-batches, clipping, AdamW, EMA), `agree` (the ranks' loss, and whether to stop), `log` and
`save_and_sample` (checkpoint, sample video, validation); `finish` exports OUT/model.

Every random draw of step s, micro-batch slot g (rank * accumulation + micro index) comes from a generator
seeded with (seed, s, g): frame conditions, text dropout, timesteps and noise; the step's condition subset
comes from (seed, s) and is the same on every rank (FSDP2 needs every rank to reduce the same gradients). With the
index-addressed data (data.py) a run resumed at step s is the run that never stopped, and two processes with
one micro-batch each compute what one process with two accumulated micro-batches computes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import get_model_state_dict
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from fulldit.checkpoint import load_state, load_text_weights, load_weights, read_config
from fulldit.conditions import ConditionInput, condition_tokens, drop_conditions, link_conditions
from fulldit.conditions.frames import frame_timesteps, sample_known_frames
from fulldit.config import FullDiTConfig, to_dict
from fulldit.errors import InputError
from fulldit.flops import flops_per_forward
from fulldit.flow import flow_loss, interpolate, sample_time
from fulldit.generate import Pipeline
from fulldit.model import FullDiT
from fulldit.text_encoders import TextEncoder
from fulldit.train.batch import TrainInputs, prepare_batch
from fulldit.train.config import LoraConfig, TrainConfig, load_train_config
from fulldit.train.curriculum import check_curriculum, draw_subset, subset_name
from fulldit.train.data import MicroBatches, Prefetcher, make_loader, to_batch
from fulldit.train.ema import EMA
from fulldit.train.lora import apply_lora, merged_state
from fulldit.train.state import (
    FULL,
    TRAINER,
    export_ema,
    export_weights,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    split_state,
)
from fulldit.train.validate import ema_pipeline, validation_clips, write_sample, write_validation

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter


class Trainee(nn.Module):
    """Everything that is trained, in one module for DDP/FSDP2: the transformer and a trainable text encoder."""

    def __init__(self, model: FullDiT, text: TextEncoder):
        super().__init__()
        self.model = model
        self.text_encoder = text if isinstance(text, nn.Module) else None
        self.frozen_text = None if isinstance(text, nn.Module) else text  # e.g. T5: encoded without gradients

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, captions: list[str], conditions: dict[str, ConditionInput]
    ) -> torch.Tensor:
        if self.text_encoder is not None:
            context, mask = self.text_encoder(captions)
        else:
            with torch.no_grad():
                context, mask = self.frozen_text.encode(captions)
        return self.model(x, t, context.to(x.device), mask.to(x.device), conditions)


@dataclass
class TrainResult:
    model: Path  # OUT/model: the EMA weights in bf16, for `fulldit generate --checkpoint`
    step: int  # the step reached
    losses: dict[int, float]  # step -> loss averaged over the global batch, for the steps this call ran


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str | None) -> Dist:
    """torchrun sets RANK/WORLD_SIZE/LOCAL_RANK: join the process group (NCCL on GPUs, gloo on CPU)."""
    cuda = torch.cuda.is_available() and device != "cpu"
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        local = int(os.environ.get("LOCAL_RANK", 0))
        if cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if cuda else "gloo")
        dev = torch.device("cuda", local) if cuda else torch.device("cpu")
        return Dist(dist.get_rank(), dist.get_world_size(), dev)
    return Dist(0, 1, torch.device(device or ("cuda" if cuda else "cpu")))


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up to cfg.lr, then cosine decay to cfg.min_lr at cfg.steps."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


SUBSET_SLOT = 2**32 - 1  # the step-wide draw (condition subset), apart from every micro-batch slot


def generators(seed: int, step: int, slot: int, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    """(CPU, device) generators for one micro-batch slot of one step."""
    state = np.random.SeedSequence([seed, step, slot]).generate_state(2, dtype=np.uint64)
    cpu = torch.Generator().manual_seed(int(state[0]) >> 1)
    dev = torch.Generator(device=device).manual_seed(int(state[1]) >> 1)
    return cpu, dev


def param_groups(trainee: nn.Module, tcfg: TrainConfig) -> tuple[list[dict], list[float]]:
    """AdamW's parameter groups and their learning-rate scales: one group, or the backbone and `train.new_modules`
    (FullDiT's condition modules and gates) when those learn at another rate (`train.new_module_lr_scale`)."""
    named = [(n, p) for n, p in trainee.named_parameters() if p.requires_grad]
    if tcfg.new_module_lr_scale == 1.0:
        return [{"params": [p for _, p in named]}], [1.0]
    is_new = [any(f".{part.strip('.')}." in f".{n}." for part in tcfg.new_modules) for n, _ in named]
    new = [p for (_, p), flag in zip(named, is_new) if flag]
    if not new:
        raise InputError(f"train.new_modules {list(tcfg.new_modules)} names no trained parameter")
    return [{"params": [p for (_, p), flag in zip(named, is_new) if not flag]}, {"params": new}], [
        1.0,
        tcfg.new_module_lr_scale,
    ]


class Stop:
    """SIGTERM/SIGINT ask the loop to save and leave at the end of the current step."""

    def __init__(self) -> None:
        self.requested = False
        self.previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)}

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True

    def close(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def micro_step(
    trainee: nn.Module,
    inputs: TrainInputs,
    cfg: FullDiTConfig,
    tcfg: TrainConfig,
    pipe: Pipeline,
    subset: tuple[str, ...],
    step: int,
    slot: int,
    scale: float,
    d: Dist,
) -> tuple[float, int, float]:
    """Forward + backward of one micro-batch on the step's condition subset; returns (loss, tokens, forward FLOPs)."""
    gen, gen_dev = generators(tcfg.seed, step, slot, d.device)
    x0 = inputs.x0
    b, t_lat = x0.shape[0], x0.shape[2]
    conds = {k: v for k, v in inputs.conditions.items() if k in subset}
    probs = {n: getattr(cfg.model, n).dropout for n in conds}
    conds = drop_conditions(conds, probs, gen)
    known = sample_known_frames(b, t_lat, cfg.frames, gen).to(d.device)
    conds = link_conditions(conds, known)  # the depth's reprojection only with the camera and the first frame
    drop_text = (torch.rand(b, generator=gen) < cfg.flow.text_dropout).tolist()
    captions = ["" if drop else c for c, drop in zip(inputs.captions, drop_text)]
    t = frame_timesteps(sample_time(b, cfg.flow, gen).to(d.device), known)  # (B, T), known frames at 0
    noise = torch.randn(x0.shape, generator=gen_dev, device=d.device)
    x_t = interpolate(x0, noise, t)
    with torch.autocast(d.device.type, torch.bfloat16, enabled=tcfg.precision == "bf16"):
        out = trainee(x_t, t, captions, conds)
    loss = flow_loss(out, x0, noise, x_t, t, cfg.flow, known).mean()
    (loss * scale).backward()
    grid = pipe.model.grid(x0.shape)
    segments = condition_tokens(cfg.model, conds, grid)
    text_tokens = pipe.text_encoder.max_length if hasattr(pipe.text_encoder, "max_length") else 0
    flops = b * flops_per_forward(cfg.model, grid.tokens, sum(segments), text_tokens, False, segments)
    return float(loss.detach()), b * (grid.tokens + sum(segments)), flops


def _wrap(trainee: Trainee, tcfg: TrainConfig, d: Dist) -> nn.Module:
    if d.world == 1:
        return trainee
    if tcfg.parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in trainee.model.blocks:
            fully_shard(block)
        fully_shard(trainee)
        return trainee
    ids = [d.device.index] if d.device.type == "cuda" else None
    return DistributedDataParallel(trainee, device_ids=ids, find_unused_parameters=True)


def _init_from(pipe: Pipeline, directory: str) -> None:
    """Start from another checkpoint's weights (e.g. the bf16 weights of an earlier run): fresh optimizer."""
    path = Path(directory)
    read_config(path)
    load_weights(pipe.model, {k: v.float() for k, v in load_state(path).items()}, str(path))
    if isinstance(pipe.text_encoder, nn.Module):
        load_text_weights(pipe.text_encoder, path)
        for p in pipe.text_encoder.parameters():
            p.data = p.data.float()


def _inherit_paths(cfg: FullDiTConfig, directory: str) -> FullDiTConfig:
    """Codec and text-encoder paths left empty in the training YAML come from the `--init` checkpoint's config.

    A converted Wan2.1 checkpoint records where its VAE and UMT5 live, so a recipe need not repeat them.
    """
    codec, text = cfg.codec, cfg.text
    if (codec.path or codec.kind == "pixel") and (text.path or text.kind == "byte"):
        return cfg  # nothing to inherit (and a resumed run need not find its --init again)
    base = read_config(Path(directory))
    if not codec.path and codec.kind == base.codec.kind and base.codec.path:
        codec = dataclasses.replace(codec, path=base.codec.path)
    if not text.path and text.kind == base.text.kind and base.text.path:
        text = dataclasses.replace(text, path=base.text.path)
    return dataclasses.replace(cfg, codec=codec, text=text)


def _resumed_base(last: Path, lora: LoraConfig | None, init: str | None) -> str | None:
    """The `--init` checkpoint of a resumed run (given, or the one trainer.json recorded); LoRA must be unchanged."""
    info = json.loads((last / TRAINER).read_text())
    saved, current = info.get("lora"), None if lora is None else to_dict(lora)
    if saved != current:
        raise InputError(f"{last}: trained with train.lora={saved}, this run has {current}; resume with the same")
    base = info.get("init")
    if lora is not None and init and base and Path(init).resolve() != Path(base):
        print(f"warning: {last} was trained on the frozen base {base}; resuming on --init {init}", flush=True)
    return init or base


def _ema_weights(trainee: Trainee, ema: EMA, cfg: FullDiTConfig, lora: LoraConfig | None) -> dict[str, torch.Tensor]:
    """The EMA weights as a plain FullDiT ("model.*") and trainable text encoder ("text_encoder.*"), on CPU.

    With LoRA the EMA covers only what is trained: the frozen rest comes from the live module and the adapters are
    merged in. Collective under FSDP2: every rank calls it; only rank 0 gets the LoRA weights ({} elsewhere).
    """
    state = ema.full_state()
    if lora is None:
        return state
    live = get_model_state_dict(trainee, options=FULL)  # the frozen backbone (and a frozen text encoder)
    if not live:  # FSDP2 gathers full state dicts onto rank 0 only
        return {}
    live.update(state)
    model = merged_state(cfg.model, lora, split_state(live, "model."))
    text = {k: v for k, v in live.items() if k.startswith("text_encoder.")}
    return {**{f"model.{k}": v for k, v in model.items()}, **text}


@dataclass
class Meter:
    """What the log reports between two of its lines: the loss of each condition subset, and the throughput."""

    since: float = field(default_factory=time.time)
    losses: dict[str, list[float]] = field(default_factory=dict)  # subset name -> [sum of losses, micro-batches]
    tokens: int = 0
    samples: int = 0
    flops: float = 0.0

    def add(self, subset: str, loss: float, tokens: int, samples: int, flops: float) -> None:
        total = self.losses.setdefault(subset, [0.0, 0])
        total[0] += loss
        total[1] += 1
        self.tokens += tokens
        self.samples += samples
        self.flops += 3 * flops  # forward + backward (recomputation not counted)


@dataclass
class Run:
    """A run's state: what `setup` builds, the loop's steps use and `finish` closes (nanoGPT's globals, as data)."""

    cfg: FullDiTConfig
    tcfg: TrainConfig
    lora: LoraConfig | None
    d: Dist
    pipe: Pipeline
    trainee: Trainee  # the unwrapped module: checkpoints, EMA, parameter counts
    module: nn.Module  # what runs forward + backward: the trainee, or DDP around it (FSDP2 shards it in place)
    params: list[nn.Parameter]  # every trained parameter, in the optimizer's order
    lr_scales: list[float]  # of the optimizer's parameter groups
    optimizer: torch.optim.Optimizer
    ema: EMA
    micro: int  # samples per micro-batch
    accumulation: int  # micro-batches per rank and step
    out: Path
    last: Path | None  # the checkpoint resumed from
    start: int  # the step this call starts at
    elapsed_before: float  # seconds trained before this call
    info: dict  # recorded in trainer.json: what a resume must match (--init, LoRA, learning-rate scales)
    writer: SummaryWriter | None  # rank 0 only
    data: Prefetcher[list[TrainInputs]]  # this rank's micro-batches, a batch group at a time
    stop: Stop
    bar: tqdm
    t_start: float  # wall clock at the first step: train.max_minutes, elapsed_s
    meter: Meter = field(default_factory=Meter)
    val_clips: list = field(default_factory=list)  # rendered at the first validation

    @property
    def ckpt_root(self) -> Path:
        return self.out / "checkpoints"


@dataclass
class StepMetrics:
    """What `train_step` hands to the log."""

    loss: float  # this rank's loss, the mean over its micro-batches
    lr: float
    grad_norm: torch.Tensor  # before clipping; a DTensor under FSDP2


def train(
    config: str,
    out: str,
    overrides: list[str] | None = None,
    resume: bool = False,
    init: str | None = None,
    device: str | None = None,
) -> TrainResult:
    """Train (or continue); returns where the model went and the losses of the steps this call ran."""
    run = setup(config, out, overrides, resume, init, device)
    step, reuse = run.start, run.tcfg.data.reuse
    saved_at = step if run.last is not None else -1
    losses: dict[int, float] = {}
    batch_group, batches = -1, []
    try:
        while step < run.tcfg.steps:
            if step // reuse != batch_group:  # this step's micro-batches, made in the background; reused `reuse` times
                batch_group, batches = step // reuse, run.data.get()
            metrics = train_step(run, batches, step)
            step += 1
            stopping, losses[step] = agree(run, metrics.loss)
            log(run, step, metrics, losses[step])
            if save_and_sample(run, step, stopping):
                saved_at = step
            if stopping:
                break
    except BaseException:  # a failed step: the caller's Ctrl-C and SIGTERM work again, the data thread ends
        run.stop.close()
        run.data.close()
        raise
    return finish(run, step, saved_at == step, losses)


def setup(
    config: str, out: str, overrides: list[str] | None, resume: bool, init: str | None, device: str | None
) -> Run:
    """Everything before the first step, in the order the checks and the random draws need: configs, processes,
    the model (--init, LoRA, compile, DDP/FSDP2), AdamW and EMA (restored on --resume), the log, the data."""
    cfg, tcfg, lora, last, init = _resolve(config, out, overrides, resume, init)
    d = setup_distributed(device)
    micro, accumulation = tcfg.accumulation(d.world)
    pipe, lora_counts = _build_pipeline(cfg, tcfg, lora, d, init, last)
    trainee = Trainee(pipe.model, pipe.text_encoder)
    module = _wrap(trainee, tcfg, d)
    groups, lr_scales = param_groups(trainee, tcfg)
    fused = d.device.type == "cuda"
    optimizer = torch.optim.AdamW(groups, tcfg.lr, tcfg.betas, weight_decay=tcfg.weight_decay, fused=fused)
    ema = EMA(trainee, tcfg.ema)
    start, elapsed_before = 0, 0.0
    if last is not None:
        start, elapsed_before = _restore(last, trainee, optimizer, ema, lora is not None, lr_scales)
    info = {
        "init": str(Path(init).resolve()) if init else None,
        "lora": None if lora is None else to_dict(lora),
        "lr_scales": lr_scales,
    }
    writer = None
    if d.main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(Path(out) / "logs"))
        print(
            f"training {trainee.model.num_params() / 1e6:.1f}M parameters on {d.world} x {d.device.type}, "
            f"global batch {tcfg.batch_size} = {d.world} ranks x {accumulation} x {micro}, "
            f"steps {start} -> {tcfg.steps}" + (f" (resumed from {last})" if last else ""),
            flush=True,
        )
        if lora_counts is not None:
            n_trained, n_all = lora_counts
            print(f"LoRA rank {lora.rank}: {n_trained / 1e6:.2f}M of {n_all / 1e6:.1f}M parameters trained", flush=True)
    data = _batch_groups(cfg, tcfg, pipe, d, micro, accumulation, start)
    stop = Stop()
    t_start = time.time()
    bar = tqdm(total=tcfg.steps, initial=start, disable=not d.main, desc="train", unit="step", dynamic_ncols=True)
    params = [p for g in groups for p in g["params"]]
    return Run(
        cfg=cfg, tcfg=tcfg, lora=lora, d=d, pipe=pipe, trainee=trainee, module=module, params=params,
        lr_scales=lr_scales, optimizer=optimizer, ema=ema, micro=micro, accumulation=accumulation, out=Path(out),
        last=last, start=start, elapsed_before=elapsed_before, info=info, writer=writer, data=data, stop=stop,
        bar=bar, t_start=t_start,
    )  # fmt: skip


def _resolve(
    config: str, out: str, overrides: list[str] | None, resume: bool, init: str | None
) -> tuple[FullDiTConfig, TrainConfig, LoraConfig | None, Path | None, str | None]:
    """The configs, LoRA's, the checkpoint to resume from and the `--init` weights; InputError before anything is
    written."""
    cfg, tcfg = load_train_config(config, overrides)
    check_curriculum(tcfg.curriculum, cfg.model.conditions)
    lora = tcfg.lora if tcfg.lora.enabled else None
    ckpt_root = Path(out) / "checkpoints"
    last = latest_checkpoint(ckpt_root) if resume else None
    if not resume and latest_checkpoint(ckpt_root) is not None:
        raise InputError(f"{ckpt_root}: holds checkpoints of an earlier run; pass --resume or choose a new --out")
    if last is not None:
        init = _resumed_base(last, lora, init)
    if init:
        cfg = _inherit_paths(cfg, init)
    return cfg, tcfg, lora, last, init


def _build_pipeline(
    cfg: FullDiTConfig, tcfg: TrainConfig, lora: LoraConfig | None, d: Dist, init: str | None, last: Path | None
) -> tuple[Pipeline, tuple[int, int] | None]:
    """The model, codec and text encoder on this rank's device, with --init's weights and LoRA's adapters, set up
    for activation checkpointing and compile; and LoRA's (trained, all) parameter counts."""
    torch.manual_seed(tcfg.seed)  # the same initial weights on every rank
    pipe = Pipeline.from_config(cfg, d.device)
    pipe.check_size(tcfg.data.frames, tcfg.data.height, tcfg.data.width, "train.data")  # before anything is written
    if tcfg.sample_every:
        pipe.check_size(cfg.sample.frames, cfg.sample.height, cfg.sample.width, "sample")
    if init and (last is None or lora is not None):  # a resumed full fine-tune restores every weight from `last`
        _init_from(pipe, init)
    counts = None
    if lora is not None:  # after --init: the adapters start at zero on top of the loaded backbone
        counts = apply_lora(pipe.model, lora)
        if isinstance(pipe.text_encoder, nn.Module):
            pipe.text_encoder.requires_grad_(False)
    pipe.model.gradient_checkpointing = tcfg.activation_checkpointing
    if tcfg.compile:  # checkpointing, then compile, then sharding: the order torch's FSDP2 + compile expects
        pipe.model.compile_blocks()
    return pipe, counts


def _restore(
    last: Path, trainee: Trainee, optimizer: torch.optim.Optimizer, ema: EMA, trained_only: bool, lr_scales: list[float]
) -> tuple[int, float]:
    """Weights, optimizer, EMA and RNG states from `last`; returns (its step, the seconds trained before it)."""
    info = load_checkpoint(last, trainee, optimizer, ema, trained_only=trained_only)
    if info.get("lr_scales", [1.0]) != lr_scales:  # the optimizer's groups must be the saved ones
        raise InputError(
            f"{last}: trained with learning-rate scales {info.get('lr_scales', [1.0])} (backbone, new modules), "
            f"this run has {lr_scales}; resume with the same train.new_module_lr_scale and train.new_modules"
        )
    return int(info["step"]), float(info.get("elapsed_s", 0.0))


def _batch_groups(
    cfg: FullDiTConfig, tcfg: TrainConfig, pipe: Pipeline, d: Dist, micro: int, accumulation: int, start: int
) -> Prefetcher[list[TrainInputs]]:
    """This rank's micro-batches from step `start` on, one batch group at a time, made while the previous trains."""
    reuse = tcfg.data.reuse
    sampler = MicroBatches(tcfg.batch_size, micro, accumulation, d.rank, start // reuse, -(-tcfg.steps // reuse))
    loader = iter(make_loader(tcfg.data, sampler))

    def next_group() -> list[TrainInputs]:
        """This rank's micro-batches of the next batch group: rendered (or loaded), encoded, conditions laid out."""
        return [
            prepare_batch(to_batch(next(loader), tcfg.data, d.device), cfg.model, pipe.codec, d.device)
            for _ in range(accumulation)
        ]

    return Prefetcher(next_group, d.device)


def train_step(run: Run, batches: list[TrainInputs], step: int) -> StepMetrics:
    """One optimizer step: the learning rate and condition subset of `step`, forward + backward of each micro-batch
    (DDP reduces the gradients on the last), clipping, AdamW, EMA. The log's numbers go to `run.meter`."""
    tcfg, accumulation = run.tcfg, run.accumulation
    lr = lr_at(tcfg, step)
    for param_group, scale in zip(run.optimizer.param_groups, run.lr_scales):
        param_group["lr"] = lr * scale
    total = 0.0
    subset = draw_subset(tcfg.curriculum, step, generators(tcfg.seed, step, SUBSET_SLOT, torch.device("cpu"))[0])
    name = subset_name(subset)
    for m in range(accumulation):
        sync = m == accumulation - 1 or not isinstance(run.module, DistributedDataParallel)
        with contextlib.nullcontext() if sync else run.module.no_sync():
            slot = run.d.rank * accumulation + m
            loss, tokens, flops = micro_step(
                run.module, batches[m], run.cfg, tcfg, run.pipe, subset, step, slot, 1.0 / accumulation, run.d
            )
        total += loss / accumulation
        run.meter.add(name, loss, tokens, run.micro, flops)
    for p in run.params:
        if p.grad is None:  # a condition absent from every micro-batch: a zero gradient, as under DDP
            p.grad = torch.zeros_like(p)
    grad_norm = torch.nn.utils.clip_grad_norm_(run.params, tcfg.grad_clip)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.ema.update(run.trainee)
    return StepMetrics(total, lr, grad_norm)


def agree(run: Run, loss: float) -> tuple[bool, float]:
    """One all-reduce after each step: whether any rank stops (SIGTERM/SIGINT, train.max_minutes), so that all
    stop together; and the loss averaged over the ranks (the global batch)."""
    late = run.tcfg.max_minutes > 0 and time.time() - run.t_start > 60 * run.tcfg.max_minutes
    flag = torch.tensor([float(run.stop.requested or late), loss], device=run.d.device)
    if run.d.world > 1:
        dist.all_reduce(flag)
        flag[1] /= run.d.world
    return bool(flag[0] > 0), float(flag[1])


def log(run: Run, step: int, metrics: StepMetrics, loss: float) -> None:
    """The progress bar; every train.log_every steps, tensorboard's losses (the global batch's and each condition
    subset's on this rank), gradient norm, learning rate and the throughput since the last log."""
    if run.d.main:
        run.bar.update(1)
        run.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{metrics.lr:.2e}")
    if step % run.tcfg.log_every != 0:
        return
    grad_norm = metrics.grad_norm
    if hasattr(grad_norm, "full_tensor"):  # FSDP2: a collective, so on every rank
        grad_norm = grad_norm.full_tensor()
    if not run.d.main:
        return
    meter, writer, dt = run.meter, run.writer, time.time() - run.meter.since
    writer.add_scalar("loss/all", loss, step)
    for subset_tag, (s, n) in meter.losses.items():
        writer.add_scalar(f"loss/{subset_tag}", s / n, step)
    writer.add_scalar("grad_norm", float(grad_norm), step)
    writer.add_scalar("lr", metrics.lr, step)
    writer.add_scalar("throughput/samples_per_s", meter.samples * run.d.world / dt, step)
    writer.add_scalar("throughput/tokens_per_s", meter.tokens * run.d.world / dt, step)
    writer.add_scalar("throughput/tflops_per_device", meter.flops / dt / 1e12, step)
    run.meter = Meter()


def save_and_sample(run: Run, step: int, stopping: bool) -> bool:
    """The checkpoint (every train.save_every steps, at the last, on a stop), then with the EMA weights a sample
    video (train.sample_every) and validation scores (train.validate_every, the last step, a stop); returns whether
    it saved. Saving comes first: a sample that fails must not cost the step's checkpoint."""
    tcfg, final = run.tcfg, step == run.tcfg.steps or stopping
    saved = step % tcfg.save_every == 0 or final
    if saved:
        trainer = {"elapsed_s": run.elapsed_before + time.time() - run.t_start, "world": run.d.world, **run.info}
        lora = run.lora is not None
        save_checkpoint(run.ckpt_root, step, run.trainee, run.optimizer, run.ema, run.cfg, trainer, tcfg.keep, lora)
    sample = tcfg.sample_every and step % tcfg.sample_every == 0
    check = tcfg.validate_every and (step % tcfg.validate_every == 0 or final)
    if not (sample or check):
        return saved
    if run.d.main or tcfg.parallel == "fsdp":  # the gather is collective under FSDP2
        state = _ema_weights(run.trainee, run.ema, run.cfg, run.lora)
    if run.d.main:
        ema_pipe = ema_pipeline(run.pipe, state)
        if sample:
            write_sample(ema_pipe, run.out, step, run.writer)
        if check:
            if not run.val_clips:
                s = run.cfg.sample
                run.val_clips.extend(validation_clips(tcfg.validate_clips, s.frames, s.height, s.width, run.d.device))
            write_validation(ema_pipe, run.val_clips, run.out, step, run.writer)
    return saved


def finish(run: Run, step: int, saved: bool, losses: dict[int, float]) -> TrainResult:
    """After the last step: OUT/model from the checkpoint this call saved last (with LoRA, the adapters merged in),
    the closing line, and the process group's end."""
    run.bar.close()
    run.stop.close()
    run.data.close()
    final = run.out / "model"
    if saved and run.lora is not None:  # the merged EMA: a plain checkpoint, no peft needed to generate
        if run.d.main or run.tcfg.parallel == "fsdp":
            state = _ema_weights(run.trainee, run.ema, run.cfg, run.lora)
        if run.d.main:
            export_weights(final, run.cfg, state)
    elif saved and run.d.main:
        export_ema(latest_checkpoint(run.ckpt_root), final)
    if run.writer is not None:
        run.writer.close()
        reason = "stopped" if step < run.tcfg.steps else "finished"
        print(f"{reason} at step {step}; checkpoint {latest_checkpoint(run.ckpt_root)}; model {final}", flush=True)
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return TrainResult(final, step, losses)
