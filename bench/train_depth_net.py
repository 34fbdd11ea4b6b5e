"""Train SynthDepthNet, the depth estimator of FullBench-Synth, on the synthetic world alone; then score it.

Each step plans clips of training seeds (TRAIN_SEED_BASE + i, far below the benchmark's seeds >= 10**12; numpy,
in DataLoader workers), renders --frames-per-clip random frames of each on the device (exact metric depth; one
batched ray-casting pass), augments them (flip, brightness/contrast, noise, softening) and takes an AdamW step on
`depth_loss` (scale-and-shift-invariant L1 on inverse depth with one alignment per clip, as the metric does, +
gradient matching + a small metric term), bf16 autocast on CUDA, warm-up then cosine decay over the step or time
budget. Every --eval-every steps it prints the loss and the errors on 8 validation clips;
at the end it scores 64 held-out ground-truth clips (another seed range) with the depth-control metric:
AbsRel and inverse-depth MAE after per-clip alignment (and per-frame), and how often a clip's prediction is
closer to its own depth than to another clip's. That error is the floor of the metric: FullBench-Synth cannot
score a generated video better than this net scores the true render.

    python bench/train_depth_net.py --device cuda --minutes 5 --out fulldit/eval/weights/synth_depth.safetensors
    python bench/train_depth_net.py --steps 3 --size 32 --device cpu --out /tmp/depth.safetensors   # smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from fulldit.camera import CameraPath
from fulldit.eval.depth_metrics import depth_errors, depth_rank_check
from fulldit.eval.depth_net import SynthDepthNet, depth_loss
from fulldit.world.clips import ClipPlan, render_batch
from fulldit.world.dataset import BENCH_SEED_BASE, WorldPlans
from fulldit.world.render import render_many

TRAIN_SEED_BASE = 5_000_000  # training clips: TRAIN_SEED_BASE + i
VAL_SEED_BASE = 800_000_000_000  # validation clips printed during training
HELDOUT_SEED_BASE = 900_000_000_000  # the final held-out clips (below BENCH_SEED_BASE, far above training)
PLAN_FRAMES = 16  # frames of the planned clips the training frames are taken from


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, help="weights file to write (.safetensors)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", type=int, default=128, help="training and evaluation frames are SIZE x SIZE")
    p.add_argument("--batch", type=int, default=128, help="frames per step")
    p.add_argument("--frames-per-clip", type=int, default=8, help="frames rendered from each planned clip")
    p.add_argument(
        "--align-frames",
        type=int,
        default=None,
        help="frames aligned together in the loss (default: all of a clip's, as the metric; 1 = per frame)",
    )
    p.add_argument("--steps", type=int, default=None, help="stop after this many steps (default: --minutes)")
    p.add_argument("--minutes", type=float, default=5.0, help="training time budget (evaluation not counted)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=200, help="warm-up steps (at most a tenth of --steps)")
    p.add_argument("--grad-weight", type=float, default=0.5)
    p.add_argument("--abs-weight", type=float, default=0.25)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 128, 192])
    p.add_argument("--channels-last", action="store_true", help="channels-last convs (10% slower on an H200)")
    p.add_argument("--init", default=None, help="start from these SynthDepthNet weights")
    p.add_argument("--workers", type=int, default=None, help="planning processes (default: up to 8 on CUDA, 0 on CPU)")
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--val-clips", type=int, default=8)
    p.add_argument("--eval-clips", type=int, default=64)
    p.add_argument("--eval-frames", type=int, default=16)
    p.add_argument("--dtype", choices=["fp16", "fp32"], default="fp16", help="stored weight type")
    p.add_argument("--seed", type=int, default=0, help="torch seed (init, frame choice, augmentation)")
    args = p.parse_args(argv)
    if args.batch % args.frames_per_clip or not 1 <= args.frames_per_clip <= PLAN_FRAMES:
        p.error(f"--batch must be a multiple of --frames-per-clip (1..{PLAN_FRAMES})")
    args.align_frames = args.align_frames or args.frames_per_clip
    if args.frames_per_clip % args.align_frames:
        p.error("--frames-per-clip must be a multiple of --align-frames")
    if args.size < 8 or args.steps is not None and args.steps < 1:
        p.error("--size must be >= 8 and --steps >= 1")
    return args


def render_frames(
    plans: list[ClipPlan], per_clip: int, size: int, device: torch.device, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """`per_clip` random frames of each planned clip in one batched pass: rgb (N, 3, S, S), depth (N, S, S)."""
    cams, times = [], []
    for plan in plans:
        n = plan.camera.num_frames
        k = np.sort(rng.choice(n, per_clip, replace=False))
        cams.append(CameraPath(plan.camera.intrinsics[k], plan.camera.w2c[k]))
        times.append(torch.from_numpy(k / max(n - 1, 1)))  # the time `render_plans` gives frame k
    rgb, depth, _ = render_many([p.scene for p in plans], cams, size, size, times, device)
    return rgb.flatten(0, 1), depth.flatten(0, 1)


def augment(rgb: torch.Tensor, depth: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Flips, brightness/contrast jitter, sensor noise and softening (the look of decoded generated frames)."""
    n, dev = rgb.shape[0], rgb.device

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return (torch.rand(n, *shape, generator=g) * (hi - lo) + lo).to(dev)

    flip = (torch.rand(n, generator=g) < 0.5).to(dev)
    rgb = torch.where(flip[:, None, None, None], rgb.flip(-1), rgb)
    depth = torch.where(flip[:, None, None], depth.flip(-1), depth)
    rgb = (rgb - 0.5) * u(0.75, 1.25, 1, 1, 1) + 0.5 + u(-0.08, 0.08, 1, 1, 1) + u(-0.03, 0.03, 3, 1, 1)
    soft = (torch.rand(n, generator=g) < 0.3).to(dev)[:, None, None, None]
    h, w = rgb.shape[-2:]
    blurred = F.interpolate(F.avg_pool2d(rgb, 2, ceil_mode=True), size=(h, w), mode="bilinear", align_corners=False)
    rgb = torch.where(soft, blurred, rgb)
    noise = torch.randn(rgb.shape, generator=g).to(dev) * u(0.0, 0.03, 1, 1, 1)
    return (rgb + noise).clamp(0, 1), depth


