"""Training throughput and model FLOPs utilisation (MFU), on one GPU or several under torchrun.

One training step = forward + backward + AdamW of the transformer on random latents, text features and
conditions of the training shapes (data loading is not timed: for synth-s see bench/synth.py). MFU counts the
model's matmul and attention FLOPs (fulldit.flops.flops_per_forward, x3 for forward + backward; activation
recomputation is not counted as useful work) against two peaks: the H100/H200 bf16 dense spec (989 TFLOP/s) and
a bf16 8192^3 matmul measured in the same run.

    python bench/train.py --model synth-s --batch 32 --conditions camera depth
    python bench/train.py --model wan-1.3b --batch 1 --activation-checkpointing
    python bench/train.py --model wan-1.3b --batch 1 --activation-checkpointing selective --compile
    torchrun --standalone --nproc_per_node 2 bench/train.py --model synth-s --batch 32     # per-GPU batch
    torchrun --standalone --nproc_per_node 2 bench/train.py --model wan-1.3b --parallel fsdp --activation-checkpointing
    python bench/train.py --model synth-s --device cpu --batch 1 --frames 4 --size 32 --steps 2   # CPU smoke run

Scaling efficiency from 1 to N GPUs = (tokens/s on N) / (N x tokens/s on 1), same per-GPU batch.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import time

import torch
import torch.distributed as dist
from step import condition_mix  # bench/step.py, beside this script
from torch.nn.parallel import DistributedDataParallel

from fulldit.conditions import condition_tokens
from fulldit.config import CameraConfig, ModelConfig, load_config
from fulldit.flops import flops_per_forward
from fulldit.model import FullDiT

SPEC_TFLOPS = 989.0  # H100/H200 SXM bf16 dense

WAN_13B = ModelConfig(
    in_channels=16, patch=(1, 2, 2), dim=1536, layers=30, heads=12, ffn_dim=8960, text_dim=4096,
    attention="full", conditions=("camera", "reference", "depth"),
    camera=CameraConfig(mode="tokens", tokens_per_frame=2, frames_per_token=4),
)  # fmt: skip


def shapes(args: argparse.Namespace) -> tuple[ModelConfig, tuple[int, int, int], int]:
    """(model config, latent (T, H, W), text tokens) for --model."""
    if args.model == "wan-1.3b":
        frames, (h, w) = args.frames or 81, (480, 832) if args.size is None else (args.size, args.size)
        return WAN_13B, (1 + (frames - 1) // 4, h // 8, w // 8), 512
    cfg = load_config("configs/synth-s.yaml").model
    frames, size = args.frames or 16, args.size or 128
    return cfg, (frames, size // 4, size // 4), 160


def matmul_tflops(device: torch.device) -> float:
    """Measured bf16 8192^3 matmul rate (the practical peak)."""
    if device.type != "cuda":
        return float("nan")
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
    return 20 * 2 * 8192**3 / (time.perf_counter() - t0) / 1e12


def inputs(cfg: ModelConfig, lat: tuple[int, int, int], batch: int, text: int, names: list[str], device):
    """Random latents, text features and conditions (bench/step.py's condition mix) for `batch` samples."""
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(batch, cfg.in_channels, *lat, generator=g).to(device)
    ctx = torch.randn(batch, text, cfg.text_dim, generator=g).to(device)
    return x, ctx, condition_mix(names, lat, cfg, device, torch.float32, batch)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["synth-s", "wan-1.3b"], default="synth-s")
    p.add_argument("--batch", type=int, default=32, help="per-GPU batch")
    p.add_argument("--conditions", nargs="*", default=["camera"], help="camera reference depth")
    p.add_argument("--frames", type=int)
    p.add_argument("--size", type=int, help="square frame size (default: the model's)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument(
        "--activation-checkpointing",
        nargs="?",
        const="full",
        default="none",
        choices=["none", "full", "selective"],
        help="recompute blocks in backward: full, or selective (keeps attention outputs); bare flag = full",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile each block (model.compile_blocks)")
    p.add_argument("--parallel", choices=["ddp", "fsdp"], default="ddp")
    p.add_argument("--device", default="cuda")
    args = p.parse_args()

    world = int(os.environ.get("WORLD_SIZE", 1))
    rank = 0
    device = torch.device(args.device)
    if world > 1:
        local = int(os.environ["LOCAL_RANK"])
        if device.type == "cuda":
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        rank = dist.get_rank()
    cfg, lat, text = shapes(args)
    torch.manual_seed(0)
    model = FullDiT(cfg).to(device)
    model.gradient_checkpointing = args.activation_checkpointing
    if args.compile:
        model.compile_blocks()
    module: torch.nn.Module = model
    if world > 1 and args.parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in model.blocks:
            fully_shard(block)
        fully_shard(model)
    elif world > 1:
        module = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                         find_unused_parameters=len(args.conditions) < len(cfg.conditions))  # fmt: skip
    opt = torch.optim.AdamW(model.parameters(), 1e-4, fused=device.type == "cuda")
    x, ctx, conds = inputs(cfg, lat, args.batch, text, args.conditions, device)
    t = torch.rand(args.batch, device=device)
    bf16 = device.type == "cuda"

    def step() -> None:
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            out = module(x, t, ctx, None, conds)
        out.float().square().mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    t_warm = time.perf_counter()
    for _ in range(args.warmup):
        step()
    warmup_s = time.perf_counter() - t_warm  # includes compilation with --compile
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(args.steps):
        if world > 1:
            dist.barrier()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    sec = statistics.median(times)
    grid = model.grid(x.shape)
    segs = condition_tokens(cfg, conds, grid)
    video = grid.tokens
    flops = 3 * args.batch * flops_per_forward(cfg, video, sum(segs), text, False, segs)
    tflops = flops / sec / 1e12
    peak = matmul_tflops(device)
    row = {
        "model": args.model, "gpus": world, "gpu": torch.cuda.get_device_name(device) if bf16 else "cpu",
        "parallel": args.parallel if world > 1 else "-", "batch_per_gpu": args.batch,
        "conditions": "+".join(args.conditions) or "text", "activation_checkpointing": args.activation_checkpointing,
        "compile": args.compile, "warmup_s": round(warmup_s, 1),
        "tokens_per_sample": video + sum(segs), "s_per_step": round(sec, 4),
        "tokens_per_s": round(world * args.batch * (video + sum(segs)) / sec),
        "tflops_per_gpu": round(tflops, 1), "mfu_spec": round(tflops / SPEC_TFLOPS, 3),
        "matmul_tflops": round(peak, 1), "mfu_measured": round(tflops / peak, 3) if peak == peak else None,
        "peak_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 1) if bf16 else None,
        "torch": torch.__version__, "date": datetime.date.today().isoformat(),
    }  # fmt: skip
    if rank == 0:
        print(json.dumps(row), flush=True)
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
