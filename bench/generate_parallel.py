"""One 50-step generation on one GPU vs several (fulldit.parallel): time and peak memory per GPU, per strategy.

`Pipeline.generate` end to end — conditions, guidance branches, condition cache, 50 Euler steps — with a random
transformer at Wan2.1 shapes (isolated layout + condition cache, bf16; `--model 1.3b`: dim 1536, 30 layers,
12 heads; `--model 14b`: dim 5120, 40 layers, 40 heads) at 81 frames of 480x832 (32,760 video tokens). The VAE and
UMT5 are stand-ins of their shapes (random latents, random 512x4096 text features, no decoding): their cost is
the same with or without parallelism and is not what is measured. Guidance 5 / text guidance 3: 3 branches with
conditions, 2 text-only. Mixes: text only; every condition (camera, 3 references, depth: 37,482 condition tokens);
depth alone.

Under torchrun the one-GPU baseline runs on rank 0 alone first (the other ranks wait), then every strategy on all
ranks; the speed-up of a strategy is baseline time / its time.

    torchrun --standalone --nproc_per_node 2 bench/generate_parallel.py --out bench/results/gen-par-h200.jsonl
    torchrun --standalone --nproc_per_node 2 bench/generate_parallel.py --model 14b --mixes depth --no-baseline
    torchrun --standalone --nproc_per_node 2 bench/generate_parallel.py --model 14b --mixes depth --no-baseline \\
        --strategies sequence --shard-weights                      # FSDP2 weights, for GPUs the model does not fit
    torchrun --standalone --nproc_per_node 2 bench/generate_parallel.py --device cpu --tiny   # CPU smoke run (gloo)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
import zlib

import torch
import torch.distributed as dist

from fulldit.camera import build_path
from fulldit.codecs import CodecConfig
from fulldit.config import CameraConfig, FlowConfig, FullDiTConfig, ModelConfig, SampleConfig
from fulldit.generate import Pipeline, Request
from fulldit.model import FullDiT
from fulldit.parallel import Parallel, init_distributed
from fulldit.text_encoders import TextEncoderConfig

SHAPES = {  # dim, layers, heads, ffn
    "1.3b": (1536, 30, 12, 8960),
    "14b": (5120, 40, 40, 13824),
    "tiny": (96, 2, 6, 192),  # 6 heads: 2 and 3 ranks split them
}


class StandInCodec:
    """Wan2.1 VAE shapes (16 channels, causal stride 4 x 8 x 8) without the VAE: random latents, no decoding."""

    latent_channels, stride = 16, (4, 8, 8)

    def valid_frames(self, frames: int) -> bool:
        return frames % 4 == 1

    def latent_frames(self, frames: int) -> int:
        return 1 + (frames - 1) // 4

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        return height // 8, width // 8

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        b, _, f, h, w = video.shape
        g = torch.Generator().manual_seed(f * h * w)
        z = torch.randn(b, 16, self.latent_frames(f), h // 8, w // 8, generator=g)
        return z.to(video.device, video.dtype)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = latents.shape
        return torch.zeros(b, 3, 1 + 4 * (t - 1), 8 * h, 8 * w, device=latents.device)


class StandInText:
    """UMT5's output shape (a zero-padded 512-token context of width 4096): random features per prompt."""

    def __init__(self, dim: int, tokens: int):
        self.dim, self.tokens = dim, tokens

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        feats = [torch.randn(self.tokens, self.dim, generator=torch.Generator().manual_seed(zlib.crc32(p.encode())))
                 for p in prompts]  # fmt: skip
        return torch.stack(feats), torch.ones(len(prompts), self.tokens, dtype=torch.bool)


def build(args: argparse.Namespace, device: torch.device, dtype: torch.dtype, parallel: Parallel | None) -> Pipeline:
    """A pipeline around a random transformer of the chosen shape (identical weights on every rank)."""
    dim, layers, heads, ffn = SHAPES["tiny" if args.tiny else args.model]
    text_dim = 32 if args.tiny else 4096
    model_cfg = ModelConfig(
        in_channels=16, patch=(1, 2, 2), dim=dim, layers=layers, heads=heads, ffn_dim=ffn, text_dim=text_dim,
        attention="isolated", camera=CameraConfig(mode="tokens", tokens_per_frame=2, frames_per_token=4),
    )  # fmt: skip
    config = FullDiTConfig(
        model=model_cfg,
        codec=CodecConfig(kind="pixel"),  # not built: StandInCodec
        text=TextEncoderConfig(kind="byte", dim=text_dim),  # not built: StandInText
        flow=FlowConfig(prediction="velocity"),
        sample=SampleConfig(
            frames=args.frames, height=args.height, width=args.width, steps=args.steps, shift=5.0,
            guidance=args.guidance, text_guidance=args.text_guidance,
        ),
    )  # fmt: skip
    with torch.device("meta"):
        model = FullDiT(model_cfg)
    model.to_dtype(dtype)
    if parallel is not None and parallel.shard_weights:
        parallel.shard(model)
    model.to_empty(device=device)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)  # random weights: the time does not depend on them
    pipe = Pipeline(config, model.eval(), StandInCodec(), StandInText(text_dim, args.text_tokens), device)
    pipe.parallel = parallel
    return pipe