@torch.inference_mode()
def predict(net: SynthDepthNet, video: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """(F, 3, H, W) -> (F, H, W) inverse depth, on the CPU."""
    return torch.cat([net(video[i : i + chunk]).float().cpu() for i in range(0, len(video), chunk)])


def render_clips(base: int, count: int, frames: int, size: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Held-out ground truth: videos (B, F, 3, S, S) and metric depth (B, F, S, S) of seeds base .. base+count-1."""
    videos, depths = [], []
    for i in range(0, count, 16):
        clips = render_batch(range(base + i, base + min(count, i + 16)), frames, size, size, device, 0)
        videos += [c.video.cpu() for c in clips]
        depths += [c.depth.cpu() for c in clips]
    return torch.stack(videos), torch.stack(depths)


def evaluate(net: SynthDepthNet, videos: torch.Tensor, depths: torch.Tensor, rank: bool = True) -> dict[str, float]:
    """Depth-control metric of the net on ground-truth clips: per-clip and per-frame alignment, rank check."""
    was_training = net.training
    net.eval()
    pred = torch.stack([predict(net, v.to(next(net.parameters()).device)) for v in videos])
    net.train(was_training)
    out = depth_errors(pred, depths)
    out.update({f"frame_{k}": v for k, v in depth_errors(pred, depths, per_frame=True).items()})
    if rank and len(videos) >= 2:
        r = depth_rank_check(pred, depths, others=8)
        out.update({"rank_rate": r["rank_rate"], "shuffled_inv_mae": r["shuffled"]})
    return out


def lr_factor(step: int, progress: float, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine from 1 to 0.05 over the budget's progress in [0, 1]."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    g = torch.Generator().manual_seed(args.seed + 1)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    clips_per_step = args.batch // args.frames_per_clip
    workers = args.workers if args.workers is not None else (min(8, (os.cpu_count() or 2) - 1) if cuda else 0)
    world = WorldPlans(TRAIN_SEED_BASE, PLAN_FRAMES, args.size, args.size, references_per_object=0)
    loader = DataLoader(world, batch_size=clips_per_step, num_workers=workers, collate_fn=list,
                        prefetch_factor=4 if workers else None, persistent_workers=workers > 0)  # fmt: skip
    batches = iter(loader)  # planning workers start before CUDA is initialised in this process
    net = SynthDepthNet.from_file(args.init) if args.init else SynthDepthNet(args.widths)
    net = net.to(device).train()
    if args.channels_last:
        net = net.to(memory_format=torch.channels_last)
    params = sum(p.numel() for p in net.parameters())
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    val = render_clips(VAL_SEED_BASE, args.val_clips, 16, args.size, device)
    warmup = min(args.warmup, args.steps // 10) if args.steps else args.warmup
    budget = args.minutes * 60
    print(f"SynthDepthNet {params / 1e6:.2f}M params, widths {net.widths}; {device}; {args.size}x{args.size} frames, "
          f"{args.batch} per step from {clips_per_step} clips; {workers} planning workers; "
          f"budget {args.steps or '-'} steps / {args.minutes} min", flush=True)  # fmt: skip
    step, t_train, t_data, seen = 0, 0.0, 0.0, 0
    sums = {k: torch.zeros((), device=device) for k in ("loss", "ssi", "grad", "abs")}
    count = 0
    t_start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        plans = next(batches)
        if max(p.seed for p in plans) >= BENCH_SEED_BASE:
            raise RuntimeError("training seeds reached the benchmark range")
        rgb, depth = render_frames(plans, args.frames_per_clip, args.size, device, rng)
        if not args.no_augment:
            rgb, depth = augment(rgb, depth, g)
        if args.channels_last:
            rgb = rgb.contiguous(memory_format=torch.channels_last)
        t1 = time.perf_counter()
        progress = max(step / args.steps if args.steps else 0.0, t_train / budget if args.minutes > 0 else 0.0)
        for group in opt.param_groups:
            group["lr"] = args.lr * lr_factor(step, progress, warmup)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            pred = net(rgb)
        loss, parts = depth_loss(pred, depth, args.grad_weight, args.abs_weight, group=args.align_frames)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sums["loss"] += loss.detach()
        for k, v in parts.items():
            sums[k] += v
        count += 1
        step += 1
        seen += len(rgb)
        if cuda and step % 50 == 0:
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        t_data += t1 - t0
        t_train += t2 - t0
        done = (args.steps is not None and step >= args.steps) or (args.minutes > 0 and t_train >= budget)
        if step % args.eval_every == 0 or done or step == 1:
            mean = {k: float(v) / count for k, v in sums.items()}
            ev = evaluate(net, *val, rank=False)
            rate = seen / max(t_train, 1e-9)
            print(f"step {step:6d}  {t_train / 60:5.2f} min  loss {mean['loss']:.4f} (ssi {mean['ssi']:.4f} "
                  f"grad {mean['grad']:.4f} abs {mean['abs']:.4f})  lr {opt.param_groups[0]['lr']:.2e}  "
                  f"{rate:.0f} frames/s (data {100 * t_data / max(t_train, 1e-9):.0f}%)  |  val abs_rel "
                  f"{ev['abs_rel']:.4f} inv_mae {ev['inv_mae']:.4f}", flush=True)  # fmt: skip
            sums = {k: torch.zeros_like(v) for k, v in sums.items()}
            count = 0
            net.save(args.out, torch.float16 if args.dtype == "fp16" else torch.float32)
        if done:
            break
    del batches, loader
    print(f"trained {step} steps, {seen} frames in {t_train / 60:.2f} min ({time.perf_counter() - t_start:.0f} s wall)")
    videos, depths = render_clips(HELDOUT_SEED_BASE, args.eval_clips, args.eval_frames, args.size, device)
    final = evaluate(net, videos, depths)
    info = {"steps": step, "frames": seen, "size": args.size, "minutes": round(t_train / 60, 2),
            "heldout": {k: round(v, 5) for k, v in final.items()},
            "heldout_seeds": f"{HELDOUT_SEED_BASE} + [0, {args.eval_clips})",
            "args": {k: v for k, v in vars(args).items() if k not in ("out", "init")}}  # fmt: skip
    net.save(args.out, torch.float16 if args.dtype == "fp16" else torch.float32, info)
    print(f"held-out ({args.eval_clips} clips x {args.eval_frames} frames at {args.size}x{args.size}, seeds from "
          f"{HELDOUT_SEED_BASE}), per-clip alignment: abs_rel {final['abs_rel']:.4f}  inv_mae {final['inv_mae']:.4f}  "
          f"| per-frame alignment: abs_rel {final['frame_abs_rel']:.4f}  inv_mae {final['frame_inv_mae']:.4f}  "
          f"| right vs shuffled depth: rank rate {final.get('rank_rate', float('nan')):.3f} "
          f"(inv_mae {final['inv_mae']:.4f} vs {final.get('shuffled_inv_mae', float('nan')):.4f})")  # fmt: skip
    size = os.path.getsize(args.out)
    print(f"wrote {args.out} ({size / 2**20:.2f} MiB)")
    print(json.dumps(info["heldout"]))
    return info


if __name__ == "__main__":
    main()
