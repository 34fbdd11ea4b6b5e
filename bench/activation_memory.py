"""Training memory against sequence length: does anything quadratic stay alive for the backward pass? (issue #14)

One forward + backward of a model config (random weights, bf16 autocast, eager) on clips with every condition
(references: half of the batch with 2 of 6 images, a padding mask; depth; text with a padding mask), at 16 and 32
frames (2x the tokens) and at twice the batch. Peak memory growing 2x with the tokens means activations linear in
the sequence (fused attention kernels keep no score matrix); 4x would mean a stored attention matrix. A CUDA
profile of the last step follows.

    python bench/activation_memory.py --config configs/synth-m.yaml --batch 8
"""

from __future__ import annotations

import argparse
import time

import torch

from fulldit.conditions import ConditionInput
from fulldit.config import load_config
from fulldit.model import FullDiT


def step(model: FullDiT, frames: int, batch: int, mixed: bool, device: str) -> tuple[float, float, float]:
    """(forward peak GiB, total peak GiB, seconds) of one forward + backward above the weights' memory."""
    cfg = model.cfg
    size = 32  # latent grid of a 128x128 clip through the pixel codec (1, 4, 4)
    x = torch.randn(batch, cfg.in_channels, frames, size, size, device=device)
    on = torch.ones(batch, dtype=torch.bool, device=device)
    has = torch.ones(batch, 6, dtype=torch.bool, device=device)
    if mixed:
        has[: batch // 2, 2:] = False
    conditions = {
        "depth": ConditionInput(torch.randn(batch, cfg.in_channels, frames, size, size, device=device), on),
        "reference": ConditionInput(torch.randn(batch, 6, cfg.in_channels, size, size, device=device), has),
    }
    ctx = torch.randn(batch, 40, cfg.text_dim, device=device)
    ctx_mask = torch.ones(batch, 40, dtype=torch.bool, device=device)
    ctx_mask[:, 30:] = False
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    t0 = time.perf_counter()
    with torch.autocast("cuda", torch.bfloat16):
        out = model(x, torch.rand(batch, device=device), ctx, ctx_mask, conditions)
    forward = torch.cuda.max_memory_allocated() - base
    out.float().square().mean().backward()
    torch.cuda.synchronize()
    total = torch.cuda.max_memory_allocated() - base
    model.zero_grad(set_to_none=True)
    return forward / 2**30, total / 2**30, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/synth-m.yaml")
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args()
    model = FullDiT(load_config(args.config).model).cuda()
    step(model, 16, 2, True, "cuda")  # warm-up: kernels and plans of these shapes
    for frames, batch, mixed in ((16, args.batch, True), (32, args.batch, True), (16, 2 * args.batch, True),
                                 (16, args.batch, False), (32, args.batch, False)):  # fmt: skip
        fwd, total, sec = step(model, frames, batch, mixed, "cuda")
        print(f"frames {frames} batch {batch} mixed references {mixed}: forward peak {fwd:.2f} GiB, "
              f"forward + backward {total:.2f} GiB, {sec:.2f} s")  # fmt: skip
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        step(model, 32, args.batch, True, "cuda")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=14, max_name_column_width=60))


if __name__ == "__main__":
    main()