def request(mix: str, args: argparse.Namespace) -> Request:
    g = torch.Generator().manual_seed(0)
    f, h, w = args.frames, args.height, args.width
    req = Request(prompt="a corgi runs along a beach at sunset", seed=0)
    if mix in ("all", "depth"):
        req.depth = torch.rand(f, h, w, generator=g) * 10 + 1
    if mix == "all":
        req.camera = build_path("orbit-left 0.5rad", f)
        req.references = [torch.rand(3, h, w, generator=g) for _ in range(3)]
    return req


def run(pipe: Pipeline, req: Request, args: argparse.Namespace, device: torch.device) -> tuple[float, float | None]:
    """(seconds of one generation after a short warm-up, peak GiB allocated on this rank's GPU)."""
    pipe.generate(req, steps=2)  # warm-up: kernels, process groups, the condition cache path
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    if pipe.parallel is not None:
        dist.barrier()  # start together
    t0 = time.perf_counter()
    pipe.generate(req)
    if device.type == "cuda":
        torch.cuda.synchronize()
    sec = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return sec, peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["1.3b", "14b"], default="1.3b")
    p.add_argument("--device", default="cuda")
    p.add_argument("--mixes", nargs="+", choices=["text", "all", "depth"], default=["text", "all"])
    p.add_argument("--strategies", nargs="+", choices=["cfg", "sequence", "auto"], default=["cfg", "sequence", "auto"])
    p.add_argument("--shard-weights", action="store_true", help="FSDP2 weights (sequence/auto only, no baseline)")
    p.add_argument("--no-baseline", action="store_true", help="skip the one-GPU run (a 14B model with depth)")
    p.add_argument("--compile", action="store_true", help="torch.compile the blocks (fulldit generate --compile)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--frames", type=int, default=81)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--text-tokens", type=int, default=512)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--text-guidance", type=float, default=3.0)
    p.add_argument("--tiny", action="store_true", help="CPU smoke sizes: dim 96, 2 layers, 9 frames of 64x64, 2 steps")
    p.add_argument("--out", help="append one JSON line per result to this file (rank 0)")
    args = p.parse_args()
    if args.tiny:
        args.frames, args.height, args.width, args.steps, args.text_tokens = 9, 64, 64, 2, 16
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not dist.is_initialized():
        cuda = args.device != "cpu" and torch.cuda.is_available()
        # a one-GPU baseline of a large model can keep the other ranks waiting longer than the default timeout
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(hours=2))
    device = init_distributed(args.device) if dist.is_initialized() else torch.device(args.device)
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    rows = []

    def report(mix: str, strategy: str, gpus: int, sec: float, peaks: list[float | None], base: float | None) -> None:
        row = {
            "date": datetime.date.today().isoformat(), "device": name, "model": "tiny" if args.tiny else args.model,
            "mix": mix, "strategy": strategy, "gpus": gpus, "steps": args.steps, "seconds": round(sec, 3),
            "speedup": None if base is None else round(base / sec, 3), "peak_gib": [x and round(x, 2) for x in peaks],
            "compile": args.compile, "shard_weights": args.shard_weights,
        }  # fmt: skip
        rows.append(row)
        if rank == 0:
            speed = "" if base is None else f"  {base / sec:.2f}x"
            mem = "" if peaks[0] is None else "  peak GiB per GPU " + ", ".join(f"{x:.1f}" for x in peaks)
            print(f"{row['model']:5s} {mix:6s} {strategy:9s} {gpus} x {name}  {sec:8.2f} s{speed}{mem}")

    base: dict[str, float] = {}
    if not args.no_baseline and not args.shard_weights:
        pipe = build(args, device, dtype, None) if rank == 0 else None
        if pipe is not None and args.compile:
            pipe.model.compile_blocks()
        for mix in args.mixes:
            if rank == 0:
                base[mix], peak = run(pipe, request(mix, args), args, device)
                report(mix, "one GPU", 1, base[mix], [peak], None)
        del pipe
        if dist.is_initialized():
            dist.barrier()
    if world > 1:
        for strategy in args.strategies:
            if args.shard_weights and strategy == "cfg":
                continue
            pipe = build(args, device, dtype, Parallel(strategy, args.shard_weights))
            if args.compile:
                pipe.model.compile_blocks()
            for mix in args.mixes:
                sec, peak = run(pipe, request(mix, args), args, device)
                peaks: list[float | None] = [None] * world
                dist.all_gather_object(peaks, peak)
                report(mix, strategy, world, sec, peaks, base.get(mix))
            del pipe
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if rank == 0 and args.out:
        with open(args.out, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
