"""Synthetic-world rendering speed, and whether it keeps a training step fed, side by side in one run.

A clip is made in two parts: planning (`plan_clip`: scene, camera path, reference views; numpy on one CPU
core) and rendering (`render_plans`: the batched ray caster on the device). The script prints both rates,
the end-to-end rate of `render_batch` (plan + render in one process), and the time of one training step
(forward + backward + AdamW) of a model config at the same batch size on the same device, so "render time /
step time" says what fraction of a step data generation costs when the GPU renders and CPU workers plan.

    python bench/synth.py --device cpu                      # 2-core CPU
    python bench/synth.py --device cuda --config configs/tiny.yaml --batch 32
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time

import torch

from fulldit.conditions import ConditionInput
from fulldit.config import load_config
from fulldit.flow import flow_loss, interpolate, sample_time
from fulldit.model import FullDiT
from fulldit.world.clips import plan_clip, render_batch, render_plans


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_it(fn, device: torch.device, repeat: int) -> float:
    fn()  # warm-up: kernels, caches
    times = []
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def train_step_seconds(
    config: str, batch: int, frames: int, height: int, width: int, device: torch.device, repeat: int
) -> float:
    """One optimisation step of the config's transformer on random latents with all conditions present."""
    cfg = load_config(config)
    m = cfg.model
    model = FullDiT(m).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    s = cfg.codec.stride
    t_lat, h_lat, w_lat = frames // s[0], height // s[1], width // s[2]
    x0 = torch.randn(batch, m.in_channels, t_lat, h_lat, w_lat, device=device)
    ctx = torch.randn(batch, 32, m.text_dim, device=device)
    yes = torch.ones(batch, dtype=torch.bool, device=device)
    tf = t_lat // m.patch[0]
    conds = {
        "camera": ConditionInput(torch.randn(batch, tf, 16 * m.camera.frames_per_token, device=device), yes),
        "reference": ConditionInput(
            torch.randn(batch, 2, m.in_channels, h_lat, w_lat, device=device),
            torch.ones(batch, 2, dtype=torch.bool, device=device),
        ),
        "depth": ConditionInput(torch.randn_like(x0), yes),
    }
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step() -> None:
        noise = torch.randn_like(x0)
        t = sample_time(batch, cfg.flow).to(device)
        x_t = interpolate(x0, noise, t)
        with amp:
            out = model(x_t, t, ctx, None, conds)
        flow_loss(out, x0, noise, x_t, t, cfg.flow).mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return time_it(step, device, repeat)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--height", type=int, default=128)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--config", default="configs/tiny.yaml", help="model whose training step is compared")
    p.add_argument("--batch", type=int, default=32, help="training batch size for the comparison")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    device = torch.device(args.device)
    size = dict(frames=args.frames, height=args.height, width=args.width, device=device)

    hw = dict(height=args.height, width=args.width)
    t0 = time.perf_counter()
    plans = [plan_clip(s, args.frames, **hw) for s in range(max(args.batches))]
    plan_rate = len(plans) / (time.perf_counter() - t0)
    print(f"  planning: {plan_rate:.0f} clips/s on one CPU core", flush=True)
    rows = []
    for b in args.batches:
        seeds = iter(range(10**6))
        both = time_it(lambda b=b, s=seeds: render_batch([next(s) for _ in range(b)], **size), device, args.repeat)
        render = time_it(lambda b=b: render_plans(plans[:b], device=device, **hw), device, args.repeat)
        rows.append((b, render, b / render, both, b / both))
        print(f"  batch {b:3d}: render {render:.3f} s ({b / render:.0f} clips/s), plan+render {both:.3f} s", flush=True)
    render_for_batch = args.batch / max(r[2] for r in rows)
    step = train_step_seconds(args.config, args.batch, args.frames, args.height, args.width, device, args.repeat)

    name = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"\n# bench/synth.py  {datetime.date.today()}  {name}  torch {torch.__version__}")
    print(f"# clips of {args.frames} frames at {args.width}x{args.height}")
    print(f"# planning (numpy, one CPU core): {plan_rate:.0f} clips/s")
    print("| batch | render s | render clips/s | plan+render s | plan+render clips/s |")
    print("|---|---|---|---|---|")
    for b, render, rate, both, both_rate in rows:
        print(f"| {b} | {render:.3f} | {rate:.1f} | {both:.3f} | {both_rate:.1f} |")
    print(
        f"\ntraining step of {args.config} at batch {args.batch} (bf16 autocast on GPU): {step:.3f} s; rendering "
        f"{args.batch} planned clips at the best rate above: {render_for_batch:.3f} s = "
        f"{render_for_batch / step:.0%} of a step; planning them in time needs "
        f"{args.batch / plan_rate / step:.1f} CPU cores"
    )


if __name__ == "__main__":
    main()
